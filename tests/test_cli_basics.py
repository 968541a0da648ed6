def test_usage_error_is_clean(run_cli):
    proc = run_cli("data", "stats")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Missing argument" in proc.stderr


def test_data_error_exit_code_and_message(run_cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("3\n1,2\n0,1,1\n")
    proc = run_cli("data", "stats", str(bad))
    assert proc.returncode == 3
    assert f"{bad}:2:" in proc.stderr and "Traceback" not in proc.stderr


def test_stats_json(run_cli, kt_data):
    import json

    proc = run_cli("data", "stats", str(kt_data / "statics" / "test.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["learners"] == 104 and out["interactions"] == 59113
