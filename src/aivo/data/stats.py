"""Summary statistics of an interaction log (what `aivo data stats` prints)."""

from __future__ import annotations

import pandas as pd

from aivo.data.schema import SKILL_SEPARATOR, InteractionLog

# Columns broken down by value when the log has them.
BREAKDOWN_COLUMNS = ("subject", "grade", "item_type", "accommodation")
MISSING_LABEL = "<missing>"


def _breakdown(frame: pd.DataFrame, column: str) -> dict[str, dict[str, float | int]]:
    keys = frame[column].astype("string").fillna(MISSING_LABEL)
    grouped = frame.groupby(keys, sort=True)
    table = pd.DataFrame({"interactions": grouped.size(), "learners": grouped["learner_id"].nunique(),
                          "correct_rate": grouped["correct"].mean().round(4)})
    if column == "grade":  # numeric order (K=0, 1, ..., 12), not string order
        table = table.sort_index(key=lambda idx: pd.to_numeric(idx, errors="coerce").fillna(99))
    return {str(k): {"interactions": int(r.interactions), "learners": int(r.learners),
                     "correct_rate": float(r.correct_rate)} for k, r in table.iterrows()}


def summarize_log(log: InteractionLog) -> dict:
    """Counts, correct rate, history lengths, and per subject/grade/item type/accommodation
    breakdowns for the columns present. Plain JSON-able dict."""
    frame = log.frame
    lengths = frame.groupby("learner_id").size()
    skills = frame["skill_ids"].astype("string")
    distinct_combos = skills.dropna().unique()
    distinct_skills = {s for combo in distinct_combos for s in str(combo).split(SKILL_SEPARATOR) if s}
    summary: dict = {
        "source": log.source,
        "notes": list(log.notes),
        "learners": log.num_learners,
        "interactions": log.num_interactions,
        "items": int(frame["item_id"].nunique()),
        "skills": len(distinct_skills),
        "multi_skill_interactions": int(skills.str.contains(SKILL_SEPARATOR, regex=False).sum()),
        "correct_rate": round(float(frame["correct"].mean()), 4),
        "history_length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2),
                           "max": int(lengths.max())},
    }
    if "timestamp" in frame.columns and frame["timestamp"].notna().any():
        summary["time_span"] = {"first": frame["timestamp"].min().isoformat(),
                                "last": frame["timestamp"].max().isoformat()}
    if "response_time_s" in frame.columns and frame["response_time_s"].notna().any():
        rt = frame["response_time_s"].dropna()
        summary["response_time_s"] = {"median": round(float(rt.median()), 2),
                                      "p90": round(float(rt.quantile(0.9)), 2)}
    summary["breakdowns"] = {c: _breakdown(frame, c) for c in BREAKDOWN_COLUMNS if c in frame.columns}
    return summary
