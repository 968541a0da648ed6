"""Shared fixtures: an isolated AIVO_HOME per test, the shared KT data, and CLI runners.

PostgreSQL (127.0.0.1:5432, trust auth) runs here and on CI; tests that need it use it
for real (see `pg_url` in the registry tests), they never skip for want of it.
"""

from __future__ import annotations

import json
import locale
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
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


@pytest.fixture(autouse=True)
def _restored_root_logger():
    """A command run in-process (`aivo.cli.main`) configures the root logger (its handler and level):
    each test starts from the root logger the session began with."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def aivo_home(tmp_path) -> Path:
    return tmp_path / "aivo_home"


@pytest.fixture
def kt_data() -> Path:
    if not SHARED_KT.exists():
        raise RuntimeError(f"the shared KT data is missing: expected {SHARED_KT}")
    return SHARED_KT


def _cli_env(aivo_home: Path, env: dict[str, str] | None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_")}
    full_env.update({"AIVO_HOME": str(aivo_home), "AIVO_NUM_THREADS": "1", "COLUMNS": "200"})
    full_env.update(env or {})
    return full_env


def _run_process(args, *, aivo_home: Path, env, timeout, input):
    return subprocess.run([sys.executable, "-m", "aivo", *args], capture_output=True, text=True,
                          env=_cli_env(aivo_home, env), timeout=timeout, input=input, cwd=str(aivo_home.parent))


def _outside_aivo(env: dict[str, str]) -> dict[str, str]:
    """The variables a library may read at import: not AIVO_* (read when a command runs), not
    pytest's PYTEST_CURRENT_TEST (a new value each test)."""
    return {k: v for k, v in env.items() if not k.startswith("AIVO_") and k != "PYTEST_CURRENT_TEST"}


class _Lines:
    """JSON lines from a socket, each within a timeout (None: no limit)."""

    def __init__(self, conn: socket.socket):
        self.conn, self.buffer = conn, b""

    def next(self, timeout: float | None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            self.conn.settimeout(None if deadline is None else max(deadline - time.monotonic(), 1e-3))
            chunk = self.conn.recv(65536)  # TimeoutError past the deadline
            if not chunk:
                raise RuntimeError("the CLI fork server closed the connection (see its server.log)")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


class CliForkServer:
    """Runs `aivo` commands as processes forked from a server that has imported the CLI's libraries
    once (tests/cli_forkserver.py), started with `base_env` (the variables a library may read at
    import; AIVO_* are read only when a command runs)."""

    def __init__(self, folder: Path, base_env: dict[str, str]):
        self.folder = folder
        self.base_env = base_env
        self._log = open(folder / "server.log", "wb")
        self.socket_name = f"aivo-cli-{os.getpid()}-{secrets.token_hex(8)}"
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_forkserver.py")), self.socket_name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=base_env, cwd=str(folder))
        ready = self._proc.stdout.readline()
        if not ready:
            raise RuntimeError("the CLI fork server did not start: " + (folder / "server.log").read_text()[-3000:])
        # No Python thread may run in the server (it would not survive the fork); otherwise every
        # command runs as `python -m aivo`.
        self.usable = json.loads(ready)["python_threads"] == 1
        self._count = 0
        self._lock = threading.Lock()

    def run(self, args, *, env: dict[str, str], cwd: Path, timeout: float, input: str | None):
        with self._lock:
            self._count += 1
            stem = self.folder / f"cmd{self._count}"
        paths = {name: f"{stem}.{name}" for name in ("stdout", "stderr")}
        for path in paths.values():
            Path(path).touch()
        stdin = None
        if input is not None:
            stdin = f"{stem}.stdin"
            Path(stdin).write_text(input)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect("\0" + self.socket_name)
        try:
            conn.sendall(json.dumps({"args": list(args), "env": env, "cwd": str(cwd), "stdin": stdin,
                                     **paths}).encode() + b"\n")
            received = _Lines(conn)
            pid = received.next(None)["pid"]
            try:
                returncode, expired = received.next(timeout)["returncode"], False
            except TimeoutError:  # as subprocess.run: kill the command, then report the timeout
                os.kill(pid, signal.SIGKILL)
                returncode, expired = received.next(None)["returncode"], True
        finally:
            conn.close()
        encoding = locale.getpreferredencoding(False)
        stdout, stderr = (Path(paths[name]).read_text(encoding=encoding) for name in ("stdout", "stderr"))
        for path in (*paths.values(), stdin):
            if path:
                os.unlink(path)
        argv = [sys.executable, "-m", "aivo", *args]
        if expired:
            raise subprocess.TimeoutExpired(argv, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

    def close(self) -> None:
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


class CliRunner:
    """`run_cli`'s engine: one fork server at a time, restarted when the session's environment
    changes outside AIVO_* (e.g. a library switched Hugging Face offline in this process). A call
    whose own `env` differs outside AIVO_* runs as `python -m aivo`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.server: CliForkServer | None = None
        self.generation = 0
        self._lock = threading.Lock()

    def _server(self, base_env: dict[str, str]) -> CliForkServer:
        with self._lock:
            if self.server is None or _outside_aivo(self.server.base_env) != _outside_aivo(base_env):
                if self.server is not None:
                    self.server.close()
                self.generation += 1
                folder = self.folder / str(self.generation)
                folder.mkdir()
                self.server = CliForkServer(folder, base_env)
            return self.server

    def run(self, args, *, aivo_home: Path, env, timeout: float, input: str | None):
        server = self._server(_cli_env(aivo_home, None))
        full_env = _cli_env(aivo_home, env)
        if not server.usable or _outside_aivo(full_env) != _outside_aivo(server.base_env):
            return _run_process(args, aivo_home=aivo_home, env=env, timeout=timeout, input=input)
        return server.run(args, env=full_env, cwd=aivo_home.parent, timeout=timeout, input=input)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture(scope="session")
def cli_runner():
    with tempfile.TemporaryDirectory(prefix="aivo-cli-") as folder:
        runner = CliRunner(Path(folder))
        yield runner
        runner.close()


@pytest.fixture
def run_cli(aivo_home, cli_runner):
    """Run `aivo ...` in its own process; returns CompletedProcess (text). The process is forked from
    the CLI fork server (the libraries already imported, see CliRunner), or is `python -m aivo`."""

    def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None):
        return cli_runner.run(args, aivo_home=aivo_home, env=env, timeout=timeout, input=input)

    return _run


@pytest.fixture
def run_cli_process(aivo_home):
    """Run `python -m aivo ...` as a fresh interpreter (the start-up path included); returns
    CompletedProcess (text)."""

    def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None):
        return _run_process(args, aivo_home=aivo_home, env=env, timeout=timeout, input=input)

    return _run
