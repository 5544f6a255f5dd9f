"""Tests of book/translation.py: the independent coupling, the loss from a data source, translations."""

import pytest
import torch

from book.numerics import to_model_space, to_pixels
from book.schedules import linear_schedule
from book.translation import independent_sources, translate, translation_loss, translation_trajectory

CPU = torch.device("cpu")


def test_independent_sources_draws_rows_of_the_source_reproducibly():
    source = torch.arange(20.0).reshape(10, 2)
    drawn = independent_sources(source, 50, torch.Generator().manual_seed(0))
    again = independent_sources(source, 50, torch.Generator().manual_seed(0))
    assert drawn.shape == (50, 2)
    assert torch.equal(drawn, again)
    assert all(any(torch.equal(row, candidate) for candidate in source) for row in drawn)
    assert len({tuple(row.tolist()) for row in drawn}) > 5  # with replacement, but not one row


def test_independent_sources_refuses_an_empty_source():
    with pytest.raises(ValueError, match="non-empty"):
        independent_sources(torch.empty(0, 3), 4)


class Constant(torch.nn.Module):
    """A 'network' whose output is a fixed tensor (broadcast to the batch), whatever x and t."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.value.expand_as(x)


def test_translation_loss_is_zero_for_the_pair_velocity_and_its_square_for_zero():
    generator = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(4, 1, 6, 6, generator=generator), torch.randn(4, 1, 6, 6, generator=generator)
    exact = translation_loss(Constant(x1 - x0), x0, x1, schedule=linear_schedule, device=CPU)
    zero = translation_loss(Constant(torch.zeros(1)), x0, x1, schedule=linear_schedule, device=CPU)
    assert exact.item() == pytest.approx(0.0, abs=1e-12)
    assert zero.item() == pytest.approx((x1 - x0).pow(2).mean().item(), rel=1e-6)
    assert exact.dtype == torch.float32


def test_translate_follows_a_straight_path_to_its_end():
    source01 = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(2))
    target01 = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    shift = to_model_space(target01) - to_model_space(source01)  # a constant field reaches the target
    for steps in (1, 7):
        result = translate(Constant(shift), source01, steps=steps, device=CPU)
        assert result.samples.shape == source01.shape
        assert torch.allclose(result.samples, target01, atol=1e-5)


def test_translation_trajectory_starts_at_the_source_and_ends_at_the_translation():
    source01 = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    field = Constant(torch.full((1,), 0.3))
    path = translation_trajectory(field, source01, steps=4, device=CPU)
    assert path.shape == (5, 2, 1, 4, 4)
    assert torch.allclose(path[0], source01, atol=1e-6)
    assert torch.allclose(path[-1], translate(field, source01, steps=4, device=CPU).samples, atol=1e-6)
    assert torch.allclose(path[2], to_pixels(to_model_space(source01) + 0.15), atol=1e-6)
