"""Optimizers with PyTorch's update rules, updating parameters in place.

Each optimizer holds :class:`fastdl.layers.Parameter` objects (anything with
``.value`` and ``.grad`` arrays) and, on ``step()``, updates every
``.value`` in place from its ``.grad`` with the fused kernels of
:func:`fastdl.sgd_step` / :func:`fastdl.adam_step` (one pass per
parameter, in the backend in force; the hyperparameters are checked once
per step rather than once per parameter).  State buffers (momentum, Adam's
moments) have the parameter's dtype.  No step allocates.

Examples
--------
The course's worked example: ``L = sum_i (y_i - w1 x_i - w0)^2`` on
(0, 0), (1, 1), (1, 2) from w0 = w1 = 1 with learning rate 0.1:

>>> import numpy as np
>>> from fastdl.layers import Parameter
>>> from fastdl.optim import SGD
>>> w = Parameter(np.array([1.0, 1.0]))            # [w0, w1]
>>> opt = SGD([w], lr=0.1)
>>> w.grad[:] = [4 * w.value[1] + 6 * w.value[0] - 6, 4 * w.value[1] + 4 * w.value[0] - 6]
>>> opt.step(); w.value
array([0.6, 0.8])
"""

from __future__ import annotations

import math

import numpy as np

from ._optim_functional import (
    _adam_hyperparameters, _adam_update, _sgd_hyperparameters, _sgd_update,
)

__all__ = ["Optimizer", "SGD", "Adam"]


def _nonneg(value, name):
    v = float(value)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class Optimizer:
    """Base class: holds the parameters; ``zero_grad`` and ``step``."""

    def __init__(self, params):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if not (isinstance(getattr(p, "value", None), np.ndarray)
                    and isinstance(getattr(p, "grad", None), np.ndarray)):
                raise TypeError(f"{p!r} is not a parameter (needs .value and .grad arrays)")
            if p.value.dtype not in (np.float32, np.float64):
                raise TypeError(f"parameter dtype {p.value.dtype}; use float32 or float64")
        self.params = params

    def zero_grad(self):
        """Set every parameter's gradient to 0, in place."""
        for p in self.params:
            p.grad[...] = 0

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    PyTorch's rule (dampening 0)::

        g = grad + weight_decay * w
        if momentum:  buf = g (first step) else momentum * buf + g
                      g = g + momentum * buf  (nesterov)  or  buf
        w -= lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate, >= 0.
    momentum : float, default 0.0
    nesterov : bool, default False
        Requires ``momentum > 0``.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.

    Raises
    ------
    ValueError
        A negative or non-finite hyperparameter, Nesterov without momentum,
        an empty parameter list.
    """

    def __init__(self, params, lr, *, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params)
        self.lr = _nonneg(lr, "lr")
        self.momentum = _nonneg(momentum, "momentum")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")
        self._buf = [np.zeros_like(p.value) if self.momentum else None for p in self.params]
        self._first = True

    def step(self):
        """Update every parameter in place (one fused pass each)."""
        # The hyperparameters are checked once per step (they may be changed
        # between steps, e.g. by a learning-rate schedule), the arrays per
        # parameter, as fastdl.sgd_step does.
        hyper = _sgd_hyperparameters(self.lr, self.momentum, self.nesterov,
                                     self.weight_decay)
        for p, buf in zip(self.params, self._buf):
            _sgd_update(p.value, p.grad, buf, hyper, self._first, None)
        self._first = False


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's update rule.

    ::

        g = grad + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0.0
        L2 penalty added to the gradient (not AdamW's decoupled decay).

    Raises
    ------
    ValueError
        A hyperparameter out of range or an empty parameter list.
    """

    def __init__(self, params, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr = _nonneg(lr, "lr")
        self.eps = _nonneg(eps, "eps")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        b1, b2 = (float(b) for b in betas)
        for i, b in enumerate((b1, b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
        self.betas = (b1, b2)
        self.t = 0
        self._m = [np.zeros_like(p.value) for p in self.params]
        self._v = [np.zeros_like(p.value) for p in self.params]

    def step(self):
        """Update every parameter in place (one fused pass each)."""
        # Hyperparameters checked once per step, arrays per parameter (as
        # fastdl.adam_step does).
        hyper = _adam_hyperparameters(self.lr, self.betas, self.eps, self.weight_decay)
        self.t += 1
        for p, m, v in zip(self.params, self._m, self._v):
            _adam_update(p.value, p.grad, m, v, hyper, self.t, None)
