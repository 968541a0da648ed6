"""Shared helpers: durable_file replaces a file whole or not at all; read_ahead keeps order, bounds
the work done ahead and re-raises in turn; gc_paused nests and restores the collector's state."""

from __future__ import annotations

import gc
import os
import stat
import subprocess
import sys
import threading

import pytest

from aivo.utils import durable_file, durable_folder, gc_paused, read_ahead, restrict_to_owner


def test_durable_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "report.json"
    with durable_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".part") and not target.exists()
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with durable_file(target) as tmp:
            tmp.write_text("half of the second")
            raise RuntimeError("the writer failed")
    assert target.read_text() == "first" and list(tmp_path.iterdir()) == [target]  # no temp file left


def test_durable_file_modes_and_temp_folder(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    target = tmp_path / "artifact"
    with durable_file(target, temp_dir=spool, create_mode=0o600, final_mode=0o400) as tmp:
        assert tmp.parent == spool and stat.S_IMODE(tmp.stat().st_mode) == 0o600
        tmp.write_bytes(b"weights")
    assert stat.S_IMODE(target.stat().st_mode) == 0o400 and list(spool.iterdir()) == []
    umask = os.umask(0)
    os.umask(umask)
    with durable_file(tmp_path / "out.csv") as tmp:  # a user's output file: the usual permissions
        tmp.write_text("a,b\n")
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o666 & ~umask


def test_a_writer_killed_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    code = ("import os, sys; from aivo.utils import durable_file\n"
            f"with durable_file({str(target)!r}) as tmp:\n"
            "    tmp.write_text('new but incomplete')\n"
            "    os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert target.read_text() == "old"


def test_durable_folder_replaces_a_whole_folder_or_leaves_the_old_one(tmp_path):
    target = tmp_path / "models" / "tiny"  # the parent is created
    with durable_folder(target) as staging:
        assert staging.parent == target.parent and not target.exists()
        (staging / "sub").mkdir()
        (staging / "weights").write_text("first")
        (staging / "sub" / "config").write_text("{}")
    assert (target / "weights").read_text() == "first" and (target / "sub" / "config").exists()
    with durable_folder(target) as staging:
        (staging / "weights").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["weights"]  # replaced, not merged
    with pytest.raises(RuntimeError):
        with durable_folder(target) as staging:
            (staging / "weights").write_text("half of the third")
            raise RuntimeError("the writer failed")
    assert (target / "weights").read_text() == "second" and list(target.parent.iterdir()) == [target]


def test_restrict_to_owner_takes_group_and_other_bits_off(tmp_path):
    loose, folder = tmp_path / "aivo.db", tmp_path / "artifacts"
    loose.write_text("")
    folder.mkdir()
    os.chmod(loose, 0o664)
    os.chmod(folder, 0o755)
    assert restrict_to_owner(loose) == 0o600 and stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert restrict_to_owner(folder) == 0o700 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert restrict_to_owner(loose) is None  # already private: nothing changes
    assert restrict_to_owner(tmp_path / "missing") is None


def test_read_ahead_keeps_order_and_bounds_work_ahead():
    started: list[int] = []
    lock = threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        return i * i

    seen = []
    for value in read_ahead(work, range(50), depth=4, workers=2):
        seen.append(value)
        with lock:  # never more than `depth` items submitted beyond what was consumed
            assert len(started) <= len(seen) + 4
    assert seen == [i * i for i in range(50)]


def test_read_ahead_reraises_in_turn():
    def work(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for value in read_ahead(work, range(10), depth=2):
            got.append(value)
    assert got == [0, 1, 2]


def test_gc_paused_nests_and_restores():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()


def test_json_int_takes_whole_numbers_written_as_floats_and_nothing_else():
    """JSON Schema's integer includes 12.0; strict request models (API and tutor) agree."""
    from pydantic import ValidationError

    from aivo.tutor.schemas import ChatCompletionRequest, GenerateRequest

    request = GenerateRequest.model_validate_json('{"prompt": "hi", "max_new_tokens": 8.0, "seed": 3.0, '
                                                  '"context": {"grade": 5.0}}')
    assert (request.max_new_tokens, request.seed, request.context.grade) == (8, 3, 5)
    assert type(request.max_new_tokens) is int and type(request.context.grade) is int
    for bad in ('8.5', '"8"', 'true', '1e400'):
        with pytest.raises(ValidationError):
            GenerateRequest.model_validate_json('{"prompt": "hi", "max_new_tokens": ' + bad + '}')
    chat = ChatCompletionRequest.model_validate_json(
        '{"model": "aivo-tutor", "messages": [{"role": "user", "content": "hi"}], "n": 1.0, "max_tokens": 4.0}')
    assert (chat.n, chat.max_tokens) == (1, 4)
    with pytest.raises(ValidationError):  # a number is not false either (Literal[False] alone let 0 through)
        ChatCompletionRequest.model_validate_json(
            '{"model": "aivo-tutor", "messages": [{"role": "user", "content": "hi"}], "logprobs": 0}')


def test_the_cli_log_handler_writes_to_the_stderr_of_the_moment():
    """A command configured in-process under a redirect that has since closed (a test's captured
    stderr) logs to the stderr of the moment, without "--- Logging error ---"."""
    import contextlib
    import io
    import logging

    from aivo.logging_setup import configure_logging

    first, second = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(first):
        configure_logging("INFO")
        logging.getLogger("aivo.test").info("one")
    first.close()
    with contextlib.redirect_stderr(second):
        logging.getLogger("aivo.test").info("two")
    assert "aivo.test: two" in second.getvalue() and "Logging error" not in second.getvalue()
