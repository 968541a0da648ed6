"""Server optimizers: how the aggregate moves the Main Brain (Reddi et al., "Adaptive Federated
Optimization", 2021). The aggregate is treated as a pseudo-gradient step Delta:

* `sgd`:      w <- w + lr * Delta                                   (FedAvg's server step)
* `adam`:     m <- b1 m + (1 - b1) Delta;  v <- b2 v + (1 - b2) Delta^2
              w <- w + lr * m / (sqrt(v) + eps)                      (FedAdam, no bias correction)

Under user-level DP the optimizer only sees the noisy aggregate, so anything it does is
post-processing: it costs no privacy. Optimizers with state round-trip through
`state_dict` / `load_state_dict` (tagged, refusing a mismatch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from aivo.errors import ConfigError

STATE_KIND = "aivo.server_optimizer"


@dataclass
class ServerOptimizer(ABC):
    name: ClassVar[str] = ""
    learning_rate: float = 1.0

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(f"server learning rate must be > 0, got {self.learning_rate}")

    @abstractmethod
    def direction(self, delta: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The change to add to the parameters (already scaled by the learning rate)."""

    def apply(self, params: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> None:
        """params[name] += direction (in place, no autograd)."""
        with torch.no_grad():
            for name, change in self.direction(delta).items():
                params[name].add_(change.to(params[name].dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": STATE_KIND, "optimizer": self.name, "tensors": {}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != STATE_KIND or state.get("optimizer") != self.name:
            raise ValueError(f"not a {self.name!r} server optimizer state")


@dataclass
class ServerSGD(ServerOptimizer):
    name: ClassVar[str] = "sgd"

    def direction(self, delta):
        return {name: self.learning_rate * d for name, d in delta.items()}


@dataclass
class ServerAdam(ServerOptimizer):
    name: ClassVar[str] = "adam"
    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-3  # large next to Adam's usual 1e-8: noisy coordinates must not be blown up
    first: dict[str, torch.Tensor] = field(default_factory=dict)
    second: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0):
            raise ConfigError("server Adam needs 0 <= beta1, beta2 < 1 and eps > 0")

    def direction(self, delta):
        out = {}
        for name, d in delta.items():
            d = d.double()
            m = self.first.get(name, torch.zeros_like(d))
            v = self.second.get(name, torch.zeros_like(d))
            m = self.beta1 * m + (1 - self.beta1) * d
            v = self.beta2 * v + (1 - self.beta2) * d * d
            self.first[name], self.second[name] = m, v
            out[name] = (self.learning_rate * m / (v.sqrt() + self.eps)).float()
        return out

    def state_dict(self) -> dict[str, Any]:
        tensors = {f"first/{k}": v for k, v in self.first.items()}
        tensors.update({f"second/{k}": v for k, v in self.second.items()})
        return {"kind": STATE_KIND, "optimizer": self.name, "tensors": tensors}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.first = {k.split("/", 1)[1]: v for k, v in state["tensors"].items() if k.startswith("first/")}
        self.second = {k.split("/", 1)[1]: v for k, v in state["tensors"].items() if k.startswith("second/")}


_OPTIMIZERS: dict[str, type[ServerOptimizer]] = {}


def register_server_optimizer(cls: type[ServerOptimizer]) -> type[ServerOptimizer]:
    if not cls.name or cls.name in _OPTIMIZERS:
        raise ValueError(f"server optimizer name {cls.name!r} is empty or already registered")
    _OPTIMIZERS[cls.name] = cls
    return cls


def make_server_optimizer(name: str, **options: Any) -> ServerOptimizer:
    try:
        cls = _OPTIMIZERS[name]
    except KeyError:
        raise ConfigError(f"unknown server optimizer {name!r}; known: {', '.join(_OPTIMIZERS)}") from None
    return cls(**{k: v for k, v in options.items() if v is not None})


for _cls in (ServerSGD, ServerAdam):
    register_server_optimizer(_cls)
