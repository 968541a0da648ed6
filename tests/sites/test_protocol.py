"""The round protocol's pure parts: settings, payloads and their checks, SecAgg thresholds, options."""

from __future__ import annotations

import numpy as np
import pytest

from aivo.errors import ConfigError
from aivo.sites.coordinator import FederationOptions
from aivo.sites.protocol import RoundSettings, SitePayload, check_payload
from aivo.sites.secure_sum import SecAggSettings
from aivo.sites.server_app import decode_options, encode_options


def payload(total, weight=2.0, sampled=3, accepted=2, pool=10) -> SitePayload:
    return SitePayload(np.asarray(total, dtype=np.float64), weight, sampled, accepted, pool)


def test_settings_round_trip_through_a_config_record():
    settings = RoundSettings(round_id="3", version="v1", version_sha256="ab" * 32, sample_rate=0.1, seed=-1)
    assert RoundSettings.from_config(settings.to_config()) == settings
    with pytest.raises(ConfigError, match="lack"):
        RoundSettings.from_config({"version": "v1"})
    with pytest.raises(ConfigError, match="sampling rate"):
        RoundSettings(round_id="1", version="v", version_sha256="x", sample_rate=0)


def test_payload_arrays_round_trip_and_refuse_bad_shapes():
    p = payload([0.5, -0.5, 0.0])
    back = SitePayload.from_arrays(p.to_arrays(scale=4.0), numel=3, scale=4.0)
    np.testing.assert_allclose(back.total, p.total)
    assert (back.weight_total, back.num_sampled, back.num_accepted, back.num_pool) == (2.0, 3, 2, 10)
    with pytest.raises(ValueError, match="shape"):
        SitePayload.from_arrays(p.to_arrays(), numel=4)
    with pytest.raises(ValueError, match="expected 2 arrays"):
        SitePayload.from_arrays(p.to_arrays()[:1], numel=3)
    arrays = p.to_arrays()
    arrays[1] = arrays[1] + np.array([0, 0.5, 0, 0])
    with pytest.raises(ValueError, match="whole numbers"):
        SitePayload.from_arrays(arrays, numel=3)
    arrays[1] = np.array([1.0, np.inf, 1, 1])
    with pytest.raises(ValueError, match="NaN or Inf"):
        SitePayload.from_arrays(arrays, numel=3)


@pytest.mark.parametrize(("bad", "reason"), [
    (payload([np.nan, 0, 0]), "NaN or Inf"),
    (payload([np.inf, 0, 0]), "NaN or Inf"),
    (payload([0.1, 0, 0], accepted=4, sampled=3), "accepted of 3 sampled"),
    (payload([0.1, 0, 0], sampled=11, pool=10), "sampled from a pool"),
    (payload([0.1, 0, 0], weight=0.0, accepted=0), "from no accepted learner"),
    (payload([0.1, 0, 0], weight=2.5, accepted=2), "weight total"),
    (payload([3.0, 0, 0], weight=2.0), "exceeds clip norm"),
    (payload([0.1, 0, 0], sampled=-1), "negative"),
])
def test_check_payload_names_what_is_wrong(bad, reason):
    assert reason in check_payload(bad, clip_norm=1.0, capped_weights=True)


def test_check_payload_accepts_sums_within_the_bounds():
    assert check_payload(payload([1.2, 1.2, 0.0], weight=2.0), clip_norm=1.0, capped_weights=True) is None
    # uncapped weights (fedavg without DP or secure aggregation): the weight total may exceed the count
    assert check_payload(payload([30.0, 0, 0], weight=40.0), clip_norm=1.0, capped_weights=False) is None


def test_secagg_threshold_survives_the_configured_share_of_sites():
    settings = SecAggSettings(max_dropout=0.34)
    assert settings.threshold(3) == 2  # one of three may drop
    assert settings.threshold(10) == 7
    assert settings.threshold(2) == 2
    with pytest.raises(ConfigError, match="unmask"):
        SecAggSettings(max_dropout=0.5)


def test_robust_strategies_are_refused_under_secure_aggregation_and_need_consent_without():
    with pytest.raises(ConfigError, match="total"):
        FederationOptions(strategy="median", dp_enabled=False)
    with pytest.raises(ConfigError, match="--allow-site-sums"):
        FederationOptions(strategy="trimmed-mean", secure_aggregation=False, dp_enabled=False)
    options = FederationOptions(strategy="median", secure_aggregation=False, dp_enabled=False,
                                allow_robust_without_secagg=True)
    assert any("sees every site's sum" in w for w in options.warnings())
    with pytest.raises(ConfigError, match="at least 2 sites"):
        FederationOptions(min_sites=1)


def test_options_travel_in_the_run_config():
    options = FederationOptions(rounds=3, sample_rate=0.2, seed=5)
    assert decode_options(encode_options(options)) == options
    with pytest.raises(ConfigError, match="unreadable"):
        decode_options("not base64 json!")
