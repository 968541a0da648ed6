"""What every benchmark script shares: the machine it ran on, and its own section of RESULTS.md.

    from bench import KT_DATA, RESULTS, load_average, machine, peak_rss_mib, write_section

    write_section(heading="Simulator", start=START, end=END, body=text)

A script owns the lines between its `start` and `end` markers; everything else in RESULTS.md is
left as it is. The file is replaced durably (aivo.utils.durable_file): an interrupted write never
leaves half a results file.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from aivo.utils import durable_file  # noqa: E402

RESULTS = HERE / "RESULTS.md"
KT_DATA = HERE.parent.parent / "shared" / "data" / "kt"  # the shared KT data sets (never copied into the repository)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """E.g. 'Linux x86_64, AMD EPYC 7B13, 2 cores, Python 3.11.7'."""
    return (f"{platform.system()} {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")


def load_average() -> float:
    """The 1-minute load average (other jobs may share the cores: results say how busy they were)."""
    return os.getloadavg()[0]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_section(*, start: str, end: str, body: str, heading: str | None = None) -> None:
    """Put `body` between the `start` and `end` markers of RESULTS.md. Where the markers are
    missing, the block goes at the end of the `## {heading}` section (a new section at the end of
    the file when there is none); without a heading, missing markers are an error."""
    block = f"{start}\n{body.strip()}\n{end}"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    elif heading is None:
        raise SystemExit(f"{RESULTS} has no {start} ... {end} block to fill")
    elif f"## {heading}" in text.splitlines():
        lines = text.splitlines()
        at = lines.index(f"## {heading}") + 1
        while at < len(lines) and not lines[at].startswith("## "):
            at += 1
        text = "\n".join(lines[:at]).rstrip() + "\n\n" + block + "\n\n" + "\n".join(lines[at:])
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n{block}\n"
    with durable_file(RESULTS) as tmp:
        tmp.write_text(text.rstrip() + "\n", encoding="utf-8")


def write_report(section: str, *, start: str, end: str) -> None:
    """`write_section` for a report printed whole ("## Title", a blank line, then the block
    between `start` and `end`)."""
    heading = section.split("\n", 1)[0]
    if not heading.startswith("## ") or start not in section or end not in section:
        raise ValueError("a report is '## Title', a blank line, then its start ... end block")
    write_section(heading=heading[3:], start=start, end=end, body=section.split(start, 1)[1].split(end, 1)[0])

