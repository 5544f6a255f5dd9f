"""Tests of book/ddpm.py: the noise schedules, the closed form of the forward process, the loss."""

import math

import pytest
import torch

from book.ddpm import (
    cosine_beta_schedule,
    ddpm_image_loss,
    ddpm_loss,
    extract,
    forward_step,
    linear_beta_schedule,
    network_eps,
    q_sample,
    schedule_from_betas,
    trained_ddpm,
)


def test_linear_schedule_values():
    schedule = linear_beta_schedule()
    T = schedule.num_steps
    assert T == 1000
    for field in (schedule.betas, schedule.alphas, schedule.alpha_bars, schedule.beta_tildes):
        assert field.shape == (T + 1,) and field.dtype == torch.float64
    assert schedule.betas[0] == 0 and schedule.alpha_bars[0] == 1
    assert schedule.betas[1].item() == pytest.approx(1e-4) and schedule.betas[T].item() == pytest.approx(0.02)
    steps = torch.diff(schedule.betas[1:])
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / (T - 1)))  # linear
    assert torch.allclose(schedule.alphas, 1 - schedule.betas)
    # alpha_bar_T = prod(1 - beta_t): about exp(-sum beta) = exp(-10.05), near 0
    assert 1e-6 < schedule.alpha_bars[T].item() < 1e-4
    product = math.prod(1 - b for b in schedule.betas[1:].tolist())
    assert schedule.alpha_bars[T].item() == pytest.approx(product)


def test_beta_tilde_is_the_posterior_variance():
    schedule = linear_beta_schedule(50, 1e-3, 0.2)
    assert schedule.beta_tildes[1] == 0  # the first step's posterior is a point: x_0 is known
    for t in [2, 10, 50]:
        precision = schedule.alphas[t] / schedule.betas[t] + 1 / (1 - schedule.alpha_bars[t - 1])
        assert schedule.beta_tildes[t].item() == pytest.approx(1 / precision.item(), rel=1e-12)
        assert schedule.beta_tildes[t] < schedule.betas[t]


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


def test_extract_indexes_and_broadcasts():
    values = torch.arange(11, dtype=torch.float64) * 0.5
    t = torch.tensor([0, 3, 10])
    picked = extract(values, t, (3, 1, 28, 28))
    assert picked.shape == (3, 1, 1, 1) and picked.dtype == torch.float64
    assert picked.flatten().tolist() == [0.0, 1.5, 5.0]
    assert extract(values, t, (3, 2)).shape == (3, 1)


def test_schedule_moves_every_table_at_once():
    schedule = linear_beta_schedule(50)
    moved = schedule.to(torch.device("meta"))  # a device without data: only placement is checked
    assert all(getattr(moved, name).device.type == "meta"
               for name in ("betas", "alphas", "alpha_bars", "beta_tildes"))
    assert moved.num_steps == 50
    same = schedule.to(torch.device("cpu"))
    assert torch.equal(same.alpha_bars, schedule.alpha_bars) and torch.equal(same.beta_tildes,
                                                                            schedule.beta_tildes)


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
        alpha_bar = extract(schedule.alpha_bars, t, x_t.shape)
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
        alpha_bar = extract(schedule.alpha_bars, t, x_t.shape)
        return (1 - alpha_bar).sqrt() * x_t / (alpha_bar * std**2 + 1 - alpha_bar)

    generator = torch.Generator().manual_seed(3)
    x0 = std * torch.randn(200_000, 1, dtype=torch.float64, generator=generator)
    ab = schedule.alpha_bars[1:]
    expected = (1 - (1 - ab) / (ab * std**2 + 1 - ab)).mean().item()
    assert ddpm_loss(exact, x0, schedule, generator=generator).item() == pytest.approx(expected, abs=0.01)


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


def test_trained_ddpm_refuses_unknown_datasets():
    with pytest.raises(ValueError, match="choose one of mnist, fashion-mnist"):
        trained_ddpm("cifar10", epochs=1)
