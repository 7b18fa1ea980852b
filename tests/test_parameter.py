"""A layer's Parameter behaves as its array and keeps its gradient.

Regression: ``layers.Affine.W`` / ``.b`` could not be indexed or assigned
(``model.W[0]``, ``model.W[...] = 1.0``) nor passed to NumPy functions
(``np.linalg.norm(model.W)``), unlike ``torch.nn.Linear.weight``.
"""

import copy
import pickle

import numpy as np
import pytest

import fastdl
from fastdl import compile_step, layers, losses, optim
from fastdl.layers import Parameter

from conftest import assert_close


@pytest.fixture
def layer():
    return layers.Affine(3, 2, dtype=np.float64, rng=0)


def test_index_and_slice(layer):
    W = layer.W
    np.testing.assert_array_equal(W[0], W.value[0])
    assert W[1, 2] == W.value[1, 2]
    np.testing.assert_array_equal(W[:, 1:], W.value[:, 1:])
    np.testing.assert_array_equal(W[W > 0], W.value[W.value > 0])  # a boolean mask
    row = W[0]
    assert type(row) is np.ndarray and np.shares_memory(row, W.value)  # a view, as NumPy's
    assert len(W) == 2 and [r.tolist() for r in W] == W.value.tolist()


def test_assign_through_the_parameter(layer):
    W = layer.W
    W[...] = 1.0
    np.testing.assert_array_equal(W.value, np.ones((2, 3)))
    W[0, :2] = [5.0, 6.0]
    W[1] = np.arange(3.0)
    np.testing.assert_array_equal(W.value, [[5.0, 6.0, 1.0], [0.0, 1.0, 2.0]])
    layer.b[:] = layer.W[:, 0]  # a Parameter on both sides
    np.testing.assert_array_equal(layer.b.value, [5.0, 0.0])


def test_numpy_functions(layer):
    W, Wv = layer.W, layer.W.value
    assert np.linalg.norm(W) == np.linalg.norm(Wv)
    assert np.sum(W) == Wv.sum() and np.mean(W) == Wv.mean() and np.max(W) == Wv.max()
    np.testing.assert_array_equal(np.dot(W, np.ones(3)), Wv @ np.ones(3))
    np.testing.assert_array_equal(np.concatenate([W, W]), np.concatenate([Wv, Wv]))
    np.testing.assert_array_equal(np.where(W > 0, W, 0.0), np.where(Wv > 0, Wv, 0.0))
    np.testing.assert_array_equal(np.einsum("ij->i", W), Wv.sum(1))
    assert np.allclose(W, Wv) and np.array_equal(W, Wv)
    assert np.asarray(W) is Wv  # the array itself, no copy
    assert not np.shares_memory(np.array(W), Wv)  # np.array copies, as for an ndarray
    np.copyto(W, 2.0)
    assert (Wv == 2.0).all()


def test_value_is_the_same_memory(layer):
    W = layer.W
    assert np.shares_memory(W.value, W) and np.shares_memory(W, W.value)
    W.value[0, 0] = 7.0  # as an optimizer writes
    assert W[0, 0] == 7.0
    W[0, 1] = 8.0  # as a user writes
    assert W.value[0, 1] == 8.0


def test_arithmetic_gives_plain_arrays(layer):
    W, Wv = layer.W, layer.W.value
    x = np.arange(6.0).reshape(2, 3)
    cases = [
        (W * 2, Wv * 2), (2 * W, 2 * Wv), (W + W, Wv + Wv), (W - 1, Wv - 1),
        (-W, -Wv), (abs(W), abs(Wv)), (W ** 2, Wv ** 2), (W / 3, Wv / 3),
        (x @ W.T, x @ Wv.T), (W @ x.T, Wv @ x.T), (x + W, x + Wv),
        (W > 0, Wv > 0), (W == W, Wv == Wv), (np.exp(W), np.exp(Wv)),
        (W.T + layer.b, Wv.T + layer.b.value),
    ]
    for got, expected in cases:
        assert type(got) is np.ndarray  # not a Parameter without a meaningful grad
        np.testing.assert_array_equal(got, expected)


def test_array_attributes_and_methods(layer):
    W, Wv = layer.W, layer.W.value
    assert W.shape == (2, 3) and W.dtype == np.float64 and W.ndim == 2 and W.size == 6
    assert W.nbytes == Wv.nbytes and W.flags.c_contiguous
    for got, expected in [(W.T, Wv.T), (W.reshape(-1), Wv.reshape(-1)), (W.ravel(), Wv.ravel()),
                          (W.copy(), Wv), (W.astype(np.float32), Wv.astype(np.float32)),
                          (W.sum(axis=0), Wv.sum(axis=0))]:
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, expected)
    assert W.T.base is Wv or np.shares_memory(W.T, Wv)
    assert not np.shares_memory(W.copy(), Wv)
    assert W.tolist() == Wv.tolist()
    assert "reshape" in dir(W) and "grad" in dir(W)
    scalar = Parameter(np.array(2.5))
    assert scalar.shape == () and float(scalar) == 2.5 and scalar.item() == 2.5


def test_in_place_operators_keep_the_parameter(layer):
    W = layer.W
    before = W.value.copy()
    W += 1.0
    assert layer.W is W and type(W) is Parameter
    np.testing.assert_array_equal(W.value, before + 1)
    layer.W -= 0.5 * np.ones((2, 3))  # setattr of the in-place result: still the same object
    assert layer.W is W
    np.testing.assert_allclose(W.value, before + 0.5, rtol=1e-15, atol=1e-15)
    assert np.add(W, 1.0, out=W) is W
    assert np.multiply(W, 2.0, out=W.value) is W.value
    np.testing.assert_allclose(W.value, (before + 1.5) * 2, rtol=1e-15, atol=1e-15)


def test_grad_value_name_and_repr(layer):
    W = layer.W
    assert type(W.grad) is np.ndarray and W.grad.shape == (2, 3) and W.grad.dtype == np.float64
    assert not np.shares_memory(W.grad, W.value)
    layer.forward(np.ones((4, 3)))
    layer.backward(np.ones((4, 2)))
    np.testing.assert_array_equal(W.grad, np.full((2, 3), 4.0))
    assert W.name == "W" and layer.b.name == "b"
    assert repr(W) == "Parameter(W, shape=(2, 3), dtype=float64)"
    assert str(W) == str(W.value)


def test_hash_copy_and_pickle(layer):
    W = layer.W
    assert {W: 1}[W] == 1 and W in {W} and len({layer.W, layer.b}) == 2
    W.grad[...] = 3.0
    for clone in (copy.deepcopy(W), pickle.loads(pickle.dumps(W))):
        assert type(clone) is Parameter and clone.name == "W"
        np.testing.assert_array_equal(clone.value, W.value)
        np.testing.assert_array_equal(clone.grad, W.grad)
        assert not np.shares_memory(clone.value, W.value)
    shallow = copy.copy(W)
    assert shallow is not W and shallow.value is W.value and shallow.grad is W.grad
    model = copy.deepcopy(layers.Sequential(layer))
    assert type(model[0].W) is Parameter and model[0].W is not W


def test_optimizers_update_through_value_visible_through_parameter(layer):
    opt = optim.SGD(layer.parameters(), lr=0.5)
    layer.W[...] = 1.0  # a user's write is what the optimizer updates
    layer.W.grad[...] = 2.0
    layer.b.grad[...] = 0.0
    opt.step()
    np.testing.assert_array_equal(layer.W, np.zeros((2, 3)))
    adam = optim.Adam(layer.parameters(), lr=0.1)
    layer.W.grad[...] = 1.0
    adam.step()
    np.testing.assert_allclose(layer.W[0], -0.1 * np.ones(3), rtol=1e-6)


def test_value_rebinding_still_works(layer):
    opt = optim.SGD(layer.parameters(), lr=1.0)
    new = np.ones((2, 3))
    layer.W.value = new  # loading weights: the parameter now is `new`
    assert np.shares_memory(layer.W, new) and layer.W[0, 0] == 1.0
    layer.W.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(new, np.zeros((2, 3)))


def test_assigning_an_array_to_the_attribute_wraps_it(layer):
    new = np.full((2, 3), 0.5)
    layer.W = new
    assert type(layer.W) is Parameter and layer.W.name == "W"
    assert layer.W.value is new and np.shares_memory(layer.W, new)  # C-contiguous: no copy
    np.testing.assert_array_equal(layer.W.grad, np.zeros((2, 3)))
    layer.b = [1.0, -1.0]
    assert type(layer.b) is Parameter and layer.b.dtype == np.float64
    np.testing.assert_allclose(layer.forward(np.ones((1, 3))), [[2.5, 0.5]])
    assert all(a is b for a, b in zip(layer.parameters(), [layer.W, layer.b], strict=True))
    own = Parameter(np.zeros((2, 3)), "mine")
    layer.W = own
    assert layer.W is own
    layer.b = None
    assert len(layer.parameters()) == 1
    np.testing.assert_array_equal(layer.forward(np.ones((1, 3))), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        layer.W = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"\(2,\)"):
        layer.b = np.zeros(3)
    with pytest.raises(TypeError, match="float32 or float64"):
        layer.W = np.zeros((2, 3), np.int64)
    assert layer.W is own  # a rejected assignment changes nothing


def test_fastdl_functions_take_parameters(layer, backend):
    x = np.random.default_rng(0).normal(size=(4, 3))
    expected = fastdl.affine_forward(x, layer.W.value, layer.b.value, backend=backend)
    assert_close(fastdl.affine_forward(x, layer.W, layer.b, backend=backend), expected,
                 np.float64)
    assert_close(fastdl.softmax(layer.W, backend=backend),
                 fastdl.softmax(layer.W.value, backend=backend), np.float64)
    loss = fastdl.cross_entropy(layer.W, np.array([0, 2]), backend=backend)
    assert loss == fastdl.cross_entropy(layer.W.value, np.array([0, 2]), backend=backend)
    dx, dW, db = fastdl.affine_backward(np.ones((4, 2)), x, layer.W, backend=backend)
    assert_close(dW, np.ones((4, 2)).T @ x, np.float64)


def test_torch_shares_the_memory(layer):
    torch = pytest.importorskip("torch")
    t = torch.as_tensor(layer.W)
    assert t.shape == (2, 3) and t.dtype == torch.float64
    t[0, 0] = 42.0
    assert layer.W[0, 0] == 42.0
    np.testing.assert_array_equal(torch.tensor(layer.W).numpy(), layer.W.value)


def test_compile_step_sees_writes_through_the_parameter():
    rng = np.random.default_rng(3)
    model = layers.Sequential(layers.Affine(4, 6, dtype=np.float64, rng=0), layers.ReLU(),
                              layers.Affine(6, 3, dtype=np.float64, rng=1))
    crit = losses.CrossEntropyLoss()
    step = compile_step(model, crit, optim.SGD(model.parameters(), lr=0.1))
    x, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    step(x, y)
    model[0].W[...] = 0.25  # the compiled step reads the same memory
    # The reference: the layer API from the same state (plain SGD has no state).
    ref = copy.deepcopy(model)
    ref_opt = optim.SGD(ref.parameters(), lr=0.1)
    loss = step(x, y)
    ref_loss = crit.forward(ref.forward(x), y)
    ref.backward(crit.backward(), input_grad=False)
    ref_opt.step()
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-15)
