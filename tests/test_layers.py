"""Layers and loss objects: gradient checks (inputs and parameters), PyTorch
parity of a whole model, buffer reuse, and the layer contract."""

import numpy as np
import pytest

import fastdl
from fastdl import layers, losses
from fastdl._gradcheck import gradcheck
from fastdl import _loss_functions as FL

ACTIVATIONS = [layers.ReLU(), layers.LeakyReLU(0.1), layers.ELU(0.5), layers.Sigmoid(),
               layers.Tanh(), layers.SiLU(), layers.Softplus()]


def _check_layer(layer, x):
    def backward(dy, v):
        layer.forward(v)
        return layer.backward(dy)
    return gradcheck(layer.forward, x, backward=backward, params=layer.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_affine_gradcheck(bias, backend, rng):
    layer = layers.Affine(5, 3, bias=bias, dtype=np.float64, rng=rng)
    with fastdl.use_backend(backend):
        assert _check_layer(layer, rng.normal(size=(4, 5)))
        assert _check_layer(layer, rng.normal(size=5))  # a single sample


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_activation_layer_gradcheck(act, backend, rng):
    x = rng.normal(size=(4, 6))
    x[np.abs(x) < 1e-3] = 0.3
    with fastdl.use_backend(backend):
        assert _check_layer(act, x)


def test_sequential_gradcheck(backend, rng):
    net = layers.Sequential(layers.Affine(6, 8, dtype=np.float64, rng=1), layers.Tanh(),
                            layers.Affine(8, 8, dtype=np.float64, rng=2), layers.SiLU(),
                            layers.Affine(8, 3, dtype=np.float64, rng=3))
    with fastdl.use_backend(backend):
        assert _check_layer(net, rng.normal(size=(5, 6)))


def test_sequential_with_loss_gradcheck(backend, rng):
    """The whole graph: Sequential + CrossEntropyLoss, d loss / d (inputs, params)."""
    net = layers.Sequential(layers.Affine(4, 7, dtype=np.float64, rng=1), layers.ELU(),
                            layers.Affine(7, 3, dtype=np.float64, rng=2))
    crit = losses.CrossEntropyLoss(label_smoothing=0.1)
    y = np.array([0, 2, 1, 2, 0])

    def f(x):
        return crit.forward(net.forward(x), y)

    def backward(g, x):
        f(x)
        return net.backward(crit.backward() * g)

    with fastdl.use_backend(backend):
        assert gradcheck(f, rng.normal(size=(5, 4)), backward=backward,
                         params=net.parameters())


LOSS_OBJECTS = [
    (losses.MSELoss(), "normal"), (losses.L1Loss(reduction="sum"), "normal"),
    (losses.HuberLoss(0.5), "normal"), (losses.LogCoshLoss(reduction="none"), "normal"),
    (losses.KLDivLoss(reduction="batchmean"), "prob"),
    (losses.BCEWithLogitsLoss(pos_weight=np.array([1.0, 2.0, 3.0])), "unit"),
    (losses.CrossEntropyLoss(), "prob"),
]


@pytest.mark.parametrize("crit, kind", LOSS_OBJECTS, ids=lambda c: repr(c)[:20])
def test_loss_objects_gradcheck(crit, kind, backend, rng):
    x = rng.normal(size=(4, 3))
    if isinstance(crit, losses.KLDivLoss):
        x = np.log(rng.uniform(0.1, 1, size=(4, 3)))
    t = {"normal": rng.normal(size=(4, 3)), "unit": rng.uniform(0, 1, (4, 3)),
         "prob": rng.dirichlet(np.ones(3), size=4)}[kind]

    def backward(g, v):
        crit.forward(v, t)
        return crit.backward() * g

    with fastdl.use_backend(backend):
        assert gradcheck(lambda v: crit.forward(v, t), x, backward=backward)


def test_loss_object_matches_functional(rng):
    x, t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    crit = losses.HuberLoss(delta=0.3, reduction="sum")
    assert crit.forward(x, t) == FL.huber_loss(x, t, delta=0.3, reduction="sum")
    np.testing.assert_array_equal(crit.backward(),
                                  FL.huber_loss_backward(1.0, x, t, delta=0.3, reduction="sum"))


def test_affine_init_is_pytorch_kaiming_uniform():
    layer = layers.Affine(400, 300, rng=0)
    bound = 1 / np.sqrt(400)
    assert layer.W.value.shape == (300, 400) and layer.b.value.shape == (300,)
    assert layer.W.value.dtype == np.float32
    assert np.abs(layer.W.value).max() <= bound and np.abs(layer.W.value).max() > 0.99 * bound
    assert abs(layer.W.value.std() - bound / np.sqrt(3)) < 0.01 * bound  # U(-a, a) std a/sqrt 3
    np.testing.assert_array_equal(layers.Affine(400, 300, rng=0).W.value, layer.W.value)
    assert not np.array_equal(layers.Affine(400, 300, rng=1).W.value, layer.W.value)
    assert layers.Affine(3, 2, bias=False).b is None


def test_against_torch_model(rng):
    torch = pytest.importorskip("torch")
    net = layers.Sequential(layers.Affine(5, 6, dtype=np.float64, rng=0), layers.Softplus(),
                            layers.Affine(6, 2, dtype=np.float64, rng=1), layers.Sigmoid())
    tnet = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Softplus(), torch.nn.Linear(6, 2),
                               torch.nn.Sigmoid()).double()
    with torch.no_grad():
        for tl, fl in ((tnet[0], net[0]), (tnet[2], net[2])):
            tl.weight.copy_(torch.tensor(fl.W.value))
            tl.bias.copy_(torch.tensor(fl.b.value))
    x = rng.normal(size=(7, 5))
    dy = rng.normal(size=(7, 2))
    tx = torch.tensor(x, requires_grad=True)
    ty = tnet(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(net.forward(x), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(net.backward(dy), tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(net[0].W.grad, tnet[0].weight.grad.numpy(), rtol=1e-10,
                               atol=1e-14)
    np.testing.assert_allclose(net[2].b.grad, tnet[2].bias.grad.numpy(), rtol=1e-10)


def test_backward_overwrites_grads_and_reuses_buffers(rng):
    layer = layers.Affine(3, 2, dtype=np.float64, rng=0)
    act = layers.ReLU()
    x = rng.normal(size=(4, 3))
    y1 = layer.forward(x)
    dy = np.ones((4, 2))
    layer.backward(dy)
    g1 = layer.W.grad.copy()
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_array_equal(layer.W.grad, g1)  # overwritten, not accumulated
    y2 = layer.forward(x)
    assert y2 is y1  # same shape: the output buffer is reused
    a1 = act.forward(y2)
    assert act.forward(y2) is a1
    assert layer.forward(x[:2]).shape == (2, 2)  # another shape gets its own buffer


def test_layer_errors():
    with pytest.raises(RuntimeError, match="before forward"):
        layers.ReLU().backward(np.ones(3))
    with pytest.raises(RuntimeError, match="before forward"):
        layers.Affine(2, 2).backward(np.ones(2))
    with pytest.raises(RuntimeError, match="before forward"):
        losses.MSELoss().backward()
    with pytest.raises(TypeError, match="float32 or float64"):
        layers.Affine(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match=">= 1"):
        layers.Affine(0, 2)
    with pytest.raises(TypeError, match="not a layer"):
        layers.Sequential(layers.ReLU(), "relu")
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        layers.Affine(3, 2).forward(np.ones((4, 5), np.float32))
