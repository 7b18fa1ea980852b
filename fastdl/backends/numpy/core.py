"""The pure-NumPy reference backend.

Clear and obviously correct rather than fast: it is the oracle the compiled
backends are tested against and the fallback when neither compiles.  Float32
inputs are computed in float64 and rounded once at the end, so the reference
is at least as accurate as any backend it judges.

See :mod:`fastdl.backends` for the kernel contract.
"""

from __future__ import annotations

import numpy as np

from .. import cross_entropy_index_fast as _whole_call

NAME = "numpy"


def affine_forward(x, W, b, out):
    np.matmul(x, W.T, out=out)
    if b is not None:
        out += b


def affine_backward(dy, x, W, dx, dW, db):
    if dx is not None:
        np.matmul(dy, W, out=dx)
    np.matmul(dy.T, x, out=dW)
    if db is not None:
        np.sum(dy, axis=0, out=db)


def _row_logsumexp(z):
    """float64 log-sum-exp of each row of the float64 matrix ``z``.

    The shift is the row max where it is finite and 0 otherwise, so an all
    -inf row gives log(0) = -inf, a row holding +inf gives +inf and NaN
    propagates (the rule of ``scipy.special.logsumexp``).
    """
    if z.shape[1] == 0:
        return np.full(z.shape[0], -np.inf)
    m = np.max(z, axis=1)
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = np.sum(np.exp(z - shift[:, None]), axis=1)
        return np.log(s) + shift


def _log_softmax64(x):
    """float64 log-softmax of each row; an all -inf row or a +inf gives NaN."""
    z = x.astype(np.float64)
    m = np.max(z, axis=1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        shifted = z - m
        return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def logsumexp(x, out):
    out[...] = _row_logsumexp(x.astype(np.float64))


def softmax(x, out):
    if x.shape[1] == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        out[...] = np.exp(_log_softmax64(x))


def log_softmax(x, out):
    if x.shape[1] == 0:
        return
    out[...] = _log_softmax64(x)


def softmax_backward(dy, y, out):
    dy64 = dy.astype(np.float64)
    y64 = y.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out[...] = y64 * (dy64 - np.sum(dy64 * y64, axis=1, keepdims=True))


def log_softmax_backward(dy, y, out):
    dy64 = dy.astype(np.float64)
    y64 = y.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out[...] = dy64 - np.exp(y64) * np.sum(dy64, axis=1, keepdims=True)


def _weights64(weight, n_classes):
    if weight is None:
        return np.ones(n_classes)
    return weight.astype(np.float64)


# The cross-entropy kernels leave the sum of the row losses to the caller
# (they return None, see the contract): the reference sums nothing itself.

def cross_entropy_index(logits, target, weight, ignore_index, label_smoothing,
                        scale, loss, grad):
    n, n_classes = logits.shape
    if n_classes == 0:  # then every row is ignored (validated by the caller)
        loss[...] = 0.0
        return None
    eps = float(label_smoothing)
    rows = np.arange(n)
    valid = target != ignore_index
    t = np.where(valid, target, 0)
    w = _weights64(weight, n_classes)
    logp = _log_softmax64(logits) if n_classes else np.empty((n, 0))
    with np.errstate(over="ignore", invalid="ignore"):
        row_loss = -(1.0 - eps) * w[t] * logp[rows, t]
        if eps > 0.0:
            # Only when smoothing is on: 0 * (-inf) would turn a -inf logit
            # into NaN, as PyTorch also avoids.
            row_loss = row_loss - eps / n_classes * np.sum(w * logp, axis=1)
    loss[...] = np.where(valid, row_loss, 0.0)
    if grad is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(logp)
        a = (1.0 - eps) * w[t] + eps / n_classes * np.sum(w)
        g = a[:, None] * p - eps / n_classes * w[None, :]
        g[rows, t] -= (1.0 - eps) * w[t]
        g *= _row_scale(scale)
    grad[...] = np.where(valid[:, None], g, 0.0)
    return None


def _row_scale(scale):
    """The gradient multiplier as a (N, 1) column, or the float for every row."""
    return scale[:, None] if isinstance(scale, np.ndarray) else float(scale)


def cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss,
                       grad):
    n_classes = logits.shape[1]
    if n_classes == 0:  # an empty sum over classes
        loss[...] = 0.0
        return None
    eps = float(label_smoothing)
    q = target.astype(np.float64)
    if eps > 0.0:
        q = (1.0 - eps) * q + eps / n_classes
    wq = _weights64(weight, n_classes) * q
    logp = _log_softmax64(logits) if n_classes else np.empty(logits.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        loss[...] = -np.sum(wq * logp, axis=1)
        if grad is None:
            return None
        p = np.exp(logp)
        grad[...] = _row_scale(scale) * (p * np.sum(wq, axis=1, keepdims=True) - wq)
    return None


def cross_entropy_index_fast(logits, target, ignore_index, label_smoothing, mean, out,
                             want_grad):
    return _whole_call(cross_entropy_index, logits, target, ignore_index, label_smoothing,
                       mean, out, want_grad)
