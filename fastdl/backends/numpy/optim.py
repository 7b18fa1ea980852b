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

Every backend computes in the parameter's dtype, as PyTorch does, with
the same operations in the same order (the scalars rounded to that dtype
first), so the backends agree to the rounding of a vectorised sqrt/divide;
an update that overflows float32 overflows in every backend alike.
"""

from __future__ import annotations

import math

import numpy as np

NAME = "numpy"


def sgd_step(w, g, buf, lr, momentum, nesterov, weight_decay, first):
    s = w.dtype.type
    lr, momentum, weight_decay = s(lr), s(momentum), s(weight_decay)
    with np.errstate(all="ignore"):  # inf/NaN follow IEEE, as in the kernels
        d = g + weight_decay * w
        if buf is not None:
            b = d.copy() if first else momentum * buf + d
            buf[...] = b
            d = d + momentum * b if nesterov else b
        w -= lr * d


def adam_step(w, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
    s = w.dtype.type
    step_size, one_m_b1, b2 = s(lr / bc1), s(1.0 - beta1), s(beta2)
    one_m_b2, eps, wd = s(1.0 - beta2), s(eps), s(weight_decay)
    inv_sqrt_bc2 = s(1.0 / math.sqrt(bc2))
    with np.errstate(all="ignore"):
        d = g + wd * w
        m += one_m_b1 * (d - m)
        v *= b2
        v += one_m_b2 * d * d
        w -= step_size * m / (np.sqrt(v) * inv_sqrt_bc2 + eps)
