"""book/progress.py: a bar for people, one line inside a build."""

from book.progress import progress


def test_inside_a_build_one_summary_line(monkeypatch, capsys):
    monkeypatch.setenv("BOOK_BUILD", "1")
    assert list(progress(range(5), desc="train")) == [0, 1, 2, 3, 4]
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1 and captured.out.startswith("train: 5 iterations in ")
    assert captured.err == ""


def test_outside_a_build_a_progress_bar(monkeypatch, capsys):
    monkeypatch.delenv("BOOK_BUILD", raising=False)
    assert list(progress(range(3), desc="train")) == [0, 1, 2]
    captured = capsys.readouterr()
    assert captured.out == "" and "train" in captured.err and "3/3" in captured.err
