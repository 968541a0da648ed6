"""The per-learner privacy ledger: repository functions (session injected, keyword-only).

Accounting rule (user-level DP, see docs/federated.md): every aggregation round in which a
learner was *eligible* -- in the pool that was Poisson-sampled with rate q, whether or not the
sample picked them -- composes one sampled-Gaussian step (q, sigma) into that learner's
ledger. Learners whose epsilon after one more step would exceed the budget are left out of
the pool (`split_by_budget`) and so are never charged again.

A round run with differential privacy switched off charges `non_private_rounds` to the
learners it actually used: their epsilon is unbounded from then on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.privacy.accountants import HistoryEntry, epsilon_for, normalize_history
from aivo.registry.tables import PrivacyLedgerEntry
from aivo.registry.tables import Learner

log = logging.getLogger(__name__)

_CHUNK = 500  # keeps IN lists under SQLite's bound-parameter limit


@dataclass(frozen=True)
class LedgerRecord:
    learner_id: str  # pseudonym
    kind: str
    history: tuple[HistoryEntry, ...] = ()
    rounds_eligible: int = 0
    rounds_sampled: int = 0
    non_private_rounds: int = 0
    last_round_at: datetime | None = None

    def epsilon(self, *, delta: float, accountant: str = "rdp") -> float:
        """User-level epsilon spent at `delta` (inf after a non-private contribution)."""
        if self.non_private_rounds:
            return math.inf
        return epsilon_for(history=self.history, delta=delta, accountant=accountant)

    def projected_epsilon(self, *, noise_multiplier: float, sample_rate: float, delta: float,
                          accountant: str = "rdp") -> float:
        """Epsilon after one more round with these settings."""
        if self.non_private_rounds or noise_multiplier == 0:
            return math.inf
        return epsilon_for(history=self.history + ((noise_multiplier, sample_rate, 1),), delta=delta,
                           accountant=accountant)

    def to_dict(self, *, delta: float, accountant: str, budget: float | None = None) -> dict[str, Any]:
        eps = self.epsilon(delta=delta, accountant=accountant)
        out = {"learner_id": self.learner_id, "kind": self.kind,
               "epsilon": None if math.isinf(eps) else round(eps, 6), "unbounded": math.isinf(eps),
               "delta": delta, "accountant": accountant, "rounds_eligible": self.rounds_eligible,
               "rounds_sampled": self.rounds_sampled, "non_private_rounds": self.non_private_rounds,
               "history": [list(e) for e in self.history],
               "last_round_at": self.last_round_at.isoformat() if self.last_round_at else None}
        if budget is not None:
            out["budget"] = budget
            out["remaining"] = None if math.isinf(eps) else round(max(budget - eps, 0.0), 6)
            out["exhausted"] = eps >= budget
        return out


@dataclass(frozen=True)
class BudgetSplit:
    allowed: list[str]
    excluded: list[str]  # would exceed the budget with one more round
    projected_epsilon: dict[str, float] = field(default_factory=dict)  # of the allowed ones


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def get_ledgers(*, session: Session, learner_ids: Sequence[str], kind: str = "brain") -> dict[str, LedgerRecord]:
    """The ledger of each given learner (an empty one for learners never charged)."""
    table = PrivacyLedgerEntry.__table__
    found: dict[str, LedgerRecord] = {}
    ids = list(dict.fromkeys(learner_ids))
    for chunk in _chunks(ids):
        rows = session.execute(
            sa.select(Learner.pseudonym, table.c.history, table.c.rounds_eligible, table.c.rounds_sampled,
                      table.c.non_private_rounds, table.c.last_round_at)
            .join(table, table.c.learner_id == Learner.id)
            .where(Learner.pseudonym.in_(chunk), table.c.kind == kind))
        for pseudonym, history, eligible, sampled, non_private, last in rows:
            found[pseudonym] = LedgerRecord(pseudonym, kind, normalize_history(history or []), eligible, sampled,
                                            non_private, last)
    return {lid: found.get(lid) or LedgerRecord(lid, kind) for lid in ids}


def list_ledgers(*, session: Session, kind: str = "brain", limit: int | None = None,
                 offset: int = 0) -> list[LedgerRecord]:
    table = PrivacyLedgerEntry.__table__
    stmt = (sa.select(Learner.pseudonym, table.c.history, table.c.rounds_eligible, table.c.rounds_sampled,
                      table.c.non_private_rounds, table.c.last_round_at)
            .join(table, table.c.learner_id == Learner.id).where(table.c.kind == kind)
            .order_by(table.c.id).offset(offset))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [LedgerRecord(p, kind, normalize_history(h or []), e, s, n, last)
            for p, h, e, s, n, last in session.execute(stmt)]


def split_by_budget(*, ledgers: dict[str, LedgerRecord], candidates: Sequence[str], noise_multiplier: float,
                    sample_rate: float, delta: float, budget: float, accountant: str = "rdp") -> BudgetSplit:
    """Candidates whose epsilon after one more round stays within `budget`, and the others."""
    allowed, excluded, projected = [], [], {}
    for learner_id in candidates:
        record = ledgers.get(learner_id) or LedgerRecord(learner_id, "brain")
        eps = record.projected_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, delta=delta,
                                       accountant=accountant)
        if eps <= budget:
            allowed.append(learner_id)
            projected[learner_id] = eps
        else:
            excluded.append(learner_id)
    return BudgetSplit(allowed=allowed, excluded=excluded, projected_epsilon=projected)


def charge_round(*, session: Session, eligible: Sequence[str], sampled: Collection[str], private: bool,
                 noise_multiplier: float, sample_rate: float, delta: float, accountant: str,
                 kind: str = "brain", clock: Clock = SYSTEM_CLOCK, skip_erased: bool = False) -> int:
    """Record one aggregation round in the ledgers of every learner of the sampled pool.

    private: each learner in `eligible` gets one (noise_multiplier, sample_rate) step;
    not private: only the learners actually used (`sampled`) are charged, as non-private.
    A learner that is not in the registry is an error (ValueError): accounting never skips
    anyone silently. skip_erased: only for a round whose pool was read from this registry when
    the round started -- a learner missing now was erased while it ran; they are left out
    (nothing is written about a learner who no longer exists) and the caller reports how many.
    Returns the number of ledgers written."""
    table = PrivacyLedgerEntry.__table__
    sampled = set(sampled)
    charged = list(dict.fromkeys(eligible if private else [lid for lid in eligible if lid in sampled]))
    if not charged:
        return 0
    now = clock.now()
    existing: dict[str, tuple] = {}
    pks: dict[str, int] = {}
    for chunk in _chunks(charged):
        for pseudonym, learner_pk, row_id, history, eligible_n, sampled_n, non_private in session.execute(
                sa.select(Learner.pseudonym, Learner.id, table.c.id, table.c.history, table.c.rounds_eligible,
                          table.c.rounds_sampled, table.c.non_private_rounds)
                .outerjoin(table, sa.and_(table.c.learner_id == Learner.id, table.c.kind == kind))
                .where(Learner.pseudonym.in_(chunk))
                # PostgreSQL: an erasure that starts now waits for this commit (SQLite serializes writers).
                .with_for_update(of=Learner, key_share=True, read=True)):
            pks[pseudonym] = learner_pk
            if row_id is not None:
                existing[pseudonym] = (row_id, history, eligible_n, sampled_n, non_private)
    missing = [lid for lid in charged if lid not in pks]
    if missing and not skip_erased:
        raise ValueError(f"{len(missing)} charged learner(s) do not exist in the registry")
    if missing:
        # Erased while the round ran (their rows, ledger included, are gone): the round finishes
        # without them; nothing is written about a learner who no longer exists.
        log.warning("%d learner(s) of this round were erased while it ran: not charged", len(missing))
        charged = [lid for lid in charged if lid in pks]
    step = ((noise_multiplier, sample_rate, 1),) if private else ()
    updates, inserts = [], []
    for lid in charged:
        was_sampled = lid in sampled
        if lid in existing:
            row_id, history, eligible_n, sampled_n, non_private = existing[lid]
            new_history = normalize_history(tuple(history or ()) + step)
            eps = None if not new_history else epsilon_for(history=new_history, delta=delta, accountant=accountant)
            updates.append({"row_id": row_id, "b_history": [list(e) for e in new_history],
                            "b_eligible": eligible_n + (1 if private else 0),
                            "b_sampled": sampled_n + int(was_sampled),
                            "b_non_private": non_private + (0 if private else 1),
                            "b_epsilon": eps, "b_delta": delta, "b_accountant": accountant, "b_now": now})
        else:
            new_history = normalize_history(step)
            eps = None if not new_history else epsilon_for(history=new_history, delta=delta, accountant=accountant)
            inserts.append({"learner_id": pks[lid], "kind": kind, "accountant": accountant,
                            "history": [list(e) for e in new_history], "rounds_eligible": 1 if private else 0,
                            "rounds_sampled": int(was_sampled), "non_private_rounds": 0 if private else 1,
                            "epsilon": eps, "delta": delta, "last_round_at": now, "created_at": now,
                            "updated_at": now})
    if inserts:
        session.execute(sa.insert(table), inserts)
    if updates:
        session.execute(
            sa.update(table).where(table.c.id == sa.bindparam("row_id")).values(
                history=sa.bindparam("b_history", type_=table.c.history.type),
                rounds_eligible=sa.bindparam("b_eligible"), rounds_sampled=sa.bindparam("b_sampled"),
                non_private_rounds=sa.bindparam("b_non_private"), epsilon=sa.bindparam("b_epsilon"),
                delta=sa.bindparam("b_delta"), accountant=sa.bindparam("b_accountant"),
                last_round_at=sa.bindparam("b_now", type_=table.c.last_round_at.type),
                updated_at=sa.bindparam("b_now", type_=table.c.updated_at.type)),
            updates)
    return len(charged)
