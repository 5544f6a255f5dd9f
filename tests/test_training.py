"""Tests of book/training.py (chapter 01): the training loop shared by the 2D chapters."""

import math

import pytest
import torch
from torch import nn

from book.training import fit


def regression_data(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


def squared_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (model(x).squeeze(-1) - y).pow(2).mean()


def fresh_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def test_fit_learns_a_linear_map_and_records_history():
    x, y = regression_data()
    model = fresh_model()
    calls = []

    def validate(m: nn.Module) -> dict[str, float]:
        calls.append((m.training, torch.is_grad_enabled()))
        return {"validation_mse": squared_error(m, x, y).item()}

    history = fit(model, squared_error, (x, y), epochs=40, batch_size=100, lr=0.05, validate=validate)
    assert len(history["loss"]) == 40 * math.ceil(512 / 100)  # the last, smaller batch counts
    assert len(history["epoch_loss"]) == len(history["validation_mse"]) == 40
    assert history["validation_mse"][-1] < 1e-3 < history["validation_mse"][0]
    assert torch.allclose(model.weight, torch.tensor([[1.0, -2.0, 0.5]]), atol=0.02)
    assert calls == [(False, False)] * 40 and model.training
    first_epoch = history["loss"][: math.ceil(512 / 100)]
    assert history["epoch_loss"][0] == pytest.approx(sum(first_epoch) / len(first_epoch))


def test_learning_rate_follows_a_cosine_to_zero():
    x, y = regression_data(64)
    rates = []

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return squared_error(model, x, y)

    model = fresh_model()
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    torch.optim.Adam.step = recording_step
    try:
        fit(model, loss_fn, (x, y), epochs=4, batch_size=16, lr=0.1)
    finally:
        torch.optim.Adam.step = original_step
    steps = 16
    expected = [0.05 * (1 + math.cos(math.pi * k / steps)) for k in range(steps)]
    assert rates == pytest.approx(expected, rel=1e-6)


def test_fit_is_reproducible_and_restores_the_global_rng():
    x, y = regression_data(200)

    def noisy_loss(model, x, y):  # draws from the global generator, as chapter 2's loss does
        return squared_error(model, x + 0.1 * torch.randn_like(x), y)

    results = []
    for _ in range(2):
        model = fresh_model()
        torch.manual_seed(99)
        state = torch.random.get_rng_state()
        history = fit(model, noisy_loss, (x, y), epochs=2, batch_size=32, seed=5)
        assert torch.equal(state, torch.random.get_rng_state())
        results.append((history["loss"], model.weight.detach().clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    other = fit(fresh_model(), noisy_loss, (x, y), epochs=2, batch_size=32, seed=6)
    assert other["loss"] != results[0][0]


def test_non_finite_loss_raises_with_a_remedy():
    x, y = regression_data(64)

    def broken(model, x, y):
        return squared_error(model, x, y) + torch.log(x[:, 0]).mean()

    with pytest.raises(FloatingPointError, match=r"epoch 1/3, step 1/4.*lower the learning rate"):
        fit(fresh_model(), broken, (x, y), epochs=3, batch_size=16)


@pytest.mark.parametrize("epochs, batch_size", [(0, 10), (1, 0), (-1, 5)])
def test_bad_budgets_are_refused(epochs, batch_size):
    x, y = regression_data(10)
    with pytest.raises(ValueError, match="must be positive"):
        fit(fresh_model(), squared_error, (x, y), epochs=epochs, batch_size=batch_size)


def test_mismatched_tensors_are_refused():
    x, y = regression_data(10)
    with pytest.raises(ValueError, match="one common length"):
        fit(fresh_model(), squared_error, (x, y[:5]), epochs=1, batch_size=4)
