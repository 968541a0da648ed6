"""The secure sum across sites: Flower's SecAgg+ workflow driven for one round.

`SecAggPlusWorkflow` (Flower's implementation of SecAgg+, Bell et al. 2020) runs on a legacy
strategy context: it asks the strategy which nodes to train (`configure_fit`), runs its four
stages (setup, share keys, collect masked vectors, unmask) and hands the unmasked result to
`aggregate_fit`. The ServerApp sees only masked integer vectors and the final result.

What it computes is a weighted mean: every site's vector is quantized (stochastic rounding into
`quantization_range` levels over [-clipping_range, clipping_range]), scaled by its weight and
summed with pairwise masks that cancel. AIVO gives every site weight 1 and divides its payload
by a public scale first, so that every value lies in [-1, 1] (`clipping_range` 1): the result
times the number of sites that contributed is the sum of the payloads, up to the quantization
step (2 / 2**22 of the scale per value and site).

Dropouts: each site's secrets are Shamir-shared with every other sampled site; the masks of a
site that vanishes after sharing its keys are removed with `reconstruction_threshold` shares,
so the round survives the loss of up to `num_sites - threshold` sites. The threshold is kept
above half the sites: with fewer, a dishonest coordinator could ask for both kinds of a site's
shares and unmask its vector.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.common import (
    FitIns,
    FitRes,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.server_config import ServerConfig
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

from aivo.errors import ConfigError

log = logging.getLogger(__name__)

QUANTIZATION_RANGE = 2**22  # Flower's default
MODULUS_RANGE = 2**32  # Flower's default; the sum of the sites' quantized values must stay below it
MAX_SITES = MODULUS_RANGE // QUANTIZATION_RANGE - 1


@dataclass(frozen=True)
class SecAggSettings:
    max_dropout: float = 0.34  # share of the sampled sites a round may lose and still finish
    timeout: float | None = 600.0  # seconds to wait for the replies of each stage

    def __post_init__(self) -> None:
        if not 0 <= self.max_dropout < 0.5:
            raise ConfigError(f"secure aggregation tolerates losing a share of sites in [0, 0.5), got "
                              f"{self.max_dropout}: at half or more, a dishonest coordinator could unmask a site")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"the secure aggregation timeout must be > 0, got {self.timeout}")

    def threshold(self, num_sites: int) -> int:
        """Shares needed to remove a site's masks: num_sites minus the sites that may drop."""
        return max(2, num_sites - math.floor(self.max_dropout * num_sites))


@dataclass
class SecureSum:
    arrays: list[np.ndarray] | None  # the sum of the payloads (already multiplied back by the site count)
    num_sites: int  # sites whose masked vectors went into the sum
    failures: list[str] = field(default_factory=list)  # errors the sites or the protocol reported
    node_ids: set[int] = field(default_factory=set)  # the nodes whose masked vectors went into the sum


class _FixedNodes(LegacyStrategy):
    """The legacy strategy SecAggPlusWorkflow asks: train exactly these nodes, keep the result."""

    def __init__(self, grid, node_ids: Sequence[int], config: dict, run_id: int):
        self.proxies = [GridClientProxy(node_id, grid, run_id) for node_id in node_ids]
        self.config = config
        self.result: SecureSum | None = None

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager):
        return [(proxy, FitIns(parameters, dict(self.config))) for proxy in self.proxies]

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures):
        reasons = [_reason(f) for f in failures]
        if results:
            mean = parameters_to_ndarrays(results[0][1].parameters)
            self.result = SecureSum([np.asarray(a, dtype=np.float64) * len(results) for a in mean], len(results),
                                    reasons, {int(proxy.node_id) for proxy, _ in results})
        else:
            self.result = SecureSum(None, 0, reasons)
        return None, {}

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class _SecAggPlus(SecAggPlusWorkflow):
    """Flower 1.42's workflow with one fix. A site that drops out before the share-keys stage
    (killed while setting up, say) shared no keys and put no mask into anyone's vector, yet the
    workflow still counts it as a dead sampled node and asks the others for its key shares, which
    they never received: every site fails in the unmask stage (KeyError) and the round is lost.
    After the share-keys stage only the sites that shared their keys count as sampled, so such a
    site is simply absent; sites that drop later are unmasked as Flower intends."""

    def share_keys_stage(self, grid, context, state) -> bool:
        passed = super().share_keys_stage(grid, context, state)
        state.sampled_node_ids = set(state.active_node_ids)
        return passed and self._check_threshold(state)


def _reason(failure) -> str:
    if isinstance(failure, BaseException) and failure.args:
        error = failure.args[0]
        return str(getattr(error, "reason", error))
    return str(failure)


def secure_sum(*, grid, node_ids: Sequence[int], arrays: Sequence[np.ndarray], config: dict, round_number: int,
               settings: SecAggSettings) -> SecureSum:
    """Run SecAgg+ over `node_ids`: each receives `arrays` (the round's parameters) and `config`
    (the round's settings) in a legacy FitIns and answers with its payload, already divided by
    the round's scale. Returns the sum of the payloads (scaled), or None with the reasons when
    the protocol could not finish (too few sites left, every site failed)."""
    node_ids = list(node_ids)
    if len(node_ids) < 2:
        return SecureSum(None, 0, [f"secure aggregation needs at least 2 sites, {len(node_ids)} ready"])
    if len(node_ids) > MAX_SITES:
        raise ConfigError(f"secure aggregation sums at most {MAX_SITES} sites at once (quantized values must fit "
                          f"the {MODULUS_RANGE} modulus); {len(node_ids)} are ready")
    run_id = grid.run.run_id if hasattr(grid, "run") else 0
    strategy = _FixedNodes(grid, node_ids, config, run_id)
    base = Context(run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, config=ServerConfig(num_rounds=1), strategy=strategy)
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({Key.CURRENT_ROUND: int(round_number)})
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([np.asarray(a) for a in arrays]), True)
    workflow = _SecAggPlus(num_shares=1.0, reconstruction_threshold=settings.threshold(len(node_ids)),
                                  max_weight=1.0, clipping_range=1.0, quantization_range=QUANTIZATION_RANGE,
                                  modulus_range=MODULUS_RANGE, timeout=settings.timeout)
    workflow(grid, context)
    if strategy.result is None:
        return SecureSum(None, 0, ["secure aggregation halted: too few sites answered a stage (see the coordinator's "
                                   "log); nothing was aggregated"])
    return strategy.result
