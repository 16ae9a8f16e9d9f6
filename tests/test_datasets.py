"""Bundled digits and the MNIST IDX reader (with tiny files written here; no network)."""

import gzip
import struct

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import datasets


def test_digits_load_with_the_documented_shape_dtype_range_and_classes():
    X, y = fg.datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.allclose(X * 16, np.round(X * 16))
    assert sorted(np.unique(y)) == list(range(10))
    assert np.bincount(y).min() > 150


def test_digits_return_fresh_copies():
    X, _ = fg.datasets.load_digits()
    X[:] = -1
    assert fg.datasets.load_digits()[0].min() == 0.0


def idx_bytes(array, magic_type=0x08):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    return header + array.tobytes()


def write_mnist(folder, n_train=5, n_test=3, compress=True):
    rng = np.random.default_rng(0)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in data.items():
        raw = idx_bytes(array)
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return data


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network: any download attempt fails; the cache lives in an empty temporary folder."""

    def refuse(url, dest, timeout=30.0):
        raise OSError(f"network disabled in tests ({url})")

    monkeypatch.setattr(datasets, "_download", refuse)
    monkeypatch.setenv("FERROGRAD_DATA", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_mnist_reads_idx_files_from_a_folder(offline, compress):
    folder = offline / "mnist_files"
    folder.mkdir()
    data = write_mnist(folder, compress=compress)
    (X_train, y_train), (X_test, y_test) = fg.datasets.load_mnist(folder)
    assert X_train.shape == (5, 28, 28) and X_train.dtype == np.float32
    assert X_test.shape == (3, 28, 28)
    assert y_train.dtype == np.int64
    np.testing.assert_allclose(X_train, data["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_test, data["t10k-labels-idx1-ubyte"])
    assert 0.0 <= X_train.min() and X_train.max() <= 1.0


def test_mnist_reads_from_the_cache_folder_named_by_ferrograd_data(offline):
    cache = offline / "cache" / "mnist"
    cache.mkdir(parents=True)
    write_mnist(cache)
    (X_train, _), _ = fg.datasets.load_mnist()
    assert X_train.shape == (5, 28, 28)


def test_mnist_without_files_or_network_says_where_to_put_them(offline):
    with pytest.raises(FileNotFoundError, match="FERROGRAD_DATA") as info:
        fg.datasets.load_mnist()
    assert str(offline / "cache" / "mnist") in str(info.value)
    assert "download failed" in str(info.value)


def test_mnist_from_a_folder_missing_files_raises_file_not_found(offline):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        fg.datasets.load_mnist(offline)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: b"\x12\x34" + raw[2:],  # bad magic
        lambda raw: raw[:2] + b"\x0d" + raw[3:],  # float element type
        lambda raw: raw[:-10],  # truncated body
        lambda raw: raw[:6],  # truncated header
    ],
    ids=["bad magic", "wrong element type", "truncated data", "truncated header"],
)
def test_a_corrupt_idx_file_raises_value_error(offline, corrupt):
    write_mnist(offline, compress=False)
    path = offline / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError):
        fg.datasets.load_mnist(offline)


def test_images_and_labels_of_different_counts_raise_value_error(offline):
    write_mnist(offline, compress=False)
    (offline / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4)))
    with pytest.raises(ValueError, match="labels"):
        fg.datasets.load_mnist(offline)


def test_mnist_downloads_missing_files_once_into_the_cache(offline, monkeypatch):
    source = offline / "mirror"
    source.mkdir()
    write_mnist(source)
    calls = []

    def fake_download(url, dest, timeout=30.0):
        calls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(datasets, "_download", fake_download)
    monkeypatch.setattr(
        datasets, "_MNIST_MD5", {p.name: datasets._md5(p) for p in source.iterdir()}
    )
    (X_train, _), _ = fg.datasets.load_mnist()
    assert X_train.shape == (5, 28, 28)
    assert len(calls) == 4
    fg.datasets.load_mnist()
    assert len(calls) == 4


def test_an_mlp_built_from_layers_losses_and_the_loader_learns_the_digits():
    fg.manual_seed(0)
    X, y = fg.datasets.load_digits()
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = X[perm], y[perm]
    model = fg.layers.Sequential(
        fg.layers.Linear(64, 64), fg.layers.ReLU(), fg.layers.Linear(64, 10)
    )
    for _ in range(10):
        for xb, yb in fg.data.DataLoader(X[:1400], y[:1400], batch_size=32, seed=0):
            model.zero_grad()
            fg.loss.cross_entropy(model(xb), yb).backward()
            with fg.no_grad():
                for p in model.parameters():
                    p -= 0.2 * fg.Tensor(p.grad)
    accuracy = (model(fg.Tensor(X[1400:])).numpy().argmax(axis=1) == y[1400:]).mean()
    assert accuracy >= 0.95
