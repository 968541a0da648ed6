"""`aivo data ...`: inspect and simulate learner data.

Other command modules reuse `data_app` (to add commands) and `parse_column_map` / `MapOption`
(for `--map schema=source` options)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aivo.cli.app import JsonOption, app, console, emit, err_console, settings

# Named in --help without loading the data libraries (pandas) at start-up; tests/data/test_cli_data.py
# checks that they are aivo.data.schema.CORE_COLUMNS and aivo.data.readers.reader_names().
SCHEMA_COLUMNS = ("learner_id", "item_id", "correct", "skill_ids", "order", "timestamp", "response_time_s",
                  "subject", "grade", "item_type")
READER_NAMES = ("csv", "kt", "parquet")

data_app = typer.Typer(help="Import, inspect and simulate learner data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

MapOption = typer.Option(
    None, "--map", "-m", metavar="SCHEMA=SOURCE",
    help="Map a schema column to a source column, e.g. --map learner_id=student --map correct=is_correct "
         f"(repeatable). Schema columns: {', '.join(SCHEMA_COLUMNS)}.")


def parse_column_map(values: list[str] | None) -> dict[str, str]:
    """Turn repeated `--map schema=source` values into `{"schema": "source"}`.

    Bad values are usage errors (exit code 2) naming the value and the valid schema columns."""
    mapping: dict[str, str] = {}
    for value in values or []:
        schema, sep, source = (part.strip() for part in value.partition("="))
        if not sep or not schema or not source:
            raise typer.BadParameter(f"{value!r} is not SCHEMA=SOURCE (e.g. learner_id=student)",
                                     param_hint="--map")
        if schema not in SCHEMA_COLUMNS:
            raise typer.BadParameter(f"{schema!r} is not a schema column; choose from: "
                                     f"{', '.join(SCHEMA_COLUMNS)}", param_hint="--map")
        if schema in mapping and mapping[schema] != source:
            raise typer.BadParameter(f"{schema!r} is mapped twice ({mapping[schema]!r} and {source!r})",
                                     param_hint="--map")
        mapping[schema] = source
    return mapping


def _grade_label(key: str) -> str:
    return "K" if key == "0" else key


@data_app.command("stats")
def stats(
    path: Path = typer.Argument(..., help="Interaction file (KT three-line, CSV/TSV or Parquet)."),
    format: str = typer.Option("auto", "--format", "-f",
                               help=f"Input format: auto, {', '.join(READER_NAMES)}."),
    column_map: list[str] = MapOption,
    as_json: bool = JsonOption,
) -> None:
    """Summarize an interaction file: learners, items, skills, correct rate, lengths, and counts per
    subject, grade, item type and accommodation when the file has them."""
    from aivo.services.data import summarize_file  # start-up: the data libraries load only when it runs

    result = summarize_file(path, format=format, mapping=parse_column_map(column_map) or None)

    def render(r: dict) -> None:
        for note in r["notes"]:
            console.print(f"[dim]{note}[/]")
        for key in ("learners", "interactions", "items", "skills", "multi_skill_interactions", "correct_rate"):
            console.print(f"{key.replace('_', ' '):>24}: {r[key]}")
        h = r["history_length"]
        console.print(f"{'history length':>24}: min {h['min']}, mean {h['mean']}, max {h['max']}")
        if "time_span" in r:
            console.print(f"{'time span':>24}: {r['time_span']['first']} .. {r['time_span']['last']}")
        if "response_time_s" in r:
            rt = r["response_time_s"]
            console.print(f"{'response time (s)':>24}: median {rt['median']}, p90 {rt['p90']}")
        for column, groups in r["breakdowns"].items():
            table = Table(title=f"by {column}", title_justify="left")
            for header in (column, "interactions", "learners", "correct rate"):
                table.add_column(header, justify="left" if header == column else "right")
            for key, row in groups.items():
                label = _grade_label(key) if column == "grade" else key
                table.add_row(label, str(row["interactions"]), str(row["learners"]),
                              f"{row['correct_rate']:.3f}")
            console.print(table)

    emit(result, as_json=as_json, render=render)


def _parse_grades(text: str) -> tuple[int, ...]:
    """'K-12', '3-5', 'K,1,2' -> grades (K = 0)."""
    def one(value: str) -> int:
        value = value.strip().upper()
        if value == "K":
            return 0
        if not value.isdigit():
            raise typer.BadParameter(f"{value!r} is not a grade (K or 0..12)", param_hint="--grades")
        return int(value)

    grades: list[int] = []
    for part in text.split(","):
        low, sep, high = part.partition("-")
        grades.extend(range(one(low), one(high) + 1) if sep else [one(low)])
    return tuple(dict.fromkeys(grades))


@data_app.command("simulate")
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .parquet or .csv (by suffix)."),
    learners: int = typer.Option(1000, "--learners", "-n", min=1, help="Number of learners."),
    interactions: int = typer.Option(100, "--interactions", min=1, help="Interactions per learner."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Random seed (default: AIVO_SEED)."),
    subjects: str | None = typer.Option(None, "--subjects", help="Comma list (default: math,reading,science)."),
    grades: str | None = typer.Option(None, "--grades", help="Grades, e.g. K-12 (default), 3-5 or K,1,2."),
    truth_dir: Path | None = typer.Option(
        None, "--truth-dir", help="Also write the hidden truth here: skills, items, learners (CSV)."),
    as_json: bool = JsonOption,
) -> None:
    """Simulate a synthetic K-12 cohort with known true probabilities (see docs/data.md)."""
    options: dict = {"num_learners": learners, "interactions_per_learner": interactions}
    if subjects:
        options["subjects"] = tuple(s.strip() for s in subjects.split(",") if s.strip())
    if grades:
        options["grades"] = _parse_grades(grades)
    seed = settings().seed if seed is None else seed
    from aivo.services.data import simulate_to_file  # start-up: the data libraries load only when it runs

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task("simulating", total=interactions)
        result = simulate_to_file(out=out, seed=seed, truth_dir=truth_dir, **options,
                                  progress=lambda done, total: progress.update(task, completed=done),
                                  writing=lambda: progress.update(task, description=f"writing {out.name}"))

    def render(r: dict) -> None:
        console.print(f"wrote {r['interactions']:,} interactions of {r['learners']:,} learners to {r['out']} "
                      f"(seed {r['seed']}, {r['skills']} skills, {r['items']} items) in "
                      f"{r['seconds']['simulate'] + r['seconds']['write']:.1f}s")
        console.print(f"correct rate {r['correct_rate']}; oracle AUC {r['oracle']['auc']}, "
                      f"log-loss {r['oracle']['log_loss']} (the best any model can reach)")
        console.print("accommodation profiles: " + ", ".join(f"{k} {v}" for k, v in r["accommodation"].items()))
        if r["truth_files"]:
            console.print("truth: " + ", ".join(r["truth_files"]))

    emit(result, as_json=as_json, render=render)
