from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from aivo.brain.recommend import PolicyConfig, recommend, skill_mastery

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def preds(rows):
    return pd.DataFrame(rows, columns=["item_id", "skill_ids", "p_correct"])


def history(rows, start=NOW - timedelta(days=1)):
    frame = pd.DataFrame(rows, columns=["item_id", "skill_ids", "correct"])
    frame["order"] = range(len(frame))
    frame["timestamp"] = [start + timedelta(minutes=i) for i in range(len(frame))]
    return frame


def by_skill(rec):
    return {d.skill_id: d for d in rec.skills}


def test_mastery_is_mean_over_items_of_each_skill_including_multi_skill_items():
    m = skill_mastery(preds([("a", "s1", 0.9), ("b", "s1", 0.7), ("c", "s1;s2", 0.5)]))
    assert m == {"s1": pytest.approx(0.7), "s2": pytest.approx(0.5)}


def test_level_up_down_and_stay():
    p = preds([("a1", "A", 0.95), ("a2", "A", 0.9), ("b1", "B", 0.3), ("c1", "C", 0.6)])
    h = history([("a1", "A", 1), ("a2", "A", 1), ("a1", "A", 1), ("b1", "B", 0), ("c1", "C", 1)])
    rec = recommend(learner_id="L", item_predictions=p, history=h, now=NOW)
    d = by_skill(rec)
    assert d["A"].decision == "LEVEL_UP" and d["A"].mastery == pytest.approx(0.925)
    assert d["B"].decision == "LEVEL_DOWN"
    assert d["C"].decision == "STAY"
    assert "0.93" in d["A"].reason or "0.92" in d["A"].reason


def test_too_few_attempts_never_level_up():
    rec = recommend(learner_id="L", item_predictions=preds([("a1", "A", 0.95)]),
                    history=history([("a1", "A", 1)]), now=NOW)
    assert by_skill(rec)["A"].decision == "STAY"


def test_review_when_prediction_falls_below_good_record_or_skill_is_old():
    p = preds([("a1", "A", 0.7), ("b1", "B", 0.8)])
    h = history([("a1", "A", 1)] * 4 + [("b1", "B", 1)])
    d = by_skill(recommend(learner_id="L", item_predictions=p, history=h, now=NOW))
    assert d["A"].decision == "REVIEW" and "fading" in d["A"].reason
    old = history([("b1", "B", 1), ("b1", "B", 1), ("b1", "B", 0), ("b1", "B", 1)], start=NOW - timedelta(days=30))
    d = by_skill(recommend(learner_id="L", item_predictions=p, history=old, now=NOW))
    assert d["B"].decision == "REVIEW" and d["B"].days_since_practice > 29
    # An old skill the learner never got right is not reviewed: it is still being learned.
    never = history([("b1", "B", 0), ("b1", "B", 0), ("b1", "B", 1)], start=NOW - timedelta(days=30))
    d = by_skill(recommend(learner_id="L", item_predictions=p, history=never, now=NOW))
    assert d["B"].decision == "STAY"


def test_next_items_closest_to_target_skip_recently_solved():
    p = preds([("x", "A", 0.71), ("y", "A", 0.69), ("z", "A", 0.95), ("w", "A", 0.2)])
    h = history([("x", "A", 1)])
    rec = recommend(learner_id="L", item_predictions=p, history=h,
                    config=PolicyConfig(num_items=2, target_success=0.7), now=NOW)
    assert [i.item_id for i in rec.next_items] == ["y", "z"]
    assert rec.next_items[0].p_correct == pytest.approx(0.69)


def test_empty_history_still_recommends_and_config_validates():
    rec = recommend(learner_id="new", item_predictions=preds([("a", "A", 0.6)]),
                    history=history([]).iloc[0:0], now=NOW)
    assert rec.skills == [] and rec.next_items[0].item_id == "a"
    with pytest.raises(ValueError):
        PolicyConfig(level_up=0.4, level_down=0.5)
