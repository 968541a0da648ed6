"""Shared fixtures: an isolated AIVO_HOME per test, the shared KT data, and a CLI runner.

PostgreSQL (127.0.0.1:5432, trust auth) runs here and on CI; tests that need it use it
for real (see `pg_url` in the registry tests), they never skip for want of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_KT = REPO.parent / "shared" / "data" / "kt"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test gets its own AIVO_HOME and no AIVO_* settings leaking from the shell."""
    for key in list(os.environ):
        if key.startswith("AIVO_"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "aivo_home"
    monkeypatch.setenv("AIVO_HOME", str(home))
    monkeypatch.setenv("AIVO_NUM_THREADS", "1")
    from aivo.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def aivo_home(tmp_path) -> Path:
    return tmp_path / "aivo_home"


@pytest.fixture
def kt_data() -> Path:
    if not SHARED_KT.exists():
        raise RuntimeError(f"the shared KT data is missing: expected {SHARED_KT}")
    return SHARED_KT


@pytest.fixture
def run_cli(aivo_home):
    """Run `aivo ...` as a real subprocess; returns CompletedProcess (text)."""

    def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_")}
        full_env.update({"AIVO_HOME": str(aivo_home), "AIVO_NUM_THREADS": "1", "COLUMNS": "200"})
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "aivo", *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout, input=input, cwd=str(aivo_home.parent))

    return _run
