"""Tests of book/profiles.py: profile selection, the budget table, seeding and device choice."""

import dataclasses

import numpy as np
import pytest
import torch

from book import profiles
from book.profiles import PROFILE_NAMES, PROFILES, Profile, get_profile, profile_table, seed_everything


def test_every_budget_has_a_value_in_every_profile():
    budgets = [f for f in dataclasses.fields(Profile) if f.name != "name"]
    assert budgets, "the table holds no budget"
    for f in budgets:
        assert set(f.metadata["values"]) == set(PROFILE_NAMES), f.name
        assert f.metadata["help"], f.name


def test_budgets_grow_from_smoke_to_gpu():
    for f in dataclasses.fields(Profile):
        if f.name == "name":
            continue
        smoke, cpu, gpu = (getattr(PROFILES[n], f.name) for n in PROFILE_NAMES)
        assert 0 < smoke <= cpu <= gpu, f"{f.name}: {smoke}, {cpu}, {gpu}"


def test_environment_selects_the_profile(monkeypatch):
    monkeypatch.setenv("BOOK_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    monkeypatch.setenv("BOOK_PROFILE", " CPU ")
    assert get_profile().name == "cpu"


def test_default_follows_cuda(monkeypatch):
    monkeypatch.delenv("BOOK_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "cuda_available", lambda: True)
    assert get_profile().name == "gpu"
    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    assert get_profile().name == "cpu"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; choose one of smoke, cpu, gpu"):
        get_profile("fast")
    monkeypatch.setenv("BOOK_PROFILE", "quick")
    with pytest.raises(ValueError, match="BOOK_PROFILE"):
        get_profile()


def test_profile_table_lists_every_budget_and_value():
    table = profile_table().splitlines()
    budgets = [f for f in dataclasses.fields(Profile) if f.name != "name"]
    assert len(table) == 2 + len(budgets)
    row = next(line for line in table if "`flow_points`" in line)
    assert row.split("|")[2:5] == [f" {PROFILES[n].flow_points:,} " for n in PROFILE_NAMES]


def test_seeding_reproduces_all_generators():
    def draw(seed: int) -> tuple[list[float], ...]:
        generator = seed_everything(seed)
        legacy = np.random.rand(2).tolist()  # noqa: NPY002 (the legacy global generator is seeded too)
        return torch.rand(3).tolist(), legacy, torch.rand(2, generator=generator).tolist()

    assert draw(7) == draw(7)
    assert all(a != b for a, b in zip(draw(7), draw(8), strict=True))
    with pytest.raises(ValueError, match="non-negative"):
        seed_everything(-1)


def test_device_override(monkeypatch):
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert profiles.choose_device() == torch.device("cpu")
    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    monkeypatch.setenv("BOOK_DEVICE", "cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        profiles.choose_device()


def test_autocast_follows_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(profiles, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert profiles.autocast_dtype(cpu) == torch.bfloat16
    monkeypatch.setattr(profiles, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert profiles.autocast_dtype(cpu) == torch.float32
