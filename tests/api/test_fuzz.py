"""The API fuzzed as a careless or hostile client would: schemathesis, every check, against a
real `aivo serve` process on SQLite and on PostgreSQL, bounded in time for CI.

Every run must end with no server error (5xx), no answer that breaks the OpenAPI document
(status, content type, headers, body schema), no invalid input accepted, and no server log line
of an unhandled error. The seed is fixed for CI; FUZZ_SEED=random (or a number) explores, and
FUZZ_SECONDS sets the budget per backend. A failure prints the seed and schemathesis'
reproduction (curl) lines.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aivo.registry.db import make_engine
from aivo.registry.migrate import upgrade_database
from tests.api.conftest import BACKENDS, free_port, make_keys, make_settings, seed_registry

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FUZZ_SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))  # per backend: the schemathesis time budget
# A fixed seed keeps CI reproducible; FUZZ_SEED=random explores (read now: fixtures clear AIVO_*).
FUZZ_SEED = os.environ.get("FUZZ_SEED", "234550425")
CONFIG = Path(__file__).with_name("schemathesis.toml")
TINY_TUTOR = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1, train_steps=10,
                  learning_rate=5e-3, seed=0)


@dataclass
class Served:
    base: str
    tokens: dict[str, str]
    log_path: Path
    process: subprocess.Popen


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory):
    from aivo.tutor.tiny_model import TinyModelSpec, build_tiny_model

    root = tmp_path_factory.mktemp(f"fuzz_{request.param}")
    home = root / "home"
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("api_pg_databases").create()
        engine = make_engine(url)
        upgrade_database(engine)
        engine.dispose()
    settings = make_settings(home, url)
    registry = seed_registry(settings)
    tokens = make_keys(settings, registry)
    tutor_dir = root / "tiny-tutor"
    build_tiny_model(output_dir=tutor_dir, spec=TinyModelSpec(**TINY_TUTOR))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_")}
    env.update({"AIVO_HOME": str(home), "AIVO_SECRET_KEY": settings.secret_key, "AIVO_NUM_THREADS": "1",
                "AIVO_SCHEDULER_ENABLED": "false", "AIVO_RECOMMENDER_PROCESSES": "0", "AIVO_API_KEY_CACHE_S": "5",
                "AIVO_MAX_INGEST_BATCH": "200", "AIVO_BRAIN_MODEL": str(tutor_dir), "AIVO_MAX_NEW_TOKENS": "16",
                "AIVO_TUTOR_CLONE_EPOCHS": "1"})
    if url:
        env["AIVO_DATABASE_URL"] = url
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "aivo", "serve", "--port", str(port), "--no-scheduler"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"aivo serve exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"aivo serve did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Served(base=base, tokens=tokens, log_path=log_path, process=process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_fuzzing_finds_no_server_error_and_no_schema_violation(served, tmp_path):
    # One schemathesis worker: with two threads, hypothesis's ast.parse of its filter lambdas raced
    # inside CPython 3.11 ("SystemError: AST constructor recursion depth mismatch", a crash of the
    # fuzzer itself, no request involved) once in a full run.
    seed = random.randrange(2**31) if FUZZ_SEED == "random" else int(FUZZ_SEED)
    report = tmp_path / "report.json"
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{served.base}/openapi.json",
               # `--checks all` overrides a check turned off in the config: use_after_free is excluded here
               # (see schemathesis.toml: a cancelled job and a revoked site stay readable by design)
               "--checks", "all", "--exclude-checks", "use_after_free",
               "--max-time", str(FUZZ_SECONDS), "--seed", str(seed), "--workers", "1",
               "--header", f"Authorization: Bearer {served.tokens['admin']}", "--request-timeout", "90",
               "--report", "json", "--report-json-path", str(report), "--no-color"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=FUZZ_SECONDS + 120, cwd=tmp_path)
    out = proc.stdout  # the failures' details come first, the summary last
    output = (out if len(out) <= 14000 else out[:8000] + "\n...\n" + out[-6000:]) + proc.stderr[-3000:]
    server_log = served.log_path.read_text(errors="replace")
    assert proc.returncode == 0, f"schemathesis (seed {seed}) found problems:\n{output}"
    generated = re.search(r"(\d+) generated", proc.stdout)
    tested = re.search(r"Tested: (\d+)", proc.stdout)
    print(f"schemathesis seed {seed}: {generated.group(0) if generated else '?'} test cases, "
          f"{tested.group(1) if tested else '?'} operations tested in {FUZZ_SECONDS} s")
    assert generated and int(generated.group(1)) >= 1, output  # the run reached the API (how much: printed)
    assert json.loads(report.read_text()), output
    assert "unhandled error" not in server_log and "Traceback" not in server_log, server_log[-5000:]
