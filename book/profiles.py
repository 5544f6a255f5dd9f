"""Compute profiles: the one table of every budget that depends on compute, plus seeding and device choice.

``BOOK_PROFILE`` selects a profile (``smoke``, ``cpu`` or ``gpu``). Without it, the profile is ``gpu`` when
CUDA is present and ``cpu`` otherwise. Chapters read budgets only from here, never from literals in a loop::

    from book.profiles import current_profile
    profile = current_profile()
    recipe = profile.flow_recipe  # a book.training.TrainingRecipe: epochs, batch size, learning rate, ...

Only chapters read the profile: they fill recipes and sizes from it and pass them to the library's functions,
which never read it themselves. Seeding lives here too: :func:`seed_everything` once per chapter, and
:func:`seeded_generator` or :func:`seeded` wherever a draw must be reproducible without touching global state.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from book.training import TrainingRecipe

PROFILE_ENV = "BOOK_PROFILE"
DEVICE_ENV = "BOOK_DEVICE"

# cuBLAS gives the same result on every run only with a fixed workspace, set before its first use (PyTorch's
# "Reproducibility" notes); a value the reader set is kept.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _budget(help_text: str, *, smoke, cpu, gpu):
    """A profile field: its help text and its value in each profile (read by :data:`PROFILES`)."""
    return field(metadata={"help": help_text, "values": {"smoke": smoke, "cpu": cpu, "gpu": gpu}})


# Chapter 4's DDPM U-Nets learn the null class for guidance from labels dropped at this rate.
_DDPM_LABEL_DROPOUT = 0.3
# Chapter 3's flow-matching U-Nets drop half of their labels: their null class is also the book's
# unconditional image model (at 0.3, the cpu build's unconditional FID at 16 Euler steps was 31.68, at 0.5
# 27.45), and they draw their times logit-normal (Esser et al. 2024; measured in chapter 3 and by
# `make bench-quality`).
_FM_LABEL_DROPOUT = 0.5
_FM_IMAGES = {"label_dropout": _FM_LABEL_DROPOUT, "time_distribution": "logit-normal"}


def _recipe(epochs: int, batch_size: int, lr: float, **options) -> TrainingRecipe:
    """A recipe with Adam and a cosine-annealed learning rate (the book's default) unless ``options`` say
    otherwise; its seed is 0."""
    return TrainingRecipe(epochs=epochs, batch_size=batch_size, lr=lr, **options)


@dataclass(frozen=True)
class Profile:
    """Every budget that depends on compute, for one profile.

    The values of all three profiles sit next to each field, so the whole table is read in one place;
    :func:`profile_table` renders it for the preface. Training budgets are whole recipes
    (:class:`book.training.TrainingRecipe`): epochs, batch size, learning rate and the rest of what determines
    a network's weights besides its data and architecture.
    """

    name: str = field(metadata={"help": "profile name"})
    # Chapter 01: normalizing flows (reference: 250,000 points, 20 epochs, batch 128, 15 layers, Adam 1e-3).
    flow_points: int = _budget("ch01: training points", smoke=2_000, cpu=80_000, gpu=250_000)
    flow_recipe: TrainingRecipe = _budget("ch01: training of the flow", smoke=_recipe(1, 128, 1e-3),
                                          cpu=_recipe(8, 128, 1e-3), gpu=_recipe(20, 128, 1e-3))
    flow_layers: int = _budget("ch01: affine coupling layers", smoke=15, cpu=15, gpu=15)
    flow_grid_size: int = _budget("ch01: log-density grid rows", smoke=60, cpu=200, gpu=300)
    # Chapter 02: flow matching in 2D (reference: 250,000 points, 20 epochs, batch 128, Euler dt = 1/1000).
    fm2d_points: int = _budget("ch02: training points", smoke=2_000, cpu=100_000, gpu=250_000)
    fm2d_recipe: TrainingRecipe = _budget("ch02: training of the velocity MLPs", smoke=_recipe(1, 128, 1e-3),
                                          cpu=_recipe(15, 128, 1e-3), gpu=_recipe(20, 128, 1e-3))
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
    image_batch_size: int = _budget("ch03-05: batch size of the timing and precision measurements", smoke=64,
                                    cpu=128, gpu=128)
    classifier_recipe: TrainingRecipe = _budget("ch03: training of the evaluation classifier",
                                                smoke=_recipe(1, 64, 1e-3), cpu=_recipe(2, 128, 1e-3),
                                                gpu=_recipe(5, 128, 1e-3))
    unet_recipe: TrainingRecipe = _budget("ch03: training of the flow-matching U-Net that chapters 3 and 4 "
                                          "sample (label dropout for guidance, logit-normal times)",
                                          smoke=_recipe(1, 64, 2e-3, **_FM_IMAGES),
                                          cpu=_recipe(4, 128, 2e-3, **_FM_IMAGES),
                                          gpu=_recipe(20, 128, 2e-3, **_FM_IMAGES))
    ablation_images: int = _budget("ch03: training images of the like-for-like comparisons (linear against "
                                   "cosine, stronger against baseline U-Net)", smoke=512, cpu=20_000,
                                   gpu=60_000)
    ablation_recipe: TrainingRecipe = _budget("ch03: training of each U-Net of those comparisons",
                                              smoke=_recipe(1, 64, 2e-3, **_FM_IMAGES),
                                              cpu=_recipe(1, 128, 2e-3, **_FM_IMAGES),
                                              gpu=_recipe(5, 128, 2e-3, **_FM_IMAGES))
    ddpm_recipe: TrainingRecipe = _budget("ch04: training of the DDPM U-Net on MNIST",
                                          smoke=_recipe(1, 64, 2e-3, label_dropout=_DDPM_LABEL_DROPOUT),
                                          cpu=_recipe(5, 128, 2e-3, label_dropout=_DDPM_LABEL_DROPOUT),
                                          gpu=_recipe(20, 128, 2e-3, label_dropout=_DDPM_LABEL_DROPOUT))
    sampler_noise: str = _budget("ch04: where stochastic samplers draw their noise ('host': the same "
                                 "numbers on every device; 'device': no copy per step)", smoke="host",
                                 cpu="host", gpu="device")
    ddpm_max_steps: int = _budget("ch04: most sampler steps in the step sweep (of 10, 20, 50, 100), each "
                                  "with uniform and quadratic spacing", smoke=20, cpu=20, gpu=100)
    ddpm_sweep_samples: int = _budget("ch04: samples per point of the MNIST step, eta and guidance sweeps",
                                      smoke=24, cpu=400, gpu=10_000)
    ddpm_many_steps_samples: int = _budget("ch04: samples of the run up to 1000 steps (DDIM, DDPM with "
                                           "beta-tilde)", smoke=12, cpu=100, gpu=2_000)
    ddpm_many_steps_ddim: int = _budget("ch04: most DDIM steps in that run (of 10, 20, 100, 1000)", smoke=20,
                                        cpu=100, gpu=1_000)
    ddpm_many_steps_ddpm: int = _budget("ch04: most DDPM (beta-tilde) steps in that run (of 10, 20, 100, "
                                        "1000)", smoke=20, cpu=1_000, gpu=1_000)
    ddpm_guidance_nfe: int = _budget("ch04: network evaluations per sample in the guidance sweep (a guided "
                                     "DDIM step costs 2)", smoke=20, cpu=20, gpu=20)
    ddpm_compare_max_nfe: int = _budget("ch04: most NFE in the DDIM vs flow-matching comparison", smoke=4,
                                        cpu=20, gpu=100)
    ddpm_fashion_images: int = _budget("ch04: Fashion-MNIST training images", smoke=1_024, cpu=30_000,
                                       gpu=60_000)
    fashion_ddpm_recipe: TrainingRecipe = _budget(
        "ch04: training of the DDPM U-Net on Fashion-MNIST",
        smoke=_recipe(1, 64, 2e-3, label_dropout=_DDPM_LABEL_DROPOUT),
        cpu=_recipe(2, 128, 2e-3, label_dropout=_DDPM_LABEL_DROPOUT),
        gpu=_recipe(20, 128, 2e-3, label_dropout=_DDPM_LABEL_DROPOUT))
    ddpm_fashion_samples: int = _budget("ch04: samples per point of the Fashion-MNIST sweeps", smoke=20,
                                        cpu=300, gpu=10_000)
    translation_recipe: TrainingRecipe = _budget("ch05: training of each of the two translation U-Nets "
                                                 "(independent and minibatch-OT pairing)",
                                                 smoke=_recipe(2, 64, 2e-3), cpu=_recipe(4, 128, 2e-3),
                                                 gpu=_recipe(100, 128, 2e-3))
    translation_images: int = _budget("ch05: training images of each domain (MNIST, Fashion-MNIST)",
                                      smoke=128, cpu=20_000, gpu=60_000)
    translation_steps: int = _budget("ch05: Euler steps of a translation", smoke=5, cpu=20, gpu=100)
    translation_eval_samples: int = _budget("ch05: translations per FID in the per-epoch curve", smoke=32,
                                            cpu=256, gpu=2_000)
    precision_steps: int = _budget("ch05: training steps per precision in the comparison", smoke=2, cpu=10,
                                   gpu=300)
    precision_samples: int = _budget("ch05: translations per precision (FID and timing)", smoke=64, cpu=128,
                                     gpu=5_000)
    timing_repeats: int = _budget("ch05: timed repeats per precision (after one warm-up)", smoke=1, cpu=2,
                                  gpu=5)
    fid_samples: int = _budget("ch03-05: samples per FID", smoke=128, cpu=1_000, gpu=10_000)
    image_sampling_steps: int = _budget("ch03-05: default sampler steps", smoke=5, cpu=50, gpu=100)
    sampler_max_steps: int = _budget("ch03: most network evaluations in the sampler sweep (a power of 2)",
                                     smoke=2, cpu=16, gpu=64)
    encode_images: int = _budget("ch03: test images encoded and decoded", smoke=8, cpu=64, gpu=256)
    fm_guidance_weights: tuple[float, ...] = _budget("ch03: guidance weights at 16 NFE (8 Euler steps)",
                                                     smoke=(1.0,), cpu=(0.5, 1.0, 2.0), gpu=(0.5, 1.0, 2.0))
    fid_seeds: int = _budget("ch03: noise seeds for the FID's spread (conditional, 16 NFE)",
                             smoke=2, cpu=3, gpu=5)


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
        values = [getattr(PROFILES[n], f.name) for n in PROFILE_NAMES]
        cells = [_cell(value) for value in values]
        lines.append(f"| {f.metadata['help']} (`{f.name}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, TrainingRecipe):
        return value.summary()
    return f"{value:,}" if isinstance(value, int) else str(value)


def choose_device() -> torch.device:
    """CUDA when present, else the CPU; ``$BOOK_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``) overrides."""
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not cuda_available():
            raise ValueError(f"{DEVICE_ENV}={requested!r} but CUDA is not available; unset it or use 'cpu'")
        return device
    return torch.device("cuda" if cuda_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices): once, at the top of a chapter.

    The same profile on the same machine then gives the same numbers. (Across machines, float results may
    differ in the last bits: different CPUs pick different kernels.) Seeds alone are not enough on a GPU:
    several of its fastest kernels (cuDNN's autotuned convolutions, sums made of atomic additions) add in an
    order that changes from run to run. With CUDA present this also turns on PyTorch's deterministic mode
    (:func:`use_deterministic_kernels`); on the CPU nothing else changes.

    Experiments take their randomness from :func:`seeded_generator` instead, so that no cell's numbers depend
    on what ran before it.
    """
    _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (seeds the legacy global generator that libraries still use)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if cuda_available():
        use_deterministic_kernels()


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A new random generator on ``device``, seeded with ``seed``; no global state is read or changed.

    Pass it to every draw that must be reproducible (``torch.randn(..., generator=g)``) and to the samplers.
    A CPU generator gives the same numbers on every machine, whatever device the draws are moved to.
    """
    _check_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with PyTorch's global CPU generator seeded with ``seed``, restoring its state after.

    For code that draws from the global generator and takes no ``generator`` argument, such as the initial
    weights of a network: ``with seeded(0): model = UNet(config)``.
    """
    _check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def use_deterministic_kernels() -> None:
    """Make CUDA runs repeatable: no cuDNN autotuning, cuDNN's deterministic algorithms, and PyTorch's
    deterministic mode, which warns about any operation that has no deterministic GPU kernel."""
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
