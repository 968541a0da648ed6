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
