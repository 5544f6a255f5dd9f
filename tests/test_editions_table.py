"""book/editions.py: the cpu and gpu editions' headline numbers in one table, for the preface."""

import json

from book.editions import editions_table


def write(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def test_both_editions_side_by_side_with_where_the_gpu_numbers_come_from(tmp_path):
    write(tmp_path / "_build" / "results" / "cpu.json", {"ch03.fid": 12.5, "seconds.00_preface": 5})
    write(tmp_path / "editions" / "gpu" / "results" / "gpu.json", {"ch03.fid": 3.25, "ch04.fid": 2.5})
    write(tmp_path / "editions" / "gpu" / "manifest.json",
          {"device": "NVIDIA H200", "torch": "2.11.0+cu130", "date": "2026-11-27T10:00:00+00:00"})
    markdown = editions_table(tmp_path)
    lines = markdown.splitlines()
    assert lines[0] == "| metric | `cpu` | `gpu` |"
    assert "| `ch03.fid` | 12.50 | 3.25 |" in lines
    assert "| `ch04.fid` |  | 2.50 |" in lines
    assert "| `seconds.00_preface` | 5 |  |" in lines
    assert "computed on NVIDIA H200 with torch 2.11.0+cu130, 2026-11-27" in markdown


def test_an_edition_without_numbers_gets_no_column(tmp_path):
    write(tmp_path / "_build" / "results" / "cpu.json", {"ch01.nll": 1.5})
    markdown = editions_table(tmp_path)
    assert markdown.splitlines()[0] == "| metric | `cpu` |"
    assert "gpu" not in markdown


def test_without_any_numbers_it_says_where_they_come_from(tmp_path):
    assert "make book" in editions_table(tmp_path)
