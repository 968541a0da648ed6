"""`run_cli` (a process forked from the CLI fork server) answers as `python -m aivo` does."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

# Log records a library writes while it is imported: a fresh interpreter imports it after the CLI
# configured logging, the fork server before (so they are not shown). Everything else must match.
IMPORT_TIME_LOG = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ \[(INFO|DEBUG)\] (alembic\.runtime\.plugins): .*\n", re.M)


def _answer(proc):
    return proc.returncode, proc.stdout, IMPORT_TIME_LOG.sub("", proc.stderr)


@pytest.mark.parametrize("args", [("--help",), ("data", "stats"), ("registry", "stats", "--json"),
                                  ("db", "upgrade", "--revision", "bogus")])
def test_a_forked_command_answers_as_python_m_aivo(run_cli, run_cli_process, aivo_home, tmp_path, args):
    fresh_home = tmp_path / "fresh_home"
    forked, fresh = run_cli(*args), run_cli_process(*args, env={"AIVO_HOME": str(fresh_home)})
    forked_answer = [_without_times(part.replace(str(aivo_home), "HOME")) for part in _answer(forked)[1:]]
    fresh_answer = [_without_times(part.replace(str(fresh_home), "HOME")) for part in _answer(fresh)[1:]]
    assert (forked.returncode, *forked_answer) == (fresh.returncode, *fresh_answer)


def _without_times(text: str) -> str:
    return re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", text, flags=re.M)


def test_each_command_has_its_own_environment_folder_and_stdin(run_cli, aivo_home, tmp_path):
    other = tmp_path / "other_home"
    made = run_cli("db", "upgrade", "--json", env={"AIVO_HOME": str(other)})
    assert made.returncode == 0, made.stderr
    assert (other / "aivo.db").exists() and not (aivo_home / "aivo.db").exists()
    (aivo_home.parent / ".env").write_text("AIVO_BATCH_SIZE=0\n")  # read from the command's working folder
    assert run_cli("registry", "stats").returncode == 2
    (aivo_home.parent / ".env").unlink()
    asked = run_cli("tutor", "content", "clear", input="n\n")  # the confirmation reads the given stdin
    assert asked.returncode == 1 and "Remove every lesson" in asked.stdout
    cleared = run_cli("tutor", "content", "clear", "--json", input="y\n")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout.split("[y/N]: ", 1)[1]) == {"removed_lessons": 0}


def test_a_command_past_its_timeout_is_killed(run_cli):
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli("worker", "run", "--poll", "0.2", timeout=3)  # runs until stopped
    assert run_cli("registry", "stats", "--json").returncode == 0  # the server serves on
