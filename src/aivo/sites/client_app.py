"""The site's Flower ClientApp: four handlers over an injected `SiteHandler`.

| message            | the site                                                         | reply           |
|--------------------|------------------------------------------------------------------|-----------------|
| `query.status`     | says who it is (signing the coordinator's nonce), its version   | ConfigRecord    |
|                    | and a bound on its pool; first installs the version the message  |                 |
|                    | carries, if any (a site the coordinator knows to be behind)      |                 |
| `query.install`    | registers and activates the version the coordinator sends       | ConfigRecord    |
| `train` (SecAgg+)  | computes its payload; `secaggplus_mod` masks it                  | masked vectors  |
| `train.plain`      | computes its payload (secure aggregation off)                    | ArrayRecord     |
| `evaluate`         | scores the active version and the candidate on its held-out tails| metric sums     |

A handler raises `SiteRefusal` to decline with a reason (wrong version, a refused setting):
Flower turns it into an error reply whose reason the coordinator records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from aivo.sites.evaluation import MetricSums
from aivo.sites.protocol import RoundSettings, SitePayload

STATUS = "status"
INSTALL = "install"
SETTINGS = "settings"
PAYLOAD = "payload"
PARAMETERS = "parameters"
BEFORE, AFTER = "before", "after"


class SiteRefusal(Exception):
    """The site declines a request; the message is the reason the coordinator records."""


class SiteHandler(Protocol):
    def status(self, *, nonce: str, node_id: int) -> dict: ...

    def install(self, *, version: str, sha256: str, artifact: bytes) -> dict: ...

    def contribute(self, *, settings: RoundSettings, shared: list[np.ndarray]) -> SitePayload: ...

    def evaluate(self, *, settings: RoundSettings, candidate: list[np.ndarray],
                 bins: int) -> tuple[MetricSums, MetricSums]: ...


def make_client_app(handler_for: Callable[[Context], SiteHandler]) -> ClientApp:
    """A ClientApp whose handlers call `handler_for(context)` (the site of this SuperNode)."""
    app = ClientApp()

    def _install(msg: Message, context: Context) -> dict:
        record = msg.content.config_records[INSTALL]
        return handler_for(context).install(version=str(record["version"]), sha256=str(record["sha256"]),
                                            artifact=bytes(record["artifact"]))

    @app.query(STATUS)
    def status(msg: Message, context: Context) -> Message:
        if INSTALL in msg.content.config_records:  # one message instead of two for a site known to be behind
            _install(msg, context)
        nonce = str(msg.content.config_records[STATUS]["nonce"])
        reply = handler_for(context).status(nonce=nonce, node_id=int(context.node_id))
        return Message(RecordDict({STATUS: ConfigRecord(reply)}), reply_to=msg)

    @app.query(INSTALL)
    def install(msg: Message, context: Context) -> Message:
        return Message(RecordDict({INSTALL: ConfigRecord(_install(msg, context))}), reply_to=msg)

    @app.train(mods=[secaggplus_mod])
    def train_secure(msg: Message, context: Context) -> Message:
        fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        settings = RoundSettings.from_config(dict(fitins.config))
        payload = handler_for(context).contribute(settings=settings,
                                                  shared=parameters_to_ndarrays(fitins.parameters))
        # SecAgg+ sums what every site uploads; weight 1 per site (num_examples) keeps it a plain sum.
        fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(payload.to_arrays(scale=settings.payload_scale)),
                        1, {})
        return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)

    @app.train("plain")
    def train_plain(msg: Message, context: Context) -> Message:
        settings = RoundSettings.from_config(dict(msg.content.config_records[SETTINGS]))
        shared = msg.content.array_records[PARAMETERS].to_numpy_ndarrays()
        payload = handler_for(context).contribute(settings=settings, shared=shared)
        return Message(RecordDict({PAYLOAD: ArrayRecord(payload.to_arrays())}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        config = dict(msg.content.config_records[SETTINGS])
        bins = int(config.pop("bins"))
        settings = RoundSettings.from_config(config)
        candidate = msg.content.array_records[PARAMETERS].to_numpy_ndarrays()
        before, after = handler_for(context).evaluate(settings=settings, candidate=candidate, bins=bins)
        return Message(RecordDict({BEFORE: ArrayRecord(before.to_arrays()), AFTER: ArrayRecord(after.to_arrays())}),
                       reply_to=msg)

    return app
