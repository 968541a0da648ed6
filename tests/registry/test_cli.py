"""The registry CLI as real processes (forked by run_cli; one starts `python -m aivo`) with --json,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from aivo.config import Settings
from aivo.data.privacy import pseudonymize_learner_id
from aivo.data.readers import read_interactions
from aivo.registry import (
    make_engine,
    promote_main_version,
    record_training_session,
    register_learner_model,
    register_main_version,
)
from aivo.registry.artifacts import ArtifactStore
from aivo.registry.db import session_scope
from aivo.registry.migrate import head_revision, upgrade_database
from tests.registry.conftest import empty_pg_database

PG_KEY = "cli-test-secret-key-0123456789abcdef"


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def _fails(proc, code: int, text: str):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and text in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture
def pg_env(pg_scratch_url, aivo_home):
    """An empty PostgreSQL database: `aivo db upgrade` must create the schema."""
    url = empty_pg_database(pg_scratch_url)
    return {"AIVO_DATABASE_URL": url, "AIVO_SECRET_KEY": PG_KEY}, Settings(home=aivo_home, database_url=url,
                                                                        secret_key=PG_KEY)


def _register_versions(settings: Settings, names: list[str]) -> None:
    engine = make_engine(settings.resolved_database_url)
    store = ArtifactStore.from_settings(settings)
    with session_scope(engine) as s:
        for name in names:
            register_main_version(session=s, store=store, version=name, artifact=store.put_bytes(name.encode() * 50),
                                  architecture={"d": 8}, training_metrics={"auc": 0.8})
    engine.dispose()


def test_cli_flow_embedded(run_cli, aivo_home, kt_data):
    """Every registry command once, on the default embedded database."""
    settings, env = Settings(home=aivo_home), {}
    data = kt_data / "statics" / "test.csv"
    first = _ok(run_cli("data", "import", str(data), "--tenant", "school-1", "--json", env=env))
    assert (first["rows_read"], first["rows_inserted"], first["learners"]) == (59113, 59113, 104)

    _register_versions(settings, ["v1", "v2"])
    assert [v["version"] for v in _ok(run_cli("registry", "list", "--json", env=env))] == ["v2", "v1"]
    with session_scope(make_engine(settings.resolved_database_url)) as s:
        promote_main_version(session=s, version="v1", actor="ops", reason="first")
    assert _ok(run_cli("registry", "promote", "v2", "--reason", "better", "--json", env=env))["status"] == "active"
    back = _ok(run_cli("registry", "rollback", "--reason", "regression", "--json", env=env))
    assert back["version"] == "v1" and back["status"] == "active"
    shown = _ok(run_cli("registry", "show", "v2", "--json", env=env))
    assert (shown["status"], shown["training_metrics"]) == ("archived", {"auc": 0.8})
    stats = _ok(run_cli("registry", "stats", "--json", env=env))
    assert (stats["active_main_version"], stats["total_learners"]) == ("v1", 104)
    _fails(run_cli("registry", "promote", "v9", "--reason", "x", env=env), 4, "does not exist")

    raw_id = str(read_interactions(data).frame["learner_id"].iloc[0])
    exported = _ok(run_cli("learner", "export", raw_id, env=env))
    pseudonym = pseudonymize_learner_id(raw_id, key=settings.resolved_secret_key())
    assert exported["learner"] == {"learner_id": pseudonym, "tenant": "school-1",
                                   "created_at": exported["learner"]["created_at"]}
    assert len(exported["data"]["interactions"]) > 0
    assert raw_id not in json.dumps(exported["data"])
    _fails(run_cli("learner", "delete", raw_id, env=env), 2, "--yes")  # no silent erasure
    deleted = _ok(run_cli("learner", "delete", raw_id, "--yes", "--json", env=env))
    assert deleted["rows_deleted"]["interactions"] == len(exported["data"]["interactions"])
    _fails(run_cli("learner", "export", pseudonym, "--pseudonym", env=env), 4, "does not exist")

    gc = _ok(run_cli("registry", "gc", "--json", env=env))
    assert gc["dry_run"] and gc["deleted"] == [] and gc["referenced"] == 2
    verify = _ok(run_cli("registry", "verify", "--deep", "--json", env=env))
    assert verify["ok"] and verify["active_versions"] == 1

    # A learner model: listed, shown with its history, exported to a file.
    other_raw = str(read_interactions(data).frame["learner_id"].iloc[-1])
    other = pseudonymize_learner_id(other_raw, key=settings.resolved_secret_key())
    store = ArtifactStore.from_settings(settings)
    with session_scope(make_engine(settings.resolved_database_url)) as s:
        register_learner_model(session=s, store=store, learner_id=other, source_version="v1", tenant="school-1",
                               artifact=store.put_bytes(b"personal head" * 20))
        record_training_session(session=s, store=store, learner_id=other, epochs=2, batch_size=8, samples=40,
                                final_loss=0.5, final_accuracy=0.7)
    listed = _ok(run_cli("registry", "list", "--learners", "--json", env=env))
    assert [m["learner_id"] for m in listed] == [other]
    shown = _ok(run_cli("registry", "show", "--learner", other_raw, "--json", env=env))
    assert shown["model"]["source_version"] == "v1" and len(shown["sessions"]) == 1
    out = aivo_home.parent / "export.json"
    assert run_cli("learner", "export", other_raw, "--out", str(out), env=env).returncode == 0
    assert json.loads(out.read_text())["learner"]["learner_id"] == other
    _fails(run_cli("learner", "export", other_raw, "--out", str(out / "x.json"), env=env),  # under a file
           1, "File exists")

    # GC for real: an orphan is deleted, nothing referenced is.
    orphan = store.put_bytes(b"orphan" * 100)
    applied = _ok(run_cli("registry", "gc", "--apply", "--min-age-hours", "0", "--json", env=env))
    assert not applied["dry_run"] and orphan.sha256 in applied["deleted"]
    assert _ok(run_cli("registry", "verify", "--deep", "--json", env=env))["ok"]


def test_cli_flow_postgresql(run_cli, pg_env, kt_data):
    env, settings = pg_env
    _fails(run_cli("registry", "stats", "--json", env=env), 7, "aivo db upgrade")  # never created implicitly
    assert _ok(run_cli("db", "upgrade", "--json", env=env))["to_revision"] == head_revision()
    data = kt_data / "statics" / "test.csv"
    first = _ok(run_cli("data", "import", str(data), "--json", env=env))
    assert (first["rows_inserted"], first["learners"]) == (59113, 104)
    _register_versions(settings, ["v1"])
    assert _ok(run_cli("registry", "promote", "v1", "--reason", "first", "--json", env=env))["status"] == "active"
    raw_id = str(read_interactions(data).frame["learner_id"].iloc[-1])
    deleted = _ok(run_cli("learner", "delete", raw_id, "--yes", "--json", env=env))
    assert deleted["rows_deleted"]["learners"] == 1
    stats = _ok(run_cli("registry", "stats", "--json", env=env))
    assert (stats["active_main_version"], stats["total_learners"]) == ("v1", 103)


def test_outdated_schema_stops_with_the_command_to_run(run_cli, aivo_home):
    engine = make_engine(f"sqlite:///{aivo_home / 'aivo.db'}")
    upgrade_database(engine, revision="0001")
    engine.dispose()
    err = _fails(run_cli("registry", "stats"), 7, "run `aivo db upgrade`")
    assert "revision 0001" in err
    assert _ok(run_cli("db", "upgrade", "--json"))["from_revision"] == "0001"
    assert _ok(run_cli("registry", "stats", "--json"))["total_main_versions"] == 0


def test_fresh_embedded_home_works_at_once(run_cli_process):
    stats = _ok(run_cli_process("registry", "stats", "--json"))
    assert stats["total_learner_models"] == 0
    proc = run_cli_process("registry", "list", "--learners")
    assert proc.returncode == 0 and "learner models" in proc.stdout
