"""Tests of book/profiles.py: profile selection, the budget table, seeding and device choice."""

import dataclasses
import os

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


@pytest.fixture
def restore_deterministic_mode():
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2:]


def test_seeding_asks_for_deterministic_kernels_only_with_cuda(monkeypatch, restore_deterministic_mode):
    torch.use_deterministic_algorithms(False)
    monkeypatch.setattr(profiles, "cuda_available", lambda: False)
    seed_everything(0)
    assert not torch.are_deterministic_algorithms_enabled()  # the CPU build runs exactly as before
    monkeypatch.setattr(profiles, "cuda_available", lambda: True)
    torch.backends.cudnn.benchmark = True
    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"]  # set when book.profiles was imported, before cuBLAS starts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU kernels: CUDA only")
def test_training_on_cuda_is_repeatable(restore_deterministic_mode):
    """Two seeded trainings of the book's networks on a GPU end with bit-identical weights."""
    from book.evaluation import MNISTClassifier
    from book.unet import UNet, UNetConfig

    def train(build, inputs):
        seed_everything(3)
        model = build().cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(5):
            optimizer.zero_grad()
            inputs(model).pow(2).mean().backward()
            optimizer.step()
        return [p.detach().cpu() for p in model.parameters()]

    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)).cuda()
    t, y = torch.rand(64, generator=torch.Generator().manual_seed(1)).cuda(), torch.arange(64).cuda() % 10
    cases = [(MNISTClassifier, lambda model: model(x)),
             (lambda: UNet(UNetConfig(num_classes=10)), lambda model: model(x, t, y) - x)]
    for build, inputs in cases:
        first, second = train(build, inputs), train(build, inputs)
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


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
