"""Tests of book/plotting.py: the animation helper's HTML is self-contained, sized as asked, and closes its
figure; bad shapes are refused."""

import base64
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from book.plotting import Animation, animate_points

FRAME = re.compile(r'data:image/png;base64,([^"]*)"')


def straight_paths(steps: int = 11, points: int = 50) -> torch.Tensor:
    """(steps, points, 2): points moving on straight lines from noise to a circle."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(points, 2, generator=generator)
    angle = torch.rand(points, generator=generator) * 2 * torch.pi
    end = 3 * torch.stack([angle.cos(), angle.sin()], dim=1)
    t = torch.linspace(0, 1, steps)[:, None, None]
    return (1 - t) * start + t * end


def frames_of(animation: Animation) -> list[bytes]:
    return [base64.b64decode(data.replace("\\\n", "")) for data in FRAME.findall(animation.html)]


def test_animation_is_self_contained_html_with_one_png_per_frame():
    animation = animate_points(straight_paths(), title="test", dpi=30, figsize=(3, 3))
    assert isinstance(animation, Animation) and animation.frames == 11
    assert animation._repr_html_() == animation.html
    frames = frames_of(animation)
    assert len(frames) == 11 and all(frame.startswith(b"\x89PNG") for frame in frames)
    assert frames[0] != frames[-1], "the points move, so the first and last frames differ"
    assert not re.search(r"https?://", animation.html), "nothing may be fetched from the network"
    assert "font-awesome" not in animation.html and 'class="fa ' not in animation.html
    assert "play_animation" in animation.html, "the JavaScript player is part of the HTML"
    assert "11 frames" in repr(animation)


def test_the_figure_is_closed_so_no_static_copy_follows():
    before = plt.get_fignums()
    animate_points(straight_paths(), title="test", dpi=30, figsize=(3, 3))
    assert plt.get_fignums() == before


def test_long_trajectories_are_thinned_to_max_frames_keeping_both_ends():
    shown = []
    animate_points(straight_paths(steps=101), times=np.linspace(0, 1, 101), title="test", max_frames=9,
                   counter=lambda t: shown.append(t) or f"{t:.2f}", dpi=30, figsize=(3, 3))
    drawn = sorted(set(shown))
    assert len(drawn) == 9 and drawn[0] == 0.0 and drawn[-1] == 1.0


def test_a_list_of_states_labels_background_and_arrows():
    path = straight_paths(steps=5)
    grid = torch.cartesian_prod(torch.linspace(-3, 3, 4), torch.linspace(-3, 3, 4))  # (16, 2)
    vectors = torch.stack([-grid * (1 + k) for k in range(5)])  # (5, 16, 2)
    animation = animate_points(list(path), times=torch.arange(5.0), labels=torch.arange(50) % 5,
                               background=path[-1], arrows=(grid, vectors), title="test", dpi=30,
                               figsize=(3, 3), counter="layer {:.0f}")
    assert animation.frames == 5


def test_bad_shapes_are_refused_before_a_figure_is_made():
    before = plt.get_fignums()
    with pytest.raises(ValueError, match=r"frames must have shape \(T, N, 2\)"):
        animate_points(torch.zeros(4, 10, 3), title="test")
    with pytest.raises(ValueError, match=r"frames must have shape \(T, N, 2\)"):
        animate_points(torch.zeros(1, 10, 2), title="test")
    with pytest.raises(ValueError, match="times must have shape"):
        animate_points(torch.zeros(4, 10, 2), times=[0.0, 1.0], title="test")
    with pytest.raises(ValueError, match="arrows must be a grid"):
        animate_points(torch.zeros(4, 10, 2), arrows=(torch.zeros(6, 2), torch.zeros(3, 6, 2)), title="test")
    assert plt.get_fignums() == before
