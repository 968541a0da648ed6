"""`aivo tutor ...` as real processes (forked by run_cli, see tests/conftest.py)."""

from __future__ import annotations

import json

from .conftest import clone_request, make_settings, promote_main_version


def test_init_tiny_builds_and_refuses_to_overwrite(run_cli, tmp_path):
    target = tmp_path / "tiny"
    proc = run_cli("tutor", "init-tiny", "--output", str(target), "--steps", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["parameters"] > 100_000 and info["train_steps"] == 0
    assert (target / "aivo_model.json").exists() and (target / "chat_template.jinja").exists()
    again = run_cli("tutor", "init-tiny", "--output", str(target), "--steps", "0")
    assert again.returncode == 5 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_init_tiny_reports_progress_when_not_on_a_terminal(run_cli, tmp_path):
    proc = run_cli("tutor", "init-tiny", "--output", str(tmp_path / "t"), "--steps", "10")
    assert proc.returncode == 0, proc.stderr
    assert "tokenizer, then 10 training steps" in proc.stdout
    assert proc.stdout.count("step ") >= 10 and "step 10/10, loss" in proc.stdout


def test_generate_without_a_model_says_how_to_get_one(run_cli):
    proc = run_cli("tutor", "generate", "What is a fraction?")
    assert proc.returncode == 2 and "aivo tutor init" in proc.stderr and "Traceback" not in proc.stderr


def test_generate_stream(run_cli, tiny_model_dir):
    # (--json output goes through the same service call as /v1/generate, tested over HTTP)
    proc = run_cli("tutor", "generate", "What is a fraction?", "--grade", "3", "-a", "adhd", "-n", "12",
                   "--seed", "5", "--stream", env={"AIVO_BRAIN_MODEL": str(tiny_model_dir)})
    assert proc.returncode == 0, proc.stderr
    assert "shaped answer:" in proc.stdout and "FK grade" in proc.stdout and "for grade 3" in proc.stdout


def test_assess_json(run_cli):
    proc = run_cli("tutor", "assess", "Congress makes the laws", "-r", "The legislative branch makes laws.",
                   "-k", "congress", "-k", "laws", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["correctness"] > 70 and out["matched_keywords"] == ["congress", "laws"]


def test_clone_then_status(run_cli, aivo_home, tiny_model_dir, tmp_path):
    settings = make_settings(aivo_home, tiny_model_dir)
    promote_main_version(settings)
    data = tmp_path / "clone.json"
    data.write_text(clone_request("cli-kid").model_dump_json())
    env = {"AIVO_BRAIN_MODEL": str(tiny_model_dir), "AIVO_TUTOR_LORA_R": "4", "AIVO_TUTOR_LORA_ALPHA": "8"}
    proc = run_cli("tutor", "clone", str(data), "--epochs", "2", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed" and out["adapter_sha256"]
    status = run_cli("tutor", "clone-status", out["clone_id"], "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "completed"
    bad = tmp_path / "bad.json"
    bad.write_text('{"student_id": ""}')
    proc = run_cli("tutor", "clone", str(bad), env=env)
    assert proc.returncode == 3 and "not a valid clone request" in proc.stderr


def test_content_library_import_list_search_and_bad_files(run_cli, tmp_path):
    lessons = tmp_path / "lessons.md"
    lessons.write_text("# Photosynthesis\nsubject: Science\ngrade: 5\nskill: photosynthesis\n\n"
                       "Plants make their own food in their leaves from sunlight, water and carbon dioxide.\n\n"
                       "# Fractions\nsubject: Math\ngrade: 3\nskill: fractions\n\n"
                       "A fraction names a part of a whole: the denominator counts the equal parts.\n")
    proc = run_cli("tutor", "content", "import", str(lessons), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["lessons"] == 2
    again = run_cli("tutor", "content", "import", str(lessons), "--json")  # same ids: replaced, not doubled
    assert json.loads(again.stdout)["imported"][0]["replaced"] == 2 and json.loads(again.stdout)["lessons"] == 2
    listed = json.loads(run_cli("tutor", "content", "list", "--json").stdout)
    assert {row["title"] for row in listed} == {"Photosynthesis", "Fractions"}
    hits = json.loads(run_cli("tutor", "content", "search", "how do plants make food", "-g", "5", "--json").stdout)
    assert hits and hits[0]["title"] == "Photosynthesis"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "x", "subject": "Math", "grade": 14, "skill": "y", "text": "z"}\n')
    proc = run_cli("tutor", "content", "import", str(bad))
    assert proc.returncode == 3 and "bad.jsonl:1" in proc.stderr and "Traceback" not in proc.stderr
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    proc = run_cli("tutor", "content", "import", str(other))
    assert proc.returncode == 3 and "use .md" in proc.stderr
