import json

import numpy as np
import pytest
import torch

from aivo.brain.checkpoint import (FORMAT_VERSION, KIND, METADATA_FILE, WEIGHTS_FILE, from_bytes, from_state,
                                   load_checkpoint, read_metadata, save_checkpoint, to_bytes, to_state)
from aivo.brain.predict import predict
from aivo.brain.train import train_main_brain
from aivo.errors import IntegrityError, NotFoundError

from .helpers import random_log, tiny_config


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    log = random_log(num_learners=20, length=25)
    ids = log.frame["learner_id"].unique()
    result = train_main_brain(train=log.select_learners(ids[:15]), validation=log.select_learners(ids[15:]),
                              config=tiny_config(max_epochs=1, evidence_decays=(1.0, 0.7)), seed=1)
    with torch.no_grad():  # a clone-like personal part, so that it must round-trip too
        result.brain.model.personal.skill_offset.uniform_(-1, 1)
    return result.brain, log


def same_predictions(a, b, log):
    np.testing.assert_array_equal(predict(brain=a, log=log), predict(brain=b, log=log))


def test_folder_round_trip(trained, tmp_path):
    brain, log = trained
    save_checkpoint(brain, tmp_path / "ckpt", extra={"note": "x"})
    assert (tmp_path / "ckpt" / WEIGHTS_FILE).exists()
    loaded = load_checkpoint(tmp_path / "ckpt")
    same_predictions(brain, loaded, log)
    assert loaded.config == brain.config
    assert loaded.vocab.to_json() == brain.vocab.to_json()
    assert loaded.tables.to_json() == brain.tables.to_json()
    meta = read_metadata(tmp_path / "ckpt")
    assert meta["kind"] == KIND and meta["format_version"] == FORMAT_VERSION
    assert meta["info"]["train_data_hash"] == brain.info["train_data_hash"]
    assert meta["extra"] == {"note": "x"} and "aivo_version" in meta and "git_commit" in meta
    assert meta["parameter_groups"]["personal"] == brain.model.personal_parameter_names()


def test_in_memory_and_bytes_round_trip(trained):
    brain, log = trained
    tensors, metadata = to_state(brain)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    json.dumps(metadata)  # plain JSON
    same_predictions(brain, from_state(tensors, metadata), log)
    same_predictions(brain, from_bytes(to_bytes(brain)), log)


def test_refuses_other_kinds_versions_and_bad_weights(trained, tmp_path):
    brain, _ = trained
    tensors, metadata = to_state(brain)
    with pytest.raises(IntegrityError, match="not a Main Brain checkpoint"):
        from_state(tensors, {**metadata, "kind": "aivo.clone"})
    with pytest.raises(IntegrityError, match="format 99"):
        from_state(tensors, {**metadata, "format_version": 99})
    del tensors["personal.bias"]
    with pytest.raises(IntegrityError, match="missing"):
        from_state(tensors, metadata)
    with pytest.raises(IntegrityError, match="safetensors"):
        from_bytes(b"definitely not safetensors")
    with pytest.raises(NotFoundError):
        load_checkpoint(tmp_path / "nowhere")
    save_checkpoint(brain, tmp_path / "c")
    (tmp_path / "c" / WEIGHTS_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(IntegrityError):
        load_checkpoint(tmp_path / "c")
    meta_path = tmp_path / "c" / METADATA_FILE
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format_version": 0}))
    with pytest.raises(IntegrityError):
        read_metadata(tmp_path / "c")
