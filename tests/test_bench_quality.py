"""`make bench-quality` runs end to end on a tiny problem: one row per arm and epoch, minutes that grow."""

import json

import pytest

from benchmarks import quality

pytestmark = pytest.mark.data


def test_quality_per_minute_table(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    assert quality.main(["--profile", "smoke", "--epochs", "2", "--images", "128", "--samples", "20",
                         "--nfe", "2", "--out", str(out)]) == 0
    result = json.loads((out / "quality.json").read_text())
    assert (out / "quality.png").stat().st_size > 0
    assert sorted(path.name for path in out.iterdir()) == ["quality.json", "quality.png"]  # nothing partial
    assert [(row["arm"], row["epoch"]) for row in result["rows"]] == [
        (arm, epoch) for arm in quality.ARMS for epoch in (1, 2)]
    for arm in quality.ARMS:
        minutes = [row["minutes"] for row in result["rows"] if row["arm"] == arm]
        assert 0 < minutes[0] < minutes[1]
    assert {row["recipe"].split(", ")[-1] for row in result["rows"]} >= {"time distribution logit-normal"}
    assert all(0 <= row["cond_accuracy"] <= 1 and row["cond_fid"] >= 0 for row in result["rows"])


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        quality.main(["--epochs", "0"])
