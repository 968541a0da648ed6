"""`aivo evaluate-policy`: a thin wrapper over aivo.services.policy_evaluation."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from aivo.cli.app import JsonOption, app, console, emit, settings
from aivo.errors import ConfigError

POLICIES_HELP = "fixed-curriculum, random-in-grade, mastery-bkt, aivo-target, aivo-gain"


def _items(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--items takes numbers of items separated by commas, like 50,100,200; got {text!r}") from None
    if not values:
        raise ConfigError("--items names no number of items")
    if any(v <= 0 for v in values):
        raise ConfigError(f"--items: every N must be a positive number of items, got {text!r}")
    return tuple(sorted(set(values)))


@app.command("evaluate-policy")
def evaluate_policy(
    policy: list[str] = typer.Option([], "--policy", "-p", help=f"Policy to evaluate (repeat; default all: "
                                                                 f"{POLICIES_HELP})."),
    learner_model: list[str] = typer.Option([], "--learner-model", "-m", help="Simulated learner model (repeat; "
                                            "default: simulator and bkt-forgetting)."),
    learners: int = typer.Option(1000, "--learners", "-n", help="Simulated learners per arm."),
    items: str = typer.Option("50,100,200", "--items", help="Post-tests after these numbers of practice items."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the curriculum, the learners and the answers."),
    brain_learners: int = typer.Option(2000, "--brain-learners", help="Learners of the separate simulated history "
                                       "the Main Brain is trained on."),
    brain_interactions: int = typer.Option(150, "--brain-interactions", help="Interactions per learner of that history."),
    brain_epochs: int = typer.Option(8, "--brain-epochs", help="Maximum epochs of the Main Brain's training."),
    delay_days: float = typer.Option(30.0, "--delay-days", help="Days between a post-test and its delayed retest."),
    cache: Path | None = typer.Option(None, "--cache", help="Folder that keeps trained Main Brains for reuse "
                                      "[default: AIVO_HOME/policy-evaluation]."),
    out: Path | None = typer.Option(None, "--out", help="Write the full report (JSON) here too."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the mastery-vs-items plot (PNG) here."),
    as_json: bool = JsonOption,
) -> None:
    """Closed-loop evaluation of recommendation policies on simulated learners: every step asks the
    policy for the next item, the simulated learner answers from its hidden state, and post-tests
    from that hidden truth measure what was learned (docs/policies.md)."""
    from aivo.services.policy_evaluation import (  # start-up: torch loads only when the command runs
        DEFAULT_POLICIES, PolicyEvaluationSpec, evaluate_policies, save_report)
    from aivo.services.runtime import apply_threads  # start-up

    checkpoints = _items(items)
    spec = PolicyEvaluationSpec(
        policies=tuple(policy) or DEFAULT_POLICIES,
        learner_models=tuple(learner_model) or ("simulator", "bkt-forgetting"),
        num_learners=learners, checkpoints=checkpoints, seed=seed, brain_learners=brain_learners,
        brain_interactions=brain_interactions, brain_epochs=brain_epochs, delay_days=delay_days)
    config = settings()
    apply_threads(config)
    home = config.home / "policy-evaluation"
    result = evaluate_policies(spec, cache_dir=cache or home)
    written = save_report(result, folder=home, out=out, plot=plot)
    summary = {**result.summary, "written": [str(p) for p in written]}

    def render(r: dict) -> None:
        for model, entry in r["learner_models"].items():
            table = Table(title=f"learner model {model}: expected post-test score (95% CI), {spec.num_learners} "
                                f"learners per policy")
            table.add_column("policy")
            for n in spec.checkpoints:
                table.add_column(f"after {n}", justify="right")
            table.add_column(f"{spec.delay_days:g} d later ({spec.steps})", justify="right")
            table.add_column("items to mastery", justify="right")
            for name, row in entry["policies"].items():
                cells = [f"{row['post_test'][str(n)]['mean']:.3f} [{row['post_test'][str(n)]['low']:.3f}, "
                         f"{row['post_test'][str(n)]['high']:.3f}]" for n in spec.checkpoints]
                delayed = row["delayed_post_test"][str(spec.steps)]
                cells.append(f"{delayed['mean']:.3f}")
                cells.append(f"{row['items_to_mastery']['mean']:.1f}")
                table.add_row(name, *cells)
            console.print(table)
            effects = entry.get("effects")
            if effects:
                verdict = "beats every baseline" if effects["beats_every_baseline"] else "does not beat every baseline"
                console.print(f"{effects['policy']} after {effects['items']} items {verdict} "
                              "(non-overlapping 95% CIs)")
            sub = entry.get("subgroups")
            if sub:
                worse = ", ".join(sub["significantly_worse"]) or "none"
                console.print(f"subgroups served significantly worse than {sub['reference']}: {worse}")
        for path in r["written"]:
            console.print(f"wrote {path}")

    emit(summary, as_json=as_json, render=render)
