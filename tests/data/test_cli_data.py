"""`aivo data stats` and `aivo data simulate` as real subprocesses: exit codes, messages, JSON."""

import json

import pandas as pd
import pytest
import typer

from aivo.cli import main
from aivo.cli.data import READER_NAMES, SCHEMA_COLUMNS, _parse_grades, parse_column_map
from aivo.data.readers import reader_names
from aivo.data.schema import CORE_COLUMNS


def test_help_names_the_schema_columns_and_readers_of_the_data_package():
    # The CLI names them without importing pandas at start-up: they must stay the data package's.
    assert SCHEMA_COLUMNS == CORE_COLUMNS
    assert list(READER_NAMES) == reader_names()


def test_parse_column_map():
    assert parse_column_map(["learner_id=student", " correct = is_correct "]) == {
        "learner_id": "student", "correct": "is_correct"}
    assert parse_column_map(None) == {}
    for bad in (["learner_id"], ["=x"], ["learner=student"], ["correct=a", "correct=b"]):
        with pytest.raises(typer.BadParameter):
            parse_column_map(bad)


def test_parse_grades():
    assert _parse_grades("K-12") == tuple(range(13))
    assert _parse_grades("K,1,3-4") == (0, 1, 3, 4)
    with pytest.raises(typer.BadParameter):
        _parse_grades("first")


def test_stats_csv_with_map_and_breakdowns(run_cli, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("student,question,is_correct,subject,grade,item_type,skill\n"
                    "a,q1,1,math,K,timed_drill,s1;s2\n"
                    "a,q2,0,math,K,word_problem,s2\n"
                    "b,q1,1,reading,3,timed_drill,s1\n")
    proc = run_cli("data", "stats", str(path), "--map", "learner_id=student", "--map", "item_id=question",
                   "-m", "correct=is_correct", "--map", "skill_ids=skill", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["learners"] == 2 and out["interactions"] == 3 and out["skills"] == 2
    assert out["multi_skill_interactions"] == 1
    assert out["breakdowns"]["subject"]["math"] == {"interactions": 2, "learners": 1, "correct_rate": 0.5}
    assert list(out["breakdowns"]["grade"]) == ["0", "3"]
    assert out["breakdowns"]["item_type"]["timed_drill"]["interactions"] == 2
    human = run_cli("data", "stats", str(path), "--map", "learner_id=student", "--map", "item_id=question",
                    "--map", "correct=is_correct")
    assert human.returncode == 0 and "by item_type" in human.stdout and "Traceback" not in human.stderr


@pytest.mark.parametrize("name,content,line,fragment", [
    ("answers.csv", "learner_id,item_id,correct\na,q1,1\na,q2,maybe\n", 3, "must be 0 or 1"),
    ("columns.csv", "student,item_id,correct\na,q1,1\n", 1, "missing required column(s): learner_id"),
    ("empty.csv", "", 1, "empty file"),
])
def test_stats_bad_input_is_a_clean_error(run_cli, tmp_path, name, content, line, fragment):
    path = tmp_path / name
    path.write_text(content)
    proc = run_cli("data", "stats", str(path))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())  # rich may wrap long lines
    assert f"{path}:{line}:" in message and fragment in message


def test_stats_corrupt_parquet_and_bad_map(run_cli, tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 not really")
    proc = run_cli("data", "stats", str(path))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and "not a readable Parquet file" in proc.stderr
    proc = run_cli("data", "stats", str(path), "--map", "learner_id")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "SCHEMA=SOURCE" in proc.stderr


def test_simulate_parquet_then_stats(run_cli, tmp_path):
    out = tmp_path / "sim.parquet"
    proc = run_cli("data", "simulate", "--learners", "300", "--interactions", "30", "--seed", "7",
                   "--out", str(out), "--truth-dir", str(tmp_path / "truth"), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["learners"] == 300 and summary["interactions"] == 9000 and summary["seed"] == 7
    assert 0.6 < summary["oracle"]["auc"] < 1 and summary["oracle"]["log_loss"] > 0
    assert sum(summary["accommodation"].values()) == 300
    assert (tmp_path / "truth" / "items.csv").exists()
    frame = pd.read_parquet(out)
    assert len(frame) == 9000 and {"p_true", "accommodation", "item_type"} <= set(frame.columns)
    stats = run_cli("data", "stats", str(out), "--json")
    assert stats.returncode == 0, stats.stderr
    assert set(json.loads(stats.stdout)["breakdowns"]) == {"subject", "grade", "item_type", "accommodation"}


def test_simulate_csv_is_deterministic(run_cli, tmp_path, capsys):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    args = ["data", "simulate", "-n", "50", "--interactions", "10", "--seed", "1", "--grades", "3-5",
            "--subjects", "math,reading", "--out"]
    proc = run_cli(*args, str(first))
    assert proc.returncode == 0, proc.stderr
    assert "oracle AUC" in proc.stdout
    assert main([*args, str(second)]) == 0  # in-process: same code path, no second interpreter start
    assert first.read_bytes() == second.read_bytes()
    frame = pd.read_csv(first)
    assert set(frame["grade"]) <= {3, 4, 5} and set(frame["subject"]) <= {"math", "reading"}


@pytest.mark.parametrize("args,code,fragment", [
    (["--out", "sim.json"], 3, "cannot tell the output format"),
    (["--out", "sim.csv", "--learners", "0"], 2, "--learners"),
    (["--out", "sim.csv", "--subjects", "art"], 2, "no item-type mix for subject 'art'"),
])
def test_simulate_bad_options(tmp_path, monkeypatch, capsys, args, code, fragment):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "simulate", *args]) == code  # `aivo`'s entry point, in-process
    err = capsys.readouterr().err
    assert "Traceback" not in err and fragment in " ".join(err.split())
    assert list(tmp_path.iterdir()) == []  # nothing written
