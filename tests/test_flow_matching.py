"""Tests of book/flow_matching.py: the loss against its formula, its minimiser, shapes and labels."""

import torch

from book.flow_matching import flow_matching_loss
from book.schedules import cosine_schedule, linear_schedule


class Recorder(torch.nn.Module):
    """Returns a fixed prediction and records its inputs."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction
        self.calls = []

    def forward(self, x, t, labels=None):
        self.calls.append((x, t, labels))
        return self.prediction


def test_loss_is_the_mean_squared_error_to_the_conditional_velocity():
    x1, x0 = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64)
    prediction = torch.randn(6, 2, dtype=torch.float64)
    model = Recorder(prediction)
    loss = flow_matching_loss(model, x1, cosine_schedule, x0=x0, t=t)
    values = cosine_schedule(t)
    target = values.d_sigma_t[:, None] * x0 + values.d_alpha_t[:, None] * x1  # X_0 noise, X_1 data
    torch.testing.assert_close(loss, (prediction - target).pow(2).mean())
    x_t, t_seen, labels = model.calls[0]
    torch.testing.assert_close(x_t, values.sigma_t[:, None] * x0 + values.alpha_t[:, None] * x1)
    assert t_seen is t and labels is None


def test_exact_conditional_velocity_scores_zero_and_labels_are_passed():
    x1, x0 = torch.randn(4, 1, 5, 5), torch.randn(4, 1, 5, 5)  # image-shaped
    model = Recorder(x1 - x0)
    labels = torch.tensor([0, 1, 2, 3])
    loss = flow_matching_loss(model, x1, linear_schedule, x0=x0, labels=labels)
    assert loss.item() < 1e-12
    assert model.calls[0][2] is labels
    assert model.calls[0][1].shape == (4,)


def test_the_minimiser_is_the_marginal_velocity():
    # X_0 ~ N(0, 1), X_1 ~ N(m, 1), linear path: u_t(x) = m + (2t - 1) / ((1-t)^2 + t^2) (x - t m).
    # A predictor equal to u_t scores lower than the same predictor perturbed.
    generator = torch.Generator().manual_seed(0)
    m = 1.0

    class Marginal(torch.nn.Module):
        def __init__(self, shift=0.0):
            super().__init__()
            self.shift = shift

        def forward(self, x, t):
            t = t[:, None]
            return m + (2 * t - 1) / ((1 - t) ** 2 + t**2) * (x - t * m) + self.shift

    x1 = m + torch.randn(400_000, 1, generator=generator, dtype=torch.float64)
    losses = [
        flow_matching_loss(Marginal(shift), x1, linear_schedule, generator=torch.Generator().manual_seed(1))
        for shift in (-0.1, 0.0, 0.1)
    ]
    losses = [loss.item() for loss in losses]
    assert losses[1] < losses[0] and losses[1] < losses[2]
    # the floor: E||u_t - (X_1 - X_0)||^2 is far from zero, as the chapter says
    assert losses[1] > 0.5


def test_generator_makes_the_loss_reproducible():
    model = torch.nn.Linear(3, 2)
    wrapped = lambda x, t: model(torch.cat([x, t[:, None]], 1))  # noqa: E731
    x1 = torch.randn(8, 2)
    first = flow_matching_loss(wrapped, x1, linear_schedule, generator=torch.Generator().manual_seed(5))
    second = flow_matching_loss(wrapped, x1, linear_schedule, generator=torch.Generator().manual_seed(5))
    assert first.item() == second.item()
