"""Tests of book/likelihood.py: exact divergence, and exact log-likelihoods of Gaussian flows."""

import math

import pytest
import torch

from book import flows
from book.likelihood import flow_log_likelihood, standard_normal_log_prob, velocity_and_divergence
from book.schedules import cosine_schedule, linear_schedule


def test_divergence_of_a_linear_field_is_its_trace():
    matrix = torch.tensor([[0.3, -2.0, 0.5], [1.0, -1.2, 0.0], [0.2, 0.1, 0.7]], dtype=torch.float64)
    x = torch.randn(10, 3, dtype=torch.float64)
    t = torch.zeros(10, dtype=torch.float64)
    v, divergence = velocity_and_divergence(lambda x, t: x @ matrix.T, x, t)
    torch.testing.assert_close(v, x @ matrix.T)
    torch.testing.assert_close(divergence, torch.full((10,), matrix.trace().item(), dtype=torch.float64))


def test_divergence_of_a_nonlinear_field():
    x = torch.randn(20, 2, dtype=torch.float64)
    t = torch.rand(20, dtype=torch.float64)
    field = lambda x, t: torch.stack([torch.sin(x[:, 0] * x[:, 1]), t * x[:, 1] ** 3], dim=1)  # noqa: E731
    _, divergence = velocity_and_divergence(field, x, t)
    expected = torch.cos(x[:, 0] * x[:, 1]) * x[:, 1] + 3 * t * x[:, 1] ** 2
    torch.testing.assert_close(divergence, expected)


def gaussian_marginal_velocity(schedule, mean, std):
    """The exact marginal velocity carrying N(0, I) to N(mean, std^2 I) along the schedule's path."""

    def velocity(x, t):  # X_t = sigma_t X_0 + alpha_t X_1 ~ N(alpha_t mean, (sigma_t^2 + alpha_t^2 std^2) I)
        values = schedule(t)
        sigma, alpha = values.sigma_t[:, None], values.alpha_t[:, None]
        d_sigma, d_alpha = values.d_sigma_t[:, None], values.d_alpha_t[:, None]
        variance = sigma**2 + alpha**2 * std**2
        d_variance_half = sigma * d_sigma + alpha * d_alpha * std**2  # s_t * d s_t / dt, s_t^2 the variance
        return d_alpha * mean + d_variance_half / variance * (x - alpha * mean)

    return velocity


@pytest.mark.parametrize("schedule", [linear_schedule, cosine_schedule])
def test_log_likelihood_of_a_gaussian_flow_is_exact(schedule):
    mean, std = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.7
    x = mean + std * torch.randn(50, 2, dtype=torch.float64)
    result = flow_log_likelihood(gaussian_marginal_velocity(schedule, mean, std), x, steps=400)
    expected = standard_normal_log_prob((x - mean) / std) - 2 * math.log(std)
    torch.testing.assert_close(result.log_prob, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.latent, (x - mean) / std, atol=1e-4, rtol=0)
    assert result.nfe == 800


def test_standard_normal_log_prob_is_chapter_1_s():
    assert standard_normal_log_prob is flows.standard_normal_log_prob  # defined once, in book/flows.py
    assert standard_normal_log_prob(torch.zeros(1, 2)).item() == pytest.approx(-math.log(2 * math.pi))


def test_points_must_be_flat():
    with pytest.raises(ValueError, match="flatten"):
        flow_log_likelihood(lambda x, t: x, torch.zeros(2, 1, 3, 3), steps=1)
