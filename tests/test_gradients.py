"""Central-difference checks of every backward, per backend, in float64.

float32 backward kernels are covered by the agreement tests against the
reference (test_core.py, test_cross_entropy.py); differences in float32 are
too noisy to judge a gradient by.
"""

import numpy as np
import pytest

import fastdl


def numerical_grad(f, x, h=1e-6):
    """d sum(f(x) * probe) / dx by central differences (f returns an array or scalar)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = f(x)
        x[idx] = old - h
        fm = f(x)
        x[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


def check(analytic, numeric):
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_backward_gradcheck(axis, backend, rng):
    x = rng.standard_normal((4, 5))
    dy = rng.standard_normal((4, 5))
    y = fastdl.softmax(x, axis, backend=backend)
    analytic = fastdl.softmax_backward(dy, y, axis, backend=backend)
    check(analytic, numerical_grad(lambda v: np.sum(fastdl.softmax(v, axis, backend=backend) * dy), x))


@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_backward_gradcheck(axis, backend, rng):
    x = rng.standard_normal((4, 5))
    dy = rng.standard_normal((4, 5))
    y = fastdl.log_softmax(x, axis, backend=backend)
    analytic = fastdl.log_softmax_backward(dy, y, axis, backend=backend)
    check(analytic, numerical_grad(
        lambda v: np.sum(fastdl.log_softmax(v, axis, backend=backend) * dy), x))


def test_logsumexp_gradient_is_softmax(backend, rng):
    x = rng.standard_normal((3, 6))
    check(fastdl.softmax(x, backend=backend),
          numerical_grad(lambda v: np.sum(fastdl.logsumexp(v, backend=backend)), x))


def test_affine_backward_gradcheck(backend, rng):
    x = rng.standard_normal((5, 4))
    W = rng.standard_normal((3, 4))
    b = rng.standard_normal(3)
    dy = rng.standard_normal((5, 3))
    dx, dW, db = fastdl.affine_backward(dy, x, W, backend=backend)

    def loss(x_, W_, b_):
        return np.sum(fastdl.affine_forward(x_, W_, b_, backend=backend) * dy)

    check(dx, numerical_grad(lambda v: loss(v, W, b), x))
    check(dW, numerical_grad(lambda v: loss(x, v, b), W))
    check(db, numerical_grad(lambda v: loss(x, W, v), b))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.25])
@pytest.mark.parametrize("kind", ["index", "index-weighted-ignored", "prob", "prob-weighted"])
def test_cross_entropy_backward_gradcheck(kind, eps, reduction, backend, rng):
    N, C = 4, 5
    logits = rng.standard_normal((N, C))
    if kind.startswith("index"):
        target = rng.integers(0, C, N)
        if "ignored" in kind:
            target[1] = -100
    else:
        target = rng.random((N, C))
        target /= target.sum(1, keepdims=True)
    weight = rng.random(C) + 0.5 if "weighted" in kind else None
    g_out = rng.standard_normal(N) if reduction == "none" else 0.7
    kw = dict(weight=weight, reduction=reduction, label_smoothing=eps, backend=backend)
    analytic = fastdl.cross_entropy_backward(logits, target, g_out, **kw)
    numeric = numerical_grad(lambda v: np.sum(fastdl.cross_entropy(v, target, **kw) * g_out),
                             logits)
    check(analytic, numeric)
    _, fused = fastdl.cross_entropy_with_grad(logits, target, **kw)
    ones = 1.0 if reduction != "none" else np.ones(N)
    check(fused, fastdl.cross_entropy_backward(logits, target, ones, **kw))
