"""CSV and Parquet event-log readers: valid input, column mapping, and every malformed case
named by file and line (CSV) or row (Parquet)."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aivo.data.csv_log import read_csv_log
from aivo.data.parquet_log import read_parquet_log
from aivo.data.readers import read_interactions
from aivo.data.schema import validate_frame
from aivo.data.writers import write_interactions
from aivo.errors import DataError

MAPPING = {"learner_id": "student", "item_id": "question", "correct": "is_correct", "timestamp": "when",
           "skill_ids": "skill"}


def write(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_mapping_multi_skills_and_timestamps(tmp_path):
    path = write(tmp_path, "student,question,is_correct,when,skill,comment\n"
                           "s1,q1,1,2024-01-01T10:00:00Z, a ; b,hi\n"
                           "s2,q1,1,2024-01-02,a,\n"
                           "s1,q2,0,2024-01-01 09:00:00,,\n")
    log = read_interactions(path, mapping=MAPPING)
    f = log.frame
    assert list(f.columns[:6]) == ["learner_id", "item_id", "correct", "skill_ids", "order", "timestamp"]
    assert f["learner_id"].tolist() == ["s1", "s1", "s2"]
    # order comes from the timestamp: q2 was answered before q1 by s1
    assert f["item_id"].tolist() == ["q2", "q1", "q1"]
    assert f["skill_ids"].tolist() == ["q2", "a;b", "a"]  # empty skill falls back to the item
    assert f["order"].tolist() == [0, 1, 0]
    assert str(f["timestamp"].dt.tz) == "UTC"
    assert "comment" in f.columns  # extra columns are kept
    assert any("derived from timestamp" in n for n in log.notes)


def test_csv_all_optional_columns(tmp_path):
    path = write(tmp_path, "learner_id,item_id,correct,order,response_time_s,subject,grade,item_type\n"
                           "a,i1,1,0,3.5,math,K,multiple_choice\n"
                           "a,i2,0,1,,math,3,\n")
    f = read_csv_log(path).frame
    assert f["grade"].tolist() == [0, 3]
    assert f["response_time_s"].isna().tolist() == [False, True]
    assert f["item_type"].isna().tolist() == [False, True]
    assert validate_frame(f).equals(f)


def test_csv_epoch_timestamps(tmp_path):
    path = write(tmp_path, "learner_id,item_id,correct,timestamp\na,b,1,1700000100000\na,c,0,1700000000000\n")
    log = read_csv_log(path)
    assert log.frame["item_id"].tolist() == ["c", "b"]
    assert any("milliseconds" in n for n in log.notes)


@pytest.mark.parametrize("text,line,fragment", [
    ("learner_id,item_id,correct\ns1,q1,1\n\ns1,q2,yes\n", 4, "must be 0 or 1, got 'yes'"),
    ("learner_id,item_id,correct\ns1,q1,2\n", 2, "must be 0 or 1, got 2"),
    ("learner_id,item_id,correct\ns1,q1,\n", 2, "empty answer"),
    ('learner_id,item_id,correct,note\ns1,q1,1,"two\nlines"\ns1,q2,-1,x\n', 4, "must be 0 or 1"),
    ("learner_id,item_id,correct,order\ns1,q1,1,0\ns2,q1,1,0\ns1,q2,0,0\n", 4,
     "learner 's1' already has an interaction at order 0 (line 2)"),
    ("learner_id,item_id,correct,timestamp\ns1,q1,1,2024-01-01\ns1,q2,0,notadate\n", 3,
     "unreadable timestamp 'notadate'"),
    ("learner_id,item_id,correct,timestamp\ns1,q1,1,2024-01-01\ns1,q2,0,\n", 3, "empty timestamp"),
    ("learner_id,item_id,correct,order\ns1,q1,1,0\ns1,q2,0,one\n", 3, "order must be a number, got 'one'"),
    ("learner_id,item_id,correct,order\ns1,q1,1,0.5\n", 2, "order must be a whole number"),
    ("learner_id,item_id,correct,grade\ns1,q1,1,3\ns1,q2,1,third\n", 3, "grade must be a number"),
    ("learner_id,item_id,correct,grade\ns1,q1,1,13\n", 2, "grade must be K or 0..12"),
    ("learner_id,item_id,correct,response_time_s\ns1,q1,1,4\ns1,q2,1,fast\n", 3,
     "response_time_s must be a number, got 'fast'"),
    ("learner_id,item_id,correct,response_time_s\ns1,q1,1,-4\n", 2, "must not be negative"),
    ("learner_id,item_id,correct\ns1,q1,1\n,q2,1\n", 3, "empty learner_id"),
    ("learner_id,item_id,correct\ns1,q1,1\ns1,q2,1,extra\n", 3, "expected 3 fields (as in the header), found 4"),
    ("learner,item_id,correct\na,b,1\n", 1, "missing required column(s): learner_id; found: learner, item_id, correct"),
    ("learner_id,item_id,correct\n", 1, "header only"),
    ("", 1, "empty file"),
    ("\n  \n", 1, "empty file"),
    ("learner_id,item_id,correct,correct\na,b,1,1\n", 1, "duplicate column name(s) in the header: correct"),
    # issue 14: the bounds every edge checks, and NUL characters
    ("learner_id,item_id,correct,timestamp\ns1,q1,1,2024-01-01\ns1,q2,0,0001-01-01T00:00:00+14:00\n", 3,
     "outside the supported years 1900..2099"),
    ("learner_id,item_id,correct,timestamp\ns1,q1,1,9999-12-31\n", 2, "outside the supported years"),
    ("learner_id,item_id,correct,timestamp\ns1,q1,1,-99999999999\n", 2, "outside the supported years"),
    ("learner_id,item_id,correct,order\ns1,q1,1,0\ns1,q2,0,9223372036854775808\n", 3, "order must be between 0 and"),
    ("learner_id,item_id,correct\ns1,q1,1\ns1,q\x002,0\n", 3, "a NUL character in column 'item_id'"),
    ("learner_id,item_id,correct,note\ns1,q1,1,fine\ns1,q2,0,bad\x00\n", 3, "a NUL character in column 'note'"),
])
def test_malformed_csv_names_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert f"{path}:{line}:" in err.value.message, err.value.message
    assert fragment in err.value.message, err.value.message


def test_header_after_blank_lines_is_located(tmp_path):
    path = write(tmp_path, "\n\nlearner_id,item_id,correct\na,b,1\n\n\na,c,x\n")
    with pytest.raises(DataError) as err:
        read_csv_log(path)
    assert f"{path}:7:" in err.value.message


def test_bad_mapping_is_explained(tmp_path):
    path = write(tmp_path, "student,question,is_correct\na,b,1\n")
    with pytest.raises(DataError, match=r"learner_id=pupil: source column not found; found: student"):
        read_csv_log(path, mapping={"learner_id": "pupil"})
    with pytest.raises(DataError, match=r"unknown schema column\(s\): learner"):
        read_csv_log(path, mapping={"learner": "student"})
    with pytest.raises(DataError, match=r"missing required column\(s\): item_id, correct"):
        read_csv_log(path, mapping={"learner_id": "student"})


def test_mapping_replaces_a_same_named_column(tmp_path):
    path = write(tmp_path, "learner_id,item_id,correct,is_correct\na,b,yes,1\n")
    log = read_csv_log(path, mapping={"correct": "is_correct"})
    assert log.frame["correct"].tolist() == [1]


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("learner_id,item_id,correct\nJos\xe9,b,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not a UTF-8 text file"):
        read_csv_log(path)


# --- Parquet ------------------------------------------------------------------------------

def write_parquet(tmp_path, frame, name="log.parquet"):
    path = tmp_path / name
    frame.to_parquet(path, index=False)
    return path


def test_parquet_typed_columns_and_mapping(tmp_path):
    frame = pd.DataFrame({"student": ["a", "a", "b"], "question": ["q1", "q2", "q1"],
                          "ok": [True, False, True],
                          "ts": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-01"]),
                          "grade": [3, 3, 4], "response_time_s": [1.5, None, 2.0]})
    log = read_interactions(write_parquet(tmp_path, frame),
                            mapping={"learner_id": "student", "item_id": "question", "correct": "ok",
                                     "timestamp": "ts"})
    f = log.frame
    assert f["item_id"].tolist() == ["q2", "q1", "q1"]
    assert f["correct"].tolist() == [0, 1, 1]
    assert str(f["timestamp"].dt.tz) == "UTC"
    assert f["grade"].dtype == "Int64"


@pytest.mark.parametrize("frame,fragment", [
    (pd.DataFrame({"learner_id": ["a", "a"], "item_id": ["x", "y"], "correct": [1, 3]}),
     "row 2: answer ('correct') must be 0 or 1, got 3"),
    (pd.DataFrame({"learner_id": ["a", "a"], "item_id": ["x", "y"], "correct": [1, 0], "order": [0, 0]}),
     "row 2: duplicate (learner, order): learner 'a' already has an interaction at order 0 (row 1)"),
    (pd.DataFrame({"learner_id": ["a", "a"], "item_id": ["x", "y"], "correct": [1, 0],
                   "timestamp": ["2024-01-01", "yesterday"]}), "row 2: unreadable timestamp 'yesterday'"),
    (pd.DataFrame({"learner_id": ["a", None], "item_id": ["x", "y"], "correct": [1, 0]}),
     "row 2: empty learner_id"),
    (pd.DataFrame({"learner_id": ["a"], "item_id": ["x"], "correct": [1], "grade": ["3rd"]}),
     "row 1: grade must be a number"),
    (pd.DataFrame({"learner_id": ["a"], "item_id": ["x"]}), "missing required column(s): correct"),
    (pd.DataFrame({"learner_id": ["a", "a"], "item_id": ["x", "y"], "correct": [1, 0],
                   "timestamp": pd.to_datetime(["2024-01-01", "1850-01-01"], utc=True)}),
     "row 2: timestamp Timestamp('1850-01-01 00:00:00+0000', tz='UTC') is outside the supported years"),
    (pd.DataFrame({"learner_id": ["a", "a"], "item_id": ["x", "y\x00"], "correct": [1, 0]}),
     "row 2: a NUL character in column 'item_id'"),
    (pd.DataFrame({"learner_id": pd.Series([], dtype=str), "item_id": pd.Series([], dtype=str),
                   "correct": pd.Series([], dtype=int)}), "no data rows"),
])
def test_malformed_parquet_names_file_and_row(tmp_path, frame, fragment):
    path = write_parquet(tmp_path, frame)
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert err.value.message.startswith(f"{path}: "), err.value.message
    assert fragment in err.value.message, err.value.message


@pytest.mark.parametrize("content", [b"", b"PAR1 this is not parquet at all", b"learner_id,item_id\n"])
def test_corrupt_parquet(tmp_path, content):
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_parquet_log(path)
    assert str(path) in err.value.message
    assert "Parquet" in err.value.message


def test_truncated_parquet(tmp_path):
    good = write_parquet(tmp_path, pd.DataFrame({"learner_id": ["a"] * 50, "item_id": ["x"] * 50,
                                                 "correct": [1] * 50, "order": range(50)}))
    data = good.read_bytes()
    bad = tmp_path / "truncated.parquet"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_parquet_log(bad)


def test_dictionary_encoded_parquet(tmp_path):
    table = pa.table({"learner_id": pa.array(["a", "a"]).dictionary_encode(), "item_id": ["x", "y"],
                      "correct": pa.array([1, 0], type=pa.int8())})
    path = tmp_path / "dict.parquet"
    pq.write_table(table, path)
    assert read_parquet_log(path).frame["learner_id"].tolist() == ["a", "a"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_then_read_round_trip(tmp_path, suffix):
    path = write(tmp_path, "learner_id,item_id,correct,skill_ids,timestamp,response_time_s,subject,grade,"
                           "item_type\n"
                           "a,i1,1,s1;s2,2024-01-01T10:00:00.250Z,3.25,math,K,timed\n"
                           "a,i2,0,s2,2024-01-01T10:01:00Z,,math,,\n"
                           "b,i1,1,s1,2024-02-01T08:00:00Z,7,reading,5,long_reading\n")
    log = read_csv_log(path)
    out = write_interactions(log, tmp_path / f"again{suffix}")
    again = read_interactions(out)
    pd.testing.assert_frame_equal(again.frame, log.frame, check_dtype=False)
    assert again.data_hash() == log.data_hash()


def test_writer_rejects_unknown_suffix_and_non_numeric_kt(tmp_path):
    log = read_csv_log(write(tmp_path, "learner_id,item_id,correct\na,b,1\n"))
    with pytest.raises(DataError, match="output format"):
        write_interactions(log, tmp_path / "x.json")
    with pytest.raises(DataError, match="whole-number item ids, got 'b'"):
        write_interactions(log, tmp_path / "x.kt")
    assert not (tmp_path / "x.kt").exists()
    numeric = read_csv_log(write(tmp_path, "learner_id,item_id,correct\na,7,1\na,3,0\n", name="n.csv"))
    again = read_interactions(write_interactions(numeric, tmp_path / "n.kt"))
    assert again.frame["item_id"].tolist() == ["7", "3"] and again.frame["correct"].tolist() == [1, 0]
