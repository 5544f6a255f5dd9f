"""Tests of book/data.py: IDX reading, checksums, the fetch chain's failure modes, and the real datasets."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from book import data

STEMS = data.STEMS


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> bytes:
    """Write ``array`` (uint8) as IDX to ``path``, gzipped if asked; returns the decompressed bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return raw


def synthetic_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # so the scaled range is exactly [0, 1]
    return images, rng.integers(0, 10, size=n, dtype=np.uint8)


@pytest.fixture
def fake_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Small synthetic IDX files in a source folder ``tmp_path/source``, with SHA256 patched to match them.

    BOOK_DATA points at an empty ``tmp_path/data``, BOOK_OFFLINE is set and SYSTEM_DIRS is empty, so
    nothing outside tmp_path is read or written.
    """
    rng = np.random.default_rng(0)
    train_images, train_labels = synthetic_split(rng, 7)
    test_images, test_labels = synthetic_split(rng, 3)
    arrays = {
        "train-images-idx3-ubyte": train_images,
        "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": test_images,
        "t10k-labels-idx1-ubyte": test_labels,
    }
    source = tmp_path / "source"
    source.mkdir()
    digests = {
        stem: hashlib.sha256(write_idx(source / stem, array)).hexdigest() for stem, array in arrays.items()
    }
    monkeypatch.setitem(data.SHA256, "mnist", digests)
    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    monkeypatch.setattr(data, "SYSTEM_DIRS", ())
    return arrays


def place(source: Path, folder: Path, *, compress: bool) -> None:
    """Copy the synthetic files from ``source`` into ``folder``, gzipped (as ``<stem>.gz``) or not."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:
        raw = (source / stem).read_bytes()
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


# --- read_idx ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    array = np.random.default_rng(1).integers(0, 256, size=(4, 5, 6), dtype=np.uint8)
    path = tmp_path / "array-idx3-ubyte"  # no ".gz" suffix: gzip must be detected from the magic bytes
    write_idx(path, array, compress=compress)
    loaded = data.read_idx(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (4, 5, 6)
    np.testing.assert_array_equal(loaded, array)
    loaded[0, 0, 0] = 1  # writable, so torch.from_numpy is safe


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    array = np.array([[1, -2, 70000]], dtype=np.int32)
    path = tmp_path / "ints.idx"
    path.write_bytes(
        bytes([0, 0, 0x0C, 2]) + np.asarray(array.shape, ">u4").tobytes() + array.astype(">i4").tobytes()
    )
    np.testing.assert_array_equal(data.read_idx(path), array)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_truncated_names_file_and_sizes(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "short-idx3-ubyte"
    raw = write_idx(path, np.zeros((10, 28, 28), dtype=np.uint8))
    truncated = raw[:-100]
    path.write_bytes(gzip.compress(truncated) if compress else truncated)
    with pytest.raises(data.DataError) as info:
        data.read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert str(len(raw)) in message and str(len(truncated)) in message
    assert "make data" in message and "delete" in message


def test_read_idx_rejects_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(data.DataError, match="not an IDX file"):
        data.read_idx(path)


# --- checksums and the fetch chain ------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_fetch_local_installs_decompressed_and_loads(
    tmp_path: Path, fake_mnist: dict[str, np.ndarray], compress: bool
) -> None:
    folder = data.data_dir() / "mnist"
    place(tmp_path / "source", folder, compress=compress)
    assert data.fetch("mnist", sources=("local",), verbose=False) == folder
    for stem in STEMS:
        np.testing.assert_array_equal(data.read_idx(folder / stem), fake_mnist[stem])
    loaded = data.load_images("mnist", "train")
    assert loaded.images.shape == (7, 1, 28, 28) and loaded.images.dtype == torch.float32
    assert loaded.images.min().item() == 0.0 and loaded.images.max().item() == 1.0
    assert loaded.labels.dtype == torch.int64
    np.testing.assert_array_equal(loaded.labels.numpy(), fake_mnist["train-labels-idx1-ubyte"])
    assert loaded.class_names == tuple("0123456789")
    assert len(data.load_images("mnist", "test")) == 3


@pytest.mark.parametrize("compress", [False, True])
def test_flipped_byte_raises_checksum_error_naming_file(
    tmp_path: Path, fake_mnist: dict[str, np.ndarray], compress: bool
) -> None:
    folder = data.data_dir() / "mnist"
    raw = (tmp_path / "source" / "train-labels-idx1-ubyte").read_bytes()
    place(tmp_path / "source", folder, compress=False)
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0xFF
    (folder / "train-labels-idx1-ubyte").unlink()
    name = "train-labels-idx1-ubyte.gz" if compress else "train-labels-idx1-ubyte"
    (folder / name).write_bytes(gzip.compress(bytes(corrupt)) if compress else bytes(corrupt))
    with pytest.raises(data.DataError) as info:
        data.fetch("mnist", sources=("local",), verbose=False)
    message = str(info.value)
    assert str(folder / name) in message
    assert data.SHA256["mnist"]["train-labels-idx1-ubyte"] in message
    assert hashlib.sha256(bytes(corrupt)).hexdigest() in message
    assert "delete" in message and "make data" in message
    if compress:  # the corrupt .gz was not decompressed into place
        assert not (folder / "train-labels-idx1-ubyte").exists()


def test_missing_while_offline_lists_sources_and_manual_steps(
    tmp_path: Path, fake_mnist: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_system = tmp_path / "usr-share-datasets"
    empty_system.mkdir()
    monkeypatch.setattr(data, "SYSTEM_DIRS", (empty_system,))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("BOOK_OFFLINE=1 must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(data.subprocess, "run", no_network)
    with pytest.raises(data.DataError) as info:
        data.fetch("mnist", verbose=False)
    message = str(info.value)
    for source in data.SOURCES:
        assert f"- {source}:" in message
    assert str(empty_system / "mnist") in message  # says where it looked
    assert "BOOK_OFFLINE" in message
    assert "by hand" in message and "train-images-idx3-ubyte.gz" in message
    assert "BOOK_DATA" in message and "make data" in message
    assert files_under(tmp_path / "data") == []


def test_system_folder_supplies_gz_files(tmp_path: Path, fake_mnist: dict[str, np.ndarray]) -> None:
    system = tmp_path / "system"
    place(tmp_path / "source", system / "mnist", compress=True)
    data.fetch("mnist", sources=("local", "system"), system_dirs=[system], verbose=False)
    assert files_under(data.data_dir()) == sorted(f"mnist/{stem}" for stem in STEMS)


def test_failed_system_fetch_leaves_no_partial_files(
    tmp_path: Path, fake_mnist: dict[str, np.ndarray]
) -> None:
    system = tmp_path / "system" / "mnist"
    place(tmp_path / "source", system, compress=True)
    images = system / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-500])  # a truncated download
    labels = system / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 20))  # a different file
    with pytest.raises(data.DataError) as info:
        data.fetch("mnist", sources=("system",), system_dirs=[tmp_path / "system"], verbose=False)
    assert str(images) in str(info.value) and str(labels) in str(info.value)
    # The two good files are kept (each verified on its own); nothing partial or unverified is.
    assert files_under(data.data_dir()) == ["mnist/t10k-images-idx3-ubyte", "mnist/train-labels-idx1-ubyte"]


def test_failed_download_leaves_no_partial_files(
    tmp_path: Path, fake_mnist: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOOK_OFFLINE")
    compressed = gzip.compress((tmp_path / "source" / "train-images-idx3-ubyte").read_bytes())
    requested: list[str] = []

    def broken_connection(request: urllib.request.Request, timeout: float) -> io.BytesIO:
        requested.append(request.full_url)
        return io.BytesIO(compressed[: len(compressed) // 2])  # the connection drops half way

    monkeypatch.setattr(urllib.request, "urlopen", broken_connection)
    with pytest.raises(data.DataError) as info:
        data.fetch("mnist", sources=("https",), mirrors=["https://mirror.invalid/"], verbose=False)
    assert requested == ["https://mirror.invalid/train-images-idx3-ubyte.gz"]
    assert "https://mirror.invalid/" in str(info.value)
    assert files_under(data.data_dir()) == []


@pytest.mark.parametrize("compress", [False, True])
def test_present_files_stop_the_search(
    tmp_path: Path, fake_mnist: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    # All four files in the data folder, decompressed (present) or as .gz (the local source installs them):
    # no later source may be consulted, network sources included.
    place(tmp_path / "source", data.data_dir() / "mnist", compress=compress)
    monkeypatch.delenv("BOOK_OFFLINE")
    consulted: list[str] = []

    def later_source(name: str):
        def consult(*args: object, **kwargs: object) -> tuple[list[str], list[str]]:
            consulted.append(name)
            raise AssertionError(f"the {name} source was consulted although the files are present")

        return consult

    for name in ("system", "https", "registry"):
        monkeypatch.setattr(data, f"_from_{name}", later_source(name))
    assert data.fetch("mnist", verbose=False) == data.data_dir() / "mnist"
    assert consulted == []
    assert files_under(data.data_dir()) == sorted(
        [f"mnist/{stem}" for stem in STEMS] + ([f"mnist/{stem}.gz" for stem in STEMS] if compress else [])
    )


def test_verification_is_memoized(tmp_path: Path, fake_mnist: dict[str, np.ndarray]) -> None:
    path = tmp_path / "source" / "train-images-idx3-ubyte"
    assert data.sha256_of(path) == data.SHA256["mnist"]["train-images-idx3-ubyte"]
    assert any(key[0] == str(path.resolve()) for key in data._DIGESTS)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))  # a new mtime, so the memo must not answer
    assert data.sha256_of(path) == hashlib.sha256(bytes(raw)).hexdigest()


# --- invalid choices --------------------------------------------------------------------------------------


def test_unknown_dataset_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="mnist, fashion-mnist"):
        data.load_images("cifar10", "train")
    with pytest.raises(ValueError, match="mnist, fashion-mnist"):
        data.fetch("kmnist")


def test_unknown_split_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="train, test"):
        data.load_images("mnist", "validation")


def test_unknown_source_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="local, system, https, registry"):
        data.fetch("mnist", sources=("ftp",))


# --- the real datasets (only where `make data` has run) ---------------------------------------------------


def _real_files_present(dataset: str) -> bool:
    return all((data.data_dir() / dataset / stem).is_file() for stem in STEMS)


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.data
@pytest.mark.parametrize(
    ("dataset", "split", "n", "counts"),
    [
        ("mnist", "train", 60000, MNIST_TRAIN_COUNTS),
        ("mnist", "test", 10000, MNIST_TEST_COUNTS),
        ("fashion-mnist", "train", 60000, [6000] * 10),
        ("fashion-mnist", "test", 10000, [1000] * 10),
    ],
)
def test_real_dataset(
    dataset: str, split: str, n: int, counts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _real_files_present(dataset):
        pytest.skip(f"{dataset} not in {data.data_dir()}; run `make data`")
    monkeypatch.setenv("BOOK_OFFLINE", "1")
    loaded = data.load_images(dataset, split)
    assert loaded.images.shape == (n, 1, 28, 28) and loaded.images.dtype == torch.float32
    assert loaded.images.min().item() == 0.0 and loaded.images.max().item() == 1.0
    assert loaded.labels.shape == (n,) and loaded.labels.dtype == torch.int64
    assert torch.bincount(loaded.labels, minlength=10).tolist() == counts
    assert len(loaded.class_names) == 10
