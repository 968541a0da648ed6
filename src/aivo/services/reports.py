"""Plots for people: a training report image (learning curve, calibration, subgroup AUC)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_training_report(*, path: Path, title: str, history: list[dict], evaluation: dict) -> Path | None:
    """A PNG with the validation AUC per epoch, the metrics next to the oracle and subgroup AUCs.
    Returns None (and logs why) when matplotlib cannot draw here."""
    try:
        # start-up: matplotlib loads only when a report is drawn
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # start-up: after choosing the Agg backend
    except Exception as exc:  # plotting is a convenience; training must not fail for it
        log.warning("no training report: matplotlib unavailable (%s)", exc)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    subgroups = evaluation.get("subgroups", {})
    fig, axes = plt.subplots(1, 2 + len(subgroups), figsize=(5 * (2 + len(subgroups)), 4))
    ax = axes[0]
    epochs = [h["epoch"] for h in history]
    if epochs:
        ax.plot(epochs, [h.get("validation_auc") for h in history], marker="o", label="validation AUC")
        ax.set_xlabel("epoch")
        ax.legend()
    ax.set_title("learning curve")
    ax = axes[1]
    names = ["auc", "accuracy", "f1", "ece"]
    model = evaluation["metrics"]
    oracle = evaluation.get("oracle")
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [model[n] or 0 for n in names], width=0.4, label="model")
    if oracle:
        ax.bar([x + 0.2 for x in xs], [oracle[n] or 0 for n in names], width=0.4, label="oracle")
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, 1)
    ax.set_title("test metrics")
    ax.legend()
    for ax, (column, groups) in zip(axes[2:], subgroups.items()):
        labels = list(groups)
        ax.bar(labels, [groups[g]["auc"] or 0 for g in labels])
        ax.set_ylim(0.5, 1)
        ax.set_title(f"test AUC by {column}")
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_policy_plot(*, path: Path, summary: dict) -> Path | None:
    """Mastery (expected post-test score on the learner's grade-level items, hidden truth) against
    items practised, one line per policy (95% CI band), one panel per learner model."""
    try:
        # start-up: matplotlib loads only when a report is drawn
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # start-up: after choosing the Agg backend
    except Exception as exc:
        log.warning("no policy plot: matplotlib unavailable (%s)", exc)
        return None
    models = summary["learner_models"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    n = summary["spec"]["num_learners"]
    for ax, (model, entry) in zip(axes[0], models.items()):
        for name, row in entry["policies"].items():
            curve = row["curve"]
            xs, ys, half = curve["items"], curve["mean"], curve["half_width"]
            label = name if row.get("learners", n) == n else f"{name} ({row['learners']:,} other learners)"
            line, = ax.plot(xs, ys, label=label, linewidth=2.2 if name == "aivo-gain" else 1.4)
            ax.fill_between(xs, [y - h for y, h in zip(ys, half)], [y + h for y, h in zip(ys, half)],
                            color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(f"learner model: {model} ({n} learners per policy)")
        ax.set_xlabel("items practised")
        ax.set_ylabel("expected post-test score (grade-level items)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
