"""Tests of book/numerics.py (chapters 3 and 5): pixel scaling, the choice of precision, autocast, the loss
scaler, the mixed-precision training step and the timer."""

from pathlib import Path

import pytest
import torch

from book import numerics
from book.numerics import (
    autocast_dtype,
    bf16_is_fast,
    cpu_flags,
    grad_scaler,
    in_mixed_precision,
    mixed_precision,
    precisions_to_measure,
    time_call,
    to_model_space,
    to_pixels,
    train_step,
)

CPU = torch.device("cpu")


def test_pixel_scaling_round_trip():
    images = torch.rand(3, 1, 28, 28)
    x = to_model_space(images)
    assert x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(to_model_space(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(to_pixels(x), images)
    assert to_pixels(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]  # clipped
    assert to_pixels(x.to(torch.bfloat16)).dtype == torch.float32


def test_cpu_flags_come_from_proc_cpuinfo():
    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        assert flags == frozenset()
        return
    lines = [line for line in cpuinfo.splitlines() if line.startswith("flags")]
    assert flags == (frozenset(lines[0].split(":", 1)[1].split()) if lines else frozenset())


def test_autocast_follows_cpu_flags(monkeypatch):
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert bf16_is_fast(CPU) and autocast_dtype(CPU) == torch.bfloat16
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert autocast_dtype(CPU) == torch.bfloat16
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"avx2"}))
    assert not bf16_is_fast(CPU) and autocast_dtype(CPU) == torch.float32


def test_autocast_on_cuda_bfloat16_from_compute_capability_8_float16_on_7(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert bf16_is_fast(cuda) and autocast_dtype(cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # e.g. a 2080 Ti
    assert not bf16_is_fast(cuda) and autocast_dtype(cuda) == torch.float16
    assert grad_scaler(CPU, torch.float16).is_enabled() and not grad_scaler(CPU, torch.bfloat16).is_enabled()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))  # no tensor cores
    assert autocast_dtype(cuda) == torch.float32


def test_mixed_precision_follows_the_device_s_choice():
    with mixed_precision(CPU):
        product = torch.randn(4, 4) @ torch.randn(4, 4)
    assert product.dtype == autocast_dtype(CPU)
    linear = torch.nn.Linear(4, 4)
    assert in_mixed_precision(linear, CPU)(torch.randn(2, 4)).dtype == torch.float32


def test_autocast_runs_linear_layers_in_16_bits_and_float32_switches_it_off():
    layer, x = torch.nn.Linear(8, 4), torch.randn(3, 8)
    with mixed_precision(CPU, torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        with mixed_precision(CPU, torch.float32):  # float32 overrides the enclosing autocast
            assert layer(x).dtype == torch.float32
    assert layer(x).dtype == torch.float32
    assert layer.weight.dtype == torch.float32


def test_autocast_refuses_other_types():
    with pytest.raises(ValueError, match="float32, bfloat16, float16"):
        mixed_precision(CPU, torch.float64)


def test_in_mixed_precision_returns_float32_close_to_the_float32_result():
    layer, x = torch.nn.Linear(16, 16), torch.randn(5, 16)
    output = in_mixed_precision(layer, CPU, torch.bfloat16)(x)
    assert output.dtype == torch.float32
    assert not torch.equal(output, layer(x))  # rounded to bfloat16 ...
    assert torch.allclose(output, layer(x), atol=0.05)  # ... to about two or three digits


def test_scaler_only_for_float16():
    assert not grad_scaler(CPU, torch.bfloat16).is_enabled()
    assert not grad_scaler(CPU, torch.float32).is_enabled()
    assert precisions_to_measure(CPU) == [torch.float32, torch.bfloat16]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 loss scaling: CUDA only")
def test_scaler_scales_float16_losses_on_cuda():
    device = torch.device("cuda")
    scaler = grad_scaler(device, torch.float16)
    assert scaler.is_enabled()
    loss = torch.tensor(2.0, device=device)
    assert scaler.scale(loss).item() == pytest.approx(2.0 * scaler.get_scale())
    assert torch.float16 in precisions_to_measure(device)


def regression_loss(forward, x, y):
    return (forward(x) - y).pow(2).mean()


def test_float16_loss_scaling_skips_an_overflowing_step_and_backs_off():
    # The float16 path runs on the CPU too (slowly): with targets of 1000 the scaled output gradient,
    # 2 * 1000 / 64 * 65536, exceeds float16's largest value 65504, so the first step must be skipped and the
    # scale halved; the scaler then finds a scale that fits and the steps go through.
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.full((64, 1), 1000.0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    scaler = grad_scaler(CPU, torch.float16)
    assert scaler.is_enabled()
    start, weight = scaler.get_scale(), model.weight.detach().clone()
    first = train_step(model, regression_loss, (x, y), optimizer, scaler, device=CPU, dtype=torch.float16)
    assert torch.equal(model.weight, weight)  # the step with infinite gradients was skipped
    assert scaler.get_scale() == start / 2
    losses = [train_step(model, regression_loss, (x, y), optimizer, scaler, device=CPU, dtype=torch.float16)
              for _ in range(30)]
    assert not torch.equal(model.weight, weight)
    assert losses[-1] < first


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_train_step_matches_a_plain_adam_step_in_float32_and_learns_in_bfloat16(dtype):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    model, reference = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=0.05)
    scaler = grad_scaler(CPU, dtype)
    losses = []
    for _ in range(20):
        losses.append(train_step(model, regression_loss, (x, y), optimizer, scaler, device=CPU, dtype=dtype))
        reference_loss = regression_loss(reference, x, y)
        reference_optimizer.zero_grad()
        reference_loss.backward()
        reference_optimizer.step()
    assert losses[-1] < 0.9 * losses[0]
    if dtype == torch.float32:
        assert torch.allclose(model.weight, reference.weight, atol=1e-6)


def test_time_call_runs_warmup_and_repeats_and_refuses_no_repeats():
    calls = []
    seconds = time_call(lambda: calls.append(1), device=CPU, repeats=3, warmup=2)
    assert len(calls) == 5 and seconds >= 0.0
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, device=CPU, repeats=0)
