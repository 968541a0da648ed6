import pytest
from pydantic import ValidationError

from aivo.config import Settings


def test_unprefixed_shell_variables_do_not_leak_into_settings(monkeypatch):
    # HOME, SEED, DEVICE are common shell variables; only AIVO_* (and the seed design's
    # documented names) configure AIVO.
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setenv("SEED", "5")
    monkeypatch.setenv("DEVICE", "cuda")
    monkeypatch.delenv("AIVO_HOME", raising=False)
    s = Settings()
    assert str(s.home) == ".aivo" and s.seed == 0 and s.device == "auto"


def test_prefixed_and_seed_design_names(monkeypatch):
    monkeypatch.setenv("AIVO_SEED", "7")
    monkeypatch.setenv("EARLY_STOPPING_PATIENCE", "9")
    monkeypatch.setenv("DRIFT_THRESHOLD", "0.3")
    monkeypatch.setenv("WEEKLY_RETRAINING_DAY", "Sun")
    s = Settings()
    assert (s.seed, s.early_stopping_patience, s.drift_threshold, s.weekly_retraining_day) == \
        (7, 9, 0.3, "sunday")


def test_invalid_values_are_rejected_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("WEEKLY_RETRAINING_DAY", "someday")
    with pytest.raises(ValidationError, match="day of the week"):
        Settings()


def test_embedded_secret_key_is_created_once_and_private(tmp_path):
    s = Settings(home=tmp_path / "h")
    key = s.resolved_secret_key()
    assert key == s.resolved_secret_key() and len(key) == 64
    assert ((tmp_path / "h" / "secret.key").stat().st_mode & 0o777) == 0o600


def test_production_mode_refuses_a_weak_secret_key(tmp_path, caplog):
    """Issue 14: a 5-byte AIVO_SECRET_KEY was accepted."""
    import logging

    from aivo.errors import ConfigError

    pg = "postgresql://postgres@127.0.0.1:5432/test"
    for weak in ("hello", "k" * 40, "0123456789" * 3):
        with pytest.raises(ConfigError, match="too weak for production"):
            Settings(home=tmp_path / "h", database_url=pg, secret_key=weak).resolved_secret_key()
    strong = "d3f1c0a9b8e7d6c5b4a3928170f6e5d4c3b2a190"
    assert Settings(home=tmp_path / "h", database_url=pg, secret_key=strong).resolved_secret_key() == strong.encode()
    with caplog.at_level(logging.WARNING):  # embedded mode: a warning, the key still works
        assert Settings(home=tmp_path / "h", secret_key="hello").resolved_secret_key() == b"hello"
    assert "AIVO_SECRET_KEY is weak" in caplog.text


def test_serve_with_a_weak_production_key_is_a_message(run_cli):
    proc = run_cli("serve", "--port", "1", env={"AIVO_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
                                                "AIVO_SECRET_KEY": "12345"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "AIVO_SECRET_KEY is too weak" in proc.stderr
