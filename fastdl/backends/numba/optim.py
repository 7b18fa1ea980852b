"""The "optim" kernel family on Numba.

One fused pass per parameter array instead of NumPy's eight or so.  The
arithmetic runs in the parameter's dtype, as PyTorch's optimizers do (the
scalars are passed as NumPy scalars of that dtype, so Numba types the whole
loop in it and float32 sqrt/divide vectorise twice as wide).  See
:mod:`fastdl.backends.numpy.optim` for the contract.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import _serial_and_parallel
from .core import _pick

NAME = "numba"


def _sgd_body(w, g, buf, lr, momentum, nesterov, weight_decay, first):
    for i in prange(w.shape[0]):
        wi = w[i]
        d = g[i] + weight_decay * wi
        if buf is not None:
            b = d if first else momentum * buf[i] + d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        w[i] = wi - lr * d


def _adam_body(w, g, m, v, step_size, one_m_b1, b2, one_m_b2, eps, weight_decay,
               inv_sqrt_bc2):
    for i in prange(w.shape[0]):
        d = g[i] + weight_decay * w[i]
        mi = m[i] + one_m_b1 * (d - m[i])
        vi = b2 * v[i] + one_m_b2 * d * d
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - step_size * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)


_SGD = _serial_and_parallel(_sgd_body)
_ADAM = _serial_and_parallel(_adam_body)


def sgd_step(w, g, buf, lr, momentum, nesterov, weight_decay, first):
    if w.shape[0]:
        s = w.dtype.type
        _pick(_SGD, w.shape[0])(w, g, buf, s(lr), s(momentum), bool(nesterov),
                                s(weight_decay), bool(first))


def adam_scalars(lr, beta1, beta2, eps, weight_decay, bc1, bc2):
    """The seven float64 scalars ``_adam_body`` takes after ``w, g, m, v``.

    Plain arithmetic, so the compiled training step (backends/numba/step.py)
    compiles this same function and rounds the same values to the
    parameters' dtype.  ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t``.
    """
    return (lr / bc1, 1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay,
            1.0 / math.sqrt(bc2))


def adam_step(w, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
    if w.shape[0]:
        s = w.dtype.type
        scalars = adam_scalars(lr, beta1, beta2, eps, weight_decay, bc1, bc2)
        _pick(_ADAM, w.shape[0])(w, g, m, v, *map(s, scalars))
