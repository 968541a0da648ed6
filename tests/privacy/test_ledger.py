"""The per-learner ledger on SQLite and PostgreSQL: composition, budget exclusion, erasure."""

from __future__ import annotations

import math

import pytest

from aivo.privacy.accountants import epsilon_for
from aivo.privacy.ledger import charge_round, get_ledgers, list_ledgers, split_by_budget
from aivo.registry import delete_learner, ensure_learner, export_learner


@pytest.fixture
def learners(registry, clock):
    ids = [f"learner-{i}" for i in range(4)]
    with registry.session() as session:
        for lid in ids:
            ensure_learner(session=session, learner_id=lid, clock=clock)
    return ids


def charge(registry, clock, eligible, sampled, *, private=True, sigma=1.0, q=0.5):
    with registry.session() as session:
        return charge_round(session=session, eligible=eligible, sampled=sampled, private=private,
                            noise_multiplier=sigma, sample_rate=q, delta=1e-5, accountant="rdp", clock=clock)


def test_every_eligible_learner_is_charged_sampled_or_not(registry, clock, learners):
    assert charge(registry, clock, learners[:3], {learners[0]}) == 3
    charge(registry, clock, learners[:2], {learners[1]})
    with registry.session(read_only=True) as session:
        ledgers = get_ledgers(session=session, learner_ids=learners)
    assert ledgers[learners[0]].history == ((1.0, 0.5, 2),)
    assert ledgers[learners[0]].rounds_eligible == 2 and ledgers[learners[0]].rounds_sampled == 1
    assert ledgers[learners[2]].rounds_eligible == 1 and ledgers[learners[2]].rounds_sampled == 0
    assert ledgers[learners[3]].history == () and ledgers[learners[3]].epsilon(delta=1e-5) == 0.0
    assert ledgers[learners[0]].epsilon(delta=1e-5) == pytest.approx(
        epsilon_for(history=[(1.0, 0.5, 2)], delta=1e-5))


def test_changing_settings_compose_in_order(registry, clock, learners):
    charge(registry, clock, learners[:1], set(), sigma=1.0, q=0.5)
    charge(registry, clock, learners[:1], set(), sigma=2.0, q=0.1)
    charge(registry, clock, learners[:1], set(), sigma=2.0, q=0.1)
    with registry.session(read_only=True) as session:
        record = get_ledgers(session=session, learner_ids=learners[:1])[learners[0]]
    assert record.history == ((1.0, 0.5, 1), (2.0, 0.1, 2))


def test_budget_exclusion(registry, clock, learners):
    for _ in range(3):
        charge(registry, clock, learners[:2], set(), sigma=1.0, q=1.0)
    with registry.session(read_only=True) as session:
        ledgers = get_ledgers(session=session, learner_ids=learners)
    spent = ledgers[learners[0]].epsilon(delta=1e-5)
    one_more = epsilon_for(history=[(1.0, 1.0, 4)], delta=1e-5)
    budget = (spent + one_more) / 2  # the spent learners cannot afford another round, fresh ones can
    split = split_by_budget(ledgers=ledgers, candidates=learners, noise_multiplier=1.0, sample_rate=1.0,
                            delta=1e-5, budget=budget)
    assert split.excluded == learners[:2] and split.allowed == learners[2:]
    assert split.projected_epsilon[learners[2]] == pytest.approx(epsilon_for(history=[(1.0, 1.0, 1)], delta=1e-5))


def test_non_private_rounds_make_epsilon_unbounded(registry, clock, learners):
    charge(registry, clock, learners[:2], {learners[0]}, private=False)
    with registry.session(read_only=True) as session:
        ledgers = get_ledgers(session=session, learner_ids=learners[:2])
    assert math.isinf(ledgers[learners[0]].epsilon(delta=1e-5))
    assert ledgers[learners[1]].epsilon(delta=1e-5) == 0.0  # not used, not charged
    split = split_by_budget(ledgers=ledgers, candidates=learners[:2], noise_multiplier=1.0, sample_rate=0.1,
                            delta=1e-5, budget=8.0)
    assert split.excluded == [learners[0]]


def test_ledger_is_exported_and_erased_with_the_learner(registry, clock, learners):
    charge(registry, clock, learners[:2], set())
    with registry.session() as session:
        exported = export_learner(session=session, store=registry.store, learner_id=learners[0])
    assert "privacy_ledger" in str(exported)
    with registry.session() as session:
        delete_learner(session=session, store=registry.store, learner_id=learners[0], actor="t", reason="erasure")
    with registry.session(read_only=True) as session:
        remaining = list_ledgers(session=session)
    assert [r.learner_id for r in remaining] == [learners[1]]


def test_charging_an_unknown_learner_fails(registry, clock, learners):
    with pytest.raises(ValueError, match="do not exist"):
        charge(registry, clock, ["nobody"], set())


def test_a_round_may_leave_out_learners_erased_while_it_ran_and_says_so(registry, clock, learners):
    """Only a round that read its pool from this registry passes skip_erased: the missing
    learner is not charged (nothing is stored about them), the others are, and the count
    returned tells the caller how many were left out."""
    with registry.session() as session:
        written = charge_round(session=session, eligible=[learners[0], "erased"], sampled=set(), private=True,
                               noise_multiplier=1.0, sample_rate=0.5, delta=1e-5, accountant="rdp", clock=clock,
                               skip_erased=True)
    assert written == 1
    with registry.session(read_only=True) as session:
        assert [r.learner_id for r in list_ledgers(session=session)] == [learners[0]]
