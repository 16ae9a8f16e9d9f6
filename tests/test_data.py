"""DataLoader: coverage of every sample, batching, shuffling and seeds."""

import numpy as np
import pytest

import ferrograd as fg
from ferrograd.data import DataLoader


def arrays(n=10, features=3):
    X = np.arange(n * features, dtype=np.float32).reshape(n, features)
    y = np.arange(n, dtype=np.int64)
    return X, y


def epoch_labels(loader):
    return np.concatenate([yb.numpy() for _, yb in loader])


def test_every_sample_appears_exactly_once_per_epoch_with_its_own_label():
    X, y = arrays(23)
    loader = DataLoader(X, y, batch_size=5, seed=0)
    for _ in range(2):
        seen = []
        for xb, yb in loader:
            assert isinstance(xb, fg.Tensor) and isinstance(yb, fg.Tensor)
            np.testing.assert_array_equal(xb.numpy(), X[yb.numpy().astype(int)])
            seen.extend(yb.numpy().astype(int))
        assert sorted(seen) == list(range(23))


def test_the_last_partial_batch_is_kept_by_default():
    X, y = arrays(10)
    loader = DataLoader(X, y, batch_size=4, shuffle=False)
    assert len(loader) == 3
    assert [xb.shape[0] for xb, _ in loader] == [4, 4, 2]


def test_drop_last_drops_the_partial_batch():
    X, y = arrays(10)
    loader = DataLoader(X, y, batch_size=4, drop_last=True, seed=1)
    assert len(loader) == 2
    assert [xb.shape[0] for xb, _ in loader] == [4, 4]


def test_without_shuffle_batches_come_in_order():
    X, y = arrays(7)
    np.testing.assert_array_equal(
        epoch_labels(DataLoader(X, y, batch_size=3, shuffle=False)), np.arange(7)
    )


def test_the_same_seed_repeats_the_same_epochs_and_each_epoch_has_a_new_order():
    X, y = arrays(50)
    a = DataLoader(X, y, batch_size=8, seed=42)
    b = DataLoader(X, y, batch_size=8, seed=42)
    first_a, second_a = epoch_labels(a), epoch_labels(a)
    np.testing.assert_array_equal(first_a, epoch_labels(b))
    np.testing.assert_array_equal(second_a, epoch_labels(b))
    assert not np.array_equal(first_a, second_a)
    assert not np.array_equal(first_a, np.arange(50))


def test_without_a_seed_the_order_follows_the_global_manual_seed():
    X, y = arrays(40)
    fg.manual_seed(5)
    first = epoch_labels(DataLoader(X, y, batch_size=8))
    fg.manual_seed(5)
    again = epoch_labels(DataLoader(X, y, batch_size=8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, epoch_labels(DataLoader(X, y, batch_size=8)))


def test_label_batches_are_class_indices_usable_by_cross_entropy():
    X, y = arrays(6)
    xb, yb = next(iter(DataLoader(X, y % 3, batch_size=6, shuffle=False)))
    assert xb.dtype == "float32"
    np.testing.assert_array_equal(yb.numpy(), y % 3)
    assert fg.loss.cross_entropy(fg.zeros(6, 3), yb).shape == ()


def test_integer_labels_stay_int64_and_float_labels_stay_float():
    X, y = arrays(6)
    _, yb = next(iter(DataLoader(X, y, batch_size=6, shuffle=False)))
    assert yb.dtype == fg.int64
    _, yb = next(iter(DataLoader(X, [0, 1, 2, 0, 1, 2], batch_size=6)))
    assert yb.dtype == fg.int64
    _, yb = next(iter(DataLoader(X, y.astype(np.float32), batch_size=6)))
    assert yb.dtype == fg.float32


def test_inputs_follow_the_dtype_rules_for_lists_ints_and_float64():
    X = [[1, 2], [3, 4], [5, 6]]
    xb, _ = next(iter(DataLoader(X, [0, 1, 0], batch_size=3)))
    assert xb.dtype == "float32" and xb.shape == (3, 2)
    xb, _ = next(iter(DataLoader(np.ones((3, 2)), np.zeros(3), batch_size=3)))
    assert xb.dtype == "float64"
    xb, _ = next(iter(DataLoader(fg.ones(3, 2), fg.zeros(3), batch_size=3)))
    assert xb.dtype == "float32"


def test_without_labels_the_loader_yields_input_batches_alone():
    X, _ = arrays(5)
    batches = list(DataLoader(X, batch_size=2, shuffle=False))
    assert [b.shape for b in batches] == [(2, 3), (2, 3), (1, 3)]


class Squares:
    def __len__(self):
        return 9

    def __getitem__(self, i):
        return np.array([i, i * i], dtype=np.float32), i % 2


def test_a_dataset_object_is_batched_by_stacking_its_samples():
    loader = DataLoader(Squares(), batch_size=4, seed=3)
    assert len(loader) == 3
    seen = []
    for xb, yb in loader:
        x = xb.numpy()
        np.testing.assert_array_equal(x[:, 1], x[:, 0] ** 2)
        np.testing.assert_array_equal(yb.numpy(), x[:, 0] % 2)
        seen.extend(x[:, 0].astype(int))
    assert sorted(seen) == list(range(9))


def test_a_list_of_pairs_is_treated_as_a_dataset():
    pairs = [(np.array([float(i)]), i) for i in range(5)]
    xb, yb = next(iter(DataLoader(pairs, batch_size=5, shuffle=False)))
    assert xb.shape == (5, 1) and yb.shape == (5,)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_a_batch_size_below_one_raises_value_error(batch_size):
    X, y = arrays(4)
    with pytest.raises(ValueError):
        DataLoader(X, y, batch_size=batch_size)


def test_inputs_and_labels_of_different_lengths_raise_value_error():
    X, y = arrays(4)
    with pytest.raises(ValueError, match="samples"):
        DataLoader(X, y[:3])


def test_an_empty_dataset_gives_no_batches():
    loader = DataLoader(np.zeros((0, 2)), np.zeros(0), batch_size=3)
    assert len(loader) == 0 and list(loader) == []
