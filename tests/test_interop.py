"""Interop: NumPy conversion, DLPack to and from NumPy and PyTorch, and safetensors files
that other tools (and PyTorch-named weights) share with ferrograd."""

import gc

import numpy as np
import pytest

import ferrograd as fg

# ---------------------------------------------------------------- np.asarray


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_asarray_gives_the_values_in_the_tensors_dtype(dtype):
    t = fg.Tensor([[1.5, -2.0], [3.0, 4.25]], dtype=dtype)
    a = np.asarray(t)
    assert a.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(a, [[1.5, -2.0], [3.0, 4.25]])


def test_asarray_is_a_snapshot_that_outlives_a_replaced_buffer():
    t = fg.Tensor(np.arange(6.0).reshape(2, 3))
    a = np.asarray(t)
    t.data = np.zeros((2, 3))
    t += 1.0
    gc.collect()
    np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3))


def test_writing_to_the_asarray_result_leaves_the_tensor_unchanged():
    t = fg.Tensor([1.0, 2.0])
    a = np.asarray(t)
    a[0] = 99.0
    assert t.tolist() == [1.0, 2.0]


def test_asarray_with_copy_false_raises_because_memory_is_never_shared():
    with pytest.raises(ValueError, match="copy"):
        np.asarray(fg.Tensor([1.0]), copy=False)


def test_asarray_honours_a_requested_dtype():
    a = np.asarray(fg.Tensor([1.0, 2.0]), dtype=np.float64)
    assert a.dtype == np.float64


def test_from_numpy_copies_once_and_keeps_float64():
    src = np.arange(4.0)
    t = fg.from_numpy(src)
    src[0] = 7.0
    assert t.dtype == "float64"
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0]


# ---------------------------------------------------------------- DLPack export


@pytest.mark.parametrize("cls", [fg.Tensor, fg.NdArray])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_from_dlpack_takes_tensors_and_ndarrays_in_either_dtype(cls, dtype):
    values = np.arange(24.0).reshape(2, 3, 4)
    a = np.from_dlpack(cls(values, dtype=dtype))
    assert a.dtype == np.dtype(dtype)
    assert a.shape == (2, 3, 4)
    np.testing.assert_array_equal(a, values)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (5, 1)])
def test_numpy_from_dlpack_handles_scalars_empty_and_unit_shapes(shape):
    values = np.random.default_rng(0).normal(size=shape)
    a = np.from_dlpack(fg.Tensor(values, dtype="float64"))
    assert a.shape == shape
    np.testing.assert_array_equal(a, values)


def test_a_tensor_that_requires_grad_exports_its_values():
    t = fg.Tensor([1.0, 2.0], requires_grad=True)
    np.testing.assert_array_equal(np.from_dlpack(t * 2), [2.0, 4.0])


def test_dlpack_device_is_the_cpu():
    assert fg.Tensor([1.0]).__dlpack_device__() == (1, 0)
    assert fg.NdArray([1.0]).__dlpack_device__() == (1, 0)


def test_an_exported_capsule_keeps_its_snapshot_after_the_tensor_changes():
    t = fg.Tensor([1.0, 2.0, 3.0])
    capsule = t.__dlpack__()
    t.data = np.zeros(3)
    del t
    gc.collect()
    np.testing.assert_array_equal(fg.from_dlpack(capsule).numpy(), [1.0, 2.0, 3.0])


def test_an_unconsumed_capsule_is_freed_without_harm():
    t = fg.randn(64, 64)
    for max_version in (None, (1, 0), (1, 1), (2, 0)):
        capsule = t.__dlpack__(max_version=max_version)
        del capsule
    gc.collect()
    assert t.shape == (64, 64)


@pytest.mark.parametrize(
    ("max_version", "name"),
    [
        (None, "dltensor"),
        ((0, 8), "dltensor"),
        ((1, 0), "dltensor_versioned"),
        ((1, 3), "dltensor_versioned"),
    ],
)
def test_dlpack_gives_a_versioned_capsule_only_when_the_consumer_asks(max_version, name):
    capsule = fg.Tensor([1.0]).__dlpack__(max_version=max_version)
    assert f'"{name}"' in repr(capsule)


@pytest.mark.parametrize(
    "kwargs",
    [{"stream": 1}, {"dl_device": (2, 0)}, {"copy": False}],
    ids=["a-stream", "a-gpu-device", "no-copy"],
)
def test_dlpack_refuses_what_a_cpu_copy_cannot_honour_with_buffer_error(kwargs):
    with pytest.raises(BufferError):
        fg.Tensor([1.0]).__dlpack__(**kwargs)


def test_dlpack_accepts_the_cpu_device_and_copy_true():
    capsule = fg.Tensor([1.0]).__dlpack__(dl_device=(1, 0), copy=True)
    assert fg.from_dlpack(capsule).tolist() == [1.0]


# ---------------------------------------------------------------- DLPack import


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_dlpack_of_a_numpy_array_keeps_float_dtypes(dtype):
    t = fg.from_dlpack(np.arange(5, dtype=dtype))
    assert isinstance(t, fg.Tensor)
    assert t.dtype == np.dtype(dtype).name
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_from_dlpack_takes_a_read_only_numpy_array_such_as_one_exported_from_a_tensor():
    # NumPy < 2.1 cannot DLPack-export a read-only array; the README's round trip does that.
    a = np.from_dlpack(fg.Tensor([[1.0, 2.0], [3.0, 4.0]]))
    b = np.arange(6.0)[::2]
    b.flags.writeable = False
    assert fg.from_dlpack(a).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert fg.from_dlpack(b).tolist() == [0.0, 2.0, 4.0]


@pytest.mark.parametrize(
    "dtype, want",
    [(np.int64, "int64"), (np.int8, "int64"), (np.float16, "float32"), (np.bool_, "bool")],
)
def test_from_dlpack_keeps_dtypes_as_fg_tensor_does(dtype, want):
    t = fg.from_dlpack(np.ones(3, dtype=dtype))
    assert t.dtype == want
    assert t.tolist() == [1, 1, 1]


def test_from_dlpack_copies_so_later_writes_to_the_source_do_not_show():
    src = np.arange(6.0).reshape(2, 3).T  # non-contiguous strides
    t = fg.from_dlpack(src)
    src[0, 0] = 100.0
    np.testing.assert_array_equal(t.numpy(), np.arange(6.0).reshape(2, 3).T)


def test_from_dlpack_takes_requires_grad_and_dtype():
    t = fg.from_dlpack(np.arange(3.0), requires_grad=True, dtype="float32")
    assert t.requires_grad and t.dtype == "float32"
    (t * t).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [0.0, 2.0, 4.0])


def test_from_dlpack_of_a_ferrograd_tensor_is_an_independent_copy():
    t = fg.Tensor([1.0, 2.0])
    u = fg.from_dlpack(t)
    t.data = [5.0, 6.0]
    assert u.tolist() == [1.0, 2.0]


def test_from_dlpack_rejects_objects_without_dlpack_with_type_error():
    with pytest.raises(TypeError, match="__dlpack__"):
        fg.from_dlpack([1.0, 2.0])


def test_from_dlpack_rejects_a_non_cpu_producer_with_buffer_error():
    class OnGpu:
        def __dlpack__(self, **kwargs):
            raise AssertionError("not reached")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(BufferError, match="CPU"):
        fg.from_dlpack(OnGpu())


# ---------------------------------------------------------------- PyTorch (skipped without it)


def test_torch_from_dlpack_takes_a_tensor_and_owns_its_copy():
    torch = pytest.importorskip("torch")
    t = fg.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    x = torch.from_dlpack(t)
    assert x.dtype == torch.float32 and tuple(x.shape) == (2, 2)
    t.data = np.zeros((2, 2))
    gc.collect()
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    x += 1
    assert t.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert torch.from_dlpack(fg.Tensor([1.0], dtype="float64")).dtype == torch.float64


def test_from_dlpack_takes_torch_tensors_of_any_layout():
    torch = pytest.importorskip("torch")
    x = torch.arange(12.0).reshape(3, 4).t()
    t = fg.from_dlpack(x)
    np.testing.assert_array_equal(t.numpy(), x.numpy())
    assert fg.from_dlpack(torch.ones(2, dtype=torch.float64)).dtype == "float64"
    assert fg.from_dlpack(torch.arange(3)).dtype == "float32"


def test_from_dlpack_takes_a_bare_torch_capsule():
    torch = pytest.importorskip("torch")
    from torch.utils.dlpack import to_dlpack

    assert fg.from_dlpack(to_dlpack(torch.ones(3))).tolist() == [1.0, 1.0, 1.0]


def test_torch_weights_round_trip_through_dlpack():
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(4, 3)
    ours = fg.layers.Linear(4, 3)
    ours.load_state_dict({k: fg.from_dlpack(v.detach()) for k, v in lin.state_dict().items()})
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    want = lin(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours(fg.Tensor(x)).numpy(), want, rtol=1e-5, atol=1e-6)
    back = {k: torch.from_dlpack(v) for k, v in ours.state_dict().items()}
    lin.load_state_dict(back)


# ---------------------------------------------------------------- safetensors


def test_fg_save_writes_files_that_safetensors_numpy_opens(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    state = {
        "w": fg.Tensor(np.arange(6.0).reshape(2, 3), dtype="float32"),
        "b": fg.Tensor([1.0, 2.0]),
    }
    state["w64"] = fg.Tensor(np.ones((2, 2)), dtype="float64")
    fg.save(state, tmp_path / "m.safetensors")
    loaded = st.load_file(str(tmp_path / "m.safetensors"))
    assert set(loaded) == {"w", "b", "w64"}
    assert loaded["w"].dtype == np.float32 and loaded["w64"].dtype == np.float64
    np.testing.assert_array_equal(loaded["w"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(loaded["b"], [1.0, 2.0])


def test_fg_load_reads_files_that_safetensors_numpy_wrote(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    arrays = {
        "a": np.arange(4, dtype=np.float32),
        "b": np.eye(2, dtype=np.float64),
        "c": np.arange(3, dtype=np.int64),
    }
    st.save_file(arrays, str(tmp_path / "x.safetensors"))
    loaded = fg.load(tmp_path / "x.safetensors")
    assert {k: v.dtype for k, v in loaded.items()} == {"a": "float32", "b": "float64", "c": "int64"}
    for k, v in arrays.items():
        np.testing.assert_array_equal(loaded[k].numpy(), v)


def test_pytorch_named_weights_from_safetensors_load_into_the_same_sequential(tmp_path):
    """A file laid out as PyTorch saves ``nn.Sequential(Linear, ReLU, Linear, Tanh, Linear)``
    (``0.weight`` (out, in), ``0.bias``, ``2.weight``, ...), built with NumPy alone."""
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(42)
    sizes = [(8, 5), (6, 8), (3, 6)]
    weights = {}
    for index, (n_out, n_in) in zip((0, 2, 4), sizes):
        weights[f"{index}.weight"] = rng.normal(size=(n_out, n_in)).astype(np.float32)
        weights[f"{index}.bias"] = rng.normal(size=(n_out,)).astype(np.float32)
    path = tmp_path / "torch_model.safetensors"
    st.save_file(weights, str(path), metadata={"format": "pt"})

    L = fg.layers
    model = L.Sequential(L.Linear(5, 8), L.ReLU(), L.Linear(8, 6), L.Tanh(), L.Linear(6, 3))
    model.load_state_dict(fg.load(path))

    x = rng.normal(size=(10, 5)).astype(np.float32)
    h = np.maximum(x @ weights["0.weight"].T + weights["0.bias"], 0.0)
    h = np.tanh(h @ weights["2.weight"].T + weights["2.bias"])
    want = h @ weights["4.weight"].T + weights["4.bias"]
    got = model(fg.Tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
