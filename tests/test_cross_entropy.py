"""Cross-entropy: PyTorch's semantics, every backend, against two references.

The NumPy backend is the reference for the compiled backends; the NumPy
backend itself is checked against ``_loop_reference``, a slow per-element
float64 transcription of PyTorch's documented formula.
"""

import math

import numpy as np
import pytest

import fastdl

from conftest import assert_close

REDUCTIONS = ["mean", "sum", "none"]


def _loop_reference(logits, target, weight=None, ignore_index=-100, reduction="mean",
                    label_smoothing=0.0):
    """float64 cross-entropy by explicit loops, straight from the definition."""
    z = np.asarray(logits, np.float64)
    N, C = z.shape
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    eps = label_smoothing
    losses, denom = [], 0.0
    prob = np.asarray(target).dtype.kind == "f"
    for i in range(N):
        m = max(z[i])
        lse = m + math.log(sum(math.exp(v - m) for v in z[i]))
        logp = [v - lse for v in z[i]]
        if prob:
            q = [(1 - eps) * target[i][c] + eps / C for c in range(C)]
            losses.append(-sum(w[c] * q[c] * logp[c] for c in range(C)))
            denom += 1
            continue
        t = int(target[i])
        if t == ignore_index:
            losses.append(0.0)
            continue
        nll = -w[t] * logp[t]
        smooth = -sum(w[c] * logp[c] for c in range(C))
        losses.append((1 - eps) * nll + eps / C * smooth)
        denom += w[t]
    if reduction == "none":
        return np.array(losses)
    if reduction == "sum":
        return math.fsum(losses)
    return math.fsum(losses) / denom if denom else math.nan


def _case(rng, dtype, N=12, C=7, weighted=False, ignored=False, prob=False):
    logits = (2 * rng.standard_normal((N, C))).astype(dtype)
    if prob:
        target = rng.random((N, C)).astype(dtype)
        target /= target.sum(1, keepdims=True)
    else:
        target = rng.integers(0, C, N)
        if ignored:
            target[::3] = -100
    weight = rng.random(C).astype(dtype) + 0.5 if weighted else None
    return logits, target, weight


OPTIONS = [
    dict(),
    dict(weighted=True),
    dict(ignored=True),
    dict(weighted=True, ignored=True),
    dict(prob=True),
    dict(prob=True, weighted=True),
]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_numpy_reference_matches_loop_definition(opts, reduction, eps, rng):
    logits, target, weight = _case(rng, np.float64, **opts)
    got = fastdl.cross_entropy(logits, target, weight=weight, reduction=reduction,
                               label_smoothing=eps, backend="numpy")
    expected = _loop_reference(logits, target, weight, reduction=reduction,
                               label_smoothing=eps)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_backends_match_reference(opts, reduction, eps, backend, dtype, rng):
    logits, target, weight = _case(rng, dtype, **opts)
    kw = dict(weight=weight, reduction=reduction, label_smoothing=eps)
    ref_loss = fastdl.cross_entropy(logits, target, backend="numpy", **kw)
    ref_grad = fastdl.cross_entropy_backward(logits, target, backend="numpy", **kw)
    loss = fastdl.cross_entropy(logits, target, backend=backend, **kw)
    assert np.asarray(loss).dtype == dtype
    assert_close(loss, ref_loss, dtype)
    if reduction == "none":
        g_out = rng.standard_normal(logits.shape[0]).astype(dtype)
        assert_close(fastdl.cross_entropy_backward(logits, target, g_out, backend=backend, **kw),
                     fastdl.cross_entropy_backward(logits, target, g_out, backend="numpy", **kw),
                     dtype)
    grad = fastdl.cross_entropy_backward(logits, target, backend=backend, **kw)
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert_close(grad, ref_grad, dtype)
    fused_loss, fused_grad = fastdl.cross_entropy_with_grad(logits, target, backend=backend, **kw)
    assert_close(fused_loss, ref_loss, dtype)
    assert_close(fused_grad, ref_grad, dtype)


def test_gradient_matches_loop_definition_by_differences(rng):
    """The analytic gradient of every option against central differences of the loop."""
    for opts in OPTIONS:
        for eps in (0.0, 0.3):
            logits, target, weight = _case(rng, np.float64, N=4, C=5, **opts)
            grad = fastdl.cross_entropy_backward(logits, target, weight=weight,
                                                 label_smoothing=eps, backend="numpy")
            num = np.zeros_like(logits)
            h = 1e-6
            for idx in np.ndindex(logits.shape):
                zp, zm = logits.copy(), logits.copy()
                zp[idx] += h
                zm[idx] -= h
                num[idx] = (_loop_reference(zp, target, weight, label_smoothing=eps)
                            - _loop_reference(zm, target, weight, label_smoothing=eps)) / (2 * h)
            np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9, err_msg=str(opts))


def test_with_grad_in_place_overwrites_logits(backend, dtype, rng):
    logits, target, _ = _case(rng, dtype, N=50, C=30)
    loss, grad = fastdl.cross_entropy_with_grad(logits, target, backend=backend)
    buf = logits.copy()
    loss2, grad2 = fastdl.cross_entropy_with_grad(buf, target, out=buf, backend=backend)
    assert grad2 is buf
    # In place the last bit may differ (see test_core.test_out_in_place).
    assert_close(loss2, loss, dtype)
    assert_close(buf, grad, dtype)
    buf = logits.copy()
    g3 = fastdl.cross_entropy_backward(buf, target, out=buf, backend=backend)
    assert g3 is buf
    assert_close(buf, grad, dtype)


def test_out_buffer_non_contiguous(backend, dtype, rng):
    logits, target, _ = _case(rng, dtype)
    expected = fastdl.cross_entropy_backward(logits, target, backend=backend)
    out = np.zeros((logits.shape[1], logits.shape[0]), dtype).T
    res = fastdl.cross_entropy_backward(logits, target, out=out, backend=backend)
    assert res is out
    np.testing.assert_array_equal(out, expected)


def test_one_dimensional_logits(backend, dtype, rng):
    z = rng.standard_normal(6).astype(dtype)
    loss = fastdl.cross_entropy(z, 2, backend=backend)
    assert np.ndim(loss) == 0 and np.asarray(loss).dtype == dtype
    assert_close(loss, fastdl.cross_entropy(z[None], np.array([2]), backend="numpy"), dtype)
    loss_n = fastdl.cross_entropy(z, np.int64(2), reduction="none", backend=backend)
    assert np.ndim(loss_n) == 0
    grad = fastdl.cross_entropy_backward(z, 2, backend=backend)
    assert grad.shape == (6,)
    p = np.full(6, 1 / 6, dtype)
    assert_close(fastdl.cross_entropy(z, p, backend=backend),
                 fastdl.cross_entropy(z[None], p[None], backend="numpy"), dtype)


def test_empty_batch(backend, dtype):
    logits = np.zeros((0, 5), dtype)
    target = np.zeros(0, np.int64)
    assert np.isnan(fastdl.cross_entropy(logits, target, backend=backend))
    assert fastdl.cross_entropy(logits, target, reduction="sum", backend=backend) == 0
    assert fastdl.cross_entropy(logits, target, reduction="none", backend=backend).shape == (0,)
    loss, grad = fastdl.cross_entropy_with_grad(logits, target, backend=backend)
    assert np.isnan(loss) and grad.shape == (0, 5)
    probs = np.zeros((0, 5), dtype)
    assert np.isnan(fastdl.cross_entropy(logits, probs, backend=backend))


def test_all_rows_ignored(backend, dtype, rng):
    logits = rng.standard_normal((4, 3)).astype(dtype)
    target = np.full(4, -100)
    for eps in (0.0, 0.5):
        assert np.isnan(fastdl.cross_entropy(logits, target, label_smoothing=eps,
                                             backend=backend))
        assert fastdl.cross_entropy(logits, target, reduction="sum", backend=backend) == 0
        loss, grad = fastdl.cross_entropy_with_grad(logits, target, label_smoothing=eps,
                                                    backend=backend)
        assert np.isnan(loss)
        np.testing.assert_array_equal(grad, 0)
    # Zero classes is legal only when every row is ignored.
    z0 = np.zeros((2, 0), dtype)
    assert fastdl.cross_entropy(z0, np.array([-100, -100]), reduction="sum", backend=backend) == 0


def test_custom_ignore_index(backend, dtype, rng):
    logits = rng.standard_normal((5, 4)).astype(dtype)
    target = np.array([0, 3, 1, 3, 2])
    got = fastdl.cross_entropy(logits, target, ignore_index=3, reduction="none", backend=backend)
    assert got[1] == 0 and got[3] == 0
    keep = target != 3
    assert_close(fastdl.cross_entropy(logits, target, ignore_index=3, backend=backend),
                 fastdl.cross_entropy(logits[keep], target[keep], backend="numpy"), dtype)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64,
                                    np.uint64])
def test_integer_target_dtypes(tdtype, backend, rng):
    logits = rng.standard_normal((6, 4))
    target = np.array([0, 1, 2, 3, 0, 1], dtype=tdtype)
    assert fastdl.cross_entropy(logits, target, backend=backend) == pytest.approx(
        fastdl.cross_entropy(logits, target.astype(np.int64), backend="numpy"), rel=1e-12)


def test_worked_example_one_hot_is_negative_log_probability(backend, dtype):
    # Course notes: with a one-hot label, cross-entropy is -log of the
    # softmax probability of the true class.
    logits = np.array([[2.0, 1.0, 0.1]], dtype)
    p = np.exp([2.0, 1.0, 0.1]) / np.exp([2.0, 1.0, 0.1]).sum()
    assert_close(fastdl.cross_entropy(logits, np.array([0]), backend=backend), -np.log(p[0]), dtype)
    # ... and with a probability target equal to the softmax itself, the
    # loss is the entropy: log 2 nats for a fair coin.
    coin = np.array([[0.0, 0.0]], dtype)
    assert_close(fastdl.cross_entropy(coin, np.array([[0.5, 0.5]], dtype), backend=backend),
                 np.log(2), dtype)


def test_gradient_rows_sum_to_zero(backend, dtype, rng):
    """Softmax-CE gradients sum to zero over classes (unweighted, any smoothing)."""
    logits, target, _ = _case(rng, dtype, N=20, C=9)
    for eps in (0.0, 0.4):
        g = fastdl.cross_entropy_backward(logits, target, label_smoothing=eps, backend=backend)
        np.testing.assert_allclose(g.sum(1), 0, atol=1e-6 if dtype == np.float32 else 1e-15)
