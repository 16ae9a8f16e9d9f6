"""fg.save / fg.load: safetensors files of flat and nested (optimizer) state dicts."""

import json
import os
import pathlib
import struct

import numpy as np
import pytest
from conftest import assert_close

import ferrograd as fg
from ferrograd import _core
from ferrograd.optim import SGD, Adam, CosineAnnealingLR, RMSprop
from ferrograd.serialization import STRUCTURE_KEY


def _flat_state():
    return {
        "0.weight": fg.Tensor(np.arange(6, dtype=np.float32).reshape(2, 3) / 7),
        "0.bias": fg.Tensor([0.5, -0.25], dtype="float64"),
        "scale": fg.Tensor(3.5),
        "empty": fg.zeros(0, 4),
        "net.running_mean": fg.NdArray([1.0, 2.0, 3.0]),
    }


def test_a_flat_state_dict_round_trips_with_dtypes_shapes_and_key_order(tmp_path):
    state = _flat_state()
    path = tmp_path / "model.safetensors"
    fg.save(state, str(path))
    loaded = fg.load(str(path))
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        got = loaded[name]
        assert isinstance(got, fg.Tensor)
        assert got.dtype == tensor.dtype and got.shape == tensor.shape
        np.testing.assert_array_equal(got.numpy(), tensor.numpy())
        assert not got.requires_grad


def test_numpy_arrays_and_grad_tracking_tensors_are_saved_as_data(tmp_path):
    w = fg.Tensor([1.0, 2.0], requires_grad=True)
    path = tmp_path / "mixed.safetensors"
    fg.save({"w": w, "n": np.array([[1.0, 2.0]])}, path)
    loaded = fg.load(path)
    assert loaded["n"].dtype == "float64" and loaded["n"].shape == (1, 2)
    assert_close(loaded["w"], [1.0, 2.0])


def test_paths_may_be_pathlike_or_bytes(tmp_path):
    state = {"x": fg.ones(2)}
    fg.save(state, tmp_path / "a.safetensors")
    assert_close(fg.load(pathlib.Path(tmp_path / "a.safetensors"))["x"], [1.0, 1.0])
    raw = os.fsencode(tmp_path / "b.safetensors")
    fg.save(state, raw)
    assert_close(fg.load(raw)["x"], [1.0, 1.0])
    with pytest.raises(TypeError):
        fg.save(state, 42)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: Adam([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.5}], weight_decay=0.1),
        lambda ps: RMSprop(ps, momentum=0.5, centered=True),
    ],
    ids=["SGD", "Adam-two-groups", "RMSprop"],
)
def test_an_optimizer_state_round_trips_exactly_and_training_continues(tmp_path, make):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 2)), rng.standard_normal(2).astype(np.float32)]
    grads = [[rng.standard_normal(x.shape).astype(x.dtype) for x in init] for _ in range(4)]
    params = [fg.Tensor(x, requires_grad=True) for x in init]
    opt = make(params)
    for gs in grads[:2]:
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
    path = tmp_path / "optim.safetensors"
    fg.save(opt.state_dict(), path)
    loaded = fg.load(path)

    want = opt.state_dict()
    assert loaded["param_groups"] == want["param_groups"]
    assert list(loaded["state"]) == list(want["state"])  # int keys, in order
    for index, entry in want["state"].items():
        assert set(loaded["state"][index]) == set(entry)
        for name, value in entry.items():
            if isinstance(value, fg.Tensor):
                assert loaded["state"][index][name].dtype == value.dtype
                np.testing.assert_array_equal(loaded["state"][index][name].numpy(), value.numpy())
            else:
                assert loaded["state"][index][name] == value

    copies = [fg.Tensor(p.numpy(), requires_grad=True) for p in params]
    resumed = make(copies)
    resumed.load_state_dict(loaded)
    for gs in grads[2:]:
        for ps in (params, copies):
            for p, g in zip(ps, gs):
                p.grad = g
        opt.step()
        resumed.step()
    for a, b in zip(params, copies):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_adam_betas_stay_a_tuple_and_scheduler_state_round_trips(tmp_path):
    opt = Adam([fg.Tensor([1.0], requires_grad=True)], lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=5, eta_min=1e-3)
    sched.step()
    fg.save(opt.state_dict(), tmp_path / "o.safetensors")
    fg.save(sched.state_dict(), tmp_path / "s.safetensors")
    assert fg.load(tmp_path / "o.safetensors")["param_groups"][0]["betas"] == (0.9, 0.999)
    assert fg.load(tmp_path / "s.safetensors") == sched.state_dict()


def test_nested_structures_with_colliding_paths_keep_every_tensor(tmp_path):
    obj = {
        "a.b": fg.Tensor([1.0]),
        "a": {"b": fg.Tensor([2.0]), 3: [fg.Tensor([3.0]), (None, True, "x", 1.5)]},
        (1, 2): float("inf"),
        "n": np.float64(0.25),
    }
    fg.save(obj, tmp_path / "nested.safetensors")
    loaded = fg.load(tmp_path / "nested.safetensors")
    assert loaded["a.b"].item() == 1.0
    assert loaded["a"]["b"].item() == 2.0
    assert loaded["a"][3][0].item() == 3.0
    assert loaded["a"][3][1] == (None, True, "x", 1.5)
    assert loaded[(1, 2)] == float("inf")
    assert loaded["n"] == 0.25


def test_what_cannot_be_saved_raises_type_error(tmp_path):
    with pytest.raises(TypeError, match="state dict"):
        fg.save([fg.ones(1)], tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="object"):
        fg.save({"a": {"b": object()}}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_saving_replaces_an_old_file_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    fg.save({"a": fg.ones(3)}, path)
    fg.save({"b": fg.zeros(2)}, path)
    assert list(fg.load(path)) == ["b"]
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]


def test_a_missing_file_or_directory_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fg.load(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):
        fg.save({"a": fg.ones(1)}, tmp_path / "no-such-dir" / "x.safetensors")
    with pytest.raises(IsADirectoryError):
        fg.load(tmp_path)


def test_truncated_and_corrupt_files_raise_value_error(tmp_path):
    path = tmp_path / "good.safetensors"
    fg.save(_flat_state(), path)
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for cut in (len(data) - 1, len(data) // 2, 9, 3, 0):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a valid safetensors file"):
            fg.load(bad)
    bad.write_bytes(b"PK\x03\x04 definitely a zip archive, not safetensors")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        fg.load(bad)
    header = b'{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        fg.load(bad)


def test_corrupt_structure_metadata_raises_value_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    _core.save_safetensors(str(path), {"t": fg.ones(1)}, {STRUCTURE_KEY: "{not json"})
    with pytest.raises(ValueError, match="corrupt"):
        fg.load(path)
    _core.save_safetensors(str(path), {}, {STRUCTURE_KEY: json.dumps({"tensor": "missing"})})
    with pytest.raises(ValueError, match="corrupt"):
        fg.load(path)


def test_core_functions_return_tensors_in_file_order_and_metadata(tmp_path):
    path = str(tmp_path / "core.safetensors")
    _core.save_safetensors(path, {"b": fg.ones(2), "a": fg.zeros(1)}, {"note": "hi"})
    tensors, metadata = _core.load_safetensors(path)
    assert set(tensors) == {"a", "b"} and metadata == {"note": "hi"}
    with pytest.raises(TypeError):
        _core.save_safetensors(path, {1: fg.ones(1)}, None)
    with pytest.raises(TypeError):
        _core.save_safetensors(path, {"a": [1.0]}, None)


# -- other safetensors tools -----------------------------------------------------------------


def test_files_written_by_the_safetensors_package_load(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    arrays = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f64": np.array([0.1, 0.2], dtype=np.float64),
        "f16": np.array([1.0, -0.5, 65504.0], dtype=np.float16),
        "i64": np.array([[1, -2], [3, 4]], dtype=np.int64),
        "scalar": np.array(2.5, dtype=np.float32),
    }
    path = tmp_path / "theirs.safetensors"
    st.save_file(arrays, str(path), metadata={"format": "np"})
    loaded = fg.load(path)
    assert set(loaded) == set(arrays)
    assert loaded["f64"].dtype == "float64"
    assert loaded["i64"].dtype == "int64"
    for name in ("f32", "f16", "scalar"):
        assert loaded[name].dtype == "float32", name
    for name, want in arrays.items():
        np.testing.assert_array_equal(loaded[name].numpy(), want.astype(loaded[name].dtype))


def test_our_files_load_in_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    state = _flat_state()
    path = tmp_path / "ours.safetensors"
    fg.save(state, path)
    theirs = st.load_file(str(path))
    assert set(theirs) == set(state)
    for name, tensor in state.items():
        assert theirs[name].dtype == np.dtype(tensor.dtype)
        np.testing.assert_array_equal(theirs[name], tensor.numpy())

    p = fg.Tensor([1.0, 2.0], requires_grad=True)
    opt = Adam([p])
    p.grad = [1.0, 1.0]
    opt.step()
    fg.save(opt.state_dict(), tmp_path / "optim.safetensors")
    theirs = st.load_file(str(tmp_path / "optim.safetensors"))
    assert set(theirs) == {"state.0.exp_avg", "state.0.exp_avg_sq"}
