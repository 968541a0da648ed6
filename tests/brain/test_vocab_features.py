import numpy as np
import pandas as pd
import pytest

from aivo.brain.batching import chunk_layout, encode_log, make_batch
from aivo.brain.features import FEATURE_NAMES, candidate_features, history_features
from aivo.brain.labels import derive_label_tables
from aivo.brain.vocab import PAD, UNK, BrainVocab, Vocabulary

from .helpers import random_log, tiny_config


def test_vocabulary_reserves_pad_and_unk_and_round_trips():
    vocab = Vocabulary.build(["b", "a", "c", "a"])
    assert len(vocab) == 5 and vocab.tokens == ["a", "b", "c"]
    assert vocab.encode(["a", "c", "never seen"]).tolist() == [2, 4, UNK]
    assert Vocabulary.from_json(vocab.to_json()).encode(["b"]).tolist() == [3]
    assert vocab.decode([PAD, UNK, 2]) == ["<pad>", "<unk>", "a"]


def test_multi_skill_encoding_pads_and_caps():
    log = random_log()
    vocab = BrainVocab.build(log)
    table = vocab.encode_skills(["s0;s1", "s2", "zz;s1", "s0;s1;s2;s3;s0"], max_skills=3)
    s = vocab.skills.encode
    assert table[0].tolist() == [*s(["s0", "s1"]), PAD]
    assert table[1].tolist() == [*s(["s2"]), PAD, PAD]
    assert table[2].tolist() == [UNK, *s(["s1"]), PAD]
    assert table.shape == (4, 3)


def brute_force_features(item, skill, kind, correct, expected, rate, prior):
    rows = []
    for t in range(len(item)):
        row = []
        for keys in (item, skill, kind):
            prev = [i for i in range(t) if keys[i] == keys[t]]
            attempts, corrects = len(prev), sum(correct[i] for i in prev)
            last = (2 * correct[prev[-1]] - 1) if prev else 0.0
            gap = np.log1p(t - prev[-1]) if prev else 0.0
            right = wrong = 0
            for i in reversed(prev):
                if correct[i] != correct[prev[-1]]:
                    break
                right, wrong = right + correct[i], wrong + 1 - correct[i]
            residual_sum = sum(correct[i] - expected[i] for i in prev)
            row += [np.log1p(attempts), np.log1p(corrects), np.log1p(attempts - corrects), last, gap,
                    np.log1p(right), np.log1p(wrong), residual_sum / (attempts + 3.0)]
        row += [(sum(correct[:t]) + prior * rate) / (t + prior), np.log1p(t),
                (2 * correct[t - 1] - 1) if t else 0.0]
        residual = [correct[i] - expected[i] for i in range(t)]
        mean, var = 0.0, 1.0
        for i in range(t):
            p = 1 / (1 + np.exp(-(mean + np.log(expected[i] / (1 - expected[i])))))
            var = 1 / (1 / var + p * (1 - p))
            mean += var * (correct[i] - p)
        row += [sum(residual) / (t + prior),
                0.3 * sum(0.7 ** (t - 1 - i) * (2 * correct[i] - 1) for i in range(t)),
                0.1 * sum(0.9 ** (t - 1 - i) * residual[i] for i in range(t)),
                mean, np.sqrt(var),
                np.log(expected[t] / (1 - expected[t]))]
        rows.append(row)
    return np.array(rows, dtype=np.float32)


def test_history_features_match_brute_force_and_restart_per_chunk():
    rng = np.random.default_rng(1)
    n = 40
    item, skill, kind = rng.integers(0, 5, n), rng.integers(0, 3, n), rng.integers(0, 2, n)
    correct = rng.integers(0, 2, n).astype(float)
    rate = rng.uniform(0.2, 0.9, n)
    chunk = np.repeat([0, 1], [25, 15])
    position = np.concatenate([np.arange(25), np.arange(15)])
    got = history_features(chunk=chunk, position=position, item=item, skill=skill, item_type=kind, correct=correct,
                           expected=rate, global_correct_rate=0.7, prior_count=5.0)
    assert got.shape == (n, len(FEATURE_NAMES))
    expected = np.vstack([brute_force_features(item[:25], skill[:25], kind[:25], correct[:25], rate[:25], 0.7, 5.0),
                          brute_force_features(item[25:], skill[25:], kind[25:], correct[25:], rate[25:], 0.7, 5.0)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # causal: a row's features do not change with its own answer
    flipped = correct.copy()
    flipped[10] = 1 - flipped[10]
    again = history_features(chunk=chunk, position=position, item=item, skill=skill, item_type=kind, correct=flipped,
                             expected=rate, global_correct_rate=0.7, prior_count=5.0)
    np.testing.assert_array_equal(again[:11], got[:11])
    assert not np.array_equal(again[11:25], got[11:25])


def test_candidate_features_equal_history_features_of_the_appended_step():
    rng = np.random.default_rng(2)
    item, skill, kind = rng.integers(2, 8, 30), rng.integers(2, 5, 30), rng.integers(0, 3, 30)
    correct = rng.integers(0, 2, 30).astype(float)
    rate = rng.uniform(0.2, 0.9, 30)
    cand_item, cand_skill, cand_kind = np.array([2, 3, 7, 99]), np.array([2, 4, 4, 98]), np.array([0, 2, 9, 2])
    cand_rate = np.array([0.5, 0.6, 0.7, 0.8])
    got = candidate_features(history_item=item, history_skill=skill, history_type=kind, history_correct=correct,
                             history_expected=rate, candidate_item=cand_item, candidate_skill=cand_skill,
                             candidate_type=cand_kind, candidate_expected=cand_rate, global_correct_rate=0.6,
                             prior_count=3.0)
    for k in range(len(cand_item)):
        full = history_features(chunk=np.zeros(31, dtype=int), position=np.arange(31),
                                item=np.append(item, cand_item[k]), skill=np.append(skill, cand_skill[k]),
                                item_type=np.append(kind, cand_kind[k]),
                                correct=np.append(correct, 0.0), expected=np.append(rate, cand_rate[k]),
                                global_correct_rate=0.6, prior_count=3.0)
        np.testing.assert_allclose(got[k], full[-1], rtol=1e-6)


def test_chunk_layout_cuts_long_histories():
    learners = np.array(["a"] * 450 + ["b"] * 3 + ["c"])
    position, starts, lengths = chunk_layout(learners, 200)
    assert lengths.tolist() == [200, 200, 50, 3, 1]
    assert starts.tolist() == [0, 200, 400, 450, 453]
    assert position[199] == 199 and position[200] == 0 and position[452] == 2


def test_batch_padding_and_scored_mask():
    log = random_log(num_learners=5, length=12)
    config = tiny_config(max_seq_len=5)
    vocab = BrainVocab.build(log)
    tables = derive_label_tables(log, vocab, num_levels=10, prior_count=10.0)
    encoded = encode_log(log, vocab=vocab, tables=tables, config=config)
    assert encoded.chunk_length.max() <= 5
    batch = make_batch(encoded, np.arange(encoded.num_chunks))
    assert batch.item.shape == batch.valid.shape == (encoded.num_chunks, 5)
    assert batch.valid.sum() == log.num_interactions
    assert not batch.scored[:, 0].any()
    assert (batch.scored.sum() == batch.valid.sum() - encoded.num_chunks)
    rows = batch.row[batch.valid].numpy()
    assert sorted(rows.tolist()) == list(range(log.num_interactions))
    assert (batch.item[~batch.valid] == PAD).all()


def test_difficulty_levels_are_deciles_of_smoothed_error():
    # item j is answered wrongly by exactly j of the 60 learners: 40 distinct error rates
    rows = [{"learner_id": f"L{i}", "item_id": f"q{j}", "correct": int(i >= j), "order": j}
            for i in range(60) for j in range(40)]
    from aivo.data.schema import make_log

    log = make_log(pd.DataFrame(rows))
    vocab = BrainVocab.build(log)
    tables = derive_label_tables(log, vocab, num_levels=10, prior_count=10.0)
    levels = np.array(tables.item_level)[vocab.items.encode([f"q{j}" for j in range(40)])]
    assert np.bincount(levels, minlength=10).tolist() == [4] * 10
    assert levels[0] == 0 and levels[-1] == 9
    # unseen items get the level of the global error rate
    unk_level = tables.item_level[UNK]
    assert unk_level == np.searchsorted(tables.level_edges, 1 - tables.global_correct_rate, side="right")
    with pytest.raises(IndexError):
        tables.item_level[len(vocab.items)]


def test_shifted_chunks_cut_the_first_chunk_shorter():
    learners = np.array(["a"] * 450 + ["b"] * 3)
    position, starts, lengths = chunk_layout(learners, 200, shifts=np.array([150, 7]))
    assert lengths.tolist() == [50, 200, 200, 3]
    assert position[49] == 49 and position[50] == 0


def test_the_small_and_the_large_paths_of_the_features_agree(monkeypatch):
    """Serving (one learner) takes a Python pass over the rows, training logs pandas: same numbers."""
    import aivo.brain.features as features

    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 60, 40)
    chunk = np.repeat(np.arange(len(lengths)), lengths)
    position = np.concatenate([np.arange(n) for n in lengths])
    n = len(chunk)
    args = dict(chunk=chunk, position=position, item=rng.integers(0, 30, n), skill=rng.integers(0, 6, n),
                item_type=rng.integers(0, 3, n), correct=rng.integers(0, 2, n).astype(float),
                expected=rng.uniform(0.1, 0.9, n), global_correct_rate=0.65, prior_count=5.0)
    monkeypatch.setattr(features, "_LOOP_MAX_ROWS", 10 ** 9)
    small = history_features(**args)
    monkeypatch.setattr(features, "_LOOP_MAX_ROWS", 0)
    large = history_features(**args)
    np.testing.assert_allclose(small, large, rtol=1e-6, atol=1e-7)
