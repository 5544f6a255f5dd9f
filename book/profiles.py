"""Compute profiles: the one table of every budget that depends on compute, plus seeding and device choice.

``BOOK_PROFILE`` selects a profile (``smoke``, ``cpu`` or ``gpu``). Without it, the profile is ``gpu`` when
CUDA is present and ``cpu`` otherwise. Chapters read budgets only from here, never from literals in a loop::

    from book.profiles import current_profile
    profile = current_profile()
    epochs = profile.flow_epochs
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch

PROFILE_ENV = "BOOK_PROFILE"
DEVICE_ENV = "BOOK_DEVICE"

# cuBLAS gives the same result on every run only with a fixed workspace, set before its first use (PyTorch's
# "Reproducibility" notes); a value the reader set is kept.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _budget(help_text: str, *, smoke, cpu, gpu):
    """A profile field: its help text and its value in each profile (read by :data:`PROFILES`)."""
    return field(metadata={"help": help_text, "values": {"smoke": smoke, "cpu": cpu, "gpu": gpu}})


@dataclass(frozen=True)
class Profile:
    """Every budget that depends on compute, for one profile.

    The values of all three profiles sit next to each field, so the whole table is read in one place;
    :func:`profile_table` renders it for the preface.
    """

    name: str = field(metadata={"help": "profile name"})
    # Chapter 01: normalizing flows (reference: 250,000 points, 20 epochs, batch 128, 15 layers).
    flow_points: int = _budget("ch01: training points", smoke=2_000, cpu=80_000, gpu=250_000)
    flow_epochs: int = _budget("ch01: training epochs", smoke=1, cpu=8, gpu=20)
    flow_batch_size: int = _budget("ch01: batch size", smoke=128, cpu=128, gpu=128)
    flow_layers: int = _budget("ch01: affine coupling layers", smoke=15, cpu=15, gpu=15)
    flow_grid_size: int = _budget("ch01: log-density grid rows", smoke=60, cpu=200, gpu=300)
    # Chapter 02: flow matching in 2D (reference: 250,000 points, 20 epochs, batch 128, Euler dt = 1/1000).
    fm2d_points: int = _budget("ch02: training points", smoke=2_000, cpu=100_000, gpu=250_000)
    fm2d_epochs: int = _budget("ch02: training epochs", smoke=1, cpu=15, gpu=20)
    fm2d_batch_size: int = _budget("ch02: batch size", smoke=128, cpu=128, gpu=128)
    fm2d_sampling_steps: int = _budget("ch02: Euler steps for samples", smoke=20, cpu=200, gpu=1_000)
    fm2d_gaussian_points: int = _budget("ch02: points of the Gaussian target", smoke=2_000, cpu=20_000,
                                        gpu=100_000)
    fm2d_samples: int = _budget("ch02: samples per scatter plot", smoke=300, cpu=1_000, gpu=1_000)
    fm2d_variance_samples: int = _budget("ch02: samples per variance curve", smoke=1_000, cpu=10_000,
                                         gpu=20_000)
    fm2d_class_samples: int = _budget("ch02: conditional samples", smoke=1_000, cpu=3_000, gpu=10_000)
    fm2d_likelihood_steps: int = _budget("ch02: Heun steps for the log-likelihood", smoke=10, cpu=100,
                                         gpu=500)
    # Chapters 03-05: images.
    mnist_train_images: int = _budget("ch03-05: training images used", smoke=1_024, cpu=60_000, gpu=60_000)
    image_batch_size: int = _budget("ch03-05: batch size", smoke=64, cpu=128, gpu=128)
    classifier_epochs: int = _budget("ch03: evaluation classifier epochs", smoke=1, cpu=2, gpu=5)
    unet_epochs: int = _budget("ch03: flow-matching U-Net epochs", smoke=1, cpu=1, gpu=20)
    ddpm_epochs: int = _budget("ch04: DDPM U-Net epochs", smoke=1, cpu=1, gpu=20)
    ddpm_max_steps: int = _budget("ch04: most sampler steps in the step sweep (of 10, 20, 50, 100, 1000)",
                                  smoke=10, cpu=50, gpu=1_000)
    ddpm_sweep_samples: int = _budget("ch04: samples per point of the MNIST step and guidance sweeps",
                                      smoke=40, cpu=500, gpu=10_000)
    ddpm_guidance_steps: int = _budget("ch04: DDIM steps in the guidance sweep", smoke=2, cpu=10, gpu=100)
    ddpm_compare_max_nfe: int = _budget("ch04: most NFE in the DDIM vs flow-matching comparison", smoke=4,
                                        cpu=20, gpu=100)
    ddpm_fashion_images: int = _budget("ch04: Fashion-MNIST training images", smoke=1_024, cpu=30_000,
                                       gpu=60_000)
    ddpm_fashion_epochs: int = _budget("ch04: Fashion-MNIST DDPM epochs", smoke=1, cpu=1, gpu=20)
    ddpm_fashion_samples: int = _budget("ch04: samples per point of the Fashion-MNIST sweeps", smoke=40,
                                        cpu=300, gpu=10_000)
    translation_epochs: int = _budget("ch05: translation U-Net epochs", smoke=2, cpu=3, gpu=100)
    translation_images: int = _budget("ch05: training images of each domain (MNIST, Fashion-MNIST)",
                                      smoke=128, cpu=10_000, gpu=60_000)
    translation_steps: int = _budget("ch05: Euler steps of a translation", smoke=5, cpu=20, gpu=100)
    translation_eval_samples: int = _budget("ch05: translations per FID in the per-epoch curve", smoke=32,
                                            cpu=256, gpu=2_000)
    precision_steps: int = _budget("ch05: training steps per precision in the comparison", smoke=2, cpu=15,
                                   gpu=300)
    precision_samples: int = _budget("ch05: translations per precision (FID and timing)", smoke=64, cpu=256,
                                     gpu=5_000)
    timing_repeats: int = _budget("ch05: timed repeats per precision (after one warm-up)", smoke=1, cpu=3,
                                  gpu=5)
    fid_samples: int = _budget("ch03-05: samples per FID", smoke=128, cpu=1_000, gpu=10_000)
    image_sampling_steps: int = _budget("ch03-05: default sampler steps", smoke=5, cpu=50, gpu=100)
    sampler_max_steps: int = _budget("ch03: most network evaluations in the sampler sweep (a power of 2)",
                                     smoke=2, cpu=16, gpu=64)
    encode_images: int = _budget("ch03: test images encoded and decoded", smoke=8, cpu=64, gpu=256)


PROFILE_NAMES: tuple[str, ...] = ("smoke", "cpu", "gpu")


def _build_profiles() -> dict[str, Profile]:
    profiles = {}
    for name in PROFILE_NAMES:
        values = {
            f.name: f.metadata["values"][name] for f in dataclasses.fields(Profile) if "values" in f.metadata
        }
        profiles[name] = Profile(name=name, **values)
    return profiles


PROFILES: dict[str, Profile] = _build_profiles()
"""The three profiles, by name."""


def cuda_available() -> bool:
    """Whether a CUDA device is usable (the default profile depends on it)."""
    return torch.cuda.is_available()


def default_profile_name() -> str:
    """``gpu`` when CUDA is present, ``cpu`` otherwise."""
    return "gpu" if cuda_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``; ``None`` reads ``$BOOK_PROFILE`` and falls back to the default.

    Raises:
        ValueError: for an unknown name, naming the valid ones.
    """
    if name is None:
        name = os.environ.get(PROFILE_ENV, "").strip() or default_profile_name()
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)} "
            f"(set {PROFILE_ENV}, e.g. `{PROFILE_ENV}=smoke make book`)"
        )
    return PROFILES[key]


def current_profile() -> Profile:
    """The profile this process runs in (``$BOOK_PROFILE`` or the default)."""
    return get_profile(None)


def profile_table() -> str:
    """The profile table as Markdown: one row per budget, one column per profile."""
    lines = ["| budget | " + " | ".join(f"`{n}`" for n in PROFILE_NAMES) + " |", "| --- |" + " ---: |" * 3]
    for f in dataclasses.fields(Profile):
        if "values" not in f.metadata:
            continue
        cells = [f"{getattr(PROFILES[n], f.name):,}" for n in PROFILE_NAMES]
        lines.append(f"| {f.metadata['help']} (`{f.name}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choose_device() -> torch.device:
    """CUDA when present, else the CPU; ``$BOOK_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``) overrides."""
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not cuda_available():
            raise ValueError(f"{DEVICE_ENV}={requested!r} but CUDA is not available; unset it or use 'cpu'")
        return device
    return torch.device("cuda" if cuda_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU generator seeded the same way.

    The same profile on the same machine then gives the same numbers. (Across machines, float results may
    differ in the last bits: different CPUs pick different kernels.) Seeds alone are not enough on a GPU:
    several of its fastest kernels (cuDNN's autotuned convolutions, sums made of atomic additions) add in an
    order that changes from run to run. With CUDA present this also turns on PyTorch's deterministic mode
    (:func:`use_deterministic_kernels`); on the CPU nothing else changes.
    """
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (seeds the legacy global generator that libraries still use)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if cuda_available():
        use_deterministic_kernels()
    return torch.Generator().manual_seed(seed)


def use_deterministic_kernels() -> None:
    """Make CUDA runs repeatable: no cuDNN autotuning, cuDNN's deterministic algorithms, and PyTorch's
    deterministic mode, which warns about any operation that has no deterministic GPU kernel."""
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


@cache
def _cpu_flags() -> frozenset[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return frozenset()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_is_fast(device: torch.device | None = None) -> bool:
    """Whether bfloat16 autocast speeds up convolutions and matrix products on ``device``.

    CUDA: compute capability 8.0 or newer (tensor cores with bf16). CPU: x86 with ``avx512_bf16`` or AMX
    (``amx_bf16``). On CPUs without them autocast is several times *slower*, so it is detected, never assumed.
    """
    device = device or choose_device()
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def autocast_dtype(device: torch.device | None = None) -> torch.dtype:
    """The precision the U-Net chapters train and sample in: bfloat16 where fast, float32 elsewhere."""
    return torch.bfloat16 if bf16_is_fast(device) else torch.float32
