"""Pointwise losses and entropy: backends vs reference, reference vs independent
float64 values, extremes, gradient checks, PyTorch parity, bad inputs."""

import math

import numpy as np
import pytest

from conftest import assert_close
from fastdl import _loss_functions as L, _ops
from fastdl._gradcheck import gradcheck

def _loss_cases():
    """Test cases from the op table: each loss with its defaults and, where it
    has options or extra arrays, with the sample options and the extras."""
    cases = {}
    for op in _ops.of_kind("pointwise_loss"):
        cases[op.name] = (op.name, {})
        if op.options or op.extras:
            opts = _ops.sample_options(op)
            opts.update({extra: extra for extra in op.extras})  # arrays made per case
            cases[op.name + "/options"] = (op.name, opts)
    return cases


LOSSES = _loss_cases()
REDUCTIONS = ["mean", "sum", "none"]


def _case(key, shape, dtype, rng):
    name, opts = LOSSES[key]
    op = _ops.BY_NAME[name]
    opts = dict(opts)
    x = rng.normal(scale=2.0, size=shape).astype(dtype)
    if op.sample == "logprob":
        x = np.log(rng.uniform(0.05, 1.0, shape)).astype(dtype)
        t = rng.uniform(0.0, 1.0, shape).astype(dtype)
        if t.size:
            t.flat[0] = 0.0  # PyTorch's 0 * log 0 = 0
        if opts.get("log_target"):
            t = np.log(t + 0.1).astype(dtype)
    elif op.sample == "binary":
        t = rng.uniform(0, 1, shape).astype(dtype)
    else:
        t = rng.normal(size=shape).astype(dtype)
        t += np.where(np.abs(x - t) < 1e-3, 0.1, 0).astype(dtype)  # off the kinks
    for i, extra in enumerate(op.extras):
        if extra in opts:  # broadcast along the last axis, as a class weight would
            low, high = (0.5, 2.0) if i == 0 else (0.5, 3.0)
            opts[extra] = rng.uniform(low, high, shape[-1:]).astype(dtype)
    return getattr(L, name), getattr(L, name + "_backward"), x, t, opts


@pytest.mark.parametrize("shape", [(0,), (1,), (7, 13), (40000,)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("key", list(LOSSES))
def test_backends_match_reference(key, reduction, shape, backend, dtype, rng):
    f, b, x, t, opts = _case(key, shape, dtype, rng)
    loss = f(x, t, reduction=reduction, backend=backend, **opts)
    ref = f(x, t, reduction=reduction, backend="numpy", **opts)
    assert np.asarray(loss).dtype == dtype and np.shape(loss) == np.shape(ref)
    assert_close(loss, ref, dtype, scale=10)
    g = rng.normal(size=shape).astype(dtype) if reduction == "none" else 0.7
    dx = b(g, x, t, reduction=reduction, backend=backend, **opts)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, b(g, x, t, reduction=reduction, backend="numpy", **opts), dtype)


@pytest.mark.parametrize("key", list(LOSSES))
def test_with_grad_and_out(key, backend, dtype, rng):
    f, b, x, t, opts = _case(key, (5, 6), dtype, rng)
    withg = getattr(L, LOSSES[key][0] + "_with_grad")
    loss, dx = withg(x, t, backend=backend, **opts)
    assert_close(loss, f(x, t, backend="numpy", **opts), dtype, scale=10)
    assert_close(dx, b(1.0, x, t, backend="numpy", **opts), dtype)
    buf = x.copy()
    loss2, dx2 = withg(buf, t, out=buf, backend=backend, **opts)
    assert dx2 is buf and loss2 == loss
    assert_close(buf, dx, dtype)
    # Fortran / strided inputs
    xf, tf = np.asfortranarray(x), t[:, ::1].copy(order="F")
    assert_close(f(xf, tf, backend=backend, **opts), loss, dtype, scale=10)


@pytest.mark.parametrize("shape", [(7, 13), (40000,)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("key", list(LOSSES))
def test_with_grad_is_forward_and_backward_bit_for_bit(key, reduction, shape, backend, dtype,
                                                       rng):
    f, b, x, t, opts = _case(key, shape, dtype, rng)
    withg = getattr(L, LOSSES[key][0] + "_with_grad")
    loss, dx = withg(x, t, reduction=reduction, backend=backend, **opts)
    np.testing.assert_array_equal(loss, f(x, t, reduction=reduction, backend=backend, **opts))
    np.testing.assert_array_equal(dx, b(1.0, x, t, reduction=reduction, backend=backend,
                                        **opts))


# ----------------------------------------------------- reference values

def test_reference_formulas_independent():
    x = np.array([-3.0, -0.5, 0.0, 0.2, 2.5])
    t = np.array([0.5, -1.0, 0.0, 1.0, 1.0])
    d = x - t
    assert L.mse_loss(x, t, backend="numpy") == pytest.approx(np.mean(d ** 2), rel=1e-15)
    assert L.l1_loss(x, t, reduction="sum", backend="numpy") == pytest.approx(np.sum(np.abs(d)))
    hub = [0.5 * v * v if abs(v) <= 1 else abs(v) - 0.5 for v in d]
    np.testing.assert_allclose(L.huber_loss(x, t, reduction="none", backend="numpy"), hub)
    lc = [math.log(math.cosh(v)) for v in d]
    np.testing.assert_allclose(L.log_cosh_loss(x, t, reduction="none", backend="numpy"), lc,
                               rtol=1e-14)
    p = 1 / (1 + np.exp(-x))
    tb = np.array([0.0, 1.0, 0.3, 1.0, 0.0])
    bce = -(tb * np.log(p) + (1 - tb) * np.log(1 - p))
    np.testing.assert_allclose(L.binary_cross_entropy_with_logits(
        x, tb, reduction="none", backend="numpy"), bce, rtol=1e-13)


def test_log_cosh_small_and_large(backend):
    d = np.array([1e-9, 1e-4, 0.5, 30.0, 1000.0, 1e300])
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    want = [float(mp.log(mp.cosh(mp.mpf(v)))) for v in d]
    np.testing.assert_allclose(L.log_cosh_loss(d, np.zeros(6), reduction="none", backend=backend),
                               want, rtol=2e-15)


def test_bce_extremes(backend, dtype):
    x = np.array([-1000, 1000, -1000, 1000, np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    t = np.array([1, 0, 0, 1, 0, 1], dtype)
    got = L.binary_cross_entropy_with_logits(x, t, reduction="none", backend=backend)
    np.testing.assert_array_equal(got, np.array([1000, 1000, 0, 0, np.finfo(dtype).max,
                                                 np.finfo(dtype).max], dtype))
    g = L.binary_cross_entropy_with_logits_backward(1.0, x, t, reduction="none", backend=backend)
    np.testing.assert_array_equal(g, np.array([-1, 1, 0, 0, 1, -1], dtype))


def test_kl_div_semantics(backend):
    logq = np.log(np.array([[0.25, 0.75], [0.5, 0.5]]))
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    per = L.kl_div(logq, p, reduction="none", backend=backend)
    want = [[0.5 * math.log(2), 0.5 * math.log(0.5 / 0.75)], [math.log(2), 0.0]]
    np.testing.assert_allclose(per, want, rtol=1e-14)
    assert L.kl_div(logq, p, reduction="batchmean", backend=backend) == pytest.approx(
        np.sum(want) / 2, rel=1e-14)
    assert L.kl_div(logq, np.log(p + 1e-300), log_target=True, reduction="sum",
                    backend=backend) == pytest.approx(np.sum(want), rel=1e-12)
    # zero target against log q = -inf is NaN (0 * -inf), as in PyTorch
    assert np.isnan(L.kl_div(np.array([-np.inf]), np.array([0.0]), reduction="sum",
                             backend=backend))
    assert L.kl_div(np.array([-50.0]), np.array([0.0]), reduction="sum", backend=backend) == 0


def test_empty_reductions(backend):
    e = np.zeros(0)
    assert np.isnan(L.mse_loss(e, e, backend=backend))
    assert L.mse_loss(e, e, reduction="sum", backend=backend) == 0
    assert np.isnan(L.kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="batchmean",
                             backend=backend))


def test_entropy(backend, dtype):
    # course notes: a fair coin has log 2 nats (1 bit); yut 2.0306 bits, a die 2.585 bits
    coin = np.array([0.5, 0.5], dtype)
    assert_close(L.entropy(coin, backend=backend), math.log(2), dtype)
    yut = np.array([4, 6, 4, 1, 1], dtype) / 16
    assert L.entropy(yut, backend=backend) / math.log(2) == pytest.approx(2.0306, abs=1e-4)
    die = np.full(6, 1 / 6, dtype)
    assert L.entropy(die, backend=backend) / math.log(2) == pytest.approx(math.log2(6), rel=1e-6)
    h = L.entropy(np.array([[1, 0, 0], [0, 0, 1]], dtype), backend=backend)
    np.testing.assert_array_equal(h, [0, 0])
    assert not np.signbit(h).any()
    p = np.random.default_rng(0).dirichlet(np.ones(5), size=(3, 4)).astype(dtype)
    ref = -(p * np.log(p)).sum(-1)
    assert_close(L.entropy(p, backend=backend), ref, dtype, scale=4)
    assert_close(L.entropy(np.moveaxis(p, -1, 0), axis=0, backend=backend), ref, dtype, scale=4)
    assert np.isnan(L.entropy(np.array([-0.1, 1.1], dtype), backend=backend))
    assert L.entropy(np.zeros((2, 0), dtype), backend=backend).tolist() == [0, 0]


# ----------------------------------------------------- gradient checks

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("key", list(LOSSES))
def test_gradcheck(key, reduction, backend, rng):
    f, b, x, t, opts = _case(key, (3, 4), np.float64, rng)
    assert gradcheck(lambda v: f(v, t, reduction=reduction, backend=backend, **opts), x,
                     backward=lambda g, v: b(g, v, t, reduction=reduction, backend=backend,
                                             **opts))


# ----------------------------------------------------- PyTorch parity

#: Losses PyTorch lacks (no twin in the op table), as their per-element values in torch.
TORCH_MISSING = {"log_cosh_loss": lambda torch, x, t: torch.log(torch.cosh(x - t))}


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("key, reduction", [(k, r) for k in LOSSES for r in REDUCTIONS]
                         + [(k, r) for k in LOSSES
                            for r in _ops.BY_NAME[LOSSES[k][0]].more_reductions])
def test_torch_parity(key, reduction, backend, dtype, rng):
    torch = pytest.importorskip("torch")
    f, b, x, t, opts = _case(key, (6, 5), dtype, rng)
    tx = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t)
    topts = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    name = LOSSES[key][0]
    tf = _ops.torch_function(_ops.BY_NAME[name], torch)
    if tf is None:
        per = TORCH_MISSING[name](torch, tx, tt)
        tl = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    else:
        tl = tf(tx, tt, reduction=reduction, **topts)
    g = rng.normal(size=x.shape).astype(dtype) if reduction == "none" else dtype.type(0.5)
    tl.backward(torch.tensor(g))
    assert_close(f(x, t, reduction=reduction, backend=backend, **opts), tl.detach().numpy(),
                 dtype, scale=10)
    assert_close(b(g, x, t, reduction=reduction, backend=backend, **opts), tx.grad.numpy(),
                 dtype, scale=10)


# ----------------------------------------------------- bad inputs

def test_bad_inputs():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        L.mse_loss(x, np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        L.l1_loss(x, np.ones(3))
    with pytest.raises(TypeError, match="float32 and float64"):
        L.mse_loss(x.astype(int), x)
    with pytest.raises(TypeError, match="float64.*float32"):
        L.mse_loss(x, x.astype(np.float32))
    with pytest.raises(ValueError, match="reduction"):
        L.mse_loss(x, x, reduction="batchmean")
    with pytest.raises(ValueError, match="reduction"):
        L.kl_div(x, x, reduction="avg")
    with pytest.raises(ValueError, match="delta"):
        L.huber_loss(x, x, delta=0.0)
    with pytest.raises(ValueError, match="weight has shape"):
        L.binary_cross_entropy_with_logits(x, x, weight=np.ones(2))
    with pytest.raises(ValueError, match="grad_output"):
        L.mse_loss_backward(np.ones(2), x, x)
    with pytest.raises(ValueError, match="grad_output"):
        L.mse_loss_backward(np.ones(3), x, x, reduction="none")
    with pytest.raises(TypeError, match="grad_output"):
        L.mse_loss_backward(np.float32(1), x, x)
    with pytest.raises(ValueError, match="0-d"):
        L.entropy(np.float64(1.0))
    with pytest.raises(ValueError):
        L.entropy(np.ones(3), axis=2)
