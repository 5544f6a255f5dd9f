"""Tests of book/schedules.py: boundary conditions, derivatives against autograd, variance, broadcasting."""

import math

import pytest
import torch

from book.schedules import SCHEDULES, cosine_schedule, expand_like, get_schedule, linear_schedule


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_boundary_conditions(name):
    schedule = get_schedule(name)
    start, end = schedule(0.0), schedule(1.0)  # t = 0: all noise X_0; t = 1: all data X_1
    assert start.sigma_t.item() == pytest.approx(1.0, abs=1e-12)
    assert start.alpha_t.item() == pytest.approx(0.0, abs=1e-12)
    assert end.sigma_t.item() == pytest.approx(0.0, abs=1e-7)
    assert end.alpha_t.item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_derivatives_match_autograd(name):
    schedule = get_schedule(name)
    t = torch.linspace(0, 1, 101, dtype=torch.float64).requires_grad_(True)
    values = schedule(t)
    d_sigma = torch.autograd.grad(values.sigma_t.sum(), t, retain_graph=True)[0]
    d_alpha = torch.autograd.grad(values.alpha_t.sum(), t)[0]
    torch.testing.assert_close(values.d_sigma_t.detach(), d_sigma, atol=1e-12, rtol=0)
    torch.testing.assert_close(values.d_alpha_t.detach(), d_alpha, atol=1e-12, rtol=0)


def test_closed_forms():
    t = torch.linspace(0, 1, 9, dtype=torch.float64)
    linear, cosine = linear_schedule(t), cosine_schedule(t)
    torch.testing.assert_close(linear.sigma_t, 1 - t, atol=1e-15, rtol=0)
    torch.testing.assert_close(linear.alpha_t, t, atol=1e-15, rtol=0)
    torch.testing.assert_close(cosine.sigma_t, torch.cos(math.pi * t / 2), atol=1e-15, rtol=0)
    torch.testing.assert_close(cosine.alpha_t, torch.sin(math.pi * t / 2), atol=1e-15, rtol=0)


def test_point_and_velocity_of_the_linear_path():
    x0, x1 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    values = linear_schedule(t)
    torch.testing.assert_close(values.point(x0, x1), (1 - t)[:, None] * x0 + t[:, None] * x1)
    torch.testing.assert_close(values.velocity(x0, x1), x1 - x0)


def test_cosine_is_variance_preserving_and_linear_is_not():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    cosine, linear = cosine_schedule(t), linear_schedule(t)
    torch.testing.assert_close(cosine.sigma_t**2 + cosine.alpha_t**2, torch.ones_like(t))
    assert (linear.sigma_t**2 + linear.alpha_t**2)[5].item() == pytest.approx(0.5)
    assert cosine_schedule(0.5).sigma_t.item() == pytest.approx(math.cos(math.pi / 4))
    assert cosine_schedule(1 / 3).alpha_t.item() == pytest.approx(0.5)  # sin(pi / 6): alpha weighs the data


def test_times_broadcast_over_image_shaped_tensors():
    x0, x1 = torch.randn(4, 1, 6, 6), torch.randn(4, 1, 6, 6)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x_t = cosine_schedule(t).point(x0, x1)
    assert x_t.shape == (4, 1, 6, 6)
    torch.testing.assert_close(x_t[0], x0[0])
    torch.testing.assert_close(x_t[3], x1[3], atol=1e-6, rtol=0)
    assert expand_like(t, x0).shape == (4, 1, 1, 1)
    scalar = linear_schedule(0.25).point(x0, x1)  # one float time for the whole batch
    torch.testing.assert_close(scalar, 0.75 * x0 + 0.25 * x1)


def test_unknown_schedule_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'; choose one of linear, cosine"):
        get_schedule("quadratic")
