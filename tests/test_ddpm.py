"""Tests of book/ddpm.py: the noise schedules, their coefficients and jumps, the closed form of the forward
process, the loss and the cached model."""

import math

import pytest
import torch

from book.ddpm import (
    cosine_beta_schedule,
    ddpm_image_loss,
    ddpm_loss,
    forward_step,
    linear_beta_schedule,
    min_snr_weights,
    network_eps,
    per_sample,
    q_sample,
    schedule_from_betas,
    trained_ddpm,
)
from book.training import TrainingRecipe


def test_linear_schedule_values():
    schedule = linear_beta_schedule()
    T = schedule.num_steps
    assert T == 1000
    for field in (schedule.betas, schedule.alpha_bars):
        assert field.shape == (T + 1,) and field.dtype == torch.float64
    assert schedule.betas[0] == 0 and schedule.alpha_bars[0] == 1
    assert schedule.betas[1].item() == pytest.approx(1e-4) and schedule.betas[T].item() == pytest.approx(0.02)
    steps = torch.diff(schedule.betas[1:])
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / (T - 1)))  # linear
    # alpha_bar_t / alpha_bar_{t-1} = alpha_t = 1 - beta_t
    assert torch.allclose(schedule.alpha_bars[1:] / schedule.alpha_bars[:-1], 1 - schedule.betas[1:])
    # alpha_bar_T = prod(1 - beta_t): about exp(-sum beta) = exp(-10.05), near 0
    assert 1e-6 < schedule.alpha_bars[T].item() < 1e-4
    product = math.prod(1 - b for b in schedule.betas[1:].tolist())
    assert schedule.alpha_bars[T].item() == pytest.approx(product)


def test_consecutive_jumps_have_the_step_s_beta_and_the_posterior_variance():
    schedule = linear_beta_schedule(50, 1e-3, 0.2)
    betas = torch.linspace(1e-3, 0.2, 50, dtype=torch.float64).tolist()  # beta_1 .. beta_T, independently
    alpha_bars = [math.prod(1 - b for b in betas[:t]) for t in range(51)]  # alpha_bar_0 = 1
    t = torch.arange(1, 51)
    jump = schedule.jump(t, t - 1, like=torch.zeros(50, 3))
    assert jump.beta.shape == jump.beta_tilde.shape == (50, 1) and jump.beta.dtype == torch.float64
    torch.testing.assert_close(jump.beta.flatten(), torch.tensor(betas, dtype=torch.float64), rtol=1e-12,
                               atol=0)
    expected = [(1 - alpha_bars[k - 1]) / (1 - alpha_bars[k]) * betas[k - 1] for k in range(1, 51)]
    torch.testing.assert_close(jump.beta_tilde.flatten(), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-12, atol=0)
    assert jump.beta_tilde[0] == 0  # the first step's posterior is a point: x_0 is known
    # the variance of q(x_{t-1} | x_t, x_0) is 1 / (alpha_t / beta_t + 1 / (1 - abar_{t-1}))
    for k in [2, 10, 50]:
        precision = (1 - betas[k - 1]) / betas[k - 1] + 1 / (1 - alpha_bars[k - 1])
        assert jump.beta_tilde[k - 1].item() == pytest.approx(1 / precision, rel=1e-12)
        assert jump.beta_tilde[k - 1] < jump.beta[k - 1]
    assert jump.ends_at_data.flatten().tolist() == [True] + [False] * 49


def test_longer_jumps_telescope():
    # beta of a jump from t down to s is 1 - alpha_bar_t / alpha_bar_s = 1 - prod_{s < k <= t} (1 - beta_k)
    schedule = linear_beta_schedule(100, 1e-3, 0.1)
    t, s = torch.tensor([100, 60, 7, 100]), torch.tensor([0, 20, 3, 99])
    jump = schedule.jump(t, s, like=torch.zeros(4, 1, 2, 2))
    assert jump.beta.shape == (4, 1, 1, 1)
    for row, (high, low) in enumerate(zip(t.tolist(), s.tolist(), strict=True)):
        product = math.prod(1 - b for b in schedule.betas[low + 1:high + 1].tolist())
        assert jump.beta[row].item() == pytest.approx(1 - product, rel=1e-12)
        assert jump.end.alpha_bar[row].item() == pytest.approx(schedule.alpha_bars[low].item(), rel=0)


def test_coefficients_at_a_step():
    schedule = cosine_beta_schedule(200)
    t = torch.tensor([0, 1, 77, 200])
    at_t = schedule.at(t, like=torch.zeros(4, 1, 5, 5))
    assert at_t.alpha.shape == at_t.sigma.shape == (4, 1, 1, 1) and at_t.alpha.dtype == torch.float64
    torch.testing.assert_close(at_t.alpha**2 + at_t.sigma**2, torch.ones(4, 1, 1, 1, dtype=torch.float64),
                               rtol=0, atol=1e-15)
    torch.testing.assert_close(at_t.alpha.flatten(), schedule.alpha_bars[t].sqrt(), rtol=0, atol=0)
    assert at_t.alpha[0].item() == 1 and at_t.sigma[0].item() == 0  # step 0 is the data
    assert at_t.sigma[-1].item() > 0.999  # step T is (almost) pure noise
    assert schedule.at(t, like=torch.zeros(4, 2)).alpha.shape == (4, 1)


def test_invalid_schedules_are_refused():
    for betas in [[], [0.0, 0.1], [0.1, 1.0], [-0.1]]:
        with pytest.raises(ValueError, match="between 0 and 1|non-empty"):
            schedule_from_betas(torch.tensor(betas))
    with pytest.raises(ValueError, match="positive"):
        linear_beta_schedule(0)
    with pytest.raises(ValueError, match="positive"):
        cosine_beta_schedule(-3)


def test_cosine_schedule_follows_its_definition():
    T, s = 200, 0.008
    schedule = cosine_beta_schedule(T, offset=s)
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    for t in [0, 1, 50, 100, 150]:
        assert schedule.alpha_bars[t].item() == pytest.approx(f[t] / f[0], rel=1e-10)
    assert bool((schedule.betas[1:] <= 0.999).all()) and bool((torch.diff(schedule.alpha_bars) < 0).all())


def test_per_sample_broadcasts_and_keeps_the_dtype():
    values = torch.tensor([0.0, 1.5, 5.0], dtype=torch.float64)
    picked = per_sample(values, torch.zeros(3, 1, 28, 28))
    assert picked.shape == (3, 1, 1, 1) and picked.dtype == torch.float64
    assert picked.flatten().tolist() == [0.0, 1.5, 5.0]
    assert per_sample(values, torch.zeros(3, 2)).shape == (3, 1)
    x = torch.ones(3, 2, 4)
    assert (per_sample(values, x) * x)[:, 1, 3].tolist() == [0.0, 1.5, 5.0]  # row b scaled by values[b]


def test_schedule_moves_every_table_at_once():
    schedule = linear_beta_schedule(50)
    moved = schedule.to(torch.device("meta"))  # a device without data: only placement is checked
    assert all(getattr(moved, name).device.type == "meta" for name in ("betas", "alpha_bars"))
    assert moved.num_steps == 50
    same = schedule.to(torch.device("cpu"))
    assert torch.equal(same.alpha_bars, schedule.alpha_bars) and torch.equal(same.betas, schedule.betas)


def test_closed_form_matches_iterating_the_chain():
    schedule = linear_beta_schedule(100, 1e-3, 0.1)
    generator = torch.Generator().manual_seed(0)
    n = 50_000
    x0 = 0.8 * (2 * torch.randint(0, 2, (n, 1), generator=generator, dtype=torch.float64) - 1)
    x = x0.clone()
    for t in range(1, 101):
        x = forward_step(schedule, x, torch.full((n,), t), torch.randn(x.shape, generator=generator,
                                                                       dtype=torch.float64))
        if t in (5, 30, 100):
            direct = q_sample(schedule, x0, torch.full((n,), t), torch.randn(x.shape, generator=generator,
                                                                             dtype=torch.float64))
            ab = schedule.alpha_bars[t].item()
            for sample in (x, direct):
                assert sample.mean().item() == pytest.approx(math.sqrt(ab) * x0.mean().item(), abs=0.02)
                assert sample.var().item() == pytest.approx(ab * x0.var().item() + 1 - ab, abs=0.02)
            # the covariance with x_0 is sqrt(alpha_bar_t) Var(x_0), for the chain and the closed form
            for sample in (x, direct):
                covariance = ((sample - sample.mean()) * (x0 - x0.mean())).mean().item()
                assert covariance == pytest.approx(math.sqrt(ab) * x0.var().item(), abs=0.02)


def test_noise_free_chain_scales_by_sqrt_alpha_bar():
    schedule = linear_beta_schedule(30, 1e-2, 0.3)
    x0 = torch.randn(4, 3, dtype=torch.float64)
    x = x0
    for t in range(1, 31):
        x = forward_step(schedule, x, torch.full((4,), t), torch.zeros_like(x))
    assert torch.allclose(x, schedule.alpha_bars[30].sqrt() * x0, atol=1e-12)


def test_loss_is_zero_for_the_oracle_and_draws_valid_steps():
    schedule = linear_beta_schedule()
    x0 = torch.randn(256, 1, 4, 4)
    seen = []

    def oracle(x_t, t, labels):  # recovers the noise exactly from x_t and the known x_0
        seen.append(t)
        alpha_bar = schedule.alpha_bars[t].view(-1, 1, 1, 1)
        return ((x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()).float()

    loss = ddpm_loss(oracle, x0, schedule, generator=torch.Generator().manual_seed(1))
    assert loss.item() < 1e-8
    assert seen[0].min() >= 1 and seen[0].max() <= 1000 and seen[0].dtype == torch.long
    # a predictor of zero scores E||eps||^2 = 1
    generator = torch.Generator().manual_seed(2)
    zero = ddpm_loss(lambda x, t, c: torch.zeros_like(x), x0, schedule, generator=generator)
    assert zero.item() == pytest.approx(1.0, abs=0.05)


def test_loss_of_the_exact_predictor_for_gaussian_data():
    schedule = linear_beta_schedule()
    std = 0.5

    def exact(x_t, t, labels):
        alpha_bar = schedule.alpha_bars[t].view(-1, 1)
        return (1 - alpha_bar).sqrt() * x_t / (alpha_bar * std**2 + 1 - alpha_bar)

    generator = torch.Generator().manual_seed(3)
    x0 = std * torch.randn(200_000, 1, dtype=torch.float64, generator=generator)
    ab = schedule.alpha_bars[1:]
    expected = (1 - (1 - ab) / (ab * std**2 + 1 - ab)).mean().item()
    assert ddpm_loss(exact, x0, schedule, generator=generator).item() == pytest.approx(expected, abs=0.01)


def test_min_snr_weights_cap_the_signal_to_noise_ratio():
    schedule = linear_beta_schedule()
    snr = schedule.alpha_bars / (1 - schedule.alpha_bars)
    weights = min_snr_weights(schedule, 5.0)
    assert weights.shape == (1001,) and weights[0] == 0
    low = snr[1:] <= 5.0
    assert torch.equal(weights[1:][low], torch.ones(int(low.sum()), dtype=torch.float64))
    assert torch.allclose(weights[1:][~low], 5.0 / snr[1:][~low])
    assert 0 < (~low).sum() < 1000 and weights[1] == pytest.approx(5.0 / snr[1].item())
    with pytest.raises(ValueError, match="gamma must be positive"):
        min_snr_weights(schedule, 0.0)


def test_weighted_loss_weights_each_sample_by_its_step():
    schedule = linear_beta_schedule()
    x0 = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    t = torch.tensor([1, 2, 50, 300, 700, 1000])
    eps = torch.randn_like(x0)

    def zero(x_t, t_, labels):
        return torch.zeros_like(x_t)

    weights = torch.linspace(0, 2, 1001, dtype=torch.float64)
    by_hand = (weights[t] * eps.pow(2).flatten(1).mean(dim=1)).mean()
    weighted = ddpm_loss(zero, x0, schedule, t=t, eps=eps, step_weights=weights)
    assert weighted.item() == pytest.approx(by_hand.item(), rel=1e-12)
    ones = ddpm_loss(zero, x0, schedule, t=t, eps=eps, step_weights=torch.ones(1001, dtype=torch.float64))
    assert ones.item() == pytest.approx(ddpm_loss(zero, x0, schedule, t=t, eps=eps).item(), rel=1e-12)
    # eq-ddpm-snr-weight: with w = 1 / SNR the noise error becomes the data error
    snr = schedule.alpha_bars / (1 - schedule.alpha_bars)
    at = schedule.at(t, x0)
    x_t = at.alpha * x0 + at.sigma * eps
    guess = torch.randn_like(x0)
    x0_error = (x0 - (x_t - at.sigma * guess) / at.alpha).pow(2).flatten(1).mean(dim=1).mean()
    data_loss = ddpm_loss(lambda *_: guess, x0, schedule, t=t, eps=eps, step_weights=1 / snr)
    assert data_loss.item() == pytest.approx(x0_error.item(), rel=1e-9)


class _RecordingNet(torch.nn.Module):
    """Returns zeros and records the time and labels it was called with."""

    class config:  # noqa: N801 (mimics UNetConfig's attribute)
        null_class = 10

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x, t, labels=None):
        self.calls.append((t.clone(), None if labels is None else labels.clone()))
        return x * self.weight


def test_network_eps_passes_time_as_a_fraction_of_T():
    net = _RecordingNet()
    eps = network_eps(net, 1000, torch.device("cpu"))
    out = eps(torch.randn(3, 1, 2, 2), torch.tensor([1, 500, 1000]), torch.tensor([1, 2, 3]))
    assert out.dtype == torch.float32
    time_seen, labels_seen = net.calls[0]
    assert torch.allclose(time_seen, torch.tensor([0.001, 0.5, 1.0]))
    assert labels_seen.tolist() == [1, 2, 3]


def test_image_loss_drops_labels_to_the_null_class():
    net = _RecordingNet()
    schedule = linear_beta_schedule()
    cpu = torch.device("cpu")
    x0, labels = torch.randn(8, 1, 2, 2), torch.arange(8)
    ddpm_image_loss(net, x0, labels, schedule=schedule, device=cpu, label_dropout=1.0)
    assert net.calls[-1][1].tolist() == [10] * 8
    x0, labels = torch.randn(8, 1, 2, 2), torch.arange(8)
    ddpm_image_loss(net, x0, labels, schedule=schedule, device=cpu, label_dropout=0.0)
    assert net.calls[-1][1].tolist() == list(range(8))


def test_trained_ddpm_is_seeded_and_cached_per_dataset(tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 28, 28, generator=generator) * 2 - 1, torch.arange(8) % 10
    recipe = TrainingRecipe(epochs=1, batch_size=4, lr=2e-3, label_dropout=0.2)
    cpu = torch.device("cpu")
    runs = []
    for cache, draws in [("a", 0), ("a", 0), ("b", 5)]:  # "b": an empty cache, another global RNG state
        monkeypatch.setenv("BOOK_CACHE", str(tmp_path / cache))
        torch.manual_seed(123)
        torch.randn(draws)
        runs.append(trained_ddpm(images, labels, recipe, dataset="mnist", device=cpu))
    assert [run.from_cache for run in runs] == [False, True, False]
    assert not runs[1].model.training and len(runs[0].history["loss"]) == 2
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[name]), name
        assert torch.equal(tensor, runs[2].model.state_dict()[name]), name  # the recipe's seed decides
    assert runs[0].path.name.startswith("ddpm-unet-mnist-")
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path / "a"))
    fashion = trained_ddpm(images, labels, recipe, dataset="fashion-mnist", device=cpu)
    assert not fashion.from_cache and fashion.path.name.startswith("ddpm-unet-fashion-mnist-")


def test_trained_ddpm_fine_tunes_from_a_run_and_keys_the_cache_by_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 28, 28, generator=generator) * 2 - 1, torch.arange(8) % 10
    cpu = torch.device("cpu")
    start = trained_ddpm(images, labels, TrainingRecipe(epochs=1, batch_size=4, lr=2e-3), dataset="mnist",
                         device=cpu)
    still = TrainingRecipe(epochs=1, batch_size=4, lr=1e-12)  # Adam moves each weight by about lr per step
    scratch = trained_ddpm(images, labels, still, dataset="fashion-mnist", device=cpu)
    tuned = trained_ddpm(images, labels, still, dataset="fashion-mnist", device=cpu, start_from=start)
    assert not tuned.from_cache and tuned.path != scratch.path  # the starting weights are part of the key
    for name, tensor in start.model.state_dict().items():
        if tensor.is_floating_point() and tensor.numel() > 1:
            assert torch.allclose(tuned.model.state_dict()[name], tensor, atol=1e-9), name
    changed = [name for name, tensor in start.model.state_dict().items()
               if not torch.allclose(scratch.model.state_dict()[name], tensor, atol=1e-6)]
    assert changed  # from scratch, the weights are the random initial ones, not the start's
    again = trained_ddpm(images, labels, still, dataset="fashion-mnist", device=cpu, start_from=start)
    assert again.from_cache and again.path == tuned.path
