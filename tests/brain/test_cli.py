import json

import numpy as np

from .helpers import random_log


def write_csv(path, num_learners=40):
    frame = random_log(num_learners=num_learners, length=30, seed=2).frame.copy()
    frame["p_true"] = np.where(frame["correct"] == 1, 0.7, 0.4)
    frame["accommodation"] = np.where(frame["learner_id"].str[-1].astype(int) % 2 == 0, "none", "dyslexia")
    frame.to_csv(path, index=False)
    return path


def test_train_main_then_evaluate(run_cli, tmp_path):
    data = write_csv(tmp_path / "log.csv")
    config = tmp_path / "brain.json"
    config.write_text(json.dumps({"embed_dim": 8, "hidden_dim": 8, "head_hidden_dim": 8, "evidence_dim": 4}))
    out = tmp_path / "model"
    proc = run_cli("train-main", "--data", str(data), "--out", str(out), "--epochs", "2", "--seed", "1",
                   "--config", str(config), "--group-by", "accommodation", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["split"]["train"]["learners"] == 32 and report["epochs_run"] <= 2
    assert 0 < report["test"]["metrics"]["auc"] < 1 and report["test"]["oracle"]["auc"] == 1.0
    assert set(report["test"]["subgroups"]["accommodation"]) <= {"none", "dyslexia"}
    assert (out / "main_brain.safetensors").exists() and (out / "main_brain.json").exists()

    proc = run_cli("evaluate", "--model", str(out), "--data", str(data), "--group-by", "accommodation", "--json")
    assert proc.returncode == 0, proc.stderr
    evaluation = json.loads(proc.stdout)
    assert evaluation["num_scored"] == evaluation["num_rows"] - 40
    assert set(evaluation["subgroups"]["accommodation"]) == {"none", "dyslexia"}

    proc = run_cli("evaluate", "--model", str(out), "--data", str(data))  # tables for people
    assert proc.returncode == 0 and "auc" in proc.stdout


def test_user_mistakes_exit_cleanly(run_cli, tmp_path):
    data = write_csv(tmp_path / "log.csv", num_learners=10)
    proc = run_cli("evaluate", "--model", str(tmp_path / "missing"), "--data", str(data))
    assert proc.returncode == 4 and "no Main Brain checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"encoder": "transformer-xl"}')
    proc = run_cli("train-main", "--data", str(data), "--out", str(tmp_path / "m"), "--config", str(bad))
    assert proc.returncode == 2 and "encoder" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("train-main", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "m"))
    assert proc.returncode == 3 and "not found" in proc.stderr
    proc = run_cli("train-main", "--data", str(data))
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("train-main", "--data", str(data), "--out", str(tmp_path / "m"), "--group-by", "nonexistent")
    assert proc.returncode == 3 and "nonexistent" in proc.stderr
    (tmp_path / "afile").write_text("x")
    proc = run_cli("train-main", "--data", str(data), "--out", str(tmp_path / "afile"))
    assert proc.returncode == 2 and "not a folder" in proc.stderr


def test_import_train_on_the_registry_then_recommend(run_cli, tmp_path):
    """The path a user takes without the demo: import a file, train on the registry (a registered,
    promoted version), ask for a learner's recommendations."""
    import pandas as pd

    data = write_csv(tmp_path / "log.csv", num_learners=30)
    learner = str(pd.read_csv(data)["learner_id"].iloc[0])
    assert run_cli("data", "import", str(data)).returncode == 0
    proc = run_cli("recommend", learner)
    assert proc.returncode == 4 and "aivo train-main" in proc.stderr and "Traceback" not in proc.stderr
    config = tmp_path / "brain.json"
    config.write_text(json.dumps({"embed_dim": 8, "hidden_dim": 8, "head_hidden_dim": 8, "evidence_dim": 4}))
    proc = run_cli("train-main", "--epochs", "2", "--config", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["promoted"] and report["version"]["version"] == "aivo-main-v1"
    proc = run_cli("recommend", learner, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["next_items"] and {d["decision"] for d in out["skills"]} <= {"LEVEL_UP", "LEVEL_DOWN", "STAY", "REVIEW"}
    proc = run_cli("train-main", "--epochs", "1", "--config", str(config), "--promote", "never", "--json")
    assert proc.returncode == 0 and not json.loads(proc.stdout)["promoted"]
