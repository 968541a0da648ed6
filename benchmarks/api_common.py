"""Helpers shared by the API benchmarks: a real `aivo serve` process, keys, machine notes, and
this benchmark family's section of benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench import load_average, machine, write_section  # noqa: F401  (the API scripts import them from here)



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aivo_env(home: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"AIVO_HOME": str(home), "AIVO_NUM_THREADS": "1", "AIVO_LOG_LEVEL": "WARNING",
                "AIVO_SCHEDULER_ENABLED": "false", "AIVO_SECRET_KEY": "api-benchmark-secret-key-0123456789"})
    if database_url:
        env["AIVO_DATABASE_URL"] = database_url
    env.update(extra)
    return env


class ServeProcess:
    """`python -m aivo serve` as a child process; waits until /health reports the Main Brain loaded."""

    def __init__(self, *, env: dict[str, str], workers: int, log_path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env, self.workers, self.log_path = env, workers, log_path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ServeProcess":
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "aivo", "serve", "--port", str(self.port),
                                      "--workers", str(self.workers)], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aivo serve exited ({self.proc.returncode}); see {self.log_path}")
            try:
                health = httpx.get(self.base + "/health", timeout=5).json()
                if health.get("active_model", {}).get("loaded") or health.get("active_model", {}).get("version") is None:
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"aivo serve did not become healthy; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its workers: a group we started
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def create_key(*, env: dict[str, str], role: str = "service", tenant: str = "default") -> str:
    out = subprocess.run([sys.executable, "-m", "aivo", "apikey", "create", "--role", role, "--tenant", tenant,
                          "--name", "benchmark", "--json"], env=env, capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout)["token"]


def write_subsection(marker: str, text: str) -> None:
    """Replace this script's part of the API section of RESULTS.md (between its markers)."""
    write_section(heading="API", start=f"<!-- {marker}:start -->", end=f"<!-- {marker}:end -->", body=text)
