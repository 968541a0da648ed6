"""What the recommendation policies know about the curriculum, learned from the training log and
stored with each Main Brain version (`brain.info["curriculum"]`), so that serving never scans
interactions:

- the **teaching order** of the skills: per skill, the mean rank of a learner's first attempt at
  it among the skills of the same subject and grade that the learner attempted, over the
  learners of the skill's grade (the grade most of its answers come from). Learners meet skills
  in the order their courses teach them, so within a subject and grade this is the course's
  order (ranks, not positions: a late skill reached only by fast learners still ranks late).
  The skill before a skill in that order stands in for its prerequisite (no data set here
  carries a prerequisite graph);
- **BKT parameters** per skill (`aivo.brain.bkt`), for the mastery-learning policy of `aivo
  evaluate-policy`. The versions `aivo train-main` and the pipeline register store the order only
  (`bkt=False`): the policies the recommendations API serves do not read BKT, and fitting it takes
  minutes on a large log.

Data without `subject` or `grade` columns gets one subject and one grade ("").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aivo.brain.bkt import BKTFitConfig, BKTParams, fit_bkt
from aivo.data.schema import InteractionLog, split_skills
from aivo.errors import DataError

FORMAT = 1
UNRANKED = 1e6


@dataclass(frozen=True)
class SkillInfo:
    skill_id: str
    subject: str  # "" when the data has no subject
    grade: int | None
    rank: float  # mean rank of the first attempt within subject and grade (smaller = taught earlier)


@dataclass(frozen=True)
class CurriculumKnowledge:
    skills: tuple[SkillInfo, ...]  # in teaching order: (subject, grade, rank, skill_id)
    bkt: BKTParams | None  # None when only the teaching order was learned

    def to_dict(self) -> dict:
        return {"format": FORMAT,
                "skills": [[s.skill_id, s.subject, s.grade, round(s.rank, 3)] for s in self.skills],
                "bkt": None if self.bkt is None else self.bkt.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> "CurriculumKnowledge":
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            raise DataError("this Main Brain's curriculum knowledge has another format; retrain it")
        skills = tuple(SkillInfo(str(a), str(b), None if c is None else int(c), float(d))
                       for a, b, c, d in values["skills"])
        bkt = values.get("bkt")
        return cls(skills=skills, bkt=None if bkt is None else BKTParams.from_dict(bkt))

    def predecessor(self) -> dict[str, str]:
        """skill -> the skill taught just before it in the same subject (the first skill of a
        grade follows the last skill of the grade below)."""
        out: dict[str, str] = {}
        previous: dict[str, str] = {}
        for info in self.skills:
            if info.subject in previous:
                out[info.skill_id] = previous[info.subject]
            previous[info.subject] = info.skill_id
        return out

    def position(self) -> dict[str, int]:
        return {info.skill_id: i for i, info in enumerate(self.skills)}


def _first_skill(values: pd.Series) -> np.ndarray:
    return np.array([(split_skills(s) or [s])[0] for s in values.astype(str)], dtype=object)


def learn_curriculum(log: InteractionLog, *, bkt_config: BKTFitConfig = BKTFitConfig(),
                     bkt: bool = True) -> CurriculumKnowledge:
    """Teaching order and (with `bkt`) BKT parameters from a training log (see the module docstring)."""
    frame = log.frame
    if frame.empty:
        raise DataError("cannot learn a curriculum from an empty log")
    skill = _first_skill(frame["skill_ids"] if "skill_ids" in frame.columns else frame["item_id"])
    view = pd.DataFrame({
        "learner": frame["learner_id"].astype(str).to_numpy(), "skill": skill,
        "position": frame.groupby("learner_id", sort=False).cumcount().to_numpy(),
        "subject": frame["subject"].astype("string").fillna("").to_numpy() if "subject" in frame.columns else "",
        "grade": pd.to_numeric(frame["grade"], errors="coerce").to_numpy() if "grade" in frame.columns else np.nan,
    })
    first = view.groupby(["learner", "skill"], sort=False).first().reset_index()
    # The skill's subject and grade: the most frequent among its answers.
    mode = view.groupby("skill")[["subject", "grade"]].agg(lambda s: s.mode(dropna=True).iloc[0]
                                                             if s.notna().any() else np.nan)
    first = first.drop(columns=["subject", "grade"]).join(mode, on="skill").join(
        view.groupby("learner")["grade"].first().rename("learner_grade"), on="learner")
    own = first.loc[first["grade"].isna() | (first["learner_grade"] == first["grade"])]
    own = own.assign(rank=own.sort_values("position").groupby(["learner", "subject", "grade"], dropna=False)
                     .cumcount())
    rank = own.groupby("skill")["rank"].mean().reindex(mode.index)
    rank = rank.fillna(UNRANKED)  # never attempted by its own grade's learners: last, by id
    table = mode.assign(rank=rank).reset_index()
    table["grade_sort"] = table["grade"].fillna(-1)
    table = table.sort_values(["subject", "grade_sort", "rank", "skill"], kind="stable")
    skills = tuple(SkillInfo(str(r.skill), "" if pd.isna(r.subject) else str(r.subject),
                             None if pd.isna(r.grade) else int(r.grade), float(r.rank))
                   for r in table.itertuples(index=False))
    return CurriculumKnowledge(skills=skills, bkt=fit_bkt(frame, config=bkt_config) if bkt else None)
