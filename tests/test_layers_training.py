"""The layers course training scripts need: Softmax, LogSoftmax, Flatten, Dropout,
train/eval modes, state dicts and .npz checkpoints, layer options."""

import types

import numpy as np
import pytest

import fastdl
from fastdl import layers, optim
from fastdl._gradcheck import gradcheck

try:
    import torch
except ImportError:  # pragma: no cover - CI has torch
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _check_layer(layer, x):
    def backward(dy, v):
        layer.forward(v)
        return layer.backward(dy)
    return gradcheck(layer.forward, x, backward=backward, params=layer.parameters())


def _mlp(seed=None, p=0.0):
    """Affine-Tanh-Dropout-Affine; a fresh random init when seed is None."""
    s = (None, None) if seed is None else (seed, seed + 1)
    return layers.Sequential(layers.Affine(6, 5, dtype=np.float64, rng=s[0]), layers.Tanh(),
                             layers.Dropout(p, seed=0),
                             layers.Affine(5, 3, dtype=np.float64, rng=s[1]))


# -- Softmax, LogSoftmax ---------------------------------------------------

@pytest.mark.parametrize("cls", [layers.Softmax, layers.LogSoftmax])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_layers_gradcheck(cls, axis, backend, rng):
    x = rng.normal(size=(4, 5))
    with fastdl.use_backend(backend):
        assert _check_layer(cls(axis=axis), x)


@needs_torch
@pytest.mark.parametrize("cls,tcls", [("Softmax", "Softmax"), ("LogSoftmax", "LogSoftmax")])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_layers_match_torch(cls, tcls, axis, dtype, rng):
    x = rng.normal(size=(3, 7)).astype(dtype)
    dy = rng.normal(size=(3, 7)).astype(dtype)
    layer = getattr(layers, cls)(axis)
    y = layer.forward(x).copy()
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn, tcls)(dim=axis)(xt)
    yt.backward(torch.tensor(dy))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    assert y.dtype == dx.dtype == dtype


def test_softmax_layer_options_and_backward_uses_output():
    layer = layers.Softmax(axis=0)
    assert dict(layer.options) == {"axis": 0} and repr(layer) == "Softmax(axis=0)"
    x = np.array([[0.0, 1.0], [2.0, 3.0]])
    y = layer.forward(x)
    np.testing.assert_allclose(y.sum(axis=0), 1.0)
    # backward is softmax_backward of y, not of x
    dy = np.array([[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(layer.backward(dy), fastdl.softmax_backward(dy, y, axis=0))
    with pytest.raises(RuntimeError, match="before forward"):
        layers.LogSoftmax().backward(dy)
    with pytest.raises(TypeError):
        layers.Softmax(axis=1.5)


# -- Flatten ---------------------------------------------------------------

@pytest.mark.parametrize("start,end,shape", [(1, -1, (2, 60)), (0, -1, (120,)),
                                             (1, 2, (2, 12, 5)), (-2, -1, (2, 3, 20)),
                                             (2, 2, (2, 3, 4, 5))])
def test_flatten_matches_torch_shapes(start, end, shape):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    layer = layers.Flatten(start, end)
    y = layer.forward(x)
    assert y.shape == shape
    assert np.shares_memory(y, x)  # a view, as torch.flatten of a contiguous tensor
    if torch is not None:
        assert tuple(torch.nn.Flatten(start, end)(torch.tensor(x)).shape) == shape
    dx = layer.backward(np.ones(shape))
    assert dx.shape == x.shape


def test_flatten_gradcheck_and_errors(rng):
    layer = layers.Flatten()
    assert _check_layer(layer, rng.normal(size=(3, 2, 4)))
    assert layer.forward(np.zeros((0, 3, 4))).shape == (0, 12)
    assert layers.Flatten(0).forward(np.zeros((2, 0, 3))).shape == (0,)
    layer.forward(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="dy has shape"):
        layer.backward(np.zeros((2, 3, 4)))
    with pytest.raises(np.exceptions.AxisError):
        layer.forward(np.zeros(3))            # no axis 1
    with pytest.raises(ValueError, match="comes after"):
        layers.Flatten(2, 1).forward(np.zeros((2, 3, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        layers.Flatten().backward(np.zeros((2, 3)))
    assert repr(layers.Flatten()) == "Flatten(start_axis=1, end_axis=-1)"


# -- Dropout ---------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_and_scale(p, dtype):
    x = np.ones((400, 500), dtype)
    y = layers.Dropout(p, seed=1).forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    # 200000 Bernoulli(1 - p) draws: the kept fraction is within 5 sigma.
    sigma = np.sqrt(p * (1 - p) / x.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    np.testing.assert_allclose(y[kept], dtype.type(1 / (1 - p)), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 5 * sigma / (1 - p)   # inverted dropout: E[y] = x


@needs_torch
def test_dropout_statistics_match_torch():
    """Same kept fraction and the same kept values as torch.nn.Dropout."""
    p = 0.3
    x = np.full((300, 300), 2.0)
    y = layers.Dropout(p, seed=0).forward(x)
    torch.manual_seed(0)
    yt = torch.nn.Dropout(p)(torch.tensor(x)).numpy()
    assert abs((y != 0).mean() - (yt != 0).mean()) < 0.01
    np.testing.assert_allclose(np.unique(y[y != 0]), np.unique(yt[yt != 0]), rtol=1e-15)
    td = torch.nn.Dropout(p).eval()
    assert td(torch.tensor(x)).numpy().tolist() == layers.Dropout(p).eval().forward(x).tolist()


def test_dropout_gradient_is_mask_times_scale(rng):
    drop = layers.Dropout(0.4, seed=7)
    x = rng.normal(size=(6, 9)) + 3.0          # no zeros in x
    y = drop.forward(x).copy()
    mask = y / x                               # 0 or 1 / (1 - p)
    assert set(np.round(np.unique(mask), 12)) == {0.0, round(1 / 0.6, 12)}
    dy = rng.normal(size=x.shape)
    np.testing.assert_allclose(drop.backward(dy), dy * mask, rtol=1e-12)
    # the mask is fixed between forward and backward: a gradient check holds
    # when each forward of the check redraws the same mask (a re-seeded layer)
    def f(v):
        return layers.Dropout(0.4, seed=7).forward(v)
    assert gradcheck(f, x, backward=lambda d, v: d * mask)


def test_dropout_seed_determinism_and_eval_identity(rng):
    x = rng.normal(size=(8, 8))
    a, b = layers.Dropout(0.5, seed=3), layers.Dropout(0.5, seed=3)
    first = [a.forward(x).copy() for _ in range(3)]
    assert all(np.array_equal(u, b.forward(x)) for u in first)
    assert not np.array_equal(first[0], first[1])   # a new mask per call
    assert not np.array_equal(first[0], layers.Dropout(0.5, seed=4).forward(x))
    gen = np.random.default_rng(3)
    assert np.array_equal(layers.Dropout(0.5, seed=gen).forward(x), first[0])
    # eval: the identity, x itself and dy itself
    a.eval()
    assert a.forward(x) is x
    dy = np.ones_like(x)
    assert a.backward(dy) is dy
    a.train()
    assert not np.array_equal(a.forward(x), x)
    # p = 0: the identity in training mode too
    zero = layers.Dropout(0.0, seed=0)
    assert zero.forward(x) is x


def test_dropout_errors():
    for p in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            layers.Dropout(p)
    drop = layers.Dropout(0.5, seed=0)
    with pytest.raises(RuntimeError, match="before forward"):
        drop.backward(np.ones(3))
    with pytest.raises(TypeError, match="float32 and float64"):
        drop.forward(np.ones(3, np.int64))
    drop.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="dy has shape"):
        drop.backward(np.ones((3, 2)))
    assert repr(drop) == "Dropout(p=0.5)"


# -- train / eval ------------------------------------------------------------

def test_train_eval_propagate_through_sequential():
    inner = layers.Sequential(layers.Dropout(0.5), layers.ReLU())
    net = layers.Sequential(layers.Affine(3, 3), inner, layers.Dropout(0.2))
    every = [net, net[0], inner, inner[0], inner[1], net[2]]
    assert all(m.training for m in every)
    assert net.eval() is net
    assert not any(m.training for m in every)
    assert net.train() is net and all(m.training for m in every)
    net.train(False)
    assert not any(m.training for m in every)
    with pytest.raises(TypeError, match="bool"):
        net.train("no")
    # a fresh layer is in training mode whatever another instance's mode
    assert layers.Dropout().training and layers.Affine(2, 2).training


def test_eval_mode_network_is_deterministic(rng):
    net = _mlp(seed=0, p=0.5)
    x = rng.normal(size=(4, 6))
    y_train = net.forward(x).copy()
    net.eval()
    y1 = net.forward(x).copy()
    y2 = net.forward(x).copy()
    assert np.array_equal(y1, y2) and not np.array_equal(y1, y_train)
    plain = layers.Sequential(net[0], net[1], net[3])
    np.testing.assert_array_equal(y1, plain.forward(x))


# -- state dicts ---------------------------------------------------------------

def test_state_dict_keys_and_values():
    net = layers.Sequential(layers.Affine(4, 3, rng=0), layers.ReLU(),
                            layers.Sequential(layers.Affine(3, 2, bias=False, rng=1)),
                            layers.Affine(2, 2, rng=2))
    sd = net.state_dict()
    assert list(sd) == ["0.W", "0.b", "2.0.W", "3.W", "3.b"]
    assert sd["0.W"] is net[0].W.value and sd["2.0.W"] is net[2][0].W.value
    assert [n for n, _ in net.named_parameters()] == list(sd)
    assert all(p is q for (_, p), q in zip(net.named_parameters(), net.parameters()))
    assert list(layers.Affine(2, 2).state_dict()) == ["W", "b"]
    assert layers.ReLU().state_dict() == {} and layers.Dropout().state_dict() == {}


@needs_torch
def test_state_dict_keys_match_torch_layout():
    """Same keys as torch's after renaming weight/bias to W/b, same shapes."""
    net = layers.Sequential(layers.Affine(4, 3), layers.ReLU(), layers.Dropout(),
                            layers.Affine(3, 2))
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Dropout(),
                               torch.nn.Linear(3, 2))
    tsd = {k.replace("weight", "W").replace("bias", "b"): tuple(v.shape)
           for k, v in tnet.state_dict().items()}
    assert {k: v.shape for k, v in net.state_dict().items()} == tsd
    # a torch checkpoint loads after the renaming, and gives torch's outputs
    net.load_state_dict({k.replace("weight", "W").replace("bias", "b"): v.numpy()
                         for k, v in tnet.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(net.eval().forward(x),
                               tnet.eval()(torch.tensor(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_load_state_dict_copies_in_place_and_optimizer_keeps_training(rng):
    src, dst = _mlp(seed=0), _mlp(seed=10)
    params = dst.parameters()
    arrays = [p.value for p in params]
    opt = optim.SGD(params, lr=0.1)
    assert dst.load_state_dict(src.state_dict()) == ([], [])
    assert all(p is q and p.value is a for p, q, a in zip(dst.parameters(), params, arrays))
    for p, q in zip(src.parameters(), dst.parameters()):
        assert np.array_equal(p.value, q.value) and not np.shares_memory(p.value, q.value)
    # the optimizer, created before the load, updates the loaded arrays
    x = rng.normal(size=(4, 6))
    dst.forward(x)
    dst.backward(np.ones((4, 3)))
    before = dst[0].W.value.copy()
    opt.step()
    assert not np.array_equal(dst[0].W.value, before)
    assert np.array_equal(src[0].W.value, before)     # the source is untouched


def test_save_load_round_trip(tmp_path, rng):
    net = _mlp(seed=0, p=0.5)
    opt = optim.Adam(net.parameters(), lr=0.05)
    x = rng.normal(size=(8, 6))
    for _ in range(3):                                  # train a little
        net.forward(x)
        net.backward(np.ones((8, 3)))
        opt.step()
    path = tmp_path / "model.npz"
    net.save(path)
    fresh = _mlp(seed=None, p=0.5)
    assert not np.array_equal(fresh.eval().forward(x), net.eval().forward(x))
    assert fresh.load(path) == ([], [])
    np.testing.assert_array_equal(fresh.forward(x), net.forward(x))
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["0.W", "0.b", "3.W", "3.b"]
    # np.savez adds the suffix to a str path without it; load needs the real name
    net.save(str(tmp_path / "noext"))
    assert fresh.load(str(tmp_path / "noext.npz")) == ([], [])


def test_load_state_dict_errors_change_nothing():
    net = _mlp(seed=0)
    good = {k: v.copy() + 1 for k, v in net.state_dict().items()}
    before = {k: v.copy() for k, v in net.state_dict().items()}

    def unchanged():
        return all(np.array_equal(before[k], v) for k, v in net.state_dict().items())

    missing = dict(good)
    del missing["3.b"]
    with pytest.raises(KeyError, match=r"missing keys \['3.b'\]"):
        net.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected keys \['3.bias'\]"):
        net.load_state_dict({**good, "3.bias": good["3.b"]})
    with pytest.raises(ValueError, match=r"3.W: the state dict has shape \(5, 3\), "
                                         r"the parameter \(3, 5\)"):
        net.load_state_dict({**good, "3.W": good["3.W"].T})
    with pytest.raises(TypeError, match="0.b: the state dict has dtype float32, the "
                                        "parameter float64"):
        net.load_state_dict({**good, "0.b": good["0.b"].astype(np.float32)})
    assert unchanged()
    # strict=False skips what does not match by name, and reports it
    res = net.load_state_dict({"0.W": good["0.W"], "extra": np.zeros(2)}, strict=False)
    assert res.missing_keys == ["0.b", "3.W", "3.b"] and res.unexpected_keys == ["extra"]
    assert np.array_equal(net[0].W.value, good["0.W"])
    assert np.array_equal(net[3].W.value, before["3.W"])


def test_load_rejects_non_npz(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz"):
        layers.Affine(3, 1).load(tmp_path / "w.npy")


def test_load_refuses_pickles(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, W=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        layers.Affine(1, 1).load(path)


# -- options -----------------------------------------------------------------

def test_layer_options_are_read_only_views():
    layer = layers.Softplus(beta=2.0, threshold=10.0)
    opts = layer.options
    assert isinstance(opts, types.MappingProxyType)
    assert dict(opts) == {"beta": 2.0, "threshold": 10.0}
    with pytest.raises(TypeError):
        opts["beta"] = 3.0
    assert dict(layers.ReLU().options) == {}
    assert dict(layers.LeakyReLU(0.2).options) == {"negative_slope": 0.2}
    assert dict(layers.ELU(0.5).options) == {"alpha": 0.5}
