"""The "optim" kernel family: optimizer updates, NumPy reference.

Kernel contract (every backend's ``<name>_optim`` module): ``w``, ``g`` and
the state arrays are flat C-contiguous 1-D arrays of one float dtype and one
length; scalars are Python floats/bools; kernels update in place and return
None.

``sgd_step(w, g, buf, lr, momentum, nesterov, weight_decay, first)``
    PyTorch's SGD (dampening 0): ``d = g + weight_decay * w``; with
    momentum, ``buf = d`` on the first step, else ``momentum * buf + d``, and
    ``d = d + momentum * buf`` (Nesterov) or ``buf``; then ``w -= lr * d``.
    ``buf`` is None when momentum is 0.
``adam_step(w, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2)``
    PyTorch's Adam (L2 weight decay, no amsgrad): ``d = g + weight_decay * w``,
    ``m += (1 - beta1) * (d - m)``, ``v = beta2 * v + (1 - beta2) * d * d``,
    ``w -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`` with the bias
    corrections ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t``.

The compiled backends compute in the parameter's dtype, as PyTorch does;
this reference computes in float64, so float32 results agree to rounding.
"""

from __future__ import annotations

import math

import numpy as np

NAME = "numpy"


def sgd_step(w, g, buf, lr, momentum, nesterov, weight_decay, first):
    w64 = w.astype(np.float64)
    d = g.astype(np.float64) + weight_decay * w64
    if momentum:
        b = d.copy() if first else momentum * buf.astype(np.float64) + d
        buf[...] = b
        d = d + momentum * b if nesterov else b
    w[...] = w64 - lr * d


def adam_step(w, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
    w64 = w.astype(np.float64)
    d = g.astype(np.float64) + weight_decay * w64
    m64 = m.astype(np.float64)
    m64 += (1.0 - beta1) * (d - m64)
    v64 = beta2 * v.astype(np.float64) + (1.0 - beta2) * d * d
    m[...] = m64
    v[...] = v64
    w[...] = w64 - (lr / bc1) * m64 / (np.sqrt(v64) / math.sqrt(bc2) + eps)
