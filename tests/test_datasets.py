"""Tests of book/datasets.py (chapter 01): the 2D datasets, their exact density and the held-out points."""

import math

import pytest
import torch

from book.datasets import (
    PROBE_INSIDE,
    PROBE_POINTS,
    RING_CENTERS,
    RING_RADIUS,
    RINGS_NOISE,
    LabelledPoints,
    nearest_ring,
    olympic_rings,
    rings_held_out,
    rings_log_density,
    two_moons,
)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rings_shapes_types_and_labels():
    data = olympic_rings(5000, generator=generator())
    assert isinstance(data, LabelledPoints) and len(data) == 5000
    assert data.points.shape == (5000, 2) and data.points.dtype == torch.float32
    assert data.labels.shape == (5000,) and data.labels.dtype == torch.int64
    counts = torch.bincount(data.labels, minlength=5)
    assert len(counts) == 5 and counts.min() > 900  # about 1000 per ring


def test_each_ring_point_lies_on_its_ring():
    data = olympic_rings(20_000, generator=generator(1))
    radius = (data.points - RING_CENTERS[data.labels]).norm(dim=1)
    assert radius.mean().item() == pytest.approx(RING_RADIUS, abs=0.01)
    # Radial spread of an isotropic blur of std sigma around a circle: about sigma.
    assert radius.std().item() == pytest.approx(RINGS_NOISE, rel=0.1)
    assert data.points.abs().max() < 4
    assert 1.0 < data.points.std(dim=0).max() < 2.0


def test_rings_are_seeded_and_noise_is_a_parameter():
    a = olympic_rings(100, generator=generator(2))
    b = olympic_rings(100, generator=generator(2))
    assert torch.equal(a.points, b.points) and torch.equal(a.labels, b.labels)
    sharp = olympic_rings(2000, generator=generator(3), noise=0.0)
    assert torch.allclose((sharp.points - RING_CENTERS[sharp.labels]).norm(dim=1), torch.ones(2000))


def test_exact_density_integrates_to_one_and_matches_a_histogram():
    axis = torch.linspace(-4.5, 4.5, 301, dtype=torch.float64)  # spacing 0.03, well below the blur
    grid = torch.cartesian_prod(axis, axis)
    density = rings_log_density(grid, angles=128).exp()
    assert (density.sum() * (axis[1] - axis[0]) ** 2).item() == pytest.approx(1.0, abs=2e-3)
    # Monte Carlo: the mean log-density of samples estimates the entropy; compare two angle counts too.
    samples = olympic_rings(4000, generator=generator(4)).points
    assert torch.allclose(rings_log_density(samples, angles=128), rings_log_density(samples, angles=1024))
    # A point on a ring is far more likely than the centre of the black ring.
    on, off = rings_log_density(torch.tensor([[0.0, 1.5], [0.0, 0.5]]))
    assert on - off > 10


def test_nearest_ring_and_probe_points():
    tops = RING_CENTERS + torch.tensor([0.0, RING_RADIUS])
    assert nearest_ring(tops[:3]).tolist() == [0, 1, 2]
    data = olympic_rings(2000, generator=generator(8))
    assert (nearest_ring(data.points) == data.labels).float().mean() > 0.9
    log_density = rings_log_density(PROBE_POINTS)
    assert PROBE_POINTS.shape == (5, 2) and PROBE_INSIDE.dtype == torch.bool
    assert log_density[PROBE_INSIDE].min() > log_density[~PROBE_INSIDE].max() + 10
    distance = ((PROBE_POINTS[:, None] - RING_CENTERS).norm(dim=2) - RING_RADIUS).abs().min(dim=1).values
    assert (distance[PROBE_INSIDE] < 1e-6).all() and (distance[~PROBE_INSIDE] > 5 * RINGS_NOISE).all()


def test_held_out_points_are_fixed_and_independent_of_the_global_seed():
    torch.manual_seed(0)
    first = rings_held_out()
    torch.manual_seed(1)
    assert first.shape == (2000, 2) and torch.equal(first, rings_held_out())
    assert rings_held_out(10).shape == (10, 2)


def test_two_moons():
    data = two_moons(1000, generator=generator(5))
    assert data.points.shape == (1000, 2) and data.points.dtype == torch.float32
    assert data.labels.dtype == torch.int64 and torch.bincount(data.labels).tolist() == [500, 500]
    assert torch.equal(data.points, two_moons(1000, generator=generator(5)).points)
    assert not torch.equal(data.points, two_moons(1000, generator=generator(6)).points)
    # scikit-learn's moons, noise-free: upper moon on a unit circle around (0, 0), lower around (1, 0.5).
    clean = two_moons(400, generator=generator(7), noise=0.0)
    original = clean.points / 2 + torch.tensor([0.5, 0.25])
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.5]])
    assert torch.allclose((original - centres[clean.labels]).norm(dim=1), torch.ones(400), atol=1e-5)
    assert clean.points.abs().max() < 3.5


@pytest.mark.parametrize("make", [olympic_rings, two_moons])
def test_bad_counts_are_refused(make):
    with pytest.raises(ValueError, match="must be positive"):
        make(0)


def test_ring_layout_is_the_flag():
    top, bottom = RING_CENTERS[:3], RING_CENTERS[3:]
    assert (top[:, 1] > bottom[:, 1].max()).all()
    # Each lower ring overlaps its two upper neighbours: centres closer than two radii.
    for lower, uppers in [(3, (0, 1)), (4, (1, 2))]:
        for upper in uppers:
            assert (RING_CENTERS[lower] - RING_CENTERS[upper]).norm() < 2 * RING_RADIUS
    assert math.isclose(RINGS_NOISE / RING_RADIUS, 0.08)
