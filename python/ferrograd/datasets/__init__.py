"""Data sets: the UCI handwritten digits and Tiny Shakespeare (both shipped in the package)
and MNIST (IDX files).

``load_digits()`` works offline: the data (UCI "Optical Recognition of Handwritten Digits",
E. Alpaydin and C. Kaynak 1998, CC BY 4.0 — see ``DIGITS_LICENSE.txt``) ships with ferrograd.
So does ``load_tiny_shakespeare()``'s text (Shakespeare, public domain, as compiled for
char-rnn by A. Karpathy, 2015 — see ``TINYSHAKESPEARE_LICENSE.txt``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_digits", "load_mnist", "load_tiny_shakespeare", "mnist_cache_dir"]

_DIGITS_CACHE: tuple[np.ndarray, np.ndarray] | None = None


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8×8 handwritten digits: ``X`` float32 (1797, 64) in [0, 1] (pixel counts
    0..16 divided by 16), ``y`` int64 (1797,) with classes 0..9. Returns fresh copies."""
    global _DIGITS_CACHE
    if _DIGITS_CACHE is None:
        raw = resources.files(__name__).joinpath("digits.csv.gz").read_bytes()
        table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
        if table.ndim != 2 or table.shape[1] != 65:
            raise ValueError(f"digits.csv.gz: expected 65 columns, got shape {table.shape}")
        _DIGITS_CACHE = ((table[:, :64] / 16.0).astype(np.float32), table[:, 64].copy())
    X, y = _DIGITS_CACHE
    return X.copy(), y.copy()


# ----- Tiny Shakespeare -------------------------------------------------------------------

_SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"  # of the text, as published with it
_SHAKESPEARE_CACHE: str | None = None


def load_tiny_shakespeare() -> str:
    """Tiny Shakespeare, the text of nanoGPT's character-level recipe: 1,115,394
    characters (65 distinct) of Shakespeare's plays, as one ``str``. Shipped in the package
    (no download); checked against its published MD5 (ValueError if the file is corrupt).

    nanoGPT's ``shakespeare_char`` recipe uses the first 90 % for training and the rest for
    validation, with the sorted distinct characters as the vocabulary::

        text = fg.datasets.load_tiny_shakespeare()
        chars = sorted(set(text))
        stoi = {c: i for i, c in enumerate(chars)}
        n = int(0.9 * len(text))
        train, val = text[:n], text[n:]
    """
    global _SHAKESPEARE_CACHE
    if _SHAKESPEARE_CACHE is None:
        raw = resources.files(__name__).joinpath("tinyshakespeare.txt.gz").read_bytes()
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"tinyshakespeare.txt.gz: corrupt gzip data ({exc})") from exc
        if hashlib.md5(data).hexdigest() != _SHAKESPEARE_MD5:
            raise ValueError("tinyshakespeare.txt.gz: the text does not match its MD5")
        _SHAKESPEARE_CACHE = data.decode("utf-8")
    return _SHAKESPEARE_CACHE


# ----- MNIST ------------------------------------------------------------------------------

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# MD5 of the gzip files, as published with the data set (and checked by torchvision).
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def mnist_cache_dir() -> Path:
    """Where ``load_mnist()`` looks and downloads: ``$FERROGRAD_DATA/mnist`` when that is
    set, else ``$XDG_CACHE_HOME/ferrograd/mnist`` (default ``~/.cache/ferrograd/mnist``)."""
    root = os.environ.get("FERROGRAD_DATA")
    if root:
        return Path(root).expanduser() / "mnist"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "ferrograd" / "mnist"


def _find(directory: Path, stem: str) -> Path | None:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Fetches ``url`` into ``dest`` (atomically, via a temporary file beside it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _download_mnist(directory: Path) -> None:
    errors: list[str] = []
    for stem in _MNIST_FILES.values():
        if _find(directory, stem) is not None:
            continue
        name = stem + ".gz"
        dest = directory / name
        for mirror in _MNIST_MIRRORS:
            try:
                _download(mirror + name, dest)
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next mirror
                errors.append(f"{mirror}{name}: {exc}")
                continue
            if _md5(dest) == _MNIST_MD5[name]:
                break
            errors.append(f"{mirror}{name}: checksum mismatch")
            dest.unlink()
        else:
            raise RuntimeError("; ".join(errors[-len(_MNIST_MIRRORS) :]))


def _missing_message(directory: Path, reason: str) -> str:
    names = ", ".join(f"{stem}[.gz]" for stem in _MNIST_FILES.values())
    return (
        f"MNIST files not found in {directory} ({reason}). Put the four IDX files ({names}) "
        f"there, pass load_mnist(path=<folder with them>), or set FERROGRAD_DATA to a folder "
        f"whose 'mnist' subfolder holds them."
    )


def read_idx(path: Any) -> np.ndarray:
    """Reads one IDX file (gzip or plain) of unsigned bytes into a uint8 array.

    Raises ValueError when the magic number, dimensions or length are wrong."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    if data[2] != 0x08:
        raise ValueError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(dims, dtype=np.int64))
    if len(body) != expected:
        raise ValueError(
            f"{path}: IDX dimensions {dims} need {expected} bytes of data, found {len(body)}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected 3-d images (N, rows, cols), got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected 1-d labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return (images / np.float32(255.0)).astype(np.float32), labels.astype(np.int64)


def load_mnist(
    path: Any = None, download: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as ``((X_train, y_train), (X_test, y_test))``: X float32 (N, 28, 28) in [0, 1],
    y int64.

    Reads the standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or ``.gz``) from
    ``path``; without ``path`` from ``mnist_cache_dir``, downloading them there once
    (checksummed, several mirrors) when they are missing and ``download`` is true. Missing
    files that cannot be fetched raise FileNotFoundError saying where to put them; corrupt
    files raise ValueError.
    """
    directory = Path(path).expanduser() if path is not None else mnist_cache_dir()
    if path is not None and not directory.is_dir():
        raise FileNotFoundError(_missing_message(directory, "no such folder"))
    found = {key: _find(directory, stem) for key, stem in _MNIST_FILES.items()}
    if any(p is None for p in found.values()):
        if path is not None or not download:
            missing = [_MNIST_FILES[k] for k, p in found.items() if p is None]
            raise FileNotFoundError(_missing_message(directory, "missing " + ", ".join(missing)))
        try:
            _download_mnist(directory)
        except Exception as exc:
            raise FileNotFoundError(_missing_message(directory, f"download failed: {exc}")) from exc
        found = {key: _find(directory, stem) for key, stem in _MNIST_FILES.items()}
    train = _load_pair(found["train_images"], found["train_labels"])  # type: ignore[arg-type]
    test = _load_pair(found["test_images"], found["test_labels"])  # type: ignore[arg-type]
    return train, test
