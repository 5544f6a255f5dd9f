"""Tests of book/samplers.py: orders of convergence, reverse time, trajectories, bad input."""

import math

import numpy as np
import pytest
import torch

from book.samplers import METHODS, euler, heun, integrate

ROTATION = torch.tensor([[-0.5, -2.0], [2.0, -0.5]], dtype=torch.float64)


def rotating_field(x, t):
    """v(x, t) = (1 + t) A x; the solution is exp((t + t^2/2) A) x(0)."""
    return (1 + t)[:, None] * x @ ROTATION.T


def exact(x, t):
    return x @ torch.linalg.matrix_exp((t + t**2 / 2) * ROTATION).T


X_START = torch.tensor([[1.0, 0.0], [0.3, -2.0], [-1.0, 1.5]], dtype=torch.float64)


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("heun", 2)])
def test_order_of_convergence(method, order):
    step_counts = np.array([20, 40, 80, 160])
    errors = []
    for k in step_counts:
        result = integrate(rotating_field, X_START, steps=int(k), method=method)
        errors.append((result.samples - exact(X_START, 1.0)).abs().max().item())
    slope = np.polyfit(np.log(1 / step_counts), np.log(np.array(errors)), 1)[0]
    assert abs(slope - order) < 0.1, slope


def test_backwards_in_time_matches_the_exact_inverse():
    end = exact(X_START, 1.0)
    back = heun(rotating_field, end, steps=400, t_start=1.0, t_end=0.0)
    torch.testing.assert_close(back.samples, X_START, atol=1e-4, rtol=0)
    assert back.times[0] == 1.0 and back.times[-1] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_error_shrinks_with_steps(method):
    def field(x, t):  # non-linear, so that forward and backward steps do not cancel by accident
        return torch.sin(3 * x.flip(1)) + t[:, None] * x

    errors = []
    for steps in (10, 100, 1000):
        forward = integrate(field, X_START, steps=steps, method=method)
        backward = integrate(field, forward.samples, steps=steps, method=method, t_start=1.0, t_end=0.0)
        errors.append((backward.samples - X_START).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < (1e-2 if method == "euler" else 1e-5)


def test_trajectory_times_and_nfe():
    x = torch.randn(7, 1, 4, 4)  # image-shaped: samplers do not care
    result = euler(lambda x, t: -x, x, steps=5, return_trajectory=True)
    assert result.trajectory.shape == (6, 7, 1, 4, 4)
    torch.testing.assert_close(result.trajectory[0], x)
    torch.testing.assert_close(result.trajectory[-1], result.samples)
    torch.testing.assert_close(result.times, torch.linspace(0, 1, 6))
    assert result.nfe == 5
    assert heun(lambda x, t: -x, x, steps=5).nfe == 10
    assert euler(lambda x, t: -x, x, steps=5).trajectory is None


def test_velocity_receives_one_time_per_sample():
    seen = []

    def field(x, t):
        seen.append(t.clone())
        return torch.zeros_like(x)

    heun(field, torch.zeros(3, 2), steps=2)
    assert all(t.shape == (3,) for t in seen)
    assert [t[0].item() for t in seen] == [0.0, 0.5, 0.5, 1.0]


def test_euler_is_exact_for_a_constant_field():
    x = torch.zeros(2, 2, dtype=torch.float64)
    result = euler(lambda x, t: torch.ones_like(x), x, steps=3)
    torch.testing.assert_close(result.samples, torch.ones_like(x))
    assert math.isclose(heun(lambda x, t: t[:, None].expand_as(x), x, steps=1).samples[0, 0].item(), 0.5)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_steps_are_refused_with_the_fix(steps):
    with pytest.raises(ValueError, match="steps must be a positive integer.*steps = round"):
        integrate(lambda x, t: x, torch.zeros(1, 2), steps=steps)


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown method 'rk4'; choose one of euler, heun"):
        integrate(lambda x, t: x, torch.zeros(1, 2), steps=1, method="rk4")
