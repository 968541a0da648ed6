"""The site worker behind a SuperNode in `--isolation process` (aivo.sites.task_worker). Its work
end to end, with real SuperLink and SuperNode processes, TLS and node authentication, is in
test_deployment.py; here what can be checked without them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from aivo.services.site_identity import FAB_ID
from aivo.sites.task_worker import RuntimeApi, TaskWorker

APP = Path(__file__).resolve().parents[2] / "src" / "aivo" / "flower_app" / "pyproject.toml"


def test_the_worker_serves_the_app_that_flwr_run_submits():
    """The worker refuses tasks of any other app: FAB_ID must be the one of aivo/flower_app."""
    config = tomllib.loads(APP.read_text())
    assert FAB_ID == f"{config['tool']['flwr']['app']['publisher']}/{config['project']['name']}"


def test_the_poll_interval_must_be_positive():
    with pytest.raises(ValueError, match="poll_interval"):
        TaskWorker(runtime=RuntimeApi("127.0.0.1:1"), app=None, fab_id=FAB_ID, poll_interval=0)


def test_a_worker_that_cannot_serve_takes_its_supernode_down(run_cli, tmp_path):
    """`aivo site worker` in a home that is not a site: a clear error, and the process it serves
    (here a stand-in for the SuperNode) is terminated, so that `aivo site serve` ends as a whole."""
    supernode = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        done = run_cli("site", "worker", "--runtime-api", "127.0.0.1:9", "--parent-pid", str(supernode.pid),
                       env={"AIVO_HOME": str(tmp_path / "not-a-site")}, timeout=120)
        assert done.returncode == 2 and "aivo site init" in done.stderr and "Traceback" not in done.stderr
        assert supernode.wait(timeout=10) == -signal.SIGTERM
    finally:
        supernode.kill()


def test_the_worker_ends_with_its_supernode_even_with_sigint_ignored(run_cli_process, tmp_path):
    """A worker whose SuperNode is gone exits, also when it was started with SIGINT ignored (as a
    shell's background job is, e.g. a CI runner's): such workers outlived a whole test run."""
    home = tmp_path / "north"
    made = run_cli_process("site", "init", "north", env={"AIVO_HOME": str(home)})
    assert made.returncode == 0, made.stderr
    supernode = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    env = {**os.environ, "AIVO_HOME": str(home)}
    worker = subprocess.Popen([sys.executable, "-m", "aivo", "site", "worker", "--runtime-api", "127.0.0.1:9",
                               "--parent-pid", str(supernode.pid)], env=env, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(2)
        assert worker.poll() is None, worker.stderr.read()  # serving (or loading the site)
        supernode.kill()
        supernode.wait(10)
        assert worker.wait(timeout=30) is not None
    finally:
        supernode.kill()
        worker.kill()
