"""API ingest benchmark: 100,000 interactions through POST /v1/interactions, in batches.

Starts a real `aivo serve` (fresh AIVO_HOME; SQLite, and PostgreSQL in a fresh database
`aivo_bench_<random>` that is dropped afterwards), creates a service key, encodes the batches
as JSON bodies up front (the client's encoding is not the server's work), then sends them from
`--clients` concurrent HTTP clients and times first request to last answer. Afterwards the
stored row count is checked against what was sent. Target: >= 10,000 interactions/s.

    python benchmarks/api_ingest.py                        # both backends
    python benchmarks/api_ingest.py --backend sqlite --interactions 20000    # quick look
    python benchmarks/api_ingest.py --write-results        # also update benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_common import ServeProcess, aivo_env, create_key, load_average, machine, write_subsection  # noqa: E402

TARGET_PER_S = 10_000
PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def make_bodies(*, interactions: int, learners: int, batch: int, seed: int) -> list[bytes]:
    """Rows in learner-major order (a school system sends each learner's new attempts), cut into batches."""
    rng = np.random.default_rng(seed)
    per_learner = interactions // learners
    start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    rows = []
    for learner in range(learners):
        items = rng.integers(0, 400, size=per_learner)
        correct = (rng.random(per_learner) < 0.65).astype(int)
        seconds = rng.gamma(2.0, 15.0, size=per_learner)
        for order in range(per_learner):
            rows.append({"learner_id": f"bench-{learner:05d}", "item_id": f"item-{items[order]}",
                         "skill_ids": f"skill-{items[order] % 40}", "correct": int(correct[order]), "order": order,
                         "timestamp": (start + timedelta(minutes=order)).isoformat(),
                         "response_time_s": round(float(seconds[order]), 2), "subject": "math", "grade": 5,
                         "item_type": "multiple_choice"})
    return [json.dumps({"interactions": rows[i:i + batch]}).encode() for i in range(0, len(rows), batch)]


def send_all(base: str, token: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def worker() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}",
                                                  "content-type": "application/json"}, timeout=120) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    _, body = queue.pop(0)
                started = time.perf_counter()
                try:
                    r = client.post("/v1/interactions", content=body)
                    ok = r.status_code == 201
                    detail = "" if ok else f"{r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, repr(exc)
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if not ok:
                        errors.append(detail)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began, latencies, errors


def run_backend(backend: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="aivo-ingest-bench-") as tmp:
        home = Path(tmp) / "home"
        url, admin, dbname = None, None, None
        if backend == "postgresql":
            admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
            dbname = f"aivo_bench_{secrets.token_hex(4)}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
            url = sa.engine.make_url(PG_SERVER_URL).set(database=dbname).render_as_string(hide_password=False)
        try:
            env = aivo_env(home, url, AIVO_MAX_INGEST_BATCH=str(args.batch))
            import subprocess

            subprocess.run([sys.executable, "-m", "aivo", "db", "upgrade"], env=env, check=True, capture_output=True)
            token = create_key(env=env)
            bodies = make_bodies(interactions=args.interactions, learners=args.learners, batch=args.batch,
                                 seed=args.seed)
            load_before = load_average()
            with ServeProcess(env=env, workers=args.workers, log_path=Path(tmp) / "serve.log") as server:
                seconds, latencies, errors = send_all(server.base, token, bodies, args.clients)
                with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}) as c:
                    stored = c.get("/stats").json()["registry"]
            load_after = load_average()
            engine = sa.create_engine(url or f"sqlite:///{home / 'aivo.db'}")
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT count(*) FROM interactions")).scalar_one()
            engine.dispose()
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
                admin.dispose()
    return {"backend": backend, "seconds": seconds, "rate": args.interactions / seconds,
            "batches": len(latencies), "p50_ms": statistics.median(latencies) * 1e3,
            "max_ms": max(latencies) * 1e3, "errors": errors, "rows_stored": rows,
            "learners_stored": stored["total_learners"], "load_before": load_before, "load_after": load_after}


def report(results: list[dict], args, command: str) -> str:
    lines = ["### Ingest: POST /v1/interactions", "",
             f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; "
             f"{args.interactions:,} interactions of {args.learners:,} learners in batches of {args.batch:,}, "
             f"{args.clients} client(s), `aivo serve --workers {args.workers}`; server and client share the cores.",
             f"Reproduce: `{command}`", "",
             "| backend | interactions/s | total | per batch p50 / max | errors | rows stored | load avg before / after |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        verdict = "meets" if r["rate"] >= TARGET_PER_S and not r["errors"] else "MISSES"
        lines.append(f"| {r['backend']} | {r['rate']:,.0f} ({verdict} the {TARGET_PER_S:,}/s target) | "
                     f"{r['seconds']:.2f} s | {r['p50_ms']:.0f} / {r['max_ms']:.0f} ms | {len(r['errors'])} | "
                     f"{r['rows_stored']:,} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--learners", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    command = "python benchmarks/api_ingest.py" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}" for name in
        ("backend", "interactions", "learners", "batch", "clients", "workers", "seed")
        if getattr(args, name) != parser.get_default(name))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = [run_backend(b, args) for b in backends]
    for r in results:
        if r["errors"]:
            print(f"{r['backend']}: {len(r['errors'])} failed batches, first: {r['errors'][0]}", file=sys.stderr)
        if r["rows_stored"] != args.interactions:
            print(f"{r['backend']}: {r['rows_stored']} rows stored, {args.interactions} sent", file=sys.stderr)
    section = report(results, args, command)
    print(section)
    if args.write_results:
        write_subsection("api_ingest", section)
    ok = all(r["rate"] >= TARGET_PER_S and not r["errors"] and r["rows_stored"] == args.interactions for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
