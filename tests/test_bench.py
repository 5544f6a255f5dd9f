"""`make bench` runs end to end on a tiny problem and reports what the README says it reports."""

import json

import pytest

from benchmarks import run as bench


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert bench.main(["--batch", "2", "--steps", "2", "--train-steps", "1", "--repeats", "1",
                       "--out", str(out)]) == 0
    assert (out / "bench.png").stat().st_size > 0
    return json.loads((out / "bench.json").read_text())


def test_every_sampler_is_measured_at_its_number_of_network_calls(result):
    rows = {row["sampler"]: row for row in result["sampler_overhead"]}
    assert {name: row["nfe"] for name, row in rows.items()} == {"Euler": 2, "Heun": 4, "DDPM": 2, "DDIM": 2}
    for row in rows.values():
        assert row["network_share"] == pytest.approx(row["network_seconds"] / row["run_seconds"])
        assert 0 < row["network_share_from_solver"] <= 1
        assert row["solver_seconds"] > 0


def test_throughput_is_relative_to_float32(result):
    rows = {row["precision"]: row for row in result["training_throughput"]}
    assert {"float32", "bfloat16"} <= set(rows)
    assert rows["float32"]["ratio_to_float32"] == pytest.approx(1.0)
    for row in rows.values():
        assert row["ratio_to_float32"] == pytest.approx(
            row["images_per_second"] / rows["float32"]["images_per_second"])


def test_a_step_count_below_one_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err
