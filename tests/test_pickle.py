"""Tensors and NdArrays survive pickle and copy.deepcopy (so whole models can be copied)."""

import copy
import pickle

import numpy as np

import ferrograd as fg


def test_pickled_tensor_keeps_values_dtype_and_requires_grad():
    t = fg.Tensor([[1.0, 2.0]], requires_grad=True, dtype="float64")
    u = pickle.loads(pickle.dumps(t))
    assert isinstance(u, fg.Tensor)
    assert u.dtype == "float64" and u.requires_grad
    np.testing.assert_array_equal(u.numpy(), t.numpy())


def test_deepcopied_ndarray_is_independent_of_the_original():
    a = fg.NdArray([1.0, 2.0])
    b = copy.deepcopy(a)
    b += 1.0
    np.testing.assert_array_equal(a.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(b.numpy(), [2.0, 3.0])


def test_deepcopied_model_has_its_own_parameters_with_equal_values():
    model = fg.layers.Sequential(fg.layers.Linear(3, 2), fg.layers.ReLU())
    clone = copy.deepcopy(model)
    for (name, p), (name2, q) in zip(model.named_parameters(), clone.named_parameters()):
        assert name == name2 and p is not q
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    with fg.no_grad():
        clone[0].weight -= 1.0
    assert not np.allclose(model[0].weight.numpy(), clone[0].weight.numpy())
