"""Server optimizers: SGD is FedAvg's step; Adam by hand; state round-trips."""

from __future__ import annotations

import pytest
import torch

from aivo.errors import ConfigError
from aivo.federated.server import make_server_optimizer


def test_sgd_adds_the_scaled_aggregate():
    params = {"w": torch.zeros(3)}
    make_server_optimizer("sgd", learning_rate=0.5).apply(params, {"w": torch.tensor([2.0, -4.0, 0.0])})
    torch.testing.assert_close(params["w"], torch.tensor([1.0, -2.0, 0.0]))


def test_adam_by_hand_and_state_round_trip():
    opt = make_server_optimizer("adam", learning_rate=0.1, beta1=0.5, beta2=0.5, eps=0.0 + 1e-12)
    params = {"w": torch.zeros(2)}
    opt.apply(params, {"w": torch.tensor([1.0, -2.0])})
    # m = 0.5 d, v = 0.5 d^2 -> step = 0.1 * 0.5 d / sqrt(0.5 d^2) = 0.1 * sqrt(0.5) * sign(d)
    torch.testing.assert_close(params["w"], torch.tensor([1.0, -1.0]) * 0.1 * 0.5 ** 0.5)
    other = make_server_optimizer("adam", learning_rate=0.1, beta1=0.5, beta2=0.5, eps=1e-12)
    other.load_state_dict(opt.state_dict())
    a, b = {"w": torch.zeros(2)}, {"w": torch.zeros(2)}
    opt.apply(a, {"w": torch.tensor([0.5, 0.5])})
    other.apply(b, {"w": torch.tensor([0.5, 0.5])})
    torch.testing.assert_close(a["w"], b["w"])
    with pytest.raises(ValueError):
        make_server_optimizer("sgd").load_state_dict(opt.state_dict())


def test_unknown_and_invalid():
    with pytest.raises(ConfigError, match="unknown server optimizer"):
        make_server_optimizer("lamb")
    with pytest.raises(ConfigError):
        make_server_optimizer("sgd", learning_rate=0)
