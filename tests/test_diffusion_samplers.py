"""Tests of book/diffusion_samplers.py: sub-sequences, the DDPM and DDIM steps and their equivalences."""

import pytest
import torch

from book.ddpm import extract, linear_beta_schedule
from book.diffusion_samplers import (
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    diffusion_images,
    jump_constants,
    reverse_process,
    timestep_sequence,
)

SCHEDULE = linear_beta_schedule()
T = SCHEDULE.num_steps


def test_timestep_sequences():
    assert timestep_sequence(T, T) == list(range(1, T + 1))
    assert timestep_sequence(T, 10) == list(range(100, 1001, 100))
    assert timestep_sequence(T, 1) == [T]
    for count in [3, 7, 33, 999]:
        taus = timestep_sequence(T, count)
        assert len(taus) == count and taus[-1] == T and taus[0] >= 1
        assert all(b > a for a, b in zip(taus, taus[1:], strict=False))
    assert timestep_sequence(T, [1, 10, 1000]) == [1, 10, 1000]


@pytest.mark.parametrize("steps", [0, -5, T + 1, [], [0, 10], [10, 10, 20], [20, 10], [5, 1001]])
def test_invalid_step_choices_raise(steps):
    with pytest.raises(ValueError, match="steps|sub-sequence"):
        timestep_sequence(T, steps)


def test_sub_sequence_betas_telescope_to_alpha_bar():
    for count in [1, 4, 10, 1000]:
        taus = torch.tensor([0, *timestep_sequence(T, count)])
        *_, beta, _ = jump_constants(SCHEDULE, taus[1:], taus[:-1], (count,))
        assert torch.prod(1 - beta).item() == pytest.approx(SCHEDULE.alpha_bars[T].item(), rel=1e-9)
    t = torch.arange(2, T + 1)
    *_, beta, beta_tilde = jump_constants(SCHEDULE, t, t - 1, (len(t),))
    assert torch.allclose(beta, SCHEDULE.betas[2:]) and torch.allclose(beta_tilde, SCHEDULE.beta_tildes[2:])


def _random_jumps(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    taus = torch.tensor([0, *timestep_sequence(T, count)])
    x_t = torch.randn(count, 1, 3, 3, generator=generator, dtype=torch.float64)
    eps = torch.randn(x_t.shape, generator=generator, dtype=torch.float64)
    return taus[1:], taus[:-1], x_t, eps


@pytest.mark.parametrize("count", [1000, 50, 10, 2, 1])
def test_ddim_with_eta_one_is_ddpm_with_beta_tilde(count):
    t, s, x_t, eps = _random_jumps(count)
    ddpm = ddpm_step(SCHEDULE, eps, x_t, t, s, variance="beta_tilde")
    ddim = ddim_step(SCHEDULE, eps, x_t, t, s, eta=1.0)
    assert torch.allclose(ddpm.mean, ddim.mean, atol=1e-10)
    assert torch.allclose(ddpm.std, ddim.std, atol=1e-10)
    assert torch.allclose(ddpm.x0, ddim.x0)


def test_ddpm_mean_is_the_posterior_mean_and_variances_are_the_schedule_s():
    t, s, x_t, eps = _random_jumps(T)
    step = ddpm_step(SCHEDULE, eps, x_t, t, s, variance="beta")
    ab_t = extract(SCHEDULE.alpha_bars, t, x_t.shape)
    ab_s = extract(SCHEDULE.alpha_bars, s, x_t.shape)
    beta = extract(SCHEDULE.betas, t, x_t.shape)
    alpha = extract(SCHEDULE.alphas, t, x_t.shape)
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    posterior = ab_s.sqrt() * beta / (1 - ab_t) * x0 + alpha.sqrt() * (1 - ab_s) / (1 - ab_t) * x_t
    assert torch.allclose(step.mean, posterior, atol=1e-10)
    assert torch.allclose(step.std.flatten()[1:], SCHEDULE.betas[2:].sqrt())
    assert step.std.flatten()[0] == 0  # the last step adds no noise
    tilde = ddpm_step(SCHEDULE, eps, x_t, t, s, variance="beta_tilde")
    assert torch.allclose(tilde.std.flatten(), SCHEDULE.beta_tildes[1:].sqrt())


def test_ddim_with_eta_zero_is_deterministic_and_ddpm_is_not():
    noise = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))

    def eps(x, t, labels):
        return 0.3 * x

    a = ddim_sample(eps, noise, SCHEDULE, steps=20, generator=torch.Generator().manual_seed(2))
    b = ddim_sample(eps, noise, SCHEDULE, steps=20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.samples, b.samples)
    c = ddpm_sample(eps, noise, SCHEDULE, steps=20, generator=torch.Generator().manual_seed(2))
    d = ddpm_sample(eps, noise, SCHEDULE, steps=20, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(c.samples, d.samples)
    e = ddpm_sample(eps, noise, SCHEDULE, steps=20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(c.samples, e.samples)  # the generator makes it reproducible


@pytest.mark.parametrize("count", [1, 3, 50])
def test_a_single_data_point_is_recovered_exactly(count):
    # With data = one point x*, the exact noise predictor gives x0_hat = x* at every step, so DDIM and DDPM
    # (beta_tilde) end on x* from any noise, with any number of steps.
    target = torch.tensor([[0.7, -0.2]], dtype=torch.float64)

    def eps(x_t, t, labels):
        ab = extract(SCHEDULE.alpha_bars, t, x_t.shape)
        return (x_t - ab.sqrt() * target) / (1 - ab).sqrt()

    noise = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(5)
    for result in [ddim_sample(eps, noise, SCHEDULE, steps=count),
                   ddpm_sample(eps, noise, SCHEDULE, steps=count, generator=generator)]:
        assert torch.allclose(result.samples, target.expand(6, 2), atol=1e-6)


def _gaussian_eps(schedule, std):
    def eps(x_t, t, labels=None):  # the exact E[eps | x_t] for data N(0, std^2)
        ab = extract(schedule.alpha_bars, t, x_t.shape)
        return (1 - ab).sqrt() * x_t / (ab * std**2 + 1 - ab)

    return eps


def _exact_final_std(schedule, step, steps, std):
    """Every sampler is linear on Gaussian data: propagate Var(x) = a^2 Var + sigma^2 exactly."""
    eps = _gaussian_eps(schedule, std)
    visited = [0, *timestep_sequence(schedule.num_steps, steps)][::-1]
    variance, one = 1.0, torch.ones(1, 1, dtype=torch.float64)
    for t, s in zip(visited[:-1], visited[1:], strict=True):
        t_b, s_b = torch.tensor([t]), torch.tensor([s])
        result = step(schedule, eps(one, t_b), one, t_b, s_b)
        variance = result.mean.item() ** 2 * variance + result.std.item() ** 2
    return variance**0.5


def test_gaussian_data_is_reproduced_with_many_steps():
    std = 0.5
    rules = {"beta": lambda *a: ddpm_step(*a, variance="beta"), "beta_tilde": ddpm_step, "ddim": ddim_step}
    # the full 1000-step chain reproduces the data's spread to 1% with every sampler ...
    for rule in rules.values():
        assert _exact_final_std(SCHEDULE, rule, T, std) == pytest.approx(std, rel=0.01)
    # ... while 5 long jumps shrink it (see the chapter), with beta_tilde and DDIM most
    assert _exact_final_std(SCHEDULE, rules["ddim"], 5, std) < 0.9 * std
    few = {name: _exact_final_std(SCHEDULE, rule, 5, std) for name, rule in rules.items()}
    assert few["beta_tilde"] < few["ddim"] < few["beta"]
    # the samplers themselves match the exact values (a shorter chain keeps the test fast)
    short = linear_beta_schedule(100, 1e-3, 0.2)
    eps = _gaussian_eps(short, std)
    noise = torch.randn(20_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    generator = torch.Generator().manual_seed(7)
    runs = [("ddim", 100, ddim_sample(eps, noise, short, steps=100)),
            ("beta", 100, ddpm_sample(eps, noise, short, steps=100, variance="beta", generator=generator)),
            ("beta_tilde", 20, ddpm_sample(eps, noise, short, steps=20, generator=generator))]
    for name, steps, result in runs:
        exact = _exact_final_std(short, rules[name], steps, std)
        assert result.samples.std().item() == pytest.approx(exact, rel=0.02)
        assert abs(result.samples.mean().item()) < 0.02


def test_reverse_process_bookkeeping():
    noise = torch.randn(3, 1, 2, 2)
    calls = []

    def eps(x, t, labels):
        calls.append((int(t[0]), labels))
        return torch.zeros_like(x)

    labels = torch.tensor([1, 2, 3])
    result = reverse_process(eps, noise, SCHEDULE, lambda e, x, t, s: ddim_step(SCHEDULE, e, x, t, s),
                             steps=[10, 500, 1000], labels=labels, return_trajectory=True)
    assert result.nfe == 3 and result.timesteps == [1000, 500, 10, 0]
    assert [c[0] for c in calls] == [1000, 500, 10] and all(c[1] is labels for c in calls)
    assert result.trajectory.shape == (4, 3, 1, 2, 2)
    assert torch.equal(result.trajectory[0], noise) and torch.equal(result.trajectory[-1], result.samples)


def test_invalid_options_raise():
    noise = torch.randn(2, 1, 2, 2)

    def eps(x, t, labels):
        return x

    with pytest.raises(ValueError, match="choose one of beta, beta_tilde"):
        ddpm_sample(eps, noise, SCHEDULE, steps=5, variance="learned")
    with pytest.raises(ValueError, match="eta must lie in"):
        ddim_sample(eps, noise, SCHEDULE, steps=5, eta=1.5)
    with pytest.raises(ValueError, match="choose one of ddpm-beta, ddpm-beta-tilde, ddim"):
        diffusion_images(eps, noise, SCHEDULE, sampler="euler", steps=5)


def test_diffusion_images_chunks_and_returns_pixels():
    noise = torch.randn(7, 1, 4, 4, generator=torch.Generator().manual_seed(9))

    def eps(x, t, labels):
        return 0.5 * x + 0.01 * labels.view(-1, 1, 1, 1)

    labels = torch.arange(7)
    whole = diffusion_images(eps, noise, SCHEDULE, steps=10, labels=labels, batch_size=100)
    chunked = diffusion_images(eps, noise, SCHEDULE, steps=10, labels=labels, batch_size=3)
    assert torch.allclose(whole.samples, chunked.samples, atol=1e-6)
    assert whole.samples.shape == (7, 1, 4, 4) and whole.nfe == 10
    assert whole.samples.min() >= 0 and whole.samples.max() <= 1
    direct = ddim_sample(eps, noise, SCHEDULE, steps=10, labels=labels, clip_x0=True).samples
    assert torch.allclose(whole.samples, ((direct + 1) / 2).clamp(0, 1), atol=1e-6)


def test_clipping_x0():
    t, s, x_t, eps = _random_jumps(50, seed=3)
    eps = 5 * eps  # large noise predictions push x0_hat far outside [-1, 1]
    steps = [ddpm_step(SCHEDULE, eps, x_t, t, s, clip_x0=True),
             ddim_step(SCHEDULE, eps, x_t, t, s, eta=0.3, clip_x0=True)]
    for step in steps:
        assert step.x0.abs().max() <= 1
    # with clipping, DDIM (eta = 1) is still DDPM (beta_tilde)
    ddpm = ddpm_step(SCHEDULE, eps, x_t, t, s, clip_x0=True)
    ddim = ddim_step(SCHEDULE, eps, x_t, t, s, eta=1.0, clip_x0=True)
    assert torch.allclose(ddpm.mean, ddim.mean, rtol=1e-9, atol=1e-9)
    # where x0_hat is already inside [-1, 1], clipping changes nothing
    inside_x0 = 0.5 * torch.tanh(x_t)
    ab_t = extract(SCHEDULE.alpha_bars, t, x_t.shape)
    consistent_eps = (x_t - ab_t.sqrt() * inside_x0) / (1 - ab_t).sqrt()
    plain = ddim_step(SCHEDULE, consistent_eps, x_t, t, s)
    clipped = ddim_step(SCHEDULE, consistent_eps, x_t, t, s, clip_x0=True)
    assert torch.allclose(plain.mean, clipped.mean, atol=1e-9)


@pytest.mark.parametrize(("sampler", "options", "draws"), [
    (ddpm_sample, {"variance": "beta"}, 9),  # every step but the one into x_0
    (ddpm_sample, {"variance": "beta_tilde"}, 9),
    (ddim_sample, {"eta": 0.5}, 9),
    (ddim_sample, {"eta": 0.0}, 0),  # deterministic: the generator is not touched
])
def test_samplers_draw_noise_exactly_where_a_step_is_stochastic(sampler, options, draws):
    """The host-side decision (`ReverseStep.noisy` and s > 0) draws z exactly for the steps whose std > 0."""
    noise = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(11)
    sampler(lambda x, t, labels: 0.1 * x, noise, SCHEDULE, steps=10, generator=generator, **options)
    expected = torch.Generator().manual_seed(11)
    for _ in range(draws):
        torch.randn(noise.shape, generator=expected)
    assert torch.equal(generator.get_state(), expected.get_state())


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_samplers_never_read_a_tensor_back_inside_the_loop(sampler, monkeypatch):
    """On a GPU, `bool(tensor)` or `.item()` makes the processor wait for the GPU in every step."""
    noise = torch.randn(2, 1, 3, 3)
    expected = sampler(lambda x, t, labels: 0.1 * x, noise, SCHEDULE, steps=5,
                       generator=torch.Generator().manual_seed(0)).samples

    def refuse(*args):
        raise AssertionError("a sampler read a tensor's value back to the host")

    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    monkeypatch.setattr(torch.Tensor, "item", refuse)
    result = sampler(lambda x, t, labels: 0.1 * x, noise, SCHEDULE, steps=5,
                     generator=torch.Generator().manual_seed(0))
    monkeypatch.undo()
    assert torch.equal(result.samples, expected)
