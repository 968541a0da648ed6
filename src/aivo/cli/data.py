"""`aivo data ...`: import, inspect and simulate learner data."""

from __future__ import annotations

from pathlib import Path

import typer

from aivo.cli.app import JsonOption, app, console, emit
from aivo.data.readers import read_interactions

data_app = typer.Typer(help="Import, inspect and simulate learner data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("stats")
def stats(
    path: Path = typer.Argument(..., help="Interaction file (KT three-line, CSV or Parquet)."),
    format: str = typer.Option("auto", "--format", "-f", help="Input format."),
    as_json: bool = JsonOption,
) -> None:
    """Summarize an interaction file: learners, items, skills, correct rate, lengths."""
    log = read_interactions(path, format=format)
    frame = log.frame
    lengths = frame.groupby("learner_id").size()
    result = {
        "source": log.source,
        "notes": list(log.notes),
        "learners": log.num_learners,
        "interactions": log.num_interactions,
        "items": int(frame["item_id"].nunique()),
        "skills": int(frame["skill_ids"].nunique()),
        "correct_rate": round(float(frame["correct"].mean()), 4),
        "history_length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2),
                           "max": int(lengths.max())},
    }

    def render(r: dict) -> None:
        for note in r["notes"]:
            console.print(f"[dim]{note}[/]")
        for key in ("learners", "interactions", "items", "skills", "correct_rate"):
            console.print(f"{key:>14}: {r[key]}")
        h = r["history_length"]
        console.print(f"{'history length':>14}: min {h['min']}, mean {h['mean']}, max {h['max']}")

    emit(result, as_json=as_json, render=render)
