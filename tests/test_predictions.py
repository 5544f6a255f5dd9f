"""Tests of book/predictions.py (chapter 04): the conversions between predicted noise, data and velocity are
inverses of each other and agree with chapter 2's paths and the DDPM forward process."""

import pytest
import torch

from book.ddpm import linear_beta_schedule, q_sample
from book.predictions import data_from_noise, noise_from_data, noise_from_velocity, velocity_from_noise
from book.schedules import cosine_schedule, linear_schedule

SCHEDULES = [linear_schedule, cosine_schedule]


def draws(seed: int = 0, shape=(6, 1, 3, 3)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise, data and times in (0, 1) away from the ends (where alpha_t or sigma_t vanish), float64."""
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(shape, generator=generator, dtype=torch.float64)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(shape[0], generator=generator, dtype=torch.float64)
    return eps, x, t


def test_data_and_noise_round_trip_for_any_coefficients():
    eps, x, _ = draws(1)
    generator = torch.Generator().manual_seed(2)
    alpha = 0.1 + torch.rand(6, 1, 1, 1, generator=generator, dtype=torch.float64)
    sigma = 0.1 + torch.rand(6, 1, 1, 1, generator=generator, dtype=torch.float64)
    x_t = torch.randn(eps.shape, generator=generator, dtype=torch.float64)  # any point, not only a pair
    x_hat, eps_hat = data_from_noise(eps, x_t, alpha, sigma), noise_from_data(x, x_t, alpha, sigma)
    torch.testing.assert_close(noise_from_data(x_hat, x_t, alpha, sigma), eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(data_from_noise(eps_hat, x_t, alpha, sigma), x, rtol=0, atol=1e-12)
    # for an exact pair x_t = alpha x + sigma eps, each recovers the other
    x_t = alpha * x + sigma * eps
    torch.testing.assert_close(data_from_noise(eps, x_t, alpha, sigma), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(noise_from_data(x, x_t, alpha, sigma), eps, rtol=0, atol=1e-12)


def test_data_from_noise_inverts_the_ddpm_forward_process():
    schedule = linear_beta_schedule()
    eps, x, _ = draws(3)
    t = torch.tensor([1, 10, 200, 500, 900, 1000])
    x_t = q_sample(schedule, x, t, eps)
    at_t = schedule.at(t, x)
    torch.testing.assert_close(data_from_noise(eps, x_t, at_t.alpha, at_t.sigma), x, rtol=0, atol=1e-9)
    torch.testing.assert_close(noise_from_data(x, x_t, at_t.alpha, at_t.sigma), eps, rtol=0, atol=1e-9)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_velocity_from_noise_is_the_conditional_velocity_of_the_pair(schedule):
    eps, x, t = draws(4)
    values = schedule(t)
    x_t = values.point(eps, x)  # X_0 is the noise, X_1 the data
    torch.testing.assert_close(velocity_from_noise(eps, x_t, values), values.velocity(eps, x), rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_noise_and_velocity_round_trip(schedule):
    eps, x, t = draws(5)
    values = schedule(t)
    x_t = values.point(eps, x)
    torch.testing.assert_close(noise_from_velocity(values.velocity(eps, x), x_t, values), eps, rtol=0,
                               atol=1e-10)
    torch.testing.assert_close(noise_from_velocity(velocity_from_noise(eps, x_t, values), x_t, values), eps,
                               rtol=0, atol=1e-10)
    velocity = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    torch.testing.assert_close(velocity_from_noise(noise_from_velocity(velocity, x_t, values), x_t, values),
                               velocity, rtol=0, atol=1e-10)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_one_time_for_the_whole_batch(schedule):
    eps, x, _ = draws(7, shape=(4, 2))
    values = schedule(torch.tensor(0.3, dtype=torch.float64))  # shape ()
    x_t = values.point(eps, x)
    torch.testing.assert_close(velocity_from_noise(eps, x_t, values), values.velocity(eps, x), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(noise_from_velocity(values.velocity(eps, x), x_t, values), eps, rtol=0,
                               atol=1e-10)
