"""Tests of book/profiles.py: profile selection, the budget table, seeding and device choice."""

import dataclasses
import os
import random

import numpy as np
import pytest
import torch

from book import profiles
from book.profiles import (
    PROFILE_NAMES,
    PROFILES,
    Profile,
    get_profile,
    profile_table,
    seed_everything,
    seeded,
    seeded_generator,
)
from book.training import TrainingRecipe


def test_every_budget_has_a_value_in_every_profile():
    budgets = [f for f in dataclasses.fields(Profile) if f.name != "name"]
    assert budgets, "the table holds no budget"
    for f in budgets:
        assert set(f.metadata["values"]) == set(PROFILE_NAMES), f.name
        assert f.metadata["help"], f.name


def test_budgets_grow_from_smoke_to_gpu():
    recipes = 0
    for f in dataclasses.fields(Profile):
        if f.name == "name":
            continue
        smoke, cpu, gpu = (getattr(PROFILES[n], f.name) for n in PROFILE_NAMES)
        if isinstance(smoke, str):  # a choice, not a budget
            continue
        if isinstance(smoke, TrainingRecipe):  # a recipe's budget is its number of epochs
            assert isinstance(cpu, TrainingRecipe) and isinstance(gpu, TrainingRecipe), f.name
            recipes += 1
            smoke, cpu, gpu = smoke.epochs, cpu.epochs, gpu.epochs
        if isinstance(smoke, tuple):  # a list of settings to measure: its budget is its length
            smoke, cpu, gpu = len(smoke), len(cpu), len(gpu)
        assert 0 < smoke <= cpu <= gpu, f"{f.name}: {smoke}, {cpu}, {gpu}"
    assert recipes, "no training recipe in the table: the recipe branch above was never taken"


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
    row = next(line for line in table if "`unet_recipe`" in line)
    assert row.split("|")[2:5] == [f" {PROFILES[n].unet_recipe.summary()} " for n in PROFILE_NAMES]


def test_seeding_reproduces_all_global_generators():
    def draw(seed: int) -> tuple[list[float], ...]:
        assert seed_everything(seed) is None
        legacy = np.random.rand(2).tolist()  # noqa: NPY002 (the legacy global generator is seeded too)
        return torch.rand(3).tolist(), legacy, [random.random()]

    assert draw(7) == draw(7)
    assert all(a != b for a, b in zip(draw(7), draw(8), strict=True))
    with pytest.raises(ValueError, match="non-negative"):
        seed_everything(-1)


def test_seeded_generator_repeats_its_draws_and_leaves_the_global_state_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = torch.randn(5, generator=seeded_generator(4))
    again = torch.randn(5, generator=seeded_generator(4))
    other = torch.randn(5, generator=seeded_generator(5))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first, torch.randn(5, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(state, torch.random.get_rng_state())  # nothing global was read or changed
    assert seeded_generator(0).device == torch.device("cpu")
    for bad in (-1, 1.5, "3"):
        with pytest.raises(ValueError, match="non-negative integer"):
            seeded_generator(bad)


def test_seeded_forks_the_global_generator():
    torch.manual_seed(9)
    torch.rand(3)
    state = torch.random.get_rng_state()
    torch.manual_seed(2)
    expected = torch.rand(4)
    torch.random.set_rng_state(state)
    with seeded(2):
        inside = torch.rand(4)
    assert torch.equal(inside, expected)  # the draws of torch.manual_seed(2) ...
    assert torch.equal(torch.random.get_rng_state(), state)  # ... and the state is as before the block
    with pytest.raises(RuntimeError, match="inside"):  # restored also when the block raises
        with seeded(2):
            torch.rand(10)
            raise RuntimeError("inside")
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError, match="non-negative"):
        with seeded(-3):
            pass


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
