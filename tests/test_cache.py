"""Tests of book/cache.py: train once, load after; keys change with what determines the weights."""

import torch
from torch import nn

from book import cache


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def counting_trainer(calls: list[int]):
    def train(model: nn.Module) -> dict[str, list[float]]:
        calls.append(1)
        with torch.no_grad():
            model.weight.add_(1.0)
        return {"loss": [3.0, 2.0, 1.0]}

    return train


def test_second_call_loads_the_stored_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    calls: list[int] = []
    first = cache.load_or_train(
        "tiny", make_model(), counting_trainer(calls), hparams={"lr": 0.1}, profile="smoke"
    )
    second = cache.load_or_train(
        "tiny", make_model(), counting_trainer(calls), hparams={"lr": 0.1}, profile="smoke"
    )
    assert len(calls) == 1
    assert not first.from_cache and second.from_cache
    assert torch.equal(first.model.weight, second.model.weight)
    assert second.history == {"loss": [3.0, 2.0, 1.0]}
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"


def test_key_changes_with_hparams_profile_and_name(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    calls: list[int] = []
    for name, profile, lr in [
        ("tiny", "smoke", 0.1),
        ("tiny", "smoke", 0.2),
        ("tiny", "cpu", 0.1),
        ("big", "smoke", 0.1),
    ]:
        cache.load_or_train(name, make_model(), counting_trainer(calls), hparams={"lr": lr}, profile=profile)
    assert len(calls) == 4
    assert len(list(tmp_path.glob("*.pt"))) == 4


def test_key_changes_with_code():
    assert cache.cache_key("m", "cpu", {}, "code-a") != cache.cache_key("m", "cpu", {}, "code-b")
    assert cache.code_hash([nn.Linear]) != cache.code_hash([nn.Conv2d])
    assert cache.code_hash([nn.Linear]) == cache.code_hash([nn.Linear, nn.Linear])


def test_corrupted_file_is_reported_and_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    calls: list[int] = []
    run = cache.load_or_train("tiny", make_model(), counting_trainer(calls), hparams={}, profile="smoke")
    run.path.write_bytes(run.path.read_bytes()[:20])  # truncate
    import pytest

    with pytest.warns(UserWarning, match="unreadable"):
        again = cache.load_or_train(
            "tiny", make_model(), counting_trainer(calls), hparams={}, profile="smoke"
        )
    assert len(calls) == 2 and not again.from_cache
    assert cache.load_or_train(
        "tiny", make_model(), counting_trainer(calls), hparams={}, profile="smoke"
    ).from_cache


def test_files_load_with_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    run = cache.load_or_train("tiny", make_model(), counting_trainer([]), hparams={}, profile="smoke")
    stored = torch.load(run.path, weights_only=True)
    assert set(stored) >= {"state_dict", "history"}
