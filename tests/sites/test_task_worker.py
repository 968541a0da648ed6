"""The site worker behind a SuperNode in `--isolation process` (aivo.sites.task_worker). Its work
end to end, with real SuperLink and SuperNode processes, TLS and node authentication, is in
test_deployment.py; here what can be checked without them."""

from __future__ import annotations

import signal
import subprocess
import sys
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
