import pytest

from aivo.data.kt_format import read_kt_lines, write_kt_lines
from aivo.data.readers import read_interactions
from aivo.errors import DataError


def write(tmp_path, text, name="x.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_one_based_with_line_numbers_and_learner_ids(tmp_path):
    log = read_kt_lines(write(tmp_path, "3\n1,2,2\n0,1,1\n2\n5,1\n1,1\n"))
    f = log.frame
    assert list(f["learner_id"].unique()) == ["x-000000", "x-000001"]
    assert f["item_id"].tolist() == ["1", "2", "2", "5", "1"]
    assert f["correct"].tolist() == [0, 1, 1, 1, 1]
    assert f["order"].tolist() == [0, 1, 2, 0, 1]
    assert "1-based" in log.notes[0]


def test_detects_zero_based_and_tolerates_trailing_commas_and_blank_lines(tmp_path):
    log = read_kt_lines(write(tmp_path, "2\n0,1,\n1,0,\n\n1\n3,\n1,\n"))
    assert "0-based" in log.notes[0]
    assert log.num_interactions == 3


@pytest.mark.parametrize("text,line,fragment", [
    ("3\n1,2\n0,1,1\n", 2, "3 attempts but this line has 2 item ids"),
    ("2\n1,2\n0,1,1\n", 3, "2 attempts but this line has 3 answers"),
    ("2\n1,2\n0,2\n", 3, "answers must be 0 or 1"),
    ("2\n1,a\n0,1\n", 2, "whole numbers"),
    ("x\n1,2\n0,1\n", 1, "number of attempts"),
    ("2\n1,2\n0,1\n1\n4\n", 4, "incomplete block"),
])
def test_malformed_input_names_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_kt_lines(path)
    assert f"{path}:{line}:" in err.value.message
    assert fragment in err.value.message


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="empty file"):
        read_kt_lines(write(tmp_path, "\n\n"))


def test_round_trip(tmp_path):
    log = read_kt_lines(write(tmp_path, "3\n1,2,2\n0,1,1\n"))
    out = tmp_path / "y.csv"
    write_kt_lines(log, out)
    again = read_kt_lines(out, learner_prefix="x")
    assert again.frame.equals(log.frame)


def test_front_door_sniffs_kt_csv(kt_data):
    log = read_interactions(kt_data / "synthetic5" / "train.csv")
    assert log.num_learners == 2000 and log.num_interactions == 100_000
