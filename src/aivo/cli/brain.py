"""`aivo train-main` and `aivo evaluate`: thin wrappers over aivo.services.main_brain."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from aivo.cli.app import JsonOption, app, console, current_user, emit, registry, settings, to_jsonable
from aivo.errors import ConfigError


def _metrics_table(title: str, rows: dict[str, dict | None]) -> Table:
    table = Table(title=title)
    columns = ("n", "auc", "accuracy", "log_loss", "f1", "precision", "recall", "ece")
    table.add_column("")
    for col in columns:
        table.add_column(col, justify="right")
    for name, metrics in rows.items():
        if metrics is None:
            continue
        cells = []
        for col in columns:
            value = metrics.get(col)
            cells.append("-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
        table.add_row(name, *cells)
    return table


@app.command("train-main")
def train_main(
    data: Path | None = typer.Option(None, "--data", help="Interaction file (KT three-line, CSV or Parquet). "
                                     "Omit it to train on the registry's interactions and register a version."),
    out: Path | None = typer.Option(None, "--out", help="Checkpoint folder to write (with --data)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Maximum epochs [AIVO_MAX_EPOCHS]."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Seed of the split and the training [AIVO_SEED]."),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="Adam step [AIVO_LEARNING_RATE]."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Chunks per batch [AIVO_BATCH_SIZE]."),
    patience: int | None = typer.Option(None, "--patience", min=1,
                                        help="Early-stopping patience [AIVO_EARLY_STOPPING_PATIENCE]."),
    config_file: Path | None = typer.Option(None, "--config", help="JSON file of BrainConfig fields."),
    data_format: str = typer.Option("auto", "--format", "-f", help="Input format."),
    group_by: list[str] = typer.Option([], "--group-by", help="Also report test metrics per value of this column."),
    promote: str = typer.Option("if-better", "--promote",
                                help="Registry training: always, never or if-better (no active version yet, or a "
                                     "higher test AUC than the active one on the same test learners)."),
    as_json: bool = JsonOption,
) -> None:
    """Train the Main Brain (split 80/10/10 by learner), evaluate on its test part, and either save
    a checkpoint folder (--data FILE --out DIR) or register it as a main version (no --data)."""
    # start-up: the Main Brain's libraries (torch) load only when the command runs
    from aivo.services.main_brain import brain_config, train_main_from_file
    from aivo.services.runtime import apply_threads

    if data is None and out is not None:
        raise ConfigError("--out writes a checkpoint of a file's training: give --data FILE too, or omit --out "
                          "to train on the registry's interactions")
    if data is not None and out is None:
        raise ConfigError("give --out DIR for the checkpoint folder, or omit --data to train on the registry's "
                          "interactions and register a main version")
    if promote not in ("always", "never", "if-better"):
        raise ConfigError(f"--promote must be always, never or if-better, got {promote!r}")
    cfg = settings()
    apply_threads(cfg)
    config = brain_config(cfg, config_file=config_file, max_epochs=epochs, learning_rate=learning_rate,
                          batch_size=batch_size, patience=patience)
    seed = cfg.seed if seed is None else seed
    if data is None:
        _train_registry_version(cfg, config=config, seed=seed, group_by=group_by, promote=promote, as_json=as_json)
        return
    report = train_main_from_file(data=data, out=out, config=config, seed=seed,
                                  data_format=data_format, group_by=group_by, progress=not as_json)

    def render(r) -> None:
        console.print(f"Main Brain saved to [bold]{r.checkpoint}[/] (best epoch {r.best_epoch} of {r.epochs_run}, "
                      f"{r.train_seconds:.1f}s, {r.num_parameters['shared']} shared + "
                      f"{r.num_parameters['personal']} personal parameters)")
        console.print(_metrics_table("Main Brain", {"validation": r.validation, "test": r.test["metrics"],
                                                    "oracle (test)": r.test["oracle"]}))
        for col, groups in r.test["subgroups"].items():
            console.print(_metrics_table(f"test by {col}", groups))

    emit(to_jsonable(report), as_json=as_json, render=lambda _: render(report))


def _train_registry_version(cfg, *, config, seed: int, group_by: list[str], promote: str, as_json: bool) -> None:
    from aivo.services.main_brain import train_main_version  # start-up: torch loads only when the command runs

    report = train_main_version(registry=registry(), settings=cfg, config=config, seed=seed,
                                promote=promote, group_by=group_by, actor=current_user(), progress=not as_json)

    def render(r) -> None:
        verdict = "[green]promoted[/]" if r.promoted else "[yellow]not promoted[/]"
        console.print(f"registered Main Brain [bold]{r.version.version}[/] ({verdict}: {r.promotion_reason}); "
                      f"best epoch {r.best_epoch} of {r.epochs_run}, {r.train_seconds:.1f}s")
        rows = {"validation": r.validation, "test": r.test["metrics"], "oracle (test)": r.test["oracle"]}
        if r.active_test is not None:
            rows[f"active {r.active_before} (test)"] = r.active_test["metrics"]
        console.print(_metrics_table("Main Brain", rows))
        for col, groups in r.test["subgroups"].items():
            console.print(_metrics_table(f"test by {col}", groups))

    emit(to_jsonable(report), as_json=as_json, render=lambda _: render(report))


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder written by train-main."),
    data: Path = typer.Option(..., "--data", help="Interaction file to score."),
    group_by: list[str] = typer.Option([], "--group-by", help="Also report metrics per value of this column."),
    data_format: str = typer.Option("auto", "--format", "-f", help="Input format."),
    as_json: bool = JsonOption,
) -> None:
    """Score every attempt but each learner's first, from the context serving reads; metrics overall and per group."""
    # start-up: the Main Brain's libraries (torch) load only when the command runs
    from aivo.services.main_brain import evaluate_from_files
    from aivo.services.runtime import apply_threads

    apply_threads(settings())
    evaluation = evaluate_from_files(model_dir=model, data=data, group_by=group_by, data_format=data_format)
    result = evaluation.as_dict()

    def render(r: dict) -> None:
        console.print(f"{r['num_scored']} of {r['num_rows']} attempts scored")
        console.print(_metrics_table("Main Brain", {"model": r["metrics"], "oracle": r["oracle"]}))
        for col, groups in r["subgroups"].items():
            console.print(_metrics_table(f"by {col}", groups))

    emit(result, as_json=as_json, render=render)
