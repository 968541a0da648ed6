"""Federated rounds across sites through Flower's simulation runtime (Ray), each site with its
own registry folder: SecAgg+ with user-level DP, equivalence with the embedded aggregation,
and bad sites (NaN/Inf, wrong shapes, counts that do not match, a slow site, an unenrolled
node, a node claiming another site's name)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import sqlalchemy as sa

from aivo.federated.round import AggregationOptions
from aivo.services.aggregation import run_aggregation
from aivo.services.clones import provision_clones
from aivo.services.local_training import local_config_from_settings, train_learner
from aivo.privacy.ledger import list_ledgers
from aivo.registry import import_interactions, list_federated_updates, list_learners, open_registry
from aivo.registry.tables import Interaction
from aivo.registry.sites import list_site_rounds
from aivo.services.federation import federation_status, options_from_settings, revoke_site, simulate_federation
from aivo.brain.versions import clear_cache, register_brain
from aivo.services.site_identity import settings_for_site, site_for
from aivo.sites.client_app import SiteRefusal, make_client_app
from aivo.sites.identity import generate_key_pair
from tests.sites.helpers import main_params, make_federation

pytestmark = pytest.mark.slow


def _site_payloads(homes) -> dict[str, np.ndarray]:
    """What each site recorded that it sent (its own audit: site_rounds + its artifact store)."""
    out = {}
    for home in homes:
        settings = settings_for_site(home)
        registry = open_registry(settings)
        with registry.session(read_only=True) as session:
            rounds = [r for r in list_site_rounds(session=session) if r.status == "sent"]
        for r in rounds:
            tensors, _ = registry.store.load_tensors(r.payload_artifact_sha256)
            out[f"{settings.site_name}/{r.round_ref}"] = tensors["sum"].numpy()
        registry.engine.dispose()
    return out


def _patched_app(monkeypatch, handler_for):
    import aivo.services.federation as federation

    monkeypatch.setattr(federation, "site_client_app", lambda _homes: make_client_app(handler_for))


def _slow_node_registration(monkeypatch, seconds: float = 0.3):
    """Flower's simulation registers its nodes one by one in one thread while the ServerApp's
    thread already runs; under load the coordinator used to poll between two registrations and
    start its round with the nodes registered so far (a full-suite run lost school-e and school-f).
    A pause after each registration makes that interleaving certain."""
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    create_node = InMemoryLinkState.create_node

    def slow_create_node(self, *args, **kwargs):
        node_id = create_node(self, *args, **kwargs)
        time.sleep(seconds)
        return node_id

    monkeypatch.setattr(InMemoryLinkState, "create_node", slow_create_node)


def test_secure_round_with_dp_survives_a_dropout_refuses_strangers_and_charges_site_ledgers(
        tmp_path, small_world, monkeypatch):
    fed = make_federation(tmp_path, small_world, num_sites=5, learners_per_site=7)
    # An impostor: a node that claims school-b's name with a key of its own.
    impostor = tmp_path / "sites" / "impostor"
    shutil.copytree(fed.homes[1], impostor)
    (impostor / "site" / "site.key").unlink()
    generate_key_pair(impostor / "site" / "site.key", impostor / "site" / "other.pub")
    (impostor / "site" / "site.env").write_text(
        f"AIVO_SITE_NAME=school-b\nAIVO_SITE_KEY={impostor / 'site' / 'site.key'}\n")
    revoke_site(registry=fed.registry, name="school-d", actor="tests")  # an unenrolled site
    log_dir = tmp_path / "messages"
    settings = fed.settings.model_copy(update={"federation_message_log": log_dir})
    options = options_from_settings(settings, rounds=1, min_sites=3, secure_aggregation=True, dp_enabled=True,
                                    noise_multiplier=1.0, sample_rate=0.6, seed=11, round_timeout=300,
                                    gate_margin=1.0)
    homes = [str(h) for h in fed.homes + [impostor]]

    def handler_for(context):  # school-e declines in the middle of SecAgg+ (after sharing its keys)
        site = site_for(settings_for_site(homes[int(context.node_config["partition-id"])]))
        if site.settings.site_name != "school-e" or "impostor" in str(site.settings.home):
            return site

        class Refusing:
            status, install, evaluate = site.status, site.install, site.evaluate

            def contribute(self, **kwargs):
                raise SiteRefusal("this site declines the round (test)")

        return Refusing()

    _patched_app(monkeypatch, handler_for)
    report = simulate_federation(registry=fed.registry, settings=settings, site_homes=fed.homes + [impostor],
                                 options=options, actor="tests")
    (rnd,) = report.rounds
    by_site = {}
    for site in rnd["sites"]:
        by_site.setdefault(site.get("site"), []).append(site)
    assert rnd["status"] == "applied", rnd["message"]
    assert rnd["counts"]["contributing"] == 3 and rnd["counts"]["refused"] == 2
    assert by_site["school-e"][0]["status"] == "rejected" and "declines" in by_site["school-e"][0]["reason"]
    assert rnd["counts"]["learners_pool"] == 21  # the three contributing sites' pools, from the secure sum
    assert by_site["school-d"][0]["status"] == "refused" and "not an enrolled site" in by_site["school-d"][0]["reason"]
    assert sorted(s["status"] for s in by_site["school-b"]) == ["accepted", "refused"]
    assert any("signature does not match" in s.get("reason", "") for s in by_site["school-b"])
    assert report.version_after != report.version_before
    assert rnd["privacy"]["epsilon_round"] > 0 and rnd["privacy"]["noise_std_of_sum"] == 1.0

    # Ledgers are charged at the sites: every pooled learner one (sigma, q) step; none at the coordinator.
    for home, learners in zip(fed.homes[:3], fed.learners[:3]):  # the contributing sites
        registry = open_registry(settings_for_site(home))
        with registry.session(read_only=True) as session:
            ledgers = list_ledgers(session=session)
            (site_round,) = list_site_rounds(session=session)
        assert len(ledgers) == len(learners) and all(lg.history == ((1.0, 0.6, 1),) for lg in ledgers)
        assert site_round.num_pool == len(learners) and site_round.status == "sent"
        registry.engine.dispose()
    with fed.registry.session(read_only=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Interaction)) == 0
        assert list_ledgers(session=session) == []

    # The coordinator never held one site's sum: no array it received is (close to) a site's payload.
    payloads = _site_payloads(fed.homes[:3])
    assert len(payloads) == 3
    received = []
    for npz in sorted(log_dir.glob("*.npz")):
        with np.load(npz) as data:
            received += [data[k].astype(np.float64).ravel() for k in data.files]
    assert received, "the message log is empty"
    for name, payload in payloads.items():
        for scale in (1.0, float(rnd["aggregation"]["payload_scale"])):
            target = payload / scale
            for array in received:
                if array.size == target.size:
                    assert not np.allclose(array, target, rtol=1e-3, atol=1e-6), f"{name}'s sum reached the coordinator"
    status = federation_status(registry=fed.registry)
    assert status.interactions == 0 and status.rounds[0]["status"] == "applied"


def _embedded_round(tmp_path, small_world, learners, gate_margin):
    """Today's in-process path: one registry with every learner, train-local for each, aggregate."""
    from aivo.config import Settings

    clear_cache()
    settings = Settings(home=tmp_path / "embedded", num_threads=1, seed=0)
    registry = open_registry(settings)
    with registry.session() as session:
        import_interactions(session=session, log=small_world.log.select_learners(learners),
                            secret_key=settings.resolved_secret_key())
    register_brain(registry=registry, brain=small_world.brain, training_metrics={}, data_hash=None, promote=True,
                   actor="tests", reason="setup")
    with registry.session(read_only=True) as session:
        ids = [r.learner_id for r in list_learners(session=session, limit=1000)]
    provision_clones(registry=registry, settings=settings, learner_ids=ids)
    config = local_config_from_settings(settings)
    for learner in ids:
        train_learner(registry=registry, settings=settings, learner_id=learner, config=config)
    options = AggregationOptions.from_settings(settings, dp_enabled=False, sample_rate=1.0, strategy="fedavg",
                                               min_learners=1, gate_margin=gate_margin, seed=1)
    report = run_aggregation(registry=registry, options=options, actor="tests")
    assert report.status == "applied", report.message
    return registry, report


def test_without_secagg_and_dp_a_flower_round_equals_the_embedded_aggregation(tmp_path, small_world):
    fed = make_federation(tmp_path, small_world, num_sites=3)
    before = main_params(fed.registry)
    options = options_from_settings(fed.settings, rounds=1, min_sites=3, secure_aggregation=False, dp_enabled=False,
                                    sample_rate=1.0, seed=3, gate_margin=1.0, round_timeout=300)
    report = simulate_federation(registry=fed.registry, settings=fed.settings, site_homes=fed.homes,
                                 options=options, actor="tests")
    (rnd,) = report.rounds
    assert rnd["status"] == "applied" and rnd["counts"]["learners_accepted"] == sum(map(len, fed.learners))
    federated = main_params(fed.registry, report.version_after)
    registry, embedded_report = _embedded_round(tmp_path, small_world, [x for g in fed.learners for x in g], 1.0)
    embedded = main_params(registry, embedded_report.version_after)
    changed = 0
    for name, value in federated.items():
        np.testing.assert_allclose(value, embedded[name], rtol=1e-4, atol=2e-6, err_msg=name)
        changed += int(not np.array_equal(value, before[name]))
    assert changed > 0  # the round moved the model, and both paths moved it alike
    # Without secure aggregation the coordinator saw (and recorded) every site's sum and counts.
    assert all("norm" in s["payload"] for s in rnd["sites"])


def test_bad_sites_are_rejected_with_reasons_and_a_slow_site_times_out(tmp_path, small_world, monkeypatch):
    fed = make_federation(tmp_path, small_world, num_sites=6, learners_per_site=4)
    faults = {"school-c": "nan", "school-d": "shape", "school-e": "count", "school-f": "slow"}
    homes = [str(h) for h in fed.homes]
    round_timeout = 40.0  # above the Ray actors' cold start under load (~20 s at load 13)
    round_over = tmp_path / "round-over"  # written when the coordinator has closed the round

    def handler_for(context):
        settings = settings_for_site(homes[int(context.node_config["partition-id"])])
        site = site_for(settings)
        fault = faults.get(settings.site_name)
        if fault is None:
            return site

        class Faulty:
            def status(self, **kwargs):
                return site.status(**kwargs)

            def install(self, **kwargs):
                return site.install(**kwargs)

            def evaluate(self, **kwargs):
                return site.evaluate(**kwargs)

            def contribute(self, **kwargs):
                if fault == "slow":  # answers only after the coordinator closed the round (or 3 timeouts)
                    deadline = time.monotonic() + 3 * round_timeout
                    while not round_over.exists() and time.monotonic() < deadline:
                        time.sleep(0.2)
                payload = site.contribute(**kwargs)
                if fault == "nan":
                    payload.total[0] = np.nan
                elif fault == "shape":
                    payload.total = payload.total[:-3]
                elif fault == "count":
                    payload.num_accepted = payload.num_sampled + 2
                return payload

        return Faulty()

    options = options_from_settings(fed.settings, rounds=1, min_sites=2, secure_aggregation=False, dp_enabled=True,
                                    sample_rate=1.0, seed=5, round_timeout=round_timeout)
    _patched_app(monkeypatch, handler_for)
    _slow_node_registration(monkeypatch)
    report = simulate_federation(registry=fed.registry, settings=fed.settings, site_homes=fed.homes,
                                 options=options, actor="tests", on_round=lambda _outcome: round_over.touch())
    (rnd,) = report.rounds
    sites = {s["site"]: s for s in rnd["sites"] if s.get("site")}
    reasons = {name: s.get("reason", "") for name, s in sites.items()}
    assert set(sites) == {f"school-{c}" for c in "abcdef"}, rnd["sites"]  # each site's record names it
    assert sites["school-a"]["status"] == sites["school-b"]["status"] == "accepted", rnd["sites"]
    assert "NaN or Inf" in reasons["school-c"]
    assert "shape" in reasons["school-d"]
    assert "accepted of" in reasons["school-e"]
    slow = [s for s in rnd["sites"] if s["status"] == "dropped"]
    assert len(slow) == 1 and "within the round timeout" in slow[0]["reason"] and slow[0]["site"] == "school-f"
    assert rnd["counts"]["contributing"] == 2 and rnd["status"] in ("applied", "rejected")
    with fed.registry.session(read_only=True) as session:
        (record,) = list_federated_updates(session=session)
    stored = {s.get("site"): s for s in record.details["sites"]}
    assert "NaN or Inf" in stored["school-c"]["reason"]  # the reasons are in the round record


def test_a_round_that_loses_too_many_sites_ends_cleanly_and_the_next_round_works(tmp_path, small_world, monkeypatch):
    """SecAgg+ over 3 sites survives the loss of one; when two drop in round 1 (they decline after
    sharing their keys) the round ends `failed` with nothing promoted, and round 2 promotes."""
    fed = make_federation(tmp_path, small_world, num_sites=3, learners_per_site=6)
    homes = [str(h) for h in fed.homes]

    def handler_for(context):
        site = site_for(settings_for_site(homes[int(context.node_config["partition-id"])]))
        if site.settings.site_name == "school-a":
            return site

        class DeclinesRoundOne:
            status, install, evaluate = site.status, site.install, site.evaluate

            def contribute(self, *, settings, shared):
                if settings.round_id == "1":
                    raise SiteRefusal("this site is gone for round 1 (test)")
                return site.contribute(settings=settings, shared=shared)

        return DeclinesRoundOne()

    options = options_from_settings(fed.settings, rounds=2, min_sites=2, secure_aggregation=True, dp_enabled=True,
                                    sample_rate=1.0, seed=4, round_timeout=300, gate_margin=1.0)
    _patched_app(monkeypatch, handler_for)
    report = simulate_federation(registry=fed.registry, settings=fed.settings, site_homes=fed.homes,
                                 options=options, actor="tests")
    first, second = report.rounds
    assert first["status"] == "failed" and first["version_after"] is None, first["message"]
    assert first["counts"]["ready"] == 3 and first["counts"].get("contributing", 0) == 0
    assert sorted(s["status"] for s in first["sites"]) == ["dropped", "rejected", "rejected"]
    assert all("gone for round 1" in s["reason"] for s in first["sites"] if s["status"] == "rejected")
    assert second["status"] == "applied" and second["counts"]["contributing"] == 3, second["message"]
    assert report.version_after == second["version_after"] != report.version_before
    with fed.registry.session(read_only=True) as session:
        records = list_federated_updates(session=session)
    assert sorted((r.status, r.version_after is None) for r in records) == [("applied", False), ("failed", True)]
