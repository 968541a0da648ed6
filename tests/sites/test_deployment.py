"""The deployment runtime with real processes on loopback: a SuperLink (TLS with certificates
made here, SuperNode authentication) started by `aivo federation serve`, three SuperNodes started
by `aivo site serve`, each with its own site registry, and an intruder whose key was never
registered. Three rounds through `flwr run` (`run_federation_deployment`); during round 2 one
SuperNode is SIGKILLed. Checks: promotion at the coordinator and pick-up at the sites, the
sites' ledgers, data locality (no interaction rows at the coordinator; the messages it received
carry only the protocol's records), no site's sum ever reaching the coordinator, the survivors
finishing round 2 and round 3, the intruder refused by the SuperLink."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from aivo.privacy.ledger import list_ledgers
from aivo.registry import open_registry
from aivo.registry.sites import list_site_rounds
from aivo.registry.tables import Interaction, MainModelVersion
from aivo.services.federation import register_with_superlink, run_federation_deployment
from aivo.services.site_identity import init_site, settings_for_site
from aivo.sites.coordinator import FederationOptions
from aivo.sites.identity import make_certificates
from aivo.config import Settings
from tests.sites.helpers import make_federation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Records a site may send the coordinator: the status reply, an install acknowledgement, SecAgg+'s
# keys, shares and masked vectors, the legacy FitRes envelope (no arrays), metric sums.
ALLOWED_CONFIG_KEYS = {
    "status": {"site", "version", "version_sha256", "pool_bound", "signature"},
    "install": {"version", "installed"},
}
ALLOWED_ARRAY_RECORDS = {"before", "after"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on {port}")


def _env(home: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_")}
    env.update(AIVO_HOME=str(home), AIVO_NUM_THREADS="1", FLWR_DISABLE_UPDATE_CHECK="1", **extra)
    return env


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aivo", *args], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def _kill_when_training(log: Path, process: subprocess.Popen, round_number: int, done: dict) -> None:
    """SIGKILL the SuperNode once it receives a train message of `round_number` (mid-round)."""
    marker = re.compile(rf"ROUND {round_number}\].*?Receiving: train", re.S)
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and process.poll() is None:
        if marker.search(log.read_text(errors="replace")):
            os.kill(process.pid, signal.SIGKILL)  # the SuperNode itself (aivo site serve exec'd it)
            done["killed_at"] = time.time()
            return
        time.sleep(0.5)


def test_deployment_runtime_with_tls_authentication_and_a_sigkilled_supernode(tmp_path, small_world):
    fed = make_federation(tmp_path, small_world, num_sites=3, learners_per_site=6)
    certs = make_certificates(tmp_path / "certs", hosts=["127.0.0.1"])
    port = _free_port()
    superlink_address = f"127.0.0.1:{port}"
    messages = tmp_path / "messages"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []
    try:
        processes.append(_start(["federation", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--certificates", str(certs.ca_certificate.parent)],
                                _env(fed.settings.home, AIVO_FEDERATION_MESSAGE_LOG=str(messages)),
                                logs / "superlink.log"))
        _wait_port(port, 120)
        with ThreadPoolExecutor(len(fed.homes)) as pool:  # only these keys may connect (one `flwr` process each)
            list(pool.map(lambda home: register_with_superlink(
                settings=fed.settings, public_key_path=home / "site" / "site.pub", superlink=superlink_address,
                root_certificates=certs.ca_certificate), fed.homes))
        intruder = tmp_path / "intruder"
        init_site(settings=Settings(home=intruder, database_url=None, artifact_url=None), name="intruder")
        nodes = {}
        for name, home in [*zip(fed.names, fed.homes), ("intruder", intruder)]:
            nodes[name] = _start(["site", "serve", "--superlink", superlink_address, "--root-certificates",
                                  str(certs.ca_certificate), "--port", str(_free_port())], _env(home),
                                 logs / f"{name}.log")
            processes.append(nodes[name])
        deadline = time.monotonic() + 300  # every enrolled site connected (activated) before the run
        while not all("SuperNode ID:" in (logs / f"{n}.log").read_text(errors="replace") for n in fed.names):
            assert time.monotonic() < deadline, "the SuperNodes did not connect"
            time.sleep(1)
        killed: dict = {}
        killer = threading.Thread(target=_kill_when_training,
                                  args=(logs / "school-c.log", nodes["school-c"], 2, killed), daemon=True)
        killer.start()
        # Each site's messages run in its long-lived site worker (`aivo site serve`, `--isolation
        # process`), so an honest stage takes seconds (about 4: the SuperNode asks the SuperLink for
        # messages every 3 s when idle); 25 s leaves room for a loaded machine. The
        # SIGKILLed node costs a round at most this timeout per stage it misses: per Flower 1.42's
        # link state it is marked offline once its heartbeat lapses (2 x 30 s), and the SuperLink then
        # answers for it with an unavailable-node error.
        options = FederationOptions(rounds=3, min_sites=2, secure_aggregation=True, dp_enabled=True,
                                    noise_multiplier=1.0, sample_rate=1.0, seed=4, gate_margin=1.0,
                                    round_timeout=25, wait_for_sites=180, local_epochs=1, epsilon_budget=100.0)
        report = run_federation_deployment(registry=fed.registry, settings=fed.settings, options=options,
                                           actor="tests", superlink=superlink_address,
                                           root_certificates=certs.ca_certificate, timeout=1500)
        killer.join(timeout=5)
        intruder_log = (logs / "intruder.log").read_text(errors="replace")
    finally:
        for process in reversed(processes):
            _stop(process)

    assert killed, "school-c was never seen training in round 2"
    first, second, third = report.rounds
    sites_1 = {s["site"]: s for s in first["sites"]}
    assert set(sites_1) == {"school-a", "school-b", "school-c"}  # the intruder never joined
    assert all(s["status"] == "accepted" for s in sites_1.values())
    assert first["status"] == "applied" and first["version_after"]
    assert "Failed to activate SuperNode" in intruder_log  # refused by the SuperLink (unregistered key)

    sites_2 = {s["site"]: s for s in second["sites"]}
    assert sites_2["school-c"]["status"] in ("dropped", "rejected")  # SIGKILLed mid-round
    assert second["counts"]["contributing"] == 2 and second["status"] in ("applied", "rejected")
    assert third["counts"]["contributing"] == 2 and third["status"] in ("applied", "rejected")

    # Promotion at the coordinator; the surviving sites picked up the final version.
    final = report.version_after
    assert final and final != report.version_before
    for home in fed.homes[:2]:
        registry = open_registry(settings_for_site(home))
        with registry.session(read_only=True) as session:
            active = session.scalar(sa.select(MainModelVersion.version).where(MainModelVersion.status == "active"))
            ledgers = list_ledgers(session=session)
            rounds = list_site_rounds(session=session)
        assert active == final
        assert len(rounds) == 3 and all(r.status == "sent" for r in rounds)
        assert ledgers and all(lg.history == ((1.0, 1.0, 3),) for lg in ledgers)  # charged at the site, per round
        registry.engine.dispose()

    # Data locality: no interaction rows at the coordinator; received messages hold only the protocol's records.
    with fed.registry.session(read_only=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Interaction)) == 0
    metas = [json.loads(p.read_text()) for p in sorted(messages.glob("*.json"))]
    assert metas
    for meta in metas:
        for name, values in (meta.get("config_records") or {}).items():
            if name in ALLOWED_CONFIG_KEYS:
                assert set(values) <= ALLOWED_CONFIG_KEYS[name], (name, values)
            elif name == "fitres.metrics":
                assert values == {}, values  # SecAgg+'s envelope: no per-site metrics in the clear
            else:
                assert name in ("secaggplus_configs", "fitres.status"), name
        for name, keys in (meta.get("array_records") or {}).items():
            assert name in ALLOWED_ARRAY_RECORDS or (name == "fitres.parameters" and keys == []), (name, keys)
        for name, values in (meta.get("metric_records") or {}).items():
            assert name == "fitres.num_examples" and values == {"num_examples": 1}, (name, values)

    # SecAgg+: no array the coordinator received is (close to) one site's payload.
    payloads = []
    for home in fed.homes:
        registry = open_registry(settings_for_site(home))
        with registry.session(read_only=True) as session:
            for r in list_site_rounds(session=session):
                tensors, _ = registry.store.load_tensors(r.payload_artifact_sha256)
                payloads.append((tensors["sum"].numpy(), r.settings["payload_scale"]))
        registry.engine.dispose()
    received = []
    for npz in messages.glob("*.npz"):
        with np.load(npz) as data:
            received += [data[k].astype(np.float64).ravel() for k in data.files]
    for payload, scale in payloads:
        for target in (payload, payload / scale):
            assert not any(a.size == target.size and np.allclose(a, target, rtol=1e-3, atol=1e-6)
                           for a in received)
