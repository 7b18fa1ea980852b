"""The NumPy code a user would write: the baselines every benchmark times.

Shared by ``python -m fastdl bench`` (:mod:`fastdl._bench.cases`) and the
pytest-benchmark suites in ``bench/``.  Max-shifted softmax, ``x @ W.T + b``
and the cs231n-style softmax loss, as in ``BENCHMARKS.md``.
"""

import numpy as np

__all__ = ["np_softmax", "np_log_softmax", "np_logsumexp", "np_softmax_backward",
           "np_log_softmax_backward", "np_cross_entropy", "np_cross_entropy_with_grad",
           "np_affine_forward", "np_affine_backward"]


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_log_softmax(x):
    s = x - x.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def np_logsumexp(x):
    m = x.max(axis=1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=1))


def np_softmax_backward(dy, y):
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


def np_log_softmax_backward(dy, y):
    return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def np_cross_entropy(logits, target):
    """Mean cross-entropy of class-index targets, max-shifted."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(n), target].mean()


def np_cross_entropy_with_grad(logits, target):
    """The cs231n-style softmax loss and its gradient."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = -(shifted[np.arange(n), target] - np.log(s[:, 0])).mean()
    grad = e / s
    grad[np.arange(n), target] -= 1
    grad /= n
    return loss, grad


def np_affine_forward(x, W, b):
    return x @ W.T + b


def np_affine_backward(dy, x, W):
    return dy @ W, dy.T @ x, dy.sum(0)
