"""Tests of book/translation.py: the independent and minibatch-OT couplings, the loss from a data source,
translations and the straightness of their paths."""

import itertools

import pytest
import torch

from book.numerics import to_model_space, to_pixels
from book.schedules import linear_schedule
from book.translation import (
    deviation_from_straight,
    independent_sources,
    minibatch_ot_sources,
    translate,
    translation_loss,
    translation_trajectory,
)

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


def pair_cost(sources: torch.Tensor, targets: torch.Tensor) -> float:
    """The total squared distance of the pairs (sources[i], targets[i])."""
    return (sources - targets).pow(2).sum().item()


def test_minibatch_ot_sources_is_the_cheapest_permutation_of_the_sources():
    generator = torch.Generator().manual_seed(5)
    sources = torch.randn(6, 1, 3, 3, generator=generator)
    targets = torch.randn(6, 1, 3, 3, generator=generator)
    paired = minibatch_ot_sources(sources, targets)
    # every source used exactly once, so the batch's marginal is unchanged
    assert sorted(map(tuple, paired.flatten(1).tolist())) == sorted(map(tuple, sources.flatten(1).tolist()))
    best = min(pair_cost(sources[list(order)], targets) for order in itertools.permutations(range(6)))
    assert pair_cost(paired, targets) == pytest.approx(best, rel=1e-6)


def test_minibatch_ot_never_costs_more_than_the_independent_pairing():
    generator = torch.Generator().manual_seed(6)
    for _ in range(5):
        sources = torch.randn(64, 20, generator=generator)
        targets = torch.randn(64, 20, generator=generator) + 1
        independent = pair_cost(sources, targets)
        assert pair_cost(minibatch_ot_sources(sources, targets), targets) <= independent + 1e-4
    matched = torch.randn(32, 5, generator=generator)  # targets = shuffled sources: OT undoes the shuffle
    shuffled = matched[torch.randperm(32, generator=generator)]
    assert torch.equal(minibatch_ot_sources(shuffled, matched), matched)


def test_minibatch_ot_refuses_batches_of_different_sizes():
    with pytest.raises(ValueError, match="equal size"):
        minibatch_ot_sources(torch.zeros(3, 2), torch.zeros(4, 2))


def test_deviation_from_straight_is_zero_for_straight_constant_speed_paths_and_one_for_a_right_angle():
    start, end = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    times = torch.linspace(0, 1, 9).view(-1, 1, 1, 1)
    assert deviation_from_straight(start + times * (end - start)) == pytest.approx(0.0, abs=1e-12)
    # straight, but walked at varying speed: Euler's one step would miss
    assert deviation_from_straight(start + times**2 * (end - start)) > 0.1
    corner = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]).unsqueeze(1)  # (3, 1, 2): a right-angle turn
    assert deviation_from_straight(corner) == pytest.approx(1.0)
    pause = torch.tensor([[0.0], [0.0], [1.0]]).unsqueeze(1)  # still for half the time, then double speed
    assert deviation_from_straight(pause) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two points"):
        deviation_from_straight(torch.zeros(1, 3, 2))
