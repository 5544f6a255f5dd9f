"""Tests of book/results.py: the headline numbers a build records, one JSON object per profile."""

import json
import math

import pytest

from book import results


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS", str(tmp_path))
    return tmp_path


def test_record_merges_key_by_key_and_leaves_no_temporary_file(folder):
    results.record("cpu", {"ch03.fid_floor": 2.5, "seconds.03_unets_and_images": 600})
    merged = results.record("cpu", {"ch03.fid_floor": 2.25, "ch04.fid_floor": 3.5})
    assert merged == {"ch03.fid_floor": 2.25, "seconds.03_unets_and_images": 600.0, "ch04.fid_floor": 3.5}
    assert json.loads((folder / "cpu.json").read_text()) == merged
    assert results.load("cpu") == merged and results.load("gpu") == {}
    assert [path.name for path in folder.iterdir()] == ["cpu.json"]


@pytest.mark.parametrize("metrics, message", [
    ({"fid": 1.0}, "dotted"),
    ({".fid": 1.0}, "dotted"),
    ({"ch03.fid": math.nan}, "finite number"),
    ({"ch03.fid": math.inf}, "finite number"),
    ({"ch03.fid": "12"}, "finite number"),
    ({"ch03.ok": True}, "finite number"),
])
def test_bad_metrics_are_refused_and_nothing_is_written(folder, metrics, message):
    with pytest.raises(ValueError, match=message):
        results.record("cpu", metrics)
    assert not (folder / "cpu.json").exists()


def test_a_damaged_file_is_a_clear_error(folder):
    (folder / "cpu.json").write_text("{not json")
    with pytest.raises(ValueError, match="cpu.json is not valid JSON.*build again"):
        results.load("cpu")
    (folder / "cpu.json").write_text(json.dumps({"ch03.fid": "high"}))
    with pytest.raises(ValueError, match="metric name -> number"):
        results.load("cpu")


def test_table_has_one_column_per_profile(folder, capsys):
    results.record("cpu", {"ch03.fid_floor": 2.4213, "seconds.00_preface": 4.0})
    results.record("gpu", {"ch03.fid_floor": 0.97})
    assert results.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| metric | `cpu` | `gpu` |"
    assert "| `ch03.fid_floor` | 2.42 | 0.97 |" in lines
    assert "| `seconds.00_preface` | 4 |  |" in lines


def test_main_says_when_nothing_was_recorded(folder, capsys):
    assert results.main([]) == 1
    assert "build the book first" in capsys.readouterr().err
    results.record("cpu", {"ch03.fid_floor": 1.0})
    assert results.main(["cpu", "gpu"]) == 1
    assert "no results recorded for gpu" in capsys.readouterr().err
