"""A site of a federation: its use cases behind the Flower ClientApp (`aivo.sites.client_app`)
and `aivo site ...`.

The site's registry is an ordinary AIVO registry (its learners' interactions, clones, ledger,
training sessions); `aivo site init` adds a name and a key pair. Each round (`contribute`):

1. the round must start from the site's active version (the coordinator installs it first);
2. the pool: learners with a clone that is not inactive, with enough interactions, and (under
   DP) whose epsilon after this round stays within the budget (the site's own ledger);
3. Poisson sampling of the pool with rate q (the site's own generator: fresh OS entropy);
4. local training of the sampled learners' shared updates on their own interactions only
   (`round_updates`: `train_local`'s update), each clipped to C and weighted (capped weights
   under DP or secure aggregation) into one sum (`accumulate_updates`, the embedded loop);
5. the ledger charges the pool (one sampled-Gaussian step each under DP; the learners used as
   non-private otherwise), and the site records what it sends (`site_rounds`, the payload in
   its own artifact store), in one transaction, before the payload leaves.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
import torch

from aivo.brain.checkpoint import from_state
from aivo.brain.predict import predict
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import AivoError, ConfigError
from aivo.federated.aggregate import accumulate_updates
from aivo.federated.dp import CappedWeights, poisson_sample
from aivo.federated.gate import load_gate_data
from aivo.federated.strategies import make_strategy
from aivo.federated.updates import LearnerUpdate, UpdateSpec
from aivo.personalization.local import LocalTrainingConfig
from aivo.personalization.parts import partition_parameters
from aivo.personalization.round_updates import round_updates
from aivo.privacy.ledger import charge_round, get_ledgers, split_by_budget
from aivo.registry import (
    Registry,
    decode_tensors,
    get_active_main_version,
    load_interactions,
    promote_main_version,
    register_main_version,
)
from aivo.registry.tables import Interaction, Learner, LearnerModel, MainModelVersion, TrainingSession
from aivo.registry.sites import SiteRoundRecord, list_site_rounds, record_site_round
from aivo.brain.versions import architecture_of, load_main_brain
from aivo.sites.client_app import SiteRefusal
from aivo.federated.round import candidate_brain
from aivo.sites.evaluation import MetricSums
from aivo.sites.identity import load_private_key
from aivo.services.site_identity import KIND, POOL_STATUSES, site_key_path, status_reply
from aivo.sites.protocol import RoundSettings, SitePayload, check_payload

log = logging.getLogger(__name__)
PAYLOAD_KIND = "aivo.site_payload"


def install_version(*, registry: Registry, version: str, sha256: str, artifact: bytes,
                    clock: Clock = SYSTEM_CLOCK) -> None:
    """Register the coordinator's `version` in this site's registry (same bytes, same sha256)
    and make it the site's active version. Refuses (SiteRefusal) bytes that do not match the
    digest, a different version of the same name, and anything that is not a Main Brain."""
    if hashlib.sha256(artifact).hexdigest() != sha256:
        raise SiteRefusal(f"the artifact of {version} does not match its sha256")
    with registry.session(read_only=True) as session:
        row = session.execute(sa.select(MainModelVersion.artifact_sha256, MainModelVersion.status)
                              .where(MainModelVersion.version == version)).first()
    if row is not None and row[0] != sha256:
        raise SiteRefusal(f"this site has another version named {version}: refusing to replace it")
    if row is not None and row[1] == "active":
        return
    if row is None:
        tensors, metadata = decode_tensors(artifact, digest=sha256)
        try:
            brain = from_state(tensors, metadata, source=f"version {version} from the coordinator")
        except AivoError as exc:
            raise SiteRefusal(f"{version} is not a usable Main Brain: {exc}") from None
        ref = registry.store.put_bytes(artifact)
    with registry.session() as session:
        if row is None:
            register_main_version(session=session, store=registry.store, version=version, artifact=ref,
                                  architecture=architecture_of(brain), training_metrics={}, data_hash=None,
                                  created_by="federation", details={"from": "coordinator"}, clock=clock)
        promote_main_version(session=session, version=version, actor="federation",
                             reason="picked up from the coordinator", clock=clock)


class SiteService:
    """The `SiteHandler` of one site registry (see aivo.sites.client_app)."""

    def __init__(self, *, registry: Registry, settings: Settings, clock: Clock = SYSTEM_CLOCK):
        if not settings.site_name:
            raise ConfigError("this AIVO_HOME is not a site: run `aivo site init NAME` (or set AIVO_SITE_NAME)")
        self.registry, self.settings, self.clock = registry, settings, clock
        self.name = settings.site_name
        self._key = load_private_key(site_key_path(settings))
        self._lock = threading.Lock()  # one round's work at a time per site

    # --- identity and version --------------------------------------------------------------------
    def status(self, *, nonce: str, node_id: int) -> dict:
        return status_reply(registry=self.registry, name=self.name, key=self._key, nonce=nonce, node_id=node_id)

    def install(self, *, version: str, sha256: str, artifact: bytes) -> dict:
        install_version(registry=self.registry, version=version, sha256=sha256, artifact=artifact, clock=self.clock)
        log.info("site %s is on %s", self.name, version)
        return {"version": version, "installed": True}

    # --- a round ---------------------------------------------------------------------------------
    def _round_brain(self, settings: RoundSettings):
        active = load_main_brain(registry=self.registry)
        if active.version.version != settings.version or active.version.artifact_sha256 != settings.version_sha256:
            raise SiteRefusal(f"site {self.name} is on {active.version.version}, the round is for {settings.version}")
        partition = partition_parameters(active.brain.model, frozen_prefixes=settings.freeze_layers)
        params = dict(active.brain.model.named_parameters())
        spec = UpdateSpec(main_version=settings.version,
                          shapes={n: tuple(params[n].shape) for n in partition.aggregated})
        return active.brain, partition, spec

    def pool(self, *, settings: RoundSettings) -> tuple[list[str], int]:
        """(eligible learners, learners left out for their budget)."""
        with self.registry.session(read_only=True) as session:
            counts = (sa.select(Interaction.learner_id, sa.func.count().label("n")).group_by(Interaction.learner_id)
                      .having(sa.func.count() >= settings.min_interactions).subquery())
            pool = sorted(session.scalars(
                sa.select(Learner.pseudonym).join(LearnerModel, LearnerModel.learner_id == Learner.id)
                .join(counts, counts.c.learner_id == Learner.id)
                .where(LearnerModel.kind == KIND, LearnerModel.status.in_(POOL_STATUSES))))
            if not settings.dp:
                return pool, 0
            ledgers = get_ledgers(session=session, learner_ids=pool, kind=KIND)
        split = split_by_budget(ledgers=ledgers, candidates=pool, noise_multiplier=settings.noise_multiplier,
                                sample_rate=settings.sample_rate, delta=settings.delta,
                                budget=settings.epsilon_budget, accountant=settings.accountant)
        return split.allowed, len(split.excluded)

    def contribute(self, *, settings: RoundSettings, shared: list[np.ndarray]) -> SitePayload:
        with self._lock:
            try:
                return self._contribute(settings, shared)
            except SiteRefusal as exc:
                self._record_refusal(settings, str(exc))
                raise

    def _contribute(self, settings: RoundSettings, shared: list[np.ndarray]) -> SitePayload:
        started = time.perf_counter()
        brain, partition, spec = self._round_brain(settings)
        expected = _flat(brain, spec)
        received = np.concatenate([np.ravel(a) for a in shared]) if shared else np.empty(0)
        if received.shape != expected.shape or not np.allclose(received, expected, rtol=0, atol=1e-7):
            raise SiteRefusal(f"the parameters the coordinator sent are not those of {settings.version}")
        pool, over_budget = self.pool(settings=settings)
        seed = None if settings.seed < 0 else [settings.seed, zlib.crc32(self.name.encode()),
                                               zlib.crc32(settings.round_id.encode())]
        generator = np.random.default_rng(seed)
        sampled = [pool[i] for i in np.flatnonzero(poisson_sample(len(pool), sample_rate=settings.sample_rate,
                                                                  generator=generator))] if pool else []
        strategy = make_strategy(settings.strategy, defaults={"score_metric": settings.score_metric,
                                                              "proximal_mu": settings.proximal_mu})
        summing = CappedWeights(strategy, settings.weight_cap or None) if settings.capped_weights else strategy
        with self.registry.session(read_only=True) as session:
            log_ = load_interactions(session=session, learner_ids=sampled) if sampled else None
        metric = strategy.session_metric()
        scores = self._scores(sampled, metric) if metric is not None else {}
        config = LocalTrainingConfig(epochs=settings.epochs, learning_rate=settings.learning_rate,
                                     batch_size=settings.batch_size, proximal_mu=settings.proximal_mu,
                                     holdout_fraction=settings.holdout_fraction,
                                     min_interactions=settings.min_interactions)

        def updates():
            if log_ is None:
                return
            for trained in round_updates(brain=brain, log=log_, partition=partition, config=config):
                yield LearnerUpdate(learner_id=trained.learner_id, tensors=trained.tensors,
                                    main_version=settings.version, num_examples=trained.num_train,
                                    score=scores.get(trained.learner_id))

        state, outcome = accumulate_updates(updates=updates(), spec=spec, strategy=summing,
                                            clip_norm=settings.clip_norm, generator=generator)
        payload = SitePayload(total=np.asarray(state.total, dtype=np.float64), weight_total=float(state.weight_total),
                              num_sampled=len(sampled), num_accepted=outcome.num_accepted, num_pool=len(pool))
        reason = check_payload(payload, clip_norm=settings.clip_norm, capped_weights=settings.capped_weights)
        if reason is not None:  # our own sum: a bug, never sent
            raise SiteRefusal(f"the site's own checks failed: {reason}")
        if settings.secure and max(np.abs(a).max(initial=0) for a in payload.to_arrays(scale=settings.payload_scale)) > 1:
            raise SiteRefusal("the site's pool grew past the bound it announced for this round; it takes part "
                              "in the next one")
        artifact = self.registry.store.put_tensors(
            {"sum": torch.from_numpy(payload.total.copy()),
             "stats": torch.tensor([payload.weight_total, payload.num_sampled, payload.num_accepted,
                                    payload.num_pool], dtype=torch.float64)},
            metadata={"kind": PAYLOAD_KIND, "round": settings.round_id, "version": settings.version,
                      "site": self.name})
        with self.registry.session() as session:
            charge_round(session=session, eligible=pool, sampled=sampled if settings.dp else outcome.accepted_learners,
                         private=settings.dp, noise_multiplier=settings.noise_multiplier,
                         sample_rate=settings.sample_rate, delta=settings.delta, accountant=settings.accountant,
                         kind=KIND, clock=self.clock, skip_erased=True)  # the pool was read from this registry
            record_site_round(
                session=session, round_ref=settings.round_id, version=settings.version, status="sent",
                num_pool=len(pool), num_sampled=len(sampled), num_accepted=outcome.num_accepted,
                weight_total=payload.weight_total, payload_norm=float(np.linalg.norm(payload.total)),
                payload_artifact_sha256=artifact.sha256, settings=settings.to_config(),
                details={"over_budget": over_budget, "rejected": [r.to_dict() for r in outcome.rejected][:100],
                         "clipped": outcome.num_clipped, "update_norms": outcome.norms, "secure": settings.secure},
                seconds=time.perf_counter() - started, clock=self.clock)
        log.info("site %s round %s: pool %d, sampled %d, accepted %d", self.name, settings.round_id, len(pool),
                 len(sampled), outcome.num_accepted)
        return payload

    def _scores(self, learners: list[str], metric: str) -> dict[str, float | None]:
        """The `weighted` strategy's score: the metric of each learner's latest training session."""
        out: dict[str, float | None] = {}
        with self.registry.session(read_only=True) as session:
            latest = (sa.select(LearnerModel.learner_id, sa.func.max(TrainingSession.id).label("sid"))
                      .join(TrainingSession, TrainingSession.learner_model_id == LearnerModel.id)
                      .where(LearnerModel.kind == KIND).group_by(LearnerModel.learner_id).subquery())
            for start in range(0, len(learners), 500):
                rows = session.execute(
                    sa.select(Learner.pseudonym, TrainingSession.metrics)
                    .join(latest, latest.c.learner_id == Learner.id)
                    .join(TrainingSession, TrainingSession.id == latest.c.sid)
                    .where(Learner.pseudonym.in_(learners[start:start + 500])))
                for pseudonym, metrics in rows:
                    value = (metrics or {}).get(metric)
                    out[pseudonym] = float(value) if isinstance(value, (int, float)) else None
        return out

    def _record_refusal(self, settings: RoundSettings, reason: str) -> None:
        try:
            with self.registry.session() as session:
                record_site_round(session=session, round_ref=settings.round_id, version=settings.version,
                                  status="refused", reason=reason, settings=settings.to_config(), clock=self.clock)
        except Exception as exc:  # noqa: BLE001 - the refusal itself must still reach the coordinator
            log.warning("could not record the refusal: %s", exc)

    # --- federated evaluation --------------------------------------------------------------------
    def evaluate(self, *, settings: RoundSettings, candidate: list[np.ndarray],
                 bins: int) -> tuple[MetricSums, MetricSums]:
        brain, partition, spec = self._round_brain(settings)
        vector = np.concatenate([np.ravel(a) for a in candidate]) if candidate else np.empty(0)
        if vector.shape != (spec.numel,):
            raise SiteRefusal("the candidate's parameters do not fit the round's version")
        params = dict(brain.model.named_parameters())
        delta = {n: t.to(torch.float32) - params[n].detach()
                 for n, t in spec.unflatten(vector.astype(np.float32)).items()}
        model = candidate_brain(brain, delta, settings.version)
        data = load_gate_data(registry=self.registry, max_learners=self.settings.gate_max_learners,
                              holdout_fraction=settings.holdout_fraction)
        if data is None:
            return MetricSums.empty(bins), MetricSums.empty(bins)
        # Each model scores the site's rows once; both are compared on the held-out rows both can score.
        before, after = predict(brain=brain, log=data.log), predict(brain=model, log=data.log)
        rows = data.scored_rows & ~np.isnan(before) & ~np.isnan(after)
        y = data.log.frame["correct"].to_numpy()[rows]
        return MetricSums.of(y, before[rows], bins=bins), MetricSums.of(y, after[rows], bins=bins)


def _flat(brain, spec: UpdateSpec) -> np.ndarray:
    """The version's shared parameters in `spec` order, as the coordinator flattens them (float32)."""
    params = dict(brain.model.named_parameters())
    return np.concatenate([params[n].detach().reshape(-1).numpy() for n in spec.names], dtype=np.float32)


# --- status ------------------------------------------------------------------------------------------
@dataclass
class SiteStatus:
    name: str | None
    home: str
    version: str | None
    learners: int
    clones: int
    interactions: int
    rounds: list[SiteRoundRecord]

    def to_dict(self) -> dict:
        return {"name": self.name, "home": self.home, "version": self.version, "learners": self.learners,
                "clones": self.clones, "interactions": self.interactions,
                "rounds": [r.to_dict() for r in self.rounds]}


def site_status(*, registry: Registry, settings: Settings, limit: int = 20) -> SiteStatus:
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
        learners = session.scalar(sa.select(sa.func.count()).select_from(Learner)) or 0
        clones = session.scalar(sa.select(sa.func.count()).select_from(LearnerModel)
                                .where(LearnerModel.kind == KIND)) or 0
        interactions = session.scalar(sa.select(sa.func.count()).select_from(Interaction)) or 0
        rounds = list_site_rounds(session=session, limit=limit)
    return SiteStatus(settings.site_name, str(settings.home.resolve()), active.version if active else None,
                      int(learners), int(clones), int(interactions), rounds)
