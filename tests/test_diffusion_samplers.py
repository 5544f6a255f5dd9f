"""Tests of book/diffusion_samplers.py: sub-sequences, the DDPM and DDIM step rules and their equivalences,
the reverse process that runs them."""

import pytest
import torch

from book.ddpm import linear_beta_schedule
from book.diffusion_samplers import (
    DDIMStep,
    DDPMStep,
    diffusion_images,
    predicted_x0,
    probability_flow_euler_step,
    quadratic_steps,
    reverse_process,
    sampler_rule,
    timestep_sequence,
)

SCHEDULE = linear_beta_schedule()
T = SCHEDULE.num_steps


def alpha_bar(schedule, t, like):
    """alpha_bar_t read from the table, shaped (B, 1, ..., 1) like ``like`` (independently of the module)."""
    return schedule.alpha_bars[t].reshape(-1, *([1] * (like.ndim - 1)))


def test_timestep_sequences():
    assert timestep_sequence(T, T) == list(range(1, T + 1))
    assert timestep_sequence(T, 10) == list(range(100, 1001, 100))
    assert timestep_sequence(T, 1) == [T]
    for count in [3, 7, 33, 999]:
        taus = timestep_sequence(T, count)
        assert len(taus) == count and taus[-1] == T and taus[0] >= 1
        assert all(b > a for a, b in zip(taus, taus[1:], strict=False))
    assert timestep_sequence(T, [1, 10, 1000]) == [1, 10, 1000]


def test_quadratic_steps_are_dense_near_the_data_and_end_at_T():
    taus = quadratic_steps(T, 10)
    assert taus == [10, 40, 90, 160, 250, 360, 490, 640, 810, 1000]  # round(T (i / S)^2)
    for count in [1, 2, 20, 50, 100, 500]:
        taus = quadratic_steps(T, count)
        assert len(taus) == count and taus[-1] == T and taus[0] >= 1
        gaps = [b - a for a, b in zip(taus, taus[1:], strict=False)]
        assert all(gap >= 1 for gap in gaps)  # strictly increasing
        assert all(b >= a - 1 for a, b in zip(gaps, gaps[1:], strict=False))  # ever sparser, up to rounding
        assert count < 3 or gaps[-1] > gaps[0]
    assert quadratic_steps(T, 100)[:3] == [1, 2, 3]  # round(0.1) = 0 and round(0.4) = 0: pushed up by one
    assert quadratic_steps(T, T) == timestep_sequence(T, T)  # every step: nothing left to space
    for count in (0, T + 1):
        with pytest.raises(ValueError, match="number of steps"):
            quadratic_steps(T, count)


@pytest.mark.parametrize("steps", [0, -5, T + 1, [], [0, 10], [10, 10, 20], [20, 10], [5, 1001]])
def test_invalid_step_choices_raise(steps):
    with pytest.raises(ValueError, match="steps|sub-sequence"):
        timestep_sequence(T, steps)


def test_sub_sequence_betas_telescope_to_alpha_bar():
    for count in [1, 4, 10, 1000]:
        taus = torch.tensor([0, *timestep_sequence(T, count)])
        beta = SCHEDULE.jump(taus[1:], taus[:-1], like=torch.zeros(count)).beta
        assert torch.prod(1 - beta).item() == pytest.approx(SCHEDULE.alpha_bars[T].item(), rel=1e-9)
    t = torch.arange(2, T + 1)
    jump = SCHEDULE.jump(t, t - 1, like=torch.zeros(len(t)))
    ab_t, ab_s = SCHEDULE.alpha_bars[t], SCHEDULE.alpha_bars[t - 1]
    assert torch.allclose(jump.beta, SCHEDULE.betas[2:])
    assert torch.allclose(jump.beta_tilde, (1 - ab_s) / (1 - ab_t) * SCHEDULE.betas[2:])


def _random_jumps(count, seed=0):
    """The jumps of a ``count``-step sub-sequence, one per row of a batch, with random x_t and noise."""
    generator = torch.Generator().manual_seed(seed)
    taus = torch.tensor([0, *timestep_sequence(T, count)])
    x_t = torch.randn(count, 1, 3, 3, generator=generator, dtype=torch.float64)
    eps = torch.randn(x_t.shape, generator=generator, dtype=torch.float64)
    return taus[1:], taus[:-1], x_t, eps, SCHEDULE.jump(taus[1:], taus[:-1], like=x_t)


@pytest.mark.parametrize("count", [1000, 50, 10, 2, 1])
def test_ddim_with_eta_one_is_ddpm_with_beta_tilde(count):
    *_, x_t, eps, jump = _random_jumps(count)
    ddpm = DDPMStep(variance="beta_tilde")(eps, x_t, jump)
    ddim = DDIMStep(eta=1.0)(eps, x_t, jump)
    assert torch.allclose(ddpm.mean, ddim.mean, atol=1e-10)
    assert torch.allclose(ddpm.std, ddim.std, atol=1e-10)
    assert torch.allclose(ddpm.x0, ddim.x0)
    assert ddpm.noisy and ddim.noisy


def test_ddim_with_eta_one_samples_what_ddpm_with_beta_tilde_samples():
    """The whole reverse process, clipping included, on the same starting and added noise."""
    noise = torch.randn(6, 1, 3, 3, generator=torch.Generator().manual_seed(4))

    def eps(x, t, labels):  # a fixed predictor whose x0_hat leaves [-1, 1] at large t, so clipping acts
        return torch.tanh(x) * (t.view(-1, 1, 1, 1) / T)

    samples = [reverse_process(eps, noise, SCHEDULE, sampler_rule(name, eta=1.0) if name == "ddim"
                               else sampler_rule(name), steps=quadratic_steps(T, 10),
                               generator=torch.Generator().manual_seed(5)).samples
               for name in ("ddim", "ddpm-beta-tilde", "ddpm-beta")]
    assert torch.allclose(samples[0], samples[1], atol=1e-5)
    assert not torch.allclose(samples[0], samples[2], atol=1e-2)  # the other variance does differ


@pytest.mark.parametrize("count", [1000, 50, 10, 2, 1])
def test_the_probability_flow_euler_step_is_ddim_with_eta_zero(count):
    t, s, x_t, eps, jump = _random_jumps(count, seed=1)
    ddim = DDIMStep(eta=0.0)(eps, x_t, jump)
    euler = probability_flow_euler_step(eps, x_t, jump)
    assert torch.allclose(euler, ddim.mean, rtol=1e-9, atol=1e-10)
    assert not ddim.noisy and bool((ddim.std == 0).all())
    # both are x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps, with x0_hat from (eq-ddpm-x0)
    ab_t, ab_s = alpha_bar(SCHEDULE, t, x_t), alpha_bar(SCHEDULE, s, x_t)
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    assert torch.allclose(euler, ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * eps, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("eta", [0.0, 0.3, 0.5, 1.0])
def test_ddim_keeps_the_marginal_of_x_s_given_x_0_for_every_eta(eta):
    # With the exact noise of x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, the DDIM step is
    # x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s - kappa^2) eps + kappa z with kappa^2 = eta^2 beta_tilde:
    # distributed as q(x_s | x_0) = N(sqrt(abar_s) x_0, (1 - abar_s) I) whatever eta.
    t, s, _, eps, _ = _random_jumps(50, seed=4)
    x0 = torch.tanh(torch.randn(eps.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    ab_t, ab_s = alpha_bar(SCHEDULE, t, eps), alpha_bar(SCHEDULE, s, eps)
    x_t = ab_t.sqrt() * x0 + (1 - ab_t).sqrt() * eps
    step = DDIMStep(eta=eta)(eps, x_t, SCHEDULE.jump(t, s, like=x_t))
    beta_tilde = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
    torch.testing.assert_close(step.std, (eta * beta_tilde.sqrt()).expand_as(step.std), rtol=1e-9, atol=1e-12)
    noise_weight = (step.mean - ab_s.sqrt() * x0) / eps  # the coefficient of eps in the mean
    torch.testing.assert_close(noise_weight**2 + step.std**2, (1 - ab_s).expand_as(eps), rtol=1e-7, atol=1e-9)


def test_ddpm_mean_is_the_posterior_mean_and_variances_are_the_schedule_s():
    t, s, x_t, eps, jump = _random_jumps(T)
    step = DDPMStep(variance="beta")(eps, x_t, jump)
    ab_t, ab_s = alpha_bar(SCHEDULE, t, x_t), alpha_bar(SCHEDULE, s, x_t)
    beta = SCHEDULE.betas[t].view(-1, 1, 1, 1)
    alpha = 1 - beta
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    posterior = ab_s.sqrt() * beta / (1 - ab_t) * x0 + alpha.sqrt() * (1 - ab_s) / (1 - ab_t) * x_t
    assert torch.allclose(step.mean, posterior, atol=1e-10)
    torch.testing.assert_close(step.x0, x0, rtol=1e-9, atol=1e-9)
    assert torch.allclose(step.std.flatten()[1:], SCHEDULE.betas[2:].sqrt())
    assert step.std.flatten()[0] == 0  # the last step adds no noise
    tilde = DDPMStep(variance="beta_tilde")(eps, x_t, jump)
    beta_tilde = (1 - ab_s) / (1 - ab_t) * beta
    assert torch.allclose(tilde.std, beta_tilde.sqrt())


def test_predicted_x0_inverts_the_forward_process_and_clips_consistently():
    t, _, x_t, eps, jump = _random_jumps(50, seed=2)
    ab_t = alpha_bar(SCHEDULE, t, x_t)
    x0, same_eps = predicted_x0(eps, x_t, jump.start, clip_x0=False)
    torch.testing.assert_close(ab_t.sqrt() * x0 + (1 - ab_t).sqrt() * same_eps, x_t, rtol=0, atol=1e-10)
    assert torch.equal(same_eps, eps)
    clipped, consistent = predicted_x0(5 * eps, x_t, jump.start, clip_x0=True)
    assert clipped.abs().max() <= 1 and not torch.allclose(consistent, 5 * eps)
    torch.testing.assert_close(ab_t.sqrt() * clipped + (1 - ab_t).sqrt() * consistent, x_t, rtol=0, atol=1e-9)


def test_ddim_with_eta_zero_is_deterministic_and_ddpm_is_not():
    noise = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))

    def eps(x, t, labels):
        return 0.3 * x

    def run(rule, seed):
        generator = torch.Generator().manual_seed(seed)
        return reverse_process(eps, noise, SCHEDULE, rule, steps=20, generator=generator)

    a, b = run(DDIMStep(), 2), run(DDIMStep(), 3)
    assert torch.equal(a.samples, b.samples)
    c, d = run(DDPMStep(), 2), run(DDPMStep(), 3)
    assert not torch.allclose(c.samples, d.samples)
    e = run(DDPMStep(), 2)
    assert torch.equal(c.samples, e.samples)  # the generator makes it reproducible


@pytest.mark.parametrize("count", [1, 3, 50])
def test_a_single_data_point_is_recovered_exactly(count):
    # With data = one point x*, the exact noise predictor gives x0_hat = x* at every step, so DDIM and DDPM
    # (beta_tilde) end on x* from any noise, with any number of steps.
    target = torch.tensor([[0.7, -0.2]], dtype=torch.float64)

    def eps(x_t, t, labels):
        ab = alpha_bar(SCHEDULE, t, x_t)
        return (x_t - ab.sqrt() * target) / (1 - ab).sqrt()

    noise = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(5)
    for rule in [DDIMStep(), DDPMStep(variance="beta_tilde"), DDIMStep(eta=0.5)]:
        result = reverse_process(eps, noise, SCHEDULE, rule, steps=count, generator=generator)
        assert torch.allclose(result.samples, target.expand(6, 2), atol=1e-6), rule


def _gaussian_eps(schedule, std):
    def eps(x_t, t, labels=None):  # the exact E[eps | x_t] for data N(0, std^2)
        ab = alpha_bar(schedule, t, x_t)
        return (1 - ab).sqrt() * x_t / (ab * std**2 + 1 - ab)

    return eps


def _exact_final_std(schedule, rule, steps, std):
    """Every sampler is linear on Gaussian data: propagate Var(x) = a^2 Var + sigma^2 exactly."""
    eps = _gaussian_eps(schedule, std)
    visited = [0, *timestep_sequence(schedule.num_steps, steps)][::-1]
    variance, one = 1.0, torch.ones(1, 1, dtype=torch.float64)
    for t, s in zip(visited[:-1], visited[1:], strict=True):
        t_b, s_b = torch.tensor([t]), torch.tensor([s])
        result = rule(eps(one, t_b), one, schedule.jump(t_b, s_b, like=one))
        variance = result.mean.item() ** 2 * variance + result.std.item() ** 2
    return variance**0.5


def test_gaussian_data_is_reproduced_with_many_steps():
    std = 0.5
    rules = {"beta": DDPMStep(variance="beta"), "beta_tilde": DDPMStep(variance="beta_tilde"),
             "ddim": DDIMStep()}
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
    runs = [(name, steps, reverse_process(eps, noise, short, rules[name], steps=steps, generator=generator))
            for name, steps in [("ddim", 100), ("beta", 100), ("beta_tilde", 20)]]
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
    result = reverse_process(eps, noise, SCHEDULE, DDIMStep(), steps=[10, 500, 1000], labels=labels,
                             return_trajectory=True)
    assert result.nfe == 3 and result.timesteps == [1000, 500, 10, 0]
    assert [c[0] for c in calls] == [1000, 500, 10] and all(c[1] is labels for c in calls)
    assert result.trajectory.shape == (4, 3, 1, 2, 2)
    assert torch.equal(result.trajectory[0], noise) and torch.equal(result.trajectory[-1], result.samples)


def test_invalid_options_raise():
    noise = torch.randn(2, 1, 2, 2)

    def eps(x, t, labels):
        return x

    with pytest.raises(ValueError, match="unknown variance 'learned'; choose one of beta, beta_tilde"):
        DDPMStep(variance="learned")
    for eta in (1.5, -0.1):
        with pytest.raises(ValueError, match="eta must lie in"):
            DDIMStep(eta=eta)
    with pytest.raises(ValueError, match="unknown sampler 'euler'; choose one of ddpm-beta, ddpm-beta-tilde"):
        sampler_rule("euler")
    with pytest.raises(ValueError, match="eta must lie in"):
        sampler_rule("ddim", eta=2.0)
    with pytest.raises(ValueError, match="steps"):
        reverse_process(eps, noise, SCHEDULE, DDIMStep(), steps=0)


def test_named_samplers_are_their_rules():
    assert sampler_rule("ddpm-beta") == DDPMStep(variance="beta", clip_x0=True)
    assert sampler_rule("ddpm-beta-tilde") == DDPMStep(variance="beta_tilde", clip_x0=True)
    assert sampler_rule("ddim", eta=0.3, clip_x0=False) == DDIMStep(eta=0.3, clip_x0=False)
    assert sampler_rule("ddim") == DDIMStep(eta=0.0, clip_x0=True)


def test_diffusion_images_chunks_and_returns_pixels():
    noise = torch.randn(7, 1, 4, 4, generator=torch.Generator().manual_seed(9))

    def eps(x, t, labels):
        return 0.5 * x + 0.01 * labels.view(-1, 1, 1, 1)

    labels = torch.arange(7)
    rule = sampler_rule("ddim")
    whole = diffusion_images(eps, noise, SCHEDULE, rule, steps=10, labels=labels, batch_size=100)
    chunked = diffusion_images(eps, noise, SCHEDULE, rule, steps=10, labels=labels, batch_size=3)
    assert torch.allclose(whole.samples, chunked.samples, atol=1e-6)
    assert whole.samples.shape == (7, 1, 4, 4) and whole.nfe == 10
    assert whole.samples.min() >= 0 and whole.samples.max() <= 1
    direct = reverse_process(eps, noise, SCHEDULE, DDIMStep(clip_x0=True), steps=10, labels=labels).samples
    assert torch.allclose(whole.samples, ((direct + 1) / 2).clamp(0, 1), atol=1e-6)
    # a stochastic rule draws from the generator it is given: the same seed, the same images
    stochastic = [diffusion_images(eps, noise, SCHEDULE, DDPMStep(), steps=10, labels=labels, batch_size=3,
                                   generator=torch.Generator().manual_seed(seed)).samples
                  for seed in (1, 1, 2)]
    assert torch.equal(stochastic[0], stochastic[1]) and not torch.allclose(stochastic[0], stochastic[2])


def test_clipping_x0():
    t, _, x_t, eps, jump = _random_jumps(50, seed=3)
    eps = 5 * eps  # large noise predictions push x0_hat far outside [-1, 1]
    steps = [DDPMStep(clip_x0=True)(eps, x_t, jump), DDIMStep(eta=0.3, clip_x0=True)(eps, x_t, jump)]
    for step in steps:
        assert step.x0.abs().max() <= 1
    assert DDIMStep(eta=0.3)(eps, x_t, jump).x0.abs().max() > 1  # without clipping it is outside
    # with clipping, DDIM (eta = 1) is still DDPM (beta_tilde)
    ddpm = DDPMStep(clip_x0=True)(eps, x_t, jump)
    ddim = DDIMStep(eta=1.0, clip_x0=True)(eps, x_t, jump)
    assert torch.allclose(ddpm.mean, ddim.mean, rtol=1e-9, atol=1e-9)
    # where x0_hat is already inside [-1, 1], clipping changes nothing
    inside_x0 = 0.5 * torch.tanh(x_t)
    ab_t = alpha_bar(SCHEDULE, t, x_t)
    consistent_eps = (x_t - ab_t.sqrt() * inside_x0) / (1 - ab_t).sqrt()
    plain = DDIMStep()(consistent_eps, x_t, jump)
    clipped = DDIMStep(clip_x0=True)(consistent_eps, x_t, jump)
    assert torch.allclose(plain.mean, clipped.mean, atol=1e-9)


@pytest.mark.parametrize(("rule", "draws"), [
    (DDPMStep(variance="beta"), 9),  # every step but the one into x_0
    (DDPMStep(variance="beta_tilde"), 9),
    (DDIMStep(eta=0.5), 9),
    (DDIMStep(eta=0.0), 0),  # deterministic: the generator is not touched
])
def test_samplers_draw_noise_exactly_where_a_step_is_stochastic(rule, draws):
    """The host-side decision (`ReverseStep.noisy` and s > 0) draws z exactly for the steps whose std > 0."""
    noise = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(11)
    reverse_process(lambda x, t, labels: 0.1 * x, noise, SCHEDULE, rule, steps=10, generator=generator)
    expected = torch.Generator().manual_seed(11)
    for _ in range(draws):
        torch.randn(noise.shape, generator=expected)
    assert torch.equal(generator.get_state(), expected.get_state())


@pytest.mark.parametrize("rule", [DDPMStep(), DDPMStep(variance="beta", clip_x0=True), DDIMStep(),
                                  DDIMStep(eta=0.5, clip_x0=True)])
def test_samplers_never_read_a_tensor_back_inside_the_loop(rule, monkeypatch):
    """On a GPU, `bool(tensor)` or `.item()` makes the processor wait for the GPU in every step."""
    noise = torch.randn(2, 1, 3, 3)

    def sampler(*args, **options):
        return reverse_process(*args[:3], rule, **options)

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
