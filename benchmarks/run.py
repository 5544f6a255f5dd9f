"""`make bench`: measurements taken side by side in one run, printed as a table, written to JSON and a plot.

Part of it so far: the execution time of each chapter per profile, read from the execution records that
Jupyter Book's cache keeps for the latest build of each profile (nothing is re-executed). Chapter 05 adds
the sampler-overhead and mixed-precision ratios.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from jupyter_cache import get_cache  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "_build" / "bench"
sys.path.insert(0, str(REPO_ROOT))

from book.profiles import PROFILE_NAMES  # noqa: E402
from book.site import BUILD_ROOT  # noqa: E402


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


def main() -> int:
    times = chapter_times()
    if not times:
        print("no build found: run `make book` (and/or `make test` for the smoke profile) first")
        return 1
    chapters = sorted({name for per in times.values() for name in per})
    profiles = [p for p in PROFILE_NAMES if p in times]
    print("chapter execution time (s), latest build of each profile")
    print(f"{'chapter':<40}" + "".join(f"{p:>10}" for p in profiles))
    for name in chapters:
        print(f"{name:<40}" + "".join(f"{times[p].get(name, float('nan')):>10.1f}" for p in profiles))
    print(f"{'total':<40}" + "".join(f"{sum(times[p].values()):>10.1f}" for p in profiles))

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "bench.json").write_text(json.dumps({"chapter_seconds": times}, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(profiles)
    for index, profile in enumerate(profiles):
        ax.bar(
            [c + index * width for c in range(len(chapters))],
            [times[profile].get(name, 0.0) for name in chapters],
            width=width,
            label=profile,
        )
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(chapters))], chapters, rotation=20, ha="right")
    ax.set_ylabel("execution time (s)")
    ax.set_title("Chapter execution time per profile")
    ax.legend(title="profile")
    fig.tight_layout()
    fig.savefig(OUT_DIR / "bench.png", dpi=120)
    print(f"wrote {OUT_DIR / 'bench.json'} and {OUT_DIR / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
