"""The CLI as a user starts it: `python -m aivo` in a fresh interpreter (run_cli_process), so that
start-up (importing every command module) is part of each check."""

import subprocess
import sys


def test_usage_error_is_clean(run_cli_process):
    proc = run_cli_process("data", "stats")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Missing argument" in proc.stderr


def test_data_error_exit_code_and_message(run_cli_process, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("3\n1,2\n0,1,1\n")
    proc = run_cli_process("data", "stats", str(bad))
    assert proc.returncode == 3
    assert f"{bad}:2:" in proc.stderr and "Traceback" not in proc.stderr


def test_stats_json(run_cli_process, kt_data):
    import json

    proc = run_cli_process("data", "stats", str(kt_data / "statics" / "test.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["learners"] == 104 and out["interactions"] == 59113


def test_an_invalid_setting_is_a_message_not_a_traceback(run_cli_process, aivo_home):
    proc = run_cli_process("registry", "stats", env={"AIVO_SEED": "abc", "WEEKLY_RETRAINING_DAY": "funday"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "AIVO_SEED" in proc.stderr and "'abc'" in proc.stderr
    # The same from a .env file in the working directory.
    (aivo_home.parent / ".env").write_text("AIVO_BATCH_SIZE=0\n")
    proc = run_cli_process("registry", "stats")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "AIVO_BATCH_SIZE" in proc.stderr


def test_an_unreachable_database_is_a_message_without_the_password(run_cli_process):
    proc = run_cli_process("registry", "stats",
                   env={"AIVO_DATABASE_URL": "postgresql://user:hunter2@127.0.0.1:1/x", "AIVO_SECRET_KEY": "k" * 32})
    assert proc.returncode == 10, proc.stderr
    assert "Traceback" not in proc.stderr and "unavailable" in proc.stderr
    assert "hunter2" not in proc.stderr


def test_an_unknown_migration_revision_is_a_message(run_cli_process):
    proc = run_cli_process("db", "upgrade", "--revision", "bogus")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "bogus" in proc.stderr


def test_a_first_migration_says_one_thing(run_cli_process):
    """A fresh registry's upgrade reports itself once, without Alembic's per-plugin INFO chatter."""
    proc = run_cli_process("db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert "setup plugin" not in proc.stderr and "upgraded from empty" in proc.stdout + proc.stderr


def test_verbose_shows_the_traceback_of_a_reported_error(run_cli_process):
    proc = run_cli_process("--verbose", "db", "upgrade", "--revision", "bogus")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_the_cli_starts_without_the_heavy_libraries():
    # Every command (and `aivo --help`) pays for what `aivo.cli` imports: the data, registry and model
    # libraries load inside the commands that use them.
    code = ("import sys, aivo.cli; "
            "print(sorted(m for m in ('numpy', 'pandas', 'sqlalchemy', 'alembic', 'torch', 'transformers') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
