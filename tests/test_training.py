"""Tests of book/training.py (chapter 01): the training recipe, its learning-rate schedule and the training
loop shared by every chapter."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from book.training import TrainingRecipe, drop_labels, fit, learning_rate_schedule


def regression_data(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


def squared_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (model(x).squeeze(-1) - y).pow(2).mean()


def fresh_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def scheduled_rates(recipe: TrainingRecipe, total_steps: int) -> list[float]:
    """The learning rate of each of ``total_steps`` optimizer steps under ``recipe``'s schedule, and the rate
    left after the last step (``total_steps + 1`` values)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    schedule = learning_rate_schedule(optimizer, recipe, total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return [*rates, optimizer.param_groups[0]["lr"]]


def test_fit_learns_a_linear_map_and_records_history():
    x, y = regression_data()
    model = fresh_model()
    calls = []

    def validate(m: nn.Module) -> dict[str, float]:
        calls.append((m.training, torch.is_grad_enabled()))
        return {"validation_mse": squared_error(m, x, y).item()}

    recipe = TrainingRecipe(epochs=40, batch_size=100, lr=0.05)
    history = fit(model, squared_error, (x, y), recipe, validate=validate)
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
    model = fresh_model()
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    torch.optim.Adam.step = recording_step
    try:
        fit(model, squared_error, (x, y), TrainingRecipe(epochs=4, batch_size=16, lr=0.1))
    finally:
        torch.optim.Adam.step = original_step
    steps = 16
    expected = [0.05 * (1 + math.cos(math.pi * k / steps)) for k in range(steps)]
    assert rates == pytest.approx(expected, rel=1e-6)


def test_cosine_schedule_without_warmup_is_pytorch_s_cosine_annealing():
    recipe = TrainingRecipe(epochs=1, batch_size=1, lr=0.3)
    total = 37
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    expected.append(optimizer.param_groups[0]["lr"])
    assert scheduled_rates(recipe, total) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # ... which is lr (1 + cos(pi k / K)) / 2, ending at 0
    closed_form = [0.15 * (1 + math.cos(math.pi * k / total)) for k in range(total + 1)]
    assert scheduled_rates(recipe, total) == pytest.approx(closed_form, rel=1e-9, abs=1e-12)


def test_constant_schedule_keeps_the_rate():
    recipe = TrainingRecipe(epochs=1, batch_size=1, lr=0.02, lr_schedule="constant")
    assert scheduled_rates(recipe, 10) == pytest.approx([0.02] * 11, rel=1e-12)


def test_warmup_rises_linearly_to_the_peak_then_anneals_to_zero():
    peak, warmup, total = 0.4, 5, 25
    rates = scheduled_rates(TrainingRecipe(epochs=1, batch_size=1, lr=peak, warmup_steps=warmup), total)
    rising = rates[: warmup + 1]
    increments = [b - a for a, b in zip(rising, rising[1:], strict=False)]
    assert 0 < rising[0] <= peak / warmup * (1 + 1e-12)  # starts small, not at the peak
    assert increments == pytest.approx([increments[0]] * warmup, rel=1e-9) and increments[0] > 0  # linear
    assert rates[warmup] == pytest.approx(peak, rel=1e-12)  # the peak, reached after the warm-up
    main = total - warmup
    expected = [peak / 2 * (1 + math.cos(math.pi * k / main)) for k in range(main + 1)]
    assert rates[warmup:] == pytest.approx(expected, rel=1e-9, abs=1e-12)  # then the cosine ...
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)  # ... down to 0 after the last step
    assert max(rates) == pytest.approx(peak, rel=1e-12)


def test_adamw_decays_the_weights_and_adam_does_not():
    # With a loss whose gradient is zero, Adam's update is 0/(0 + eps) = 0 and AdamW only shrinks the
    # weights: w_K = w_0 prod_k (1 - lr_k wd), with the cosine-annealed rates lr_k.
    x, y = regression_data(64)

    def flat(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.0 * squared_error(model, x, y)

    lr, decay, steps = 0.1, 0.5, 8
    start = fresh_model().weight.detach().clone()
    decayed = fresh_model()
    fit(decayed, flat, (x, y), TrainingRecipe(epochs=1, batch_size=8, lr=lr, optimizer="adamw",
                                              weight_decay=decay))
    shrink = math.prod(1 - decay * lr / 2 * (1 + math.cos(math.pi * k / steps)) for k in range(steps))
    torch.testing.assert_close(decayed.weight.detach(), shrink * start, rtol=1e-6, atol=0)
    assert shrink < 0.9  # a visible decay, so that the check above can fail
    for recipe in (TrainingRecipe(epochs=1, batch_size=8, lr=lr),
                   TrainingRecipe(epochs=1, batch_size=8, lr=lr, optimizer="adamw")):
        plain = fresh_model()
        fit(plain, flat, (x, y), recipe)
        assert torch.equal(plain.weight.detach(), start), recipe.optimizer


def test_fit_is_reproducible_and_restores_the_global_rng():
    x, y = regression_data(200)

    def noisy_loss(model, x, y):  # draws from the global generator, as chapter 2's loss does
        return squared_error(model, x + 0.1 * torch.randn_like(x), y)

    recipe = TrainingRecipe(epochs=2, batch_size=32, seed=5)
    results = []
    for _ in range(2):
        model = fresh_model()
        torch.manual_seed(99)
        state = torch.random.get_rng_state()
        history = fit(model, noisy_loss, (x, y), recipe)
        assert torch.equal(state, torch.random.get_rng_state())
        results.append((history["loss"], model.weight.detach().clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    other = fit(fresh_model(), noisy_loss, (x, y), dataclasses.replace(recipe, seed=6))
    assert other["loss"] != results[0][0]


def test_non_finite_loss_raises_with_a_remedy():
    x, y = regression_data(64)

    def broken(model, x, y):
        return squared_error(model, x, y) + torch.log(x[:, 0]).mean()

    with pytest.raises(FloatingPointError, match=r"epoch 1/3, step 1/4.*lower the learning rate"):
        fit(fresh_model(), broken, (x, y), TrainingRecipe(epochs=3, batch_size=16))


@pytest.mark.parametrize(("options", "message"), [
    ({"epochs": 0}, r"epochs and batch_size must be positive.*epochs=0"),
    ({"epochs": -1}, r"must be positive.*epochs=-1"),
    ({"batch_size": 0}, r"must be positive.*batch_size=0"),
    ({"warmup_steps": -1}, r"warmup_steps a non-negative one.*warmup_steps=-1"),
    ({"epochs": 2.5}, r"positive integers.*epochs=2.5"),
    ({"optimizer": "adamw", "weight_decay": -0.1}, r"weight_decay must be non-negative"),
    ({"lr": 0.0}, r"learning rate must be positive, got 0.0"),
    ({"lr": -1e-3}, r"learning rate must be positive"),
    ({"lr": math.nan}, r"learning rate must be positive, got nan"),
    ({"optimizer": "sgd"}, r"unknown optimizer 'sgd'.*choose one of adam, adamw"),
    ({"lr_schedule": "linear"}, r"schedule 'linear'.*one of cosine, constant"),
    ({"weight_decay": 0.01}, r"weight decay needs optimizer='adamw'"),
    ({"label_dropout": 1.5}, r"label_dropout is a probability in \[0, 1\], got 1.5"),
    ({"label_dropout": -0.1}, r"label_dropout is a probability"),
])
def test_invalid_recipes_are_refused_naming_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        TrainingRecipe(**{"epochs": 1, "batch_size": 8, **options})


def test_recipe_is_frozen_and_its_summary_lists_what_differs_from_the_defaults():
    recipe = TrainingRecipe(epochs=8, batch_size=128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.epochs = 9
    assert recipe.summary() == "8 epochs, batch 128, adam 0.001 (cosine)"
    single = TrainingRecipe(epochs=1, batch_size=4, lr=2e-3)
    assert single.summary() == "1 epoch, batch 4, adam 0.002 (cosine)"
    quarter = TrainingRecipe(epochs=1, batch_size=4, lr=2.5e-4)
    assert quarter.summary().startswith("1 epoch, batch 4, adam 0.00025")
    custom = TrainingRecipe(epochs=2, batch_size=64, optimizer="adamw", weight_decay=0.01, warmup_steps=100,
                            label_dropout=0.2, seed=3, lr_schedule="constant")
    assert custom.summary() == ("2 epochs, batch 64, adamw 0.001 (constant), warmup steps 100, "
                                "weight decay 0.01, label dropout 0.2, seed 3")


def test_mismatched_tensors_are_refused():
    x, y = regression_data(10)
    with pytest.raises(ValueError, match="one common length"):
        fit(fresh_model(), squared_error, (x, y[:5]), TrainingRecipe(epochs=1, batch_size=4))


def test_drop_labels():
    labels = torch.arange(10).repeat(1000)
    generator = torch.Generator().manual_seed(0)
    dropped = drop_labels(labels, 0.2, null_class=10, generator=generator)
    is_null = dropped == 10
    assert abs(is_null.double().mean().item() - 0.2) < 0.02
    torch.testing.assert_close(dropped[~is_null], labels[~is_null])
    assert torch.equal(drop_labels(labels, 0.0, 10), labels)
    assert (drop_labels(labels, 1.0, 10) == 10).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drop_labels(labels, 1.5, 10)


def test_a_grad_scaler_changes_nothing_but_the_scale_of_the_backward_pass():
    """Loss scaling by a power of two is exact: the scaled run ends with the same weights as the plain one."""
    x, y = regression_data()
    recipe = TrainingRecipe(epochs=2, batch_size=64, lr=1e-2)
    weights = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        fit(model, squared_error, (x, y), recipe, grad_scaler=scaler)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_a_grad_scaler_skips_a_step_whose_gradients_overflow():
    x, y = regression_data(64)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # scaled gradients overflow float32

    def loss(model, x, y):
        return squared_error(model, x, y) * 1e30

    fit(model, loss, (x, y), TrainingRecipe(epochs=1, batch_size=64), grad_scaler=scaler)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert scaler.get_scale() < 2.0**127  # halved after the overflow
