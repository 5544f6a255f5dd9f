"""Tests of book/image_flow.py: chunked solves, encoding, SciPy's reference solver, slerp, the cached
U-Nets."""

import math

import pytest
import torch

from book.image_flow import (
    decode,
    encode,
    flow_matching_image_loss,
    lerp,
    sample_images,
    sample_times,
    slerp,
    solve_images,
    solve_ivp_reference,
    trained_flow_unet,
)
from book.numerics import to_pixels
from book.samplers import euler, heun
from book.schedules import linear_schedule
from book.training import TrainingRecipe
from book.unet import UNet, UNetConfig

CPU = torch.device("cpu")


def test_solve_images_in_chunks_equals_one_solve():
    def field(x, t):
        return torch.sin(x) * t[:, None, None, None] - x

    x = torch.randn(7, 1, 4, 4)
    chunked = solve_images(field, x, steps=10, method="heun", batch_size=3)
    whole = heun(field, x, steps=10)
    torch.testing.assert_close(chunked.samples, whole.samples)
    assert chunked.nfe == 20


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_samplers_run_the_network_in_the_requested_precision(dtype):
    # The product inside the field shows the precision the network ran in; the ODE state stays float32.
    seen = []

    def field(x, t):
        product = x.flatten(1) @ torch.eye(x[0].numel())
        seen.append(product.dtype)
        return -product.view_as(x)

    x = torch.randn(3, 1, 2, 2)
    for result in (solve_images(field, x, steps=2, dtype=dtype), decode(field, x, steps=2, dtype=dtype),
                   encode(field, to_pixels(x), steps=2, dtype=dtype)):
        assert result.samples.dtype == torch.float32
    assert seen == [dtype] * 6
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an enclosing autocast does not override the request
        solve_images(field, x, steps=1, dtype=dtype)
    assert seen[-1] == dtype


def test_labels_travel_with_their_chunk():
    def field(x, t, labels):
        return labels.float()[:, None, None, None].expand_as(x)

    labels = torch.arange(7)
    result = solve_images(field, torch.zeros(7, 1, 2, 2), steps=4, labels=labels, batch_size=2)
    torch.testing.assert_close(result.samples[:, 0, 0, 0], labels.float())


def test_sample_images_is_reproducible_and_in_pixel_range():
    def field(x, t):
        return -x

    first = sample_images(field, 5, steps=3, generator=torch.Generator().manual_seed(0), batch_size=2)
    second = sample_images(field, 5, steps=3, generator=torch.Generator().manual_seed(0))
    assert first.samples.shape == (5, 1, 28, 28)
    assert first.samples.min() >= 0 and first.samples.max() <= 1
    torch.testing.assert_close(first.samples, second.samples)


def test_encode_then_decode_returns_the_images():
    def field(x, t):  # smooth and non-linear
        return 0.5 * torch.tanh(x) + t[:, None, None, None] - 0.5

    images = 0.2 + 0.6 * torch.rand(4, 1, 28, 28)
    latents = encode(field, images, steps=200, method="heun")
    assert latents.times[0] == 1.0 and latents.times[-1] == 0.0
    decoded = decode(field, latents.samples, steps=200, method="heun")
    torch.testing.assert_close(decoded.samples, images, atol=1e-4, rtol=0)
    coarse = decode(field, encode(field, images, steps=2).samples, steps=2)
    assert (coarse.samples - images).abs().max() > 1e-3  # the discretization is not exactly invertible


def test_scipy_round_trip_reproduces_euler_for_a_linear_velocity():
    def field(x, t):
        return -x

    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    reference = solve_ivp_reference(field, x, rtol=1e-9, atol=1e-9, device=CPU)
    torch.testing.assert_close(reference.samples, math.exp(-1) * x, atol=1e-6, rtol=0)
    errors = [(euler(field, x, steps=k).samples - reference.samples).abs().max().item() for k in (100, 1000)]
    assert errors[1] < 1e-3 and errors[0] / errors[1] == pytest.approx(10, rel=0.1)  # first order
    assert reference.samples.shape == x.shape and reference.samples.dtype == torch.float32
    assert reference.nfe > 0 and 0 < reference.network_seconds <= reference.seconds
    backwards = solve_ivp_reference(field, reference.samples, rtol=1e-9, atol=1e-9, t_start=1.0, t_end=0.0,
                                    device=CPU)
    torch.testing.assert_close(backwards.samples, x, atol=1e-5, rtol=0)


def test_scipy_counts_its_evaluations():
    calls = []

    def field(x, t):
        calls.append(x.shape[0])
        return torch.ones_like(x)

    result = solve_ivp_reference(field, torch.zeros(5, 1, 2, 2), batch_size=2, device=CPU)
    assert len(calls) == 3 * result.nfe  # three chunks of at most 2 images per evaluation
    torch.testing.assert_close(result.samples, torch.ones(5, 1, 2, 2))


def test_lerp_and_slerp():
    z_a, z_b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    s = torch.linspace(0, 1, 5)
    angles = s * math.pi / 2
    torch.testing.assert_close(slerp(z_a, z_b, s), torch.stack([angles.cos(), angles.sin()], dim=1))
    torch.testing.assert_close(lerp(z_a, z_b, s), torch.stack([1 - s, s], dim=1))
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 28, 28, generator=generator)
    b = b * a.norm() / b.norm()
    path = slerp(a, b, s)
    assert path.shape == (5, 1, 28, 28)
    torch.testing.assert_close(path.flatten(1).norm(dim=1), torch.full((5,), a.norm().item()))
    torch.testing.assert_close(slerp(a, 2 * a, s), lerp(a, 2 * a, s))  # parallel: falls back to lerp


def test_image_loss_drops_labels_to_the_null_class():
    seen = []
    model = UNet(UNetConfig(num_classes=10, channels=(8, 16)))
    forward = model.forward

    def recording_forward(x, t, labels=None):
        seen.append(labels)
        return forward(x, t, labels)

    model.forward = recording_forward
    x1 = torch.rand(6, 1, 28, 28) * 2 - 1
    labels = torch.arange(6)
    loss = flow_matching_image_loss(model, x1, labels, schedule=linear_schedule, device=CPU,
                                    label_dropout=1.0)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert (seen[-1] == 10).all()
    flow_matching_image_loss(model, x1, labels, schedule=linear_schedule, device=CPU, label_dropout=0.0)
    assert torch.equal(seen[-1], labels)


def test_trained_flow_unet_is_cached_per_schedule_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path))
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 1, 28, 28, generator=generator) * 2 - 1, torch.arange(8) % 10
    cpu = torch.device("cpu")
    recipe = TrainingRecipe(epochs=1, batch_size=4, lr=2e-3, label_dropout=0.2)

    def train(schedule_name, count=8, images=images):
        return trained_flow_unet(schedule_name, images[:count], labels[:count], recipe, device=cpu)

    first = train("linear")
    again = train("linear")
    assert not first.from_cache and again.from_cache  # chapter 4 gets chapter 3's weights, not a retraining
    assert not again.model.training and len(first.history["loss"]) == 2  # 8 images, batches of 4
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    # In an empty cache, after other draws from the global generator, the training ends on the same weights
    # (the recipe's seed, not the global state, sets the initial weights and the draws of the loss).
    monkeypatch.setenv("BOOK_CACHE", str(tmp_path / "empty"))
    torch.manual_seed(5)
    torch.randn(3)
    retrained = train("linear")
    assert not retrained.from_cache
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, retrained.model.state_dict()[name]), name
    assert not train("cosine").from_cache
    assert not train("linear", count=4).from_cache
    assert not train("linear", images=images.flip(0)).from_cache  # other images of the same shape


def test_logit_normal_times_have_a_standard_normal_logit():
    """Esser et al.'s logit-normal law: log(t / (1 - t)) is N(0, 1), so the median is 1/2 and the times
    crowd the middle (about 38 % fall in [0.4, 0.6], against 20 % for uniform times)."""
    g = torch.Generator().manual_seed(0)
    t = sample_times(200_000, "logit-normal", generator=g)
    logit = torch.log(t / (1 - t))
    assert abs(logit.mean().item()) < 0.01 and abs(logit.std().item() - 1) < 0.01
    middle = ((t > 0.4) & (t < 0.6)).double().mean().item()
    expected = math.erf(math.log(1.5) / math.sqrt(2))  # P(|Z| < logit(0.6))
    assert abs(middle - expected) < 0.005
    uniform = sample_times(200_000, "uniform", generator=g)
    assert abs(((uniform > 0.4) & (uniform < 0.6)).double().mean().item() - 0.2) < 0.005
    with pytest.raises(ValueError, match="logit-normal"):
        sample_times(3, "beta")
