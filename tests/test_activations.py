"""Activations: every function x backend x dtype against the NumPy reference,
the reference against float64/mpmath values and extreme inputs, gradient
checks, PyTorch parity and bad inputs."""

import math

import numpy as np
import pytest

from conftest import assert_close
from fastdl import _activations as A, _ops
from fastdl._gradcheck import gradcheck

#: Every activation of the op table, with its sample (non-default) options;
#: test_default_options covers the defaults.
OPTIONS = {op.name: _ops.sample_options(op) for op in _ops.of_kind("activation")}
NAMES = list(OPTIONS)
SHAPES = [(0,), (1,), (7, 13), (3, 4, 5), (40000,)]  # 40000 > the parallel threshold


def _x(rng, shape, dtype):
    x = rng.normal(scale=4.0, size=shape).astype(dtype)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kinks at 0
    return x


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_backends_match_reference(name, shape, backend, dtype, rng):
    x = _x(rng, shape, dtype)
    dy = rng.normal(size=shape).astype(dtype)
    f, b = getattr(A, name), getattr(A, name + "_backward")
    y = f(x, backend=backend, **OPTIONS[name])
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, f(x, backend="numpy", **OPTIONS[name]), dtype)
    dx = b(dy, x, backend=backend, **OPTIONS[name])
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, b(dy, x, backend="numpy", **OPTIONS[name]), dtype)


@pytest.mark.parametrize("name", [name for name, opts in OPTIONS.items() if opts])
def test_default_options_match_reference(name, backend, dtype, rng):
    x = _x(rng, (40000,), dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    f, b = getattr(A, name), getattr(A, name + "_backward")
    assert_close(f(x, backend=backend), f(x, backend="numpy"), dtype)
    assert_close(b(dy, x, backend=backend), b(dy, x, backend="numpy"), dtype)


@pytest.mark.parametrize("name", NAMES)
def test_out_in_place_and_layouts(name, backend, dtype, rng):
    x = _x(rng, (6, 8), dtype)
    expected = getattr(A, name)(x, backend="numpy", **OPTIONS[name])
    # non-contiguous, Fortran and read-only inputs
    for variant in (np.asfortranarray(x), x[:, ::2], x.T):
        ref = getattr(A, name)(np.ascontiguousarray(variant), backend="numpy", **OPTIONS[name])
        assert_close(getattr(A, name)(variant, backend=backend, **OPTIONS[name]), ref, dtype)
    ro = x.copy()
    ro.flags.writeable = False
    assert_close(getattr(A, name)(ro, backend=backend, **OPTIONS[name]), expected, dtype)
    # out=x in place
    buf = x.copy()
    res = getattr(A, name)(buf, out=buf, backend=backend, **OPTIONS[name])
    assert res is buf
    assert_close(buf, expected, dtype)
    # non-contiguous out
    out = np.empty((8, 6), dtype).T
    res = getattr(A, name)(x, out=out, backend=backend, **OPTIONS[name])
    assert res is out and np.shares_memory(res, out)
    assert_close(out, expected, dtype)
    # backward in place on dy
    dy = rng.normal(size=x.shape).astype(dtype)
    ref = getattr(A, name + "_backward")(dy, x, backend="numpy", **OPTIONS[name])
    res = getattr(A, name + "_backward")(dy, x, out=dy, backend=backend, **OPTIONS[name])
    assert res is dy
    assert_close(dy, ref, dtype)


# ------------------------------------------------------------ reference values

def test_reference_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    xs = [-745.0, -700.0, -30.0, -1.0, -1e-10, 0.0, 1e-10, 1.0, 30.0, 700.0]
    x = np.array(xs)
    exact = {
        "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)),
        "log_sigmoid": lambda v: -mpmath.log1p(mpmath.exp(-v)),
        "softplus": lambda v: v if v > 20 else mpmath.log1p(mpmath.exp(v)),  # threshold rule
        "tanh": mpmath.tanh,
        "silu": lambda v: v / (1 + mpmath.exp(-v)),
        "elu": lambda v: v if v > 0 else mpmath.expm1(v),
    }
    for name, fn in exact.items():
        got = getattr(A, name)(x, backend="numpy")
        want = np.array([float(fn(mpmath.mpf(v))) for v in xs])
        np.testing.assert_allclose(got, want, rtol=4e-16, atol=1e-300, err_msg=name)
    grads = {
        "sigmoid": lambda v: mpmath.diff(lambda t: 1 / (1 + mpmath.exp(-t)), v),
        "tanh": lambda v: 1 / mpmath.cosh(v) ** 2,
        "silu": lambda v: mpmath.diff(lambda t: t / (1 + mpmath.exp(-t)), v),
        "log_sigmoid": lambda v: 1 / (1 + mpmath.exp(v)),
    }
    for name, fn in grads.items():
        got = getattr(A, name + "_backward")(np.ones_like(x), x, backend="numpy")
        want = np.array([float(fn(mpmath.mpf(v))) for v in xs])
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_extremes_never_nan(name, backend, dtype):
    big = np.finfo(dtype).max
    x = np.array([-big, -1000, -88, 0, 88, 1000, big], dtype)
    y = getattr(A, name)(x, backend=backend)
    dx = getattr(A, name + "_backward")(np.ones_like(x), x, backend=backend)
    assert not np.isnan(y).any() and not np.isnan(dx).any(), (y, dx)


def test_documented_extreme_values(backend, dtype):
    one = lambda v: np.array([v], dtype)  # noqa: E731
    assert A.softplus(one(1000.0), backend=backend)[0] == 1000.0
    assert A.log_sigmoid(one(-1000.0), backend=backend)[0] == -1000.0
    assert A.sigmoid(one(-1000.0), backend=backend)[0] == 0.0
    assert A.sigmoid(one(1000.0), backend=backend)[0] == 1.0
    assert A.elu(one(-1000.0), backend=backend)[0] == -1.0
    assert A.silu(one(-1000.0), backend=backend)[0] == 0.0
    assert A.softplus(1000.0) == 1000.0  # Python float in, float64 scalar out
    big = np.finfo(dtype).max
    assert A.softplus(one(-big), backend=backend)[0] == 0.0
    assert A.log_sigmoid(one(-big), backend=backend)[0] == -big
    assert A.softplus(one(big), backend=backend, threshold=np.inf)[0] == big


def test_special_values_follow_pytorch(backend):
    x = np.array([-np.inf, -0.0, 0.0, np.inf, np.nan])
    inf, nan = np.inf, np.nan
    table = {
        "sigmoid": ([0, 0.5, 0.5, 1, nan], [0, 0.25, 0.25, 0, nan]),
        "log_sigmoid": ([-inf, -math.log(2), -math.log(2), 0, nan], [1, 0.5, 0.5, 0, nan]),
        "softplus": ([0, math.log(2), math.log(2), inf, nan], [0, 0.5, 0.5, 1, nan]),
        "tanh": ([-1, -0.0, 0, 1, nan], [0, 1, 1, 0, nan]),
        "relu": ([0, -0.0, 0, inf, nan], [0, 0, 0, 1, 1]),
        "leaky_relu": ([-inf, -0.0, 0, inf, nan], [0.01, 0.01, 0.01, 1, 0.01]),
        "elu": ([-1, -0.0, 0, inf, nan], [0, 1, 1, 1, 1]),
        "silu": ([nan, -0.0, 0, inf, nan], [nan, 0.5, 0.5, nan, nan]),
    }
    for name, (y, dx) in table.items():
        got = getattr(A, name)(x, backend=backend)
        np.testing.assert_array_equal(got, np.array(y), err_msg=name)
        zero = np.array(y) == 0  # signed zeros: -0.0 where PyTorch gives -0.0
        np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(np.array(y)[zero]),
                                      err_msg=name)
        got = getattr(A, name + "_backward")(np.ones(5), x, backend=backend)
        np.testing.assert_array_equal(got, np.array(dx), err_msg=name + "_backward")


def test_swish_is_silu():
    assert A.swish is A.silu and A.swish_backward is A.silu_backward


def test_zero_dim_returns_scalar():
    y = A.sigmoid(np.float32(0.0))
    assert isinstance(y, np.float32) and y == 0.5


# ------------------------------------------------------------ gradient checks

@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name, backend, rng):
    x = _x(rng, (3, 5), np.float64)
    opts = OPTIONS[name]
    assert gradcheck(lambda v: getattr(A, name)(v, backend=backend, **opts), x,
                     backward=lambda dy, v: getattr(A, name + "_backward")(
                         dy, v, backend=backend, **opts))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float32(name, backend, rng):
    x = rng.uniform(0.2, 2.0, size=(4, 4)).astype(np.float32) * rng.choice([-1, 1], (4, 4))
    opts = OPTIONS[name]
    assert gradcheck(lambda v: getattr(A, name)(v, backend=backend, **opts), x,
                     backward=lambda dy, v: getattr(A, name + "_backward")(
                         dy, v, backend=backend, **opts))


def test_gradcheck_catches_a_wrong_backward(rng):
    x = _x(rng, (4,), np.float64)
    with pytest.raises(AssertionError, match="worst"):
        gradcheck(A.tanh, x, backward=lambda dy, v: A.sigmoid_backward(dy, v))


# ------------------------------------------------------------ PyTorch parity

#: (name, options) pairs: each activation with its sample options, and with
#: its defaults where it has options.
CASES = [(name, opts) for name, opts in OPTIONS.items()] + [
    (name, {}) for name, opts in OPTIONS.items() if opts]


@pytest.mark.parametrize("name, opts", CASES)
def test_torch_parity(name, opts, backend, dtype, rng):
    torch = pytest.importorskip("torch")
    tf = _ops.torch_function(_ops.BY_NAME[name], torch)
    x = _x(rng, (9, 11), dtype)
    x.flat[:4] = [-1000, 1000, -30, 30]
    dy = rng.normal(size=x.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = tf(tx, **opts)
    ty.backward(torch.tensor(dy))
    assert_close(getattr(A, name)(x, backend=backend, **opts), ty.detach().numpy(), dtype,
                 scale=4)
    assert_close(getattr(A, name + "_backward")(dy, x, backend=backend, **opts),
                 tx.grad.numpy(), dtype, scale=4)


# ------------------------------------------------------------ bad inputs

def test_bad_inputs():
    x = np.ones(3)
    with pytest.raises(TypeError, match="float32 and float64"):
        A.relu(np.ones(3, np.int64))
    with pytest.raises(TypeError, match="float32 and float64"):
        A.relu(np.ones(3, np.float16))
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        A.relu_backward(np.ones(3, np.float32), x)
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        A.tanh_backward(x, np.ones(4))
    with pytest.raises(ValueError, match="shape"):
        A.sigmoid(x, out=np.ones(4))
    with pytest.raises(TypeError, match="dtype"):
        A.sigmoid(x, out=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="beta"):
        A.softplus(x, beta=0.0)
    with pytest.raises(ValueError, match="threshold"):
        A.softplus(x, threshold=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        A.elu(x, alpha=float("inf"))
    with pytest.raises(ValueError, match="unknown backend"):
        A.relu(x, backend="fortran")
