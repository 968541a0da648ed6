"""`aivo evaluate-policy`: bad input is refused with a message and exit code 2; a tiny run works."""

import json

import pytest


@pytest.mark.parametrize("args,message", [
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["--items", "0,100"], "every N must be a positive number"),
    (["--items", "-5"], "every N must be a positive number"),
    (["--items", "abc"], "separated by commas"),
    (["--learner-model", "nope"], "unknown learner model 'nope'"),
    (["--learners", "0"], "num_learners must be a positive integer"),
    (["--items", "2"], "must exceed the 3 placement items"),
])
def test_bad_input_is_refused_before_any_work(run_cli, args, message):
    result = run_cli("evaluate-policy", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_tiny_run_reports_every_policy_and_writes_the_report(run_cli, aivo_home, tmp_path):
    out, plot = tmp_path / "report.json", tmp_path / "plot.png"
    result = run_cli("evaluate-policy", "--learner-model", "bkt-forgetting", "--learners", "5", "--items", "6,10",
                     "--brain-learners", "120", "--brain-interactions", "30", "--brain-epochs", "1",
                     "--out", str(out), "--plot", str(plot), "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    policies = summary["learner_models"]["bkt-forgetting"]["policies"]
    assert list(policies) == ["fixed-curriculum", "random-in-grade", "mastery-bkt", "aivo-target", "aivo-gain"]
    for row in policies.values():
        assert set(row["post_test"]) == {"6", "10"} and row["post_test"]["10"]["n"] == 5
        assert 0 < row["post_test"]["10"]["mean"] < 1
    assert json.loads(out.read_text())["spec"]["num_learners"] == 5
    assert plot.stat().st_size > 1000 and (aivo_home / "policy-evaluation" / "latest.json").exists()
