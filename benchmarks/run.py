"""`make bench`: measurements taken side by side in one run, printed as a table, written to JSON and a plot.

Run from the repository root: `python -m benchmarks.run [--help]` (what `make bench` runs).

Three parts, all in this one process on this one machine:

1. Sampler overhead: for Euler, Heun (chapter 2's `integrate`), DDPM and DDIM (chapter 4's samplers), the time
   of the same number of bare network calls divided by the time of a full sampling run, i.e. the share of a
   run spent in the network (the aim is at least 0.95). The network is chapter 3's U-Net, untrained (its
   weights do not change its speed), under the book's autocast precision.
2. Training throughput: images per second of a flow-matching training step of the same U-Net in float32 and
   under autocast (bfloat16; float16 as well on CUDA), and their ratio (chapter 5's `book.numerics`).
3. The execution time of each chapter per profile, read from the execution records that Jupyter Book's cache
   keeps for the latest build of each profile (nothing is re-executed).

Timed calls alternate between the variants inside every repeat (so a change in the machine's load hits all of
them alike), after one untimed warm-up call each; the table reports the fastest of the repeats (as `timeit`
advises: the other measurements are the same work slowed down by whatever else the machine was doing). Each
sampler is also timed with a stand-in network that costs nothing, which measures the solver's own arithmetic
directly; the difference of two noisy timings cannot resolve it when it is below a few per cent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from jupyter_cache import get_cache  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "_build" / "bench"

from book.ddpm import linear_beta_schedule, network_eps  # noqa: E402
from book.diffusion_samplers import DDIMStep, DDPMStep, reverse_process  # noqa: E402
from book.flow_matching import flow_matching_loss  # noqa: E402
from book.numerics import (  # noqa: E402
    autocast_dtype,
    grad_scaler,
    in_mixed_precision,
    precisions_to_measure,
    time_call,
    train_step,
)
from book.profiles import PROFILE_NAMES, choose_device  # noqa: E402
from book.samplers import integrate  # noqa: E402
from book.schedules import linear_schedule  # noqa: E402
from book.unet import UNet, UNetConfig  # noqa: E402
from tools.site import BUILD_ROOT  # noqa: E402

NETWORK_SHARE_AIM = 0.95


def chapter_times() -> dict[str, dict[str, float]]:
    """Seconds per chapter for each profile, from the newest build of that profile."""
    times: dict[str, dict[str, float]] = {}
    for profile in PROFILE_NAMES:
        builds = sorted(
            (BUILD_ROOT / "cache").glob(f"{profile}-*/jupyter_cache"), key=lambda p: p.stat().st_mtime
        )
        if not builds:
            continue
        records = get_cache(builds[-1]).list_cache_records()
        newest: dict[str, tuple] = {}
        for record in records:
            name = Path(record.uri).stem
            if name not in newest or record.created > newest[name][0]:
                newest[name] = (record.created, record.data.get("execution_seconds", float("nan")))
        times[profile] = {name: seconds for name, (_, seconds) in sorted(newest.items())}
    return times


def table_axes(times: dict[str, dict[str, float]]) -> tuple[list[str], list[str]]:
    """The profiles (in the book's order) and the chapters that ``times`` has."""
    return [p for p in PROFILE_NAMES if p in times], sorted({name for per in times.values() for name in per})


def interleaved_best(calls: dict[str, Callable[[], object]], device: torch.device,
                     repeats: int) -> dict[str, float]:
    """Fastest seconds of each call; one warm-up each, then ``repeats`` rounds that time every call once."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(repeats):
        for name, call in calls.items():
            seconds[name].append(time_call(call, device=device, repeats=1, warmup=int(round_index == 0)))
    return {name: min(values) for name, values in seconds.items()}


@torch.no_grad()
def sampler_overhead(device: torch.device, *, batch: int, steps: int, repeats: int) -> list[dict]:
    """For each sampler: the seconds of a run, of its NFE bare network calls, and their ratio."""
    model = UNet(UNetConfig(num_classes=10)).to(device).eval()
    dtype = autocast_dtype(device)
    velocity = in_mixed_precision(model, device)  # what chapter 3's solve_images calls
    eps = network_eps(model, 1000, device)  # what chapter 4's samplers call
    schedule = linear_beta_schedule()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=generator).to(device)
    t_flow = torch.full((batch,), 0.5, device=device)
    t_step = torch.full((batch,), 500, dtype=torch.long, device=device)

    def bare_flow(nfe: int) -> Callable[[], object]:
        return lambda: [velocity(x, t_flow) for _ in range(nfe)]

    def bare_eps(nfe: int) -> Callable[[], object]:
        return lambda: [eps(x, t_step, None) for _ in range(nfe)]

    def free(x_t: torch.Tensor, *_: object) -> torch.Tensor:  # a velocity or noise network that costs nothing
        return x_t

    def flow_run(network: Callable, method: str) -> Callable[[], object]:
        return lambda: integrate(network, x, steps=steps, method=method)

    def ddpm_run(network: Callable) -> Callable[[], object]:
        return lambda: reverse_process(network, x, schedule, DDPMStep(), steps=steps, generator=generator)

    def ddim_run(network: Callable) -> Callable[[], object]:
        return lambda: reverse_process(network, x, schedule, DDIMStep(), steps=steps)

    samplers = {  # name: (full run, the same run with a free network, its bare network calls, NFE)
        "Euler": (flow_run(velocity, "euler"), flow_run(free, "euler"), bare_flow(steps), steps),
        "Heun": (flow_run(velocity, "heun"), flow_run(free, "heun"), bare_flow(2 * steps),
                 2 * steps),
        "DDPM": (ddpm_run(eps), ddpm_run(free), bare_eps(steps), steps),
        "DDIM": (ddim_run(eps), ddim_run(free), bare_eps(steps), steps),
    }
    calls = {}
    for name, (run, solver, bare, _) in samplers.items():
        calls[f"{name} run"], calls[f"{name} solver"], calls[f"{name} bare"] = run, solver, bare
    best = interleaved_best(calls, device, repeats)
    rows, precision = [], str(dtype).removeprefix("torch.")
    for name, (_, _, _, nfe) in samplers.items():
        run, network, solver = best[f"{name} run"], best[f"{name} bare"], best[f"{name} solver"]
        rows.append({"sampler": name, "nfe": nfe, "batch": batch, "precision": precision,
                     "run_seconds": run, "network_seconds": network, "solver_seconds": solver,
                     "network_share": network / run,
                     "network_share_from_solver": network / (network + solver)})
    return rows


def training_throughput(device: torch.device, *, batch: int, steps: int, repeats: int) -> list[dict]:
    """Images per second of a flow-matching training step in each precision, and the ratio to float32."""
    generator = torch.Generator().manual_seed(0)
    x1 = torch.rand(batch, 1, 28, 28, generator=generator).to(device) * 2 - 1
    setups = {}
    for dtype in precisions_to_measure(device):
        torch.manual_seed(0)
        model = UNet(UNetConfig(num_classes=10)).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = grad_scaler(device, dtype)

        def run(model=model, optimizer=optimizer, scaler=scaler, dtype=dtype) -> None:
            for _ in range(steps):
                train_step(model, lambda forward, x: flow_matching_loss(forward, x, linear_schedule), (x1,),
                           optimizer, scaler, device=device, dtype=dtype)

        setups[str(dtype).removeprefix("torch.")] = run
    best = interleaved_best(setups, device, repeats)
    return [{"precision": name, "batch": batch, "steps": steps, "images_per_second": batch * steps / seconds,
             "ratio_to_float32": best["float32"] / seconds} for name, seconds in best.items()]


def machine(device: torch.device) -> dict[str, str | int]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    if device.type == "cpu" and Path("/proc/cpuinfo").exists():
        name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), name)
    return {"device": str(device), "name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count() or 0,
            "autocast": str(autocast_dtype(device)).removeprefix("torch.")}


def plot(result: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    rows = result["sampler_overhead"]
    positions = range(len(rows))
    axes[0].bar([i - 0.2 for i in positions], [r["network_share"] for r in rows], width=0.4, color="#1f77b4",
                label="bare network calls / full run")
    axes[0].bar([i + 0.2 for i in positions], [r["network_share_from_solver"] for r in rows], width=0.4,
                color="#aec7e8", label="network / (network + solver alone)")
    axes[0].set_xticks(list(positions), [r["sampler"] for r in rows])
    axes[0].axhline(NETWORK_SHARE_AIM, color="#d62728", linestyle="--", label=f"aim {NETWORK_SHARE_AIM}")
    axes[0].set_ylim(0, max(1.4, 1.05 * max(r["network_share"] for r in rows)))
    axes[0].set_ylabel("network time / sampling-run time")
    axes[0].set_title(f"Sampler overhead (batch {rows[0]['batch']}, {rows[0]['precision']})")
    axes[0].legend(loc="upper center", ncols=2, fontsize="x-small")
    rows = result["training_throughput"]
    axes[1].bar([r["precision"] for r in rows], [r["images_per_second"] for r in rows], color="#ff7f0e")
    axes[1].set_ylabel("training images per second")
    axes[1].set_title(f"Training throughput (batch {rows[0]['batch']})")
    times = result["chapter_seconds"]
    profiles, chapters = table_axes(times)
    width = 0.8 / max(len(profiles), 1)
    for index, profile in enumerate(profiles):
        axes[2].bar([c + index * width for c in range(len(chapters))],
                    [times[profile].get(name, 0.0) for name in chapters], width=width, label=profile)
    axes[2].set_xticks([c + 0.4 - width / 2 for c in range(len(chapters))], [c[:2] for c in chapters])
    axes[2].set_xlabel("chapter")
    axes[2].set_ylabel("execution time (s)")
    axes[2].set_title("Chapter execution time (latest builds)")
    if profiles:
        axes[2].legend(title="profile")
    fig.suptitle(f"make bench on {result['machine']['name']} ({result['machine']['device']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="batch (default: 128 CPU, 512 GPU)")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps per run")
    parser.add_argument("--train-steps", type=int, default=2, help="training steps per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after one warm-up)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"folder for bench.json and bench.png "
                        f"(default {OUT_DIR.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "train_steps", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    device = choose_device()
    batch = args.batch or (512 if device.type == "cuda" else 128)
    result = {"machine": machine(device),
              "sampler_overhead": sampler_overhead(device, batch=batch, steps=args.steps,
                                                   repeats=args.repeats),
              "training_throughput": training_throughput(device, batch=batch, steps=args.train_steps,
                                                         repeats=args.repeats),
              "chapter_seconds": chapter_times()}

    info = result["machine"]
    print(f"make bench on {info['name']} ({info['device']}, {info['threads']} threads, "
          f"torch {info['torch']})")
    print(f"\nsampler overhead (batch {batch}, {info['autocast']}, best of {args.repeats}):")
    print(f"{'sampler':<8}{'NFE':>5}{'run (s)':>10}{'network (s)':>13}{'solver alone (ms)':>19}"
          f"{'network share':>15}{'from solver':>13}")
    for row in result["sampler_overhead"]:
        print(f"{row['sampler']:<8}{row['nfe']:>5}{row['run_seconds']:>10.3f}{row['network_seconds']:>13.3f}"
              f"{1000 * row['solver_seconds']:>19.2f}{row['network_share']:>15.3f}"
              f"{row['network_share_from_solver']:>13.4f}")
    print(f"\ntraining throughput (batch {batch}, {args.train_steps} steps per call, "
          f"best of {args.repeats}):")
    print(f"{'precision':<10}{'images/s':>10}{'ratio to float32':>18}")
    for row in result["training_throughput"]:
        print(f"{row['precision']:<10}{row['images_per_second']:>10.1f}{row['ratio_to_float32']:>18.2f}")
    times = result["chapter_seconds"]
    if times:
        profiles, chapters = table_axes(times)
        print("\nchapter execution time (s), latest build of each profile:")
        print(f"{'chapter':<40}" + "".join(f"{p:>10}" for p in profiles))
        for name in chapters:
            print(f"{name:<40}" + "".join(f"{times[p].get(name, float('nan')):>10.1f}" for p in profiles))
        print(f"{'total':<40}" + "".join(f"{sum(times[p].values()):>10.1f}" for p in profiles))
    else:
        print("\nno build found for the chapter times: run `make book` (and/or `make test` for smoke) first")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "bench.png")
    print(f"\nwrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
