"""The coordinator's round, written once for the simulation and the deployment runtime.

One round over a Flower `Grid`:

1. **Sites**: wait for at least `min_sites` connected nodes (for all of them when the runtime
   knows how many there are: the simulation's); ask each for its status with a fresh
   nonce; keep the nodes whose signature verifies against an enrolled site's public key
   (`identity`); a node that is not an enrolled site is refused, with the reason recorded.
2. **Version**: sites that are not on the active version receive it (`query.install`; a site
   that reported an older version earlier in the run gets it with step 1's status request).
3. **Train**: every ready site computes its payload (sampled learners' clipped, weighted update
   sum and counts) from the round's settings. With secure aggregation (`secure_sum`, SecAgg+)
   the coordinator receives only the sum across sites; without it, each site's payload, which
   is checked on its own (NaN/Inf, shapes, counts, the norm bound) and rejected with a reason.
4. **Server step**: the strategy's round state absorbs the sum (`RunningSum.merge`); under
   user-level DP the state is `PrivateRound`, which adds Gaussian noise sigma x C to the sum and
   divides by the fixed denominator q x (pool across sites): the embedded mechanism, unchanged.
5. **Federated evaluation**: the sites score the active version and the candidate on their
   learners' held-out tails and return metric sums; the gate decides on their totals.
6. **Commit** (`CoordinatorHooks.commit_round`): the version is registered and promoted when the
   gate passes; the round record carries every site's status and reason, the privacy figures
   and what the coordinator received. Sites pick the new version up at the next round's step 2
   (and right after the run).

The sites' work and the registry writes are behind `SiteHandler` (client side) and
`CoordinatorHooks` (here); `aivo.services.federation` implements the latter.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from aivo.brain.bundle import TrainedBrain
from aivo.errors import ConfigError
from aivo.federated.dp import UserLevelDP
from aivo.federated.gate import decide
from aivo.federated.round import candidate_brain
from aivo.federated.strategies import Reservoir, RunningSum, make_strategy
from aivo.federated.updates import UpdateSpec
from aivo.personalization.parts import partition_parameters
from aivo.sites import client_app as wire
from aivo.sites.evaluation import DEFAULT_BINS, MetricSums
from aivo.sites.identity import challenge, verify
from aivo.sites.protocol import RoundSettings, SitePayload, check_payload
from aivo.sites.secure_sum import SecAggSettings, secure_sum

log = logging.getLogger(__name__)

PULL_INTERVAL = 0.25  # seconds between two pulls of the sites' replies (ObservedGrid.send_and_receive)


@dataclass(frozen=True)
class FederationOptions:
    """Settings of a federated run (the coordinator's side; sites get `RoundSettings`)."""

    rounds: int = 1
    min_sites: int = 2
    secure_aggregation: bool = True
    secagg_max_dropout: float = 0.34
    round_timeout: float = 600.0  # seconds each stage waits for the sites' replies
    wait_for_sites: float = 60.0  # seconds to wait for min_sites connected nodes before a round
    strategy: str = "fedavg"
    trim_fraction: float | None = None
    reservoir_size: int | None = None
    score_metric: str = "holdout_accuracy"
    server_learning_rate: float = 1.0
    dp_enabled: bool = True
    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    sample_rate: float = 1.0
    delta: float = 1e-5
    epsilon_budget: float = 8.0
    accountant: str = "rdp"
    weight_cap: float | None = None
    gate_margin: float = 0.0
    evaluation_bins: int = DEFAULT_BINS
    local_epochs: int = 5
    local_learning_rate: float = 0.05
    local_batch_size: int = 32
    proximal_mu: float = 0.0
    holdout_fraction: float = 0.2
    min_interactions: int = 5
    freeze_layers: str = "encoder"
    seed: int | None = None  # testing only: a known seed lets anyone remove the noise
    allow_robust_without_secagg: bool = False  # the user saw the warning that the coordinator sees per-site sums

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")
        if self.min_sites < 1:
            raise ConfigError(f"min_sites must be >= 1, got {self.min_sites}")
        if self.secure_aggregation and self.min_sites < 2:
            raise ConfigError("secure aggregation needs at least 2 sites (--min-sites 2 or more); with one site "
                              "its sum is the total")
        if not self.round_timeout > 0 or not self.wait_for_sites >= 0:
            raise ConfigError("round_timeout must be > 0 and wait_for_sites >= 0")
        if not self.server_learning_rate > 0:
            raise ConfigError(f"the server learning rate must be > 0, got {self.server_learning_rate}")
        if self.gate_margin < 0:
            raise ConfigError(f"gate_margin must be >= 0, got {self.gate_margin}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")
        if self.evaluation_bins < 16:
            raise ConfigError(f"evaluation_bins must be >= 16, got {self.evaluation_bins}")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        SecAggSettings(max_dropout=self.secagg_max_dropout, timeout=self.round_timeout)
        strategy = self.make_strategy()
        if strategy.robust and self.secure_aggregation:
            raise ConfigError(
                f"the {self.strategy!r} strategy needs the sites' individual sums, and secure aggregation gives the "
                "coordinator only their total: use fedavg, fedprox or weighted with secure aggregation, or turn it "
                "off (--no-secure-aggregation), which lets the coordinator see every site's sum")
        if strategy.robust and not self.allow_robust_without_secagg:
            raise ConfigError(f"the {self.strategy!r} strategy combines the sites' individual sums: the coordinator "
                              "would see every site's sum; confirm with --allow-site-sums")
        UserLevelDP(noise_multiplier=self.noise_multiplier, clip_norm=self.clip_norm, sample_rate=self.sample_rate,
                    weight_cap=self.weight_cap)
        if self.dp_enabled and strategy.robust:
            raise ConfigError(f"the {self.strategy!r} strategy cannot run under user-level DP (its sensitivity is "
                              "not bounded by the clip norm); use fedavg/fedprox/weighted, or turn DP off")

    def make_strategy(self):
        # trim_fraction is the user's (an error for a strategy without one); the others have
        # defaults here and go only to the strategies that take them.
        return make_strategy(self.strategy, trim_fraction=self.trim_fraction,
                             defaults={"reservoir_size": self.reservoir_size, "proximal_mu": self.proximal_mu,
                                       "score_metric": self.score_metric})

    @property
    def capped_weights(self) -> bool:
        # Secure aggregation needs every site's payload inside a range fixed before the round, so
        # the weights are capped into [0, 1] exactly as under DP (aivo.federated.dp.capped_weight).
        return self.dp_enabled or self.secure_aggregation

    def warnings(self) -> list[str]:
        out = []
        if not self.secure_aggregation:
            out.append("secure aggregation is OFF: the coordinator sees every site's sum of updates "
                       "(and its counts)")
        if self.seed is not None and self.dp_enabled:
            out.append("a fixed seed makes sampling and DP noise reproducible: only use it for testing")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ActiveVersion:
    name: str
    sha256: str
    brain: TrainedBrain
    artifact: Callable[[], bytes]  # the stored checkpoint bytes (sent to sites that lack the version)


@dataclass
class SiteRecord:
    node_id: int
    site: str | None = None
    status: str = "connected"  # connected | refused | ready | accepted | rejected | dropped
    reason: str = ""
    version: str | None = None
    payload: dict | None = None  # without secure aggregation: what this site sent (norm and counts)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass
class RoundOutcome:
    number: int
    version_before: str
    status: str = "failed"  # applied | rejected | failed
    message: str = ""
    candidate: TrainedBrain | None = None  # set when the gate passes (the hooks register it)
    version_after: str | None = None
    sites: list[SiteRecord] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    metrics_before: dict = field(default_factory=dict)
    metrics_after: dict = field(default_factory=dict)
    improvement: float | None = None
    privacy: dict = field(default_factory=dict)
    aggregation: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    federated_update_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("candidate", "sites")}
        out["sites"] = [s.to_dict() for s in self.sites]
        return out


class CoordinatorHooks(Protocol):
    def active_version(self) -> ActiveVersion: ...

    def enrolled_sites(self) -> dict[str, str]:
        """site name -> OpenSSH public key of every enrolled (not revoked) site."""

    def rounds_done(self) -> int: ...

    def commit_round(self, outcome: RoundOutcome, options: FederationOptions) -> RoundOutcome: ...


class ObservedGrid:
    """The Grid the round talks through: it delegates to Flower's and remembers, for the round
    record and for audits, which nodes answered with errors. `sink(message)` (optional) sees
    every message the coordinator receives (AIVO_FEDERATION_MESSAGE_LOG writes them to disk)."""

    def __init__(self, grid, sink: Callable[[Message], None] | None = None):
        self._grid = grid
        self._sink = sink
        self.errors: dict[int, str] = {}
        self.node_versions: dict[int, str] = {}  # node -> sha256 of the version it last reported this run

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Flower's `Grid.send_and_receive` (push, then pull until every reply is in or `timeout`
        passes), pulling every PULL_INTERVAL s: Flower 1.42's grid waits 3 s between pulls, which
        adds up to 3 s to every stage of a round on a real SuperLink."""
        pending = set(self._grid.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self._grid.pull_messages(pending))
            replies += got
            pending -= {reply.metadata.reply_to_message_id for reply in got}
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(PULL_INTERVAL)
        for reply in replies:
            if reply.has_error():
                self.errors[int(reply.metadata.src_node_id)] = str(reply.error.reason)
            if self._sink is not None:
                self._sink(reply)
        return replies


def _message(grid, content: RecordDict, node_id: int, message_type: str, group: str) -> Message:
    return Message(content=content, dst_node_id=node_id, message_type=message_type, group_id=group)


def wait_for_nodes(grid, minimum: int, timeout: float, *, expected: int | None = None) -> list[int]:
    """The connected nodes, once `expected` of them (default `minimum`) are, or `timeout` has passed.
    Flower's simulation registers its nodes one by one while the ServerApp already runs: waiting
    only for `minimum` there started a round with the nodes registered so far (a run under load
    left two of six sites out of the round, without a record or a reason)."""
    deadline = time.monotonic() + timeout
    target = max(minimum, expected or 0)
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if len(nodes) >= target or time.monotonic() >= deadline:
            return nodes
        time.sleep(0.5)


def _reason(text: str) -> str:
    """A site's error reason without Flower's exception wrapping."""
    text = str(text)
    for marker in ("SiteRefusal'>:<'", "SiteRefusal:"):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip().rstrip("'>").strip()


def shared_arrays(brain: TrainedBrain, spec: UpdateSpec) -> list[np.ndarray]:
    """The shared parameters as the wire carries them: ONE float32 vector, the parameters
    flattened in `spec` order (a site splits it with its own version's spec). One array is one
    object for Flower to move; a list of per-tensor arrays (21 for the default brain) costs a
    request per tensor on every hop (SuperLink, SuperNode, site worker)."""
    params = dict(brain.model.named_parameters())
    return [np.concatenate([params[name].detach().cpu().reshape(-1).numpy() for name in spec.names],
                           dtype=np.float32)]


def run_federation(*, grid, hooks: CoordinatorHooks, options: FederationOptions,
                   sink: Callable[[Message], None] | None = None,
                   on_round: Callable[[RoundOutcome], None] | None = None,
                   expected_nodes: int | None = None) -> list[RoundOutcome]:
    """`options.rounds` rounds (see the module doc); stops early when too few sites are ready.
    `expected_nodes`: how many nodes the runtime starts, when it knows (the simulation): each
    round waits for them all (up to `options.wait_for_sites`), not only for `min_sites`."""
    grid = ObservedGrid(grid, sink)
    outcomes = []
    for number in range(1, options.rounds + 1):
        outcome = run_round(grid=grid, hooks=hooks, options=options, number=number, expected_nodes=expected_nodes)
        outcome = hooks.commit_round(outcome, options)
        outcomes.append(outcome)
        if on_round is not None:
            on_round(outcome)
        log.info("round %d: %s: %s", number, outcome.status, outcome.message)
        if outcome.status == "failed" and outcome.counts.get("ready", 0) < options.min_sites:
            break
    if any(o.version_after for o in outcomes):
        _sync_after(grid, hooks, options)
    return outcomes


def _sync_after(grid: ObservedGrid, hooks: CoordinatorHooks, options: FederationOptions) -> None:
    """Sites pick up the version the run promoted (best effort: the next round syncs anyway)."""
    try:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        version = hooks.active_version()
        sites = _identify(grid, nodes, hooks.enrolled_sites(), options, "sync", version)
        _install(grid, version, [s for s in sites if s.status == "ready"], options, "sync")
    except Exception as exc:  # noqa: BLE001 - the run's rounds are committed; this is a courtesy
        log.warning("could not bring the sites to the final version: %s", exc)


def _identify(grid: ObservedGrid, nodes: list[int], enrolled: dict[str, str], options: FederationOptions,
              group: str, version: ActiveVersion) -> list[SiteRecord]:
    """Every node's status (a signature over a fresh nonce). A node that reported another version
    earlier in this run (the coordinator promoted one since) gets `version` in the same message
    and installs it first: one stage instead of two (`_install` covers the nodes not known yet)."""
    nonce = secrets.token_hex(16)
    status = ConfigRecord({"nonce": nonce})
    plain = RecordDict({wire.STATUS: status})
    behind = {n for n in nodes if grid.node_versions.get(n, version.sha256) != version.sha256}
    with_install = None
    if behind:
        with_install = RecordDict({wire.STATUS: status, wire.INSTALL: _install_record(version)})
    replies = grid.send_and_receive([_message(grid, with_install if n in behind else plain, n,
                                              f"query.{wire.STATUS}", group) for n in nodes],
                                    timeout=options.round_timeout)
    by_node = {int(r.metadata.src_node_id): r for r in replies}
    records, claimed = [], {}
    for node in nodes:
        record = SiteRecord(node_id=node)
        records.append(record)
        reply = by_node.get(node)
        if reply is None:
            record.status, record.reason = "dropped", "no answer to the status request within the timeout"
            continue
        if reply.has_error():
            what = f"could not install {version.name}" if node in behind else "status request failed"
            record.status, record.reason = "refused", f"{what}: {_reason(reply.error.reason)}"
            continue
        status = dict(reply.content.config_records[wire.STATUS])
        site = str(status.get("site", ""))
        record.site, record.version = site or None, status.get("version") or None
        key = enrolled.get(site)
        if key is None:
            record.status, record.reason = "refused", f"not an enrolled site ({site or 'no name'})"
            continue
        if not verify(key, challenge(nonce=nonce, node_id=node, site=site), str(status.get("signature", ""))):
            record.status, record.reason = "refused", f"the signature does not match site {site}'s enrolled key"
            continue
        if site in claimed:
            record.status, record.reason = "refused", f"site {site} is connected twice (also node {claimed[site]})"
            continue
        claimed[site] = node
        record.status = "ready"
        record.payload = {"pool_bound": int(status.get("pool_bound", 0)), "version_sha256": status.get("version_sha256")}
        grid.node_versions[node] = str(status.get("version_sha256") or "")
    return records


def _install_record(version: ActiveVersion) -> ConfigRecord:
    return ConfigRecord({"version": version.name, "sha256": version.sha256, "artifact": version.artifact()})


def _install(grid: ObservedGrid, version: ActiveVersion, sites: list[SiteRecord], options: FederationOptions,
             group: str) -> None:
    behind = [s for s in sites if (s.payload or {}).get("version_sha256") != version.sha256]
    if not behind:
        return
    content = RecordDict({wire.INSTALL: _install_record(version)})
    replies = grid.send_and_receive([_message(grid, content, s.node_id, f"query.{wire.INSTALL}", group)
                                     for s in behind], timeout=options.round_timeout)
    by_node = {int(r.metadata.src_node_id): r for r in replies}
    for site in behind:
        reply = by_node.get(site.node_id)
        if reply is None:
            site.status, site.reason = "dropped", f"did not install {version.name} within the timeout"
        elif reply.has_error():
            site.status, site.reason = "refused", f"could not install {version.name}: {_reason(reply.error.reason)}"
        else:
            site.version = version.name
            site.payload = {**(site.payload or {}), "version_sha256": version.sha256}
            grid.node_versions[site.node_id] = version.sha256


def run_round(*, grid: ObservedGrid, hooks: CoordinatorHooks, options: FederationOptions,
              number: int, expected_nodes: int | None = None) -> RoundOutcome:
    started = time.perf_counter()
    version = hooks.active_version()
    outcome = RoundOutcome(number=number, version_before=version.name)
    group = f"{number}"
    nodes = wait_for_nodes(grid, options.min_sites, options.wait_for_sites, expected=expected_nodes)
    sites = _identify(grid, nodes, hooks.enrolled_sites(), options, group, version)
    _install(grid, version, [s for s in sites if s.status == "ready"], options, group)
    outcome.sites = sites
    ready = [s for s in sites if s.status == "ready"]
    outcome.counts = {"connected": len(nodes), "ready": len(ready),
                      "refused": sum(s.status == "refused" for s in sites)}
    outcome.seconds["sites"] = time.perf_counter() - started
    if len(ready) < options.min_sites:
        outcome.message = (f"only {len(ready)} site(s) ready of {len(nodes)} connected; at least {options.min_sites} "
                           "needed: nothing aggregated")
        return outcome

    brain = version.brain
    partition = partition_parameters(brain.model, frozen_prefixes=options.freeze_layers)
    if not partition.aggregated:
        raise ConfigError("every shared parameter is frozen (freeze_layers): sites produce no updates")
    params = dict(brain.model.named_parameters())
    spec = UpdateSpec(main_version=version.name, shapes={n: tuple(params[n].shape) for n in partition.aggregated})
    scale = max(1.0, options.clip_norm) * max([(s.payload or {}).get("pool_bound", 1) for s in ready] + [1])
    settings = RoundSettings(
        round_id=f"{hooks.rounds_done() + 1}", version=version.name, version_sha256=version.sha256,
        strategy=options.strategy, capped_weights=options.capped_weights, weight_cap=options.weight_cap or 0.0,
        score_metric=options.score_metric, dp=options.dp_enabled, noise_multiplier=options.noise_multiplier,
        clip_norm=options.clip_norm, sample_rate=options.sample_rate, delta=options.delta,
        epsilon_budget=options.epsilon_budget, accountant=options.accountant, epochs=options.local_epochs,
        learning_rate=options.local_learning_rate, batch_size=options.local_batch_size,
        proximal_mu=options.proximal_mu, holdout_fraction=options.holdout_fraction,
        min_interactions=options.min_interactions, freeze_layers=options.freeze_layers,
        seed=-1 if options.seed is None else int(options.seed), secure=options.secure_aggregation,
        payload_scale=float(scale))
    shared = shared_arrays(brain, spec)

    started = time.perf_counter()
    grid.errors.clear()
    if options.secure_aggregation:
        total, per_site = _train_secure(grid, ready, shared, settings, options, spec, number)
    else:
        total, per_site = _train_plain(grid, ready, shared, settings, options, spec, group)
    outcome.seconds["train"] = time.perf_counter() - started
    contributing = [s for s in ready if s.status == "accepted"]
    outcome.counts.update(contributing=len(contributing),
                          rejected=sum(s.status == "rejected" for s in ready),
                          dropped=sum(s.status == "dropped" for s in ready))
    if total is None:
        outcome.status = "failed"
        outcome.message = outcome.message or "no site's contribution could be aggregated"
        if options.secure_aggregation and grid.errors:
            outcome.message += "; " + "; ".join(sorted({_reason(e) for e in grid.errors.values()}))[:500]
        return outcome
    reason = check_payload(total, clip_norm=options.clip_norm, capped_weights=options.capped_weights,
                           tolerance=_tolerance(settings, len(contributing)))
    outcome.counts.update(learners_pool=total.num_pool, learners_sampled=total.num_sampled,
                          learners_accepted=total.num_accepted)
    if reason is not None:
        outcome.status = "rejected"
        outcome.message = (f"the {'secure ' if options.secure_aggregation else ''}sum across sites fails its checks: "
                           f"{reason}; nothing aggregated")
        return outcome

    started = time.perf_counter()
    strategy = options.make_strategy()
    generator = np.random.default_rng(None if options.seed is None else [options.seed, hooks.rounds_done(), 7])
    if options.dp_enabled:
        if total.num_pool < 1:
            outcome.message = "no eligible learner at any ready site: nothing aggregated"
            return outcome
        wrapped = UserLevelDP(noise_multiplier=options.noise_multiplier, clip_norm=options.clip_norm,
                              sample_rate=options.sample_rate, weight_cap=options.weight_cap).wrap(
            strategy, num_eligible=total.num_pool)
        state = wrapped.start(numel=spec.numel, generator=generator)
        state.merge(total=total.total, weight_total=total.weight_total, count=total.num_accepted)
        outcome.privacy = {"noise_std_of_sum": wrapped.noise_std, "denominator": wrapped.expected_participants,
                           "weight_cap": wrapped.weight_cap}
    else:
        state = strategy.start(numel=spec.numel, generator=generator)
        if isinstance(state, Reservoir):  # robust strategies combine the sites' means
            for payload in per_site:
                if payload.weight_total > 0:
                    state.add(payload.total / payload.weight_total, 1.0)
        elif isinstance(state, RunningSum):
            state.merge(total=total.total, weight_total=total.weight_total, count=total.num_accepted)
    try:
        delta = options.server_learning_rate * state.result()
    except ValueError as exc:
        outcome.status = "rejected"
        outcome.message = f"no aggregate: {exc}"
        return outcome
    outcome.aggregation = {"strategy": strategy.describe(), "secure": options.secure_aggregation, "numel": spec.numel,
                           "dp": options.dp_enabled, "capped_weights": options.capped_weights,
                           "sites": len(contributing), "payload_scale": scale,
                           "update_norm": float(np.linalg.norm(delta)), "sum_norm": float(np.linalg.norm(total.total)),
                           "weight_total": total.weight_total}
    candidate = candidate_brain(brain, spec.unflatten(delta), version.name, federation="sites")
    outcome.seconds["aggregate"] = time.perf_counter() - started

    started = time.perf_counter()
    before, after, evaluated = _evaluate(grid, contributing or ready, candidate, spec, settings, options, group)
    outcome.seconds["evaluate"] = time.perf_counter() - started
    outcome.counts["evaluated_sites"] = evaluated
    outcome.metrics_before, outcome.metrics_after = before.metrics(), after.metrics()
    if before.n == 0:
        outcome.status = "rejected"
        outcome.message = "candidate not promoted: no held-out interactions to evaluate on at the sites"
        return outcome
    decision = decide(before=outcome.metrics_before, after=outcome.metrics_after, margin=options.gate_margin)
    outcome.improvement = decision.improvement
    if decision.passes:
        outcome.status, outcome.candidate = "applied", candidate
        outcome.message = decision.reason
    else:
        outcome.status, outcome.message = "rejected", f"candidate not promoted: {decision.reason}"
    return outcome


def _tolerance(settings: RoundSettings, num_sites: int) -> float:
    """Absolute slack of values that went through quantized secure aggregation."""
    if not settings.secure:
        return 0.0
    return settings.payload_scale * 2.0 / 2**22 * max(1, num_sites)


def _train_secure(grid: ObservedGrid, ready: list[SiteRecord], shared, settings: RoundSettings,
                  options: FederationOptions, spec: UpdateSpec, number: int):
    result = secure_sum(grid=grid, node_ids=[s.node_id for s in ready], arrays=shared, config=settings.to_config(),
                        round_number=number, settings=SecAggSettings(max_dropout=options.secagg_max_dropout,
                                                                      timeout=options.round_timeout))
    for site in ready:
        error = grid.errors.get(site.node_id)
        if result.arrays is not None and site.node_id in result.node_ids:
            site.status = "accepted"  # its masked vector is in the sum
        elif error:
            site.status, site.reason = "rejected", _reason(error)
        elif result.arrays is None:
            site.status, site.reason = "dropped", "secure aggregation did not finish"
        else:
            site.status, site.reason = "dropped", ("no masked contribution within the round timeout (disconnected, "
                                                   "killed or slow); the others' masks were removed with the shares")
    if result.arrays is None:
        return None, []
    try:
        total = SitePayload.from_arrays(result.arrays, numel=spec.numel, scale=settings.payload_scale, rounded=True)
    except ValueError as exc:
        for site in ready:
            if site.status == "accepted":
                site.status, site.reason = "rejected", f"secure sum unusable: {exc}"
        return None, []
    return total, []


def _train_plain(grid: ObservedGrid, ready: list[SiteRecord], shared, settings: RoundSettings,
                 options: FederationOptions, spec: UpdateSpec, group: str):
    content = RecordDict({wire.SETTINGS: ConfigRecord(settings.to_config()),
                          wire.PARAMETERS: ArrayRecord([np.asarray(a) for a in shared])})
    replies = grid.send_and_receive([_message(grid, content, s.node_id, "train.plain", group) for s in ready],
                                    timeout=options.round_timeout)
    by_node = {int(r.metadata.src_node_id): r for r in replies}
    total: SitePayload | None = None
    per_site: list[SitePayload] = []
    for site in ready:
        reply = by_node.get(site.node_id)
        if reply is None:
            site.status, site.reason = "dropped", f"no contribution within the round timeout ({options.round_timeout:g} s)"
            continue
        if reply.has_error():
            site.status, site.reason = "rejected", _reason(reply.error.reason)
            continue
        try:
            payload = SitePayload.from_arrays(reply.content.array_records[wire.PAYLOAD].to_numpy_ndarrays(),
                                              numel=spec.numel)
        except (KeyError, ValueError) as exc:
            site.status, site.reason = "rejected", f"malformed contribution: {exc}"
            continue
        reason = check_payload(payload, clip_norm=options.clip_norm, capped_weights=options.capped_weights)
        site.payload = {**(site.payload or {}), **payload.summary()}
        if reason is not None:
            site.status, site.reason = "rejected", reason
            continue
        site.status = "accepted"
        per_site.append(payload)
        if total is None:
            total = SitePayload(payload.total.copy(), payload.weight_total, payload.num_sampled,
                                payload.num_accepted, payload.num_pool)
        else:
            total.total += payload.total
            total.weight_total += payload.weight_total
            total.num_sampled += payload.num_sampled
            total.num_accepted += payload.num_accepted
            total.num_pool += payload.num_pool
    return total, per_site


def _evaluate(grid: ObservedGrid, sites: Sequence[SiteRecord], candidate: TrainedBrain, spec: UpdateSpec,
              settings: RoundSettings, options: FederationOptions, group: str) -> tuple[MetricSums, MetricSums, int]:
    config = {**settings.to_config(), "bins": int(options.evaluation_bins)}
    content = RecordDict({wire.SETTINGS: ConfigRecord(config),
                          wire.PARAMETERS: ArrayRecord(shared_arrays(candidate, spec))})
    replies = grid.send_and_receive([_message(grid, content, s.node_id, "evaluate", group) for s in sites],
                                    timeout=options.round_timeout)
    before, after, count = MetricSums.empty(options.evaluation_bins), MetricSums.empty(options.evaluation_bins), 0
    for reply in replies:
        if reply.has_error():
            continue
        try:
            b = MetricSums.from_arrays(reply.content.array_records[wire.BEFORE].to_numpy_ndarrays(),
                                       bins=options.evaluation_bins)
            a = MetricSums.from_arrays(reply.content.array_records[wire.AFTER].to_numpy_ndarrays(),
                                       bins=options.evaluation_bins)
        except (KeyError, ValueError) as exc:
            log.info("evaluation of node %s ignored: %s", reply.metadata.src_node_id, exc)
            continue
        if a.n != b.n:
            log.info("evaluation of node %s ignored: before/after counts differ", reply.metadata.src_node_id)
            continue
        before, after, count = before + b, after + a, count + 1
    return before, after, count
