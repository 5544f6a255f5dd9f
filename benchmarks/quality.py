"""`make bench-quality`: sample quality per minute of training, for chapter 3's flow-matching U-Net.

Trains chapter 3's class-conditional U-Net (linear path, the `cpu` profile's recipe) once per *arm*, an
arm being the recipe with or without a lever the book adopted, and after every epoch measures, at a fixed
number of network evaluations, the FID of class-conditional samples, the FID of unconditional (null-class)
samples and the class accuracy, with the book's classifier. Prints a table, writes ``quality.json`` and a
plot ``quality.png`` (FID against training minutes) into ``--out``. Measure on an otherwise idle machine: the
minutes are wall-clock.

    python -m benchmarks.quality [--epochs 2] [--samples 500] [--nfe 16] [--out _build/bench]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from book.data import load_images  # noqa: E402
from book.evaluation import class_accuracy, classifier_features, frechet_distance, trained_classifier  # noqa: E402
from book.image_flow import flow_matching_image_loss, solve_images  # noqa: E402
from book.numerics import autocast_dtype, grad_scaler, to_model_space, to_pixels  # noqa: E402
from book.plotting import MODEL_COLOR, NOISE_COLOR  # noqa: E402
from book.profiles import choose_device, get_profile, seeded, seeded_generator  # noqa: E402
from book.schedules import get_schedule  # noqa: E402
from book.training import fit  # noqa: E402
from book.unet import UNet, UNetConfig  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
ARMS = {
    "uniform t": {"time_distribution": "uniform"},
    "logit-normal t": {"time_distribution": "logit-normal"},
}
"""Each arm is the profile's U-Net recipe with these fields replaced: without and with a kept lever."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs per arm (default 2)")
    parser.add_argument("--samples", type=int, default=500, help="samples per FID (default 500)")
    parser.add_argument("--nfe", type=int, default=16, help="Euler steps = network evaluations (default 16)")
    parser.add_argument("--images", type=int, default=60_000, help="training images (default 60,000)")
    parser.add_argument("--profile", default="cpu", help="whose recipes to train with (default cpu)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "_build" / "bench", help="output folder")
    args = parser.parse_args(argv)
    if min(args.epochs, args.samples, args.nfe, args.images) <= 0:
        parser.error("--epochs, --samples, --nfe and --images must be positive")
    device = choose_device()
    profile = get_profile(args.profile)
    train, test = load_images("mnist", "train"), load_images("mnist", "test")
    classifier = trained_classifier(
        train.images[: profile.mnist_train_images],
        train.labels[: profile.mnist_train_images],
        profile.classifier_recipe,
        device=device,
    )
    reference = classifier_features(classifier, test.images)
    real = train.images[torch.randperm(len(train), generator=seeded_generator(1))[: args.samples]]
    floor = frechet_distance(classifier_features(classifier, real), reference)
    images = to_model_space(train.images[: args.images])
    labels = train.labels[: args.images]
    noise = torch.randn(args.samples, 1, 28, 28, generator=seeded_generator(3))
    requested = torch.arange(args.samples) % 10
    schedule = get_schedule("linear")

    def measure(model: torch.nn.Module) -> dict[str, float]:
        conditional = to_pixels(
            solve_images(model, noise, steps=args.nfe, labels=requested, device=device).samples
        )
        unconditional = to_pixels(solve_images(model, noise, steps=args.nfe, device=device).samples)
        return {
            "cond_fid": frechet_distance(classifier_features(classifier, conditional), reference),
            "uncond_fid": frechet_distance(classifier_features(classifier, unconditional), reference),
            "cond_accuracy": class_accuracy(classifier, conditional, requested),
        }

    rows = []
    for arm, change in ARMS.items():
        recipe = dataclasses.replace(profile.unet_recipe, epochs=args.epochs, **change)
        with seeded(recipe.seed):
            model = UNet(UNetConfig(num_classes=10))
        training_minutes: list[float] = []
        clock = {"start": time.perf_counter(), "measuring": 0.0}

        def loss_fn(model, x1, batch_labels, recipe=recipe):
            return flow_matching_image_loss(
                model,
                x1,
                batch_labels,
                schedule=schedule,
                device=device,
                label_dropout=recipe.label_dropout,
                time_distribution=recipe.time_distribution,
            )

        def validate(model, clock=clock, training_minutes=training_minutes):
            began = time.perf_counter()  # the clock counts training only, not these measurements
            training_minutes.append((began - clock["start"] - clock["measuring"]) / 60)
            metrics = measure(model)
            clock["measuring"] += time.perf_counter() - began
            return metrics

        history = fit(
            model,
            loss_fn,
            (images, labels),
            recipe,
            device=device,
            validate=validate,
            grad_scaler=grad_scaler(device, autocast_dtype(device)),
            desc=arm,
        )
        for epoch, minutes in enumerate(training_minutes):
            rows.append(
                {
                    "arm": arm,
                    "recipe": recipe.summary(),
                    "epoch": epoch + 1,
                    "minutes": minutes,
                    **{key: history[key][epoch] for key in ("cond_fid", "uncond_fid", "cond_accuracy")},
                }
            )
    print(
        f"chapter 3's U-Net on {args.images:,} images, {device}, {autocast_dtype(device)}; "
        f"Euler {args.nfe} steps, {args.samples} samples per FID (floor {floor:.2f}):"
    )
    print(f"{'arm':>16} {'epoch':>5} {'train min':>9} {'cond FID':>9} {'uncond FID':>10} {'cond acc':>8}")
    for row in rows:
        print(
            f"{row['arm']:>16} {row['epoch']:>5} {row['minutes']:>9.1f} {row['cond_fid']:>9.2f} "
            f"{row['uncond_fid']:>10.2f} {100 * row['cond_accuracy']:>7.1f}%"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"floor": floor, "samples": args.samples, "nfe": args.nfe, "device": str(device), "rows": rows}
    partial = args.out / "quality.json.partial"  # written whole, then renamed: no half-written results
    partial.write_text(json.dumps(summary, indent=1))
    partial.replace(args.out / "quality.json")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, color in zip(ARMS, [NOISE_COLOR, MODEL_COLOR], strict=True):
        own = [row for row in rows if row["arm"] == arm]
        for key, style, what in [
            ("cond_fid", "o-", "class-conditional"),
            ("uncond_fid", "s--", "unconditional"),
        ]:
            ax.plot(
                [r["minutes"] for r in own], [r[key] for r in own], style, color=color, label=f"{arm}, {what}"
            )
    ax.axhline(floor, color="0.5", linestyle=":", label="floor: real images")
    ax.set_yscale("log")
    ax.set_xlabel("training minutes")
    ax.set_ylabel(f"FID ({args.samples} samples, Euler {args.nfe} NFE)")
    ax.set_title("Sample quality per minute of training, chapter 3's U-Net")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    partial = args.out / "quality.partial.png"
    fig.savefig(partial, dpi=100)
    partial.replace(args.out / "quality.png")
    print(f"wrote {args.out / 'quality.json'} and {args.out / 'quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
