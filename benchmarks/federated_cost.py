"""Cost of personalization and federation: clone provisioning, local training, aggregation.

Measures, with the real service functions and the ASSIST2015-sized Main Brain
(benchmarks/kt_configs.py, trained for one epoch on 2,000 ASSIST2015 learners: the weights do
not change the cost):

* clone provisioning: `provision_clones` for 10,000 new learners (one transaction per 1,000),
  on SQLite and PostgreSQL; learners/s and bytes stored per learner (database growth plus the
  one shared personal-parameter artifact, divided by the number of learners);
* local training of one learner with 100 interactions: `train_local` (the computation) and
  `train_learner` (the service: registry reads, artifacts, session) -- median and p90 of 20;
* aggregation of 1,000 and of 10,000 learner updates of the model's aggregated size, each in
  its own process (its peak RSS is its own): streamed through `aggregate_updates` (FedAvg with
  user-level DP) from memory (64 distinct updates cycled, so building updates is not timed),
  and from the artifact store through the service's `stream_updates` (read, sha256-verified
  and decoded two threads ahead).

    python benchmarks/federated_cost.py                 # prints the table
    python benchmarks/federated_cost.py --write-results # also updates benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench import KT_DATA, load_average, machine, peak_rss_mib, write_section  # noqa: E402

START, END = "<!-- federated-cost:start -->", "<!-- federated-cost:end -->"
SECRET = "federated-cost-benchmark-secret-key"
PG_URL = os.environ.get("AIVO_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _brain(workdir: Path):
    """The ASSIST2015 benchmark model, one epoch on 2,000 learners (cached in workdir)."""
    import torch

    from aivo.brain.checkpoint import load_checkpoint, save_checkpoint
    from aivo.brain.train import train_main_brain
    from aivo.data.kt_format import read_kt_lines
    from kt_configs import PLANS

    path = workdir / "brain"
    if (path / "main_brain.safetensors").exists():
        return load_checkpoint(path)
    torch.manual_seed(0)
    log = read_kt_lines(KT_DATA / "assist2015" / "train.csv")
    ids = log.frame["learner_id"].unique()
    result = train_main_brain(train=log.select_learners(ids[:2000]), validation=log.select_learners(ids[2000:2500]),
                              config=PLANS["assist2015"].config.replace(max_epochs=1), seed=0)
    save_checkpoint(result.brain, path)
    return result.brain


def _registry(url: str, home: Path):
    from aivo.config import Settings
    from aivo.registry import ArtifactStore, Registry, make_engine, upgrade_database

    engine = make_engine(url)
    upgrade_database(engine)
    settings = Settings(home=home, database_url=url, secret_key=SECRET, num_threads=1)
    return Registry(engine=engine, store=ArtifactStore(str(home / "artifacts"))), settings


def _db_bytes(registry) -> int:
    import sqlalchemy as sa

    if registry.engine.dialect.name == "postgresql":
        with registry.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar())
    # SQLite: outside any transaction (a checkpoint cannot run inside one), on the raw connection.
    raw = registry.engine.raw_connection()
    try:
        db = raw.driver_connection
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages * size)
    finally:
        raw.close()


# --- workers -------------------------------------------------------------------------------
def provisioning(backend: str, workdir: Path, learners: int) -> dict:
    from aivo.services.clones import provision_clones
    from aivo.brain.versions import register_brain

    brain = _brain(workdir)
    home = Path(tempfile.mkdtemp(dir=workdir))
    admin = None
    if backend == "postgresql":
        import sqlalchemy as sa

        name = f"aivo_bench_fed_{secrets.token_hex(4)}"
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{home / 'aivo.db'}"
    try:
        registry, settings = _registry(url, home)
        register_brain(registry=registry, brain=brain, training_metrics={}, data_hash=None, promote=True,
                       actor="bench", reason="bench")
        ids = [f"{i:064x}" for i in range(learners)]  # pseudonym-shaped ids
        provision_clones(registry=registry, settings=settings, learner_ids=ids[:200])  # warm-up (not counted)
        before = _db_bytes(registry)
        started = time.perf_counter()
        result = provision_clones(registry=registry, settings=settings, learner_ids=ids[200:], batch_size=1000)
        seconds = time.perf_counter() - started
        grown = _db_bytes(registry) - before
        registry.engine.dispose()
        return {"backend": backend, "learners": result.created, "seconds": round(seconds, 2),
                "learners_per_s": round(result.created / seconds), "db_bytes_per_learner": round(grown / result.created),
                "artifact_bytes": result.artifact.size,
                "artifact_bytes_per_learner": round(result.artifact.size / (result.created + 200), 3)}
    finally:
        if admin is not None:
            from aivo.registry import dispose_engines

            dispose_engines()
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def local_training(workdir: Path, count: int) -> dict:
    from aivo.data.kt_format import read_kt_lines
    from aivo.data.schema import InteractionLog
    from aivo.services.clones import provision_clones
    from aivo.personalization.local import LocalTrainingConfig, train_local
    from aivo.personalization.parts import partition_parameters
    from aivo.services.local_training import train_learner
    from aivo.registry import import_interactions
    from aivo.brain.versions import register_brain

    brain = _brain(workdir)
    log = read_kt_lines(KT_DATA / "assist2015" / "train.csv")
    sizes = log.frame.groupby("learner_id").size()
    chosen = sizes[sizes >= 100].index[-count:]
    frame = log.frame[log.frame["learner_id"].isin(chosen)].groupby("learner_id", sort=False).head(100)
    frame = frame.reset_index(drop=True)
    partition = partition_parameters(brain.model, frozen_prefixes="encoder")
    config = LocalTrainingConfig()
    pure = []
    for learner in chosen:
        one = InteractionLog(frame[frame["learner_id"] == learner].reset_index(drop=True))
        started = time.perf_counter()
        train_local(brain=brain, history=one, partition=partition, config=config)
        pure.append(time.perf_counter() - started)
    home = Path(tempfile.mkdtemp(dir=workdir))
    registry, settings = _registry(f"sqlite:///{home / 'aivo.db'}", home)
    register_brain(registry=registry, brain=brain, training_metrics={}, data_hash=None, promote=True, actor="b",
                   reason="b")
    from aivo.data.schema import make_log
    from aivo.services.learners import pseudonym_for

    with registry.session() as session:
        import_interactions(session=session, log=make_log(frame), secret_key=settings.resolved_secret_key())
    ids = [pseudonym_for(settings=settings, learner_id=str(learner)) for learner in chosen]
    provision_clones(registry=registry, settings=settings, learner_ids=ids)
    service = []
    for learner in ids:
        started = time.perf_counter()
        train_learner(registry=registry, settings=settings, learner_id=learner, config=config)
        service.append(time.perf_counter() - started)
    registry.engine.dispose()

    def stats(values):
        return {"median_s": round(statistics.median(values), 3),
                "p90_s": round(float(np.percentile(values, 90)), 3), "max_s": round(max(values), 3)}

    return {"learners": len(chosen), "interactions": 100, "epochs": config.epochs, "train_local": stats(pure),
            "train_learner": stats(service)}


def aggregation(workdir: Path, updates: int, source: str) -> dict:
    import torch

    from aivo.federated.aggregate import aggregate_updates
    from aivo.federated.dp import UserLevelDP
    from aivo.federated.updates import stream_updates
    from aivo.federated.strategies import make_strategy
    from aivo.federated.updates import LearnerUpdate, UpdateSpec, update_metadata
    from aivo.personalization.parts import partition_parameters
    from aivo.registry import ArtifactStore

    brain = _brain(workdir)
    params = dict(brain.model.named_parameters())
    names = partition_parameters(brain.model, frozen_prefixes="encoder").aggregated
    spec = UpdateSpec(main_version="v1", shapes={n: tuple(params[n].shape) for n in names})
    rng = np.random.default_rng(0)
    base = {n: torch.from_numpy(rng.normal(0, 0.01, size=spec.shapes[n]).astype(np.float32)) for n in names}
    store = ArtifactStore(str(workdir / "update_store"))
    digests = []
    prebuilt = [{n: v + (i * 1e-6) for n, v in base.items()} for i in range(64)] if source == "memory" else []
    Entry = namedtuple("Entry", "learner_id training_session_id samples update_artifact_sha256")
    if source == "store":  # write the artifacts first (not timed): distinct contents, content-addressed
        existing = {a.sha256 for a in store.iter_artifacts()}
        for i in range(updates):
            tensors = {n: v + (i * 1e-6) for n, v in base.items()}
            ref = store.put_tensors(tensors, metadata=update_metadata(main_version="v1", num_examples=100 + i % 50))
            digests.append(ref.sha256)
        del existing

    failures: list = []

    def stream():
        if source == "store":  # the service's reader: hash-verified loads, read ahead in two threads
            entries = [Entry(f"l{i}", i, 100, d) for i, d in enumerate(digests)]
            yield from stream_updates(store, entries, {}, failures)
        else:  # 64 distinct updates held in memory, cycled: the producer's cost is not timed
            for i in range(updates):
                yield LearnerUpdate(f"l{i}", prebuilt[i % len(prebuilt)], "v1", 100 + i % 50)

    strategy = UserLevelDP(noise_multiplier=1.0, clip_norm=1.0, sample_rate=1.0).wrap(make_strategy("fedavg"),
                                                                                      num_eligible=updates)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    out = aggregate_updates(updates=stream(), spec=spec, strategy=strategy, clip_norm=1.0, server_learning_rate=1.0,
                            generator=np.random.default_rng(1))
    seconds = time.perf_counter() - started
    assert out.num_accepted == updates and not failures, (out.rejected[:3], failures[:3])
    return {"updates": updates, "source": source, "parameters": spec.numel,
            "update_bytes": spec.numel * 4, "seconds": round(seconds, 2), "updates_per_s": round(updates / seconds),
            "peak_rss_mib": round(peak_rss_mib()), "rss_before_mib": round(rss_before),
            "state_mib": round(out.state_bytes / 2**20, 2)}


# --- parent -----------------------------------------------------------------------------------
def run_child(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(results: dict, command: str) -> str:
    lines = [f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; 1-minute load average {load_average():.1f}; torch threads 1.",
             f"Reproduce: `{command}`", "",
             "| measure | target | result |", "|---|---|---|"]
    for p in results["provisioning"]:
        lines.append(f"| clone provisioning, {p['learners']:,} learners, {p['backend']} (1,000 per transaction) | "
                     f">= 1,000 learners/s | {p['learners_per_s']:,} learners/s ({p['seconds']} s); "
                     f"{p['db_bytes_per_learner']} database bytes per learner + one shared "
                     f"{p['artifact_bytes']:,}-byte artifact |")
    lt = results["local"]
    lines.append(f"| local training, one learner with 100 interactions (`train_local`, {lt['epochs']} epochs + "
                 f"personal fit + fallback check + refit; {lt['learners']} learners) | < 1 s | median "
                 f"{lt['train_local']['median_s']} s, p90 {lt['train_local']['p90_s']} s |")
    lines.append(f"| same through the service (`train_learner`: registry reads, two artifacts, session row) | | "
                 f"median {lt['train_learner']['median_s']} s, p90 {lt['train_learner']['p90_s']} s |")
    for a in results["aggregation"]:
        lines.append(f"| aggregation, {a['updates']:,} updates of {a['parameters']:,} values "
                     f"({a['update_bytes'] / 1024:.0f} KiB) from {a['source']}, FedAvg + user-level DP | "
                     f">= 1,000 updates/s, memory flat | {a['updates_per_s']:,} updates/s ({a['seconds']} s), "
                     f"peak RSS {a['peak_rss_mib']} MiB (round state {a['state_mib']} MiB) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs="*")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--learners", type=int, default=10_000)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        import torch

        torch.set_num_threads(1)
        kind, workdir, *rest = args.worker
        workdir = Path(workdir)
        if kind == "provision":
            out = provisioning(rest[0], workdir, int(rest[1]))
        elif kind == "local":
            out = local_training(workdir, int(rest[0]))
        else:
            out = aggregation(workdir, int(rest[0]), rest[1])
        print(json.dumps(out))
        return 0
    command = "python benchmarks/federated_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        run_child(["local", tmp, "20"])  # also trains and caches the model
        results = {"local": run_child(["local", tmp, "20"]),
                   "provisioning": [run_child(["provision", tmp, b, str(args.learners + 200)])
                                    for b in ("sqlite", "postgresql")],
                   "aggregation": [run_child(["aggregate", tmp, str(n), source])
                                   for source in ("memory", "store") for n in (1_000, 10_000)]}
    table = render(results, command.strip())
    print(table)
    print(json.dumps(results, indent=2))
    if args.write_results:
        write_section(heading="Personalization and federation: cost", start=START, end=END, body=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
