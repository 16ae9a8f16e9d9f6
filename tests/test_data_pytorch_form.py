"""The PyTorch form of data loading: TensorDataset, DataLoader(dataset, ...), default_collate,
samplers and collate_fn; and that the two-array form stays an array slicer."""

from collections import namedtuple

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import data
from ferrograd.data import DataLoader, Dataset, TensorDataset, default_collate


def digits_like(n=10, features=3):
    X = fg.Tensor(np.arange(n * features, dtype=np.float32).reshape(n, features))
    y = fg.Tensor(np.arange(n, dtype=np.float32))
    return X, y


def labels_of(loader):
    return [int(v) for batch in loader for v in batch[1].numpy()]


# --- TensorDataset ---


def test_a_tensor_dataset_item_is_a_tuple_of_the_rows_at_that_index():
    X, y = digits_like()
    ds = TensorDataset(X, y)
    assert len(ds) == 10
    x3, y3 = ds[3]
    np.testing.assert_array_equal(x3.numpy(), [9.0, 10.0, 11.0])
    assert y3.shape == () and y3.item() == 3.0
    assert isinstance(ds, Dataset) and isinstance(ds[-1], tuple)


def test_a_tensor_dataset_refuses_non_tensors_unequal_lengths_scalars_and_nothing():
    X, y = digits_like()
    with pytest.raises(TypeError, match="argument 1 is a ndarray"):
        TensorDataset(X, np.arange(10))
    with pytest.raises(ValueError, match=r"\[10, 9\]"):
        TensorDataset(X, y[:9])
    with pytest.raises(ValueError, match="0-d"):
        TensorDataset(fg.Tensor(1.0))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


def test_a_tensor_dataset_loader_yields_lists_of_stacked_tensors_in_order_by_default():
    X, y = digits_like()
    loader = DataLoader(TensorDataset(X, y), batch_size=4)
    assert loader.shuffle is False and len(loader) == 3
    batches = list(loader)
    assert all(isinstance(b, list) and len(b) == 2 for b in batches)
    assert [tuple(b[0].shape) for b in batches] == [(4, 3), (4, 3), (2, 3)]
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), X.numpy())
    assert labels_of(loader) == list(range(10))


class PlainTensorDataset(TensorDataset):
    """The same samples, fetched one by one (a subclass that overrides indexing)."""

    def __getitem__(self, index):
        return super().__getitem__(index)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_tensor_dataset_fast_path_gives_what_per_sample_default_collate_gives(dtype):
    X, y = digits_like(13)
    X = fg.Tensor(X, dtype=dtype)
    fast = DataLoader(TensorDataset(X, y), batch_size=5, shuffle=True, seed=7)
    slow = DataLoader(PlainTensorDataset(X, y), batch_size=5, shuffle=True, seed=7)
    for a, b in zip(fast, slow):
        assert type(a) is type(b) is list
        for ta, tb in zip(a, b):
            assert ta.dtype == tb.dtype and ta.shape == tb.shape
            np.testing.assert_array_equal(ta.numpy(), tb.numpy())
    assert len(list(fast)) == len(list(slow)) == 3


def test_a_tensor_dataset_is_batched_without_a_per_sample_getitem(monkeypatch):
    X, y = digits_like(20)

    def refuse(self, index):
        raise AssertionError("a per-sample __getitem__ was called")

    loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True, seed=0)
    monkeypatch.setattr(TensorDataset, "__getitem__", refuse)
    assert sorted(labels_of(loader)) == list(range(20))


def test_the_two_array_form_is_batched_without_a_per_sample_getitem(monkeypatch):
    X, y = np.arange(40.0).reshape(20, 2), np.arange(20)

    def refuse(self, index):
        raise AssertionError("a per-sample __getitem__ was called")

    monkeypatch.setattr(data._Arrays, "__getitem__", refuse)
    loader = DataLoader(X, y, batch_size=8, seed=0)
    assert sorted(labels_of(loader)) == list(range(20))


# --- the dataset form ---


class Squares(Dataset):
    def __init__(self, n):
        self.n = n
        self.calls = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not isinstance(i, int):
            raise TypeError(f"index {i!r} is not an int")
        self.calls += 1
        return {"x": np.array([i, i * i], dtype=np.float64), "label": i % 3, "name": f"s{i}"}


def test_a_dataset_of_dicts_is_collated_key_by_key():
    ds = Squares(7)
    loader = DataLoader(ds, batch_size=3)
    batches = list(loader)
    assert ds.calls == 7 and len(batches) == 3
    first = batches[0]
    assert set(first) == {"x", "label", "name"}
    assert first["x"].dtype == "float64" and first["x"].shape == (3, 2)
    np.testing.assert_array_equal(first["label"].numpy(), [0, 1, 2])
    assert first["name"] == ["s0", "s1", "s2"]


def test_shuffle_on_a_dataset_visits_every_sample_once_and_a_seed_repeats_it():
    def epoch(loader):
        return [v for b in loader for v in b["x"].numpy()[:, 0].astype(int)]

    a = DataLoader(Squares(23), batch_size=4, shuffle=True, seed=5)
    b = DataLoader(Squares(23), batch_size=4, shuffle=True, seed=5)
    first = epoch(a)
    assert sorted(first) == list(range(23)) and first != list(range(23))
    assert first == epoch(b)
    assert epoch(a) != first  # a new order each epoch


def test_shuffle_defaults_to_true_only_for_the_two_array_form():
    X, y = np.ones((4, 2)), np.arange(4)
    assert DataLoader(X, y).shuffle is True
    assert DataLoader(X).shuffle is False
    assert DataLoader(Squares(4)).shuffle is False
    assert DataLoader(TensorDataset(*digits_like(4))).shuffle is False
    assert DataLoader(X, y, sampler=[0, 1]).shuffle is False
    assert DataLoader(X, y, shuffle=False).shuffle is False


def test_a_second_positional_int_is_the_batch_size_as_in_pytorch():
    assert DataLoader(Squares(10), 4).batch_size == 4
    loader = DataLoader(np.ones((10, 2)), 4)
    assert loader.batch_size == 4 and [b.shape for b in loader] == [(4, 2), (4, 2), (2, 2)]
    with pytest.raises(TypeError, match="batch_size twice"):
        DataLoader(Squares(10), 4, batch_size=2)


def test_the_dataset_may_be_passed_by_keyword_but_not_twice_or_not_at_all():
    loader = DataLoader(dataset=Squares(5), batch_size=2)
    assert len(loader) == 3 and loader.dataset.n == 5
    with pytest.raises(TypeError, match="both"):
        DataLoader(np.ones((2, 1)), dataset=Squares(2))
    with pytest.raises(TypeError, match="missing"):
        DataLoader(batch_size=2)


def test_batch_size_none_is_refused_with_a_pointer_to_what_differs():
    with pytest.raises(TypeError, match="batch_size=None"):
        DataLoader(Squares(3), batch_size=None)


def test_collate_fn_receives_the_list_of_samples():
    seen = []

    def collate(samples):
        seen.append(len(samples))
        return [s["name"] for s in samples]

    out = list(DataLoader(Squares(5), batch_size=2, collate_fn=collate))
    assert out == [["s0", "s1"], ["s2", "s3"], ["s4"]] and seen == [2, 2, 1]


def test_collate_fn_with_the_array_form_or_not_callable_is_refused():
    with pytest.raises(ValueError, match="TensorDataset"):
        DataLoader(np.ones((3, 2)), np.arange(3), collate_fn=default_collate)
    with pytest.raises(TypeError, match="callable"):
        DataLoader(Squares(3), collate_fn=3)


def test_a_dataset_with_separate_labels_or_without_len_is_refused():
    with pytest.raises(TypeError, match="carries its labels"):
        DataLoader(Squares(3), np.arange(3))

    class NoLen:
        def __getitem__(self, i):
            return i

    with pytest.raises(TypeError, match="NoLen"):
        DataLoader(NoLen())


def test_the_base_dataset_says_getitem_is_missing():
    class Empty(Dataset):
        def __len__(self):
            return 1

    with pytest.raises(NotImplementedError, match="Empty"):
        Empty()[0]


def test_loader_dataset_has_the_sample_count_in_both_forms():
    X, y = np.arange(14.0).reshape(7, 2), np.arange(7)
    arrays = DataLoader(X, y, batch_size=3)
    assert len(arrays.dataset) == 7
    x6, y6 = arrays.dataset[-1]
    np.testing.assert_array_equal(x6.numpy(), [12.0, 13.0])
    assert y6.item() == 6
    with pytest.raises(IndexError, match="out of range"):
        arrays.dataset[7]
    ds = TensorDataset(*digits_like(7))
    assert DataLoader(ds, batch_size=3).dataset is ds


def test_a_list_of_pairs_with_python_labels_collates_per_field():
    pairs = [(fg.Tensor([float(i), 0.0]), i) for i in range(5)]
    xb, yb = next(iter(DataLoader(pairs, batch_size=5)))
    assert xb.shape == (5, 2) and yb.shape == (5,)
    np.testing.assert_array_equal(yb.numpy(), np.arange(5))


# --- default_collate ---


def test_default_collate_stacks_tensors_and_arrays_on_a_new_first_axis_keeping_float_dtypes():
    ts = [fg.Tensor(np.full((2, 2), i, dtype=np.float64)) for i in range(3)]
    out = default_collate(ts)
    assert out.shape == (3, 2, 2) and out.dtype == "float64"
    out = default_collate([np.ones(2, dtype=np.float32), np.zeros(2, dtype=np.float32)])
    assert out.shape == (2, 2) and out.dtype == "float32"
    out = default_collate([np.float64(1.5), np.float64(2.5)])
    assert out.dtype == "float64" and out.tolist() == [1.5, 2.5]


def test_default_collate_turns_python_numbers_into_a_tensor():
    out = default_collate([0.5, 1.5, 2.0])
    assert out.dtype == "float32" and out.tolist() == [0.5, 1.5, 2.0]
    assert default_collate([3, 1, 2]).tolist() == [3, 1, 2]


def test_default_collate_keeps_integers_and_bools_as_pytorch_does():
    assert default_collate([3, 1, 2]).dtype == fg.int64
    assert default_collate([np.int64(3), np.int64(1)]).dtype == fg.int64
    assert default_collate([np.arange(2, dtype=np.int32)] * 2).dtype == fg.int32
    assert default_collate([True, False]).dtype == fg.bool
    ds = TensorDataset(fg.randn(4, 2), fg.tensor([0, 1, 2, 3]))
    _, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert yb.dtype == fg.int64


def test_default_collate_returns_a_list_for_tuples_and_the_same_named_tuple():
    out = default_collate([(np.ones(2), 1.0), (np.zeros(2), 2.0)])
    assert isinstance(out, list) and out[0].shape == (2, 2) and out[1].tolist() == [1.0, 2.0]
    Pair = namedtuple("Pair", "x y")
    out = default_collate([Pair(1.0, 2.0), Pair(3.0, 4.0)])
    assert isinstance(out, Pair) and out.x.tolist() == [1.0, 3.0] and out.y.tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    "batch, error, match",
    [
        ([], ValueError, "empty"),
        ([np.ones(2), np.ones(3)], ValueError, "one shape"),
        ([fg.ones(2), fg.ones(3)], ValueError, "shape"),
        ([(1.0, 2.0), (1.0,)], ValueError, "same number of fields"),
        ([fg.ones(2), np.ones(2)], TypeError, "mixes"),
        ([1.0, "a"], TypeError, "mixes"),
        ([object(), object()], TypeError, "object"),
        ([np.array(["a"]), np.array(["b"])], TypeError, "dtype"),
        ([None, None], TypeError, "NoneType"),
    ],
)
def test_default_collate_refuses_what_it_cannot_batch(batch, error, match):
    with pytest.raises(error, match=match):
        default_collate(batch)


# --- samplers ---


def test_a_sampler_sets_the_order_in_every_form():
    order = [3, 1, 4, 0]
    X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    assert labels_of(DataLoader(X, y, batch_size=3, sampler=order)) == order
    assert (
        labels_of(DataLoader(TensorDataset(*digits_like(5)), batch_size=3, sampler=order)) == order
    )
    firsts = [
        int(v)
        for b in DataLoader(Squares(5), batch_size=3, sampler=order)
        for v in b["x"].numpy()[:, 0]
    ]
    assert firsts == order


def test_len_counts_the_samplers_indices_not_the_dataset():
    X, y = np.ones((10, 2)), np.arange(10)
    assert len(DataLoader(X, y, batch_size=2, sampler=[0, 1, 2, 3, 4])) == 3
    loader = DataLoader(X, y, batch_size=2, sampler=[0, 1, 2, 3, 4], drop_last=True)
    assert len(loader) == 2 and len(list(loader)) == 2


class ShardSampler:
    """A DistributedSampler-shaped sampler: this rank's share of a reshuffled order."""

    def __init__(self, n, rank, world, seed=0):
        self.n, self.rank, self.world, self.seed, self.epoch = n, rank, world, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = np.random.default_rng(self.seed + self.epoch).permutation(self.n)
        return iter(order[self.rank :: self.world].tolist())

    def __len__(self):
        return len(range(self.rank, self.n, self.world))


def test_a_distributed_style_sampler_splits_the_data_and_is_iterated_anew_each_epoch():
    X, y = np.ones((11, 2)), np.arange(11)
    loaders = [DataLoader(X, y, batch_size=2, sampler=ShardSampler(11, r, 2)) for r in (0, 1)]
    epoch0 = [labels_of(loader) for loader in loaders]
    assert sorted(epoch0[0] + epoch0[1]) == list(range(11))
    assert [len(loader) for loader in loaders] == [3, 3]
    for loader in loaders:
        loader.sampler.set_epoch(1)
    epoch1 = [labels_of(loader) for loader in loaders]
    assert sorted(epoch1[0] + epoch1[1]) == list(range(11)) and epoch1 != epoch0


def test_a_sampler_with_shuffle_true_is_refused():
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Squares(4), shuffle=True, sampler=[0, 1])
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(np.ones((4, 1)), np.arange(4), shuffle=True, sampler=[0, 1])


def test_a_sampler_without_len_or_with_bad_indices_is_refused():
    X, y = np.ones((4, 1)), np.arange(4)
    with pytest.raises(TypeError, match="__len__"):
        DataLoader(X, y, sampler=(i for i in range(4)))
    with pytest.raises(IndexError, match="index 9"):
        list(DataLoader(X, y, sampler=[0, 9]))
    with pytest.raises(TypeError, match="int indices"):
        list(DataLoader(X, y, sampler=[0.5, 1.0]))
