"""Functional optimizer updates: one fused, in-place pass per parameter.

:mod:`fastdl.optim`'s SGD and Adam call these; they are public so a training
loop without the layer API can use them too.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ._backend import resolve
from ._validate import float_arrays_alike, plain_alike

__all__ = ["sgd_step", "adam_step"]

FAMILY = "optim"


def _hyper(value, name, *, upper=None):
    v = float(value)
    if not (math.isfinite(v) and v >= 0.0 and (upper is None or v < upper)):
        bound = f"in [0, {upper})" if upper is not None else "a finite number >= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def _flat_views(named):
    """Validated arrays of one dtype and shape, as flat contiguous views.

    Returns (flat arrays, write-backs): an array that is not C-contiguous is
    updated through a contiguous copy, copied back by ``_write_back``.
    """
    # Fast path (see fastdl._validate): contiguous, one dtype and shape.
    if plain_alike([a for _, a in named]) is not None and all(
            name == "grad" or a.flags.writeable for name, a in named):
        return [a.ravel() for _, a in named], ()
    arrays, _, _ = float_arrays_alike(named)
    flats, pending = [], []
    for name, a in arrays:
        if not a.flags.writeable and name != "grad":
            raise ValueError(f"{name} is read-only; it is updated in place")
        if a.flags.c_contiguous:
            flats.append(a.reshape(-1))
        else:
            copy = np.ascontiguousarray(a)
            flats.append(copy.reshape(-1))
            if name != "grad":
                pending.append((a, copy))
    return flats, pending


def _write_back(pending):
    for original, copy in pending:
        original[...] = copy


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, nesterov=False,
             weight_decay=0.0, first_step=False, backend=None):
    """One SGD update of ``param`` in place (PyTorch's rule, dampening 0).

    Parameters
    ----------
    param : ndarray
        The parameter, float32 or float64; updated in place.
    grad : ndarray, shape of param
        Its gradient.
    momentum_buffer : ndarray, shape of param, optional
        Momentum state, updated in place; required when ``momentum > 0``.
    lr : float
        Learning rate, >= 0.
    momentum : float, default 0.0
    nesterov : bool, default False
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.
    first_step : bool, default False
        True on the first step: the buffer is then set to the gradient, as
        PyTorch does, instead of being decayed.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    param : ndarray
        The same array, updated.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        Shapes differ, a negative hyperparameter, momentum without a buffer,
        Nesterov without momentum, or a read-only ``param``.

    Notes
    -----
    ``d = grad + weight_decay * param``; with momentum ``buf = d`` (first
    step) or ``momentum * buf + d``, then ``d = d + momentum * buf``
    (Nesterov) or ``buf``; ``param -= lr * d``.  One pass, float64 per
    element.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> w = np.array([1.0, 1.0])
    >>> fastdl.sgd_step(w, np.array([4.0, 2.0]), lr=0.1)
    array([0.6, 0.8])
    """
    hyper = _sgd_hyperparameters(lr, momentum, nesterov, weight_decay)
    _sgd_update(param, grad, momentum_buffer, hyper, bool(first_step), backend)
    return param


def _sgd_hyperparameters(lr, momentum, nesterov, weight_decay):
    """SGD's checked hyperparameters ``(lr, momentum, nesterov, weight_decay)``."""
    lr = _hyper(lr, "lr")
    momentum = _hyper(momentum, "momentum")
    weight_decay = _hyper(weight_decay, "weight_decay")
    if nesterov and not momentum:
        raise ValueError("Nesterov momentum requires a momentum > 0")
    return lr, momentum, bool(nesterov), weight_decay


def _sgd_update(param, grad, momentum_buffer, hyper, first_step, backend):
    """:func:`sgd_step` with hyperparameters already checked by _sgd_hyperparameters."""
    lr, momentum, nesterov, weight_decay = hyper
    if momentum and momentum_buffer is None:
        raise ValueError("momentum > 0 needs a momentum_buffer")
    named = [("param", param), ("grad", grad)]
    if momentum:
        named.append(("momentum_buffer", momentum_buffer))
    flats, pending = _flat_views(named)
    resolve("sgd_step", backend, FAMILY).sgd_step(
        flats[0], flats[1], flats[2] if momentum else None, lr, momentum, nesterov,
        weight_decay, first_step)
    _write_back(pending)


def adam_step(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999),
              eps=1e-8, weight_decay=0.0, backend=None):
    """One Adam update of ``param`` and its moments, in place (PyTorch's rule).

    Parameters
    ----------
    param : ndarray
        The parameter, float32 or float64; updated in place.
    grad : ndarray, shape of param
        Its gradient.
    exp_avg, exp_avg_sq : ndarray, shape of param
        First and second moment estimates, updated in place (start at 0).
    step : int
        The step number t, from 1: it sets the bias corrections
        ``1 - beta**t``.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0.0
        L2 penalty added to the gradient (not AdamW's decoupled decay).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    param : ndarray
        The same array, updated.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, a non-integer ``step``.
    ValueError
        Shapes differ, a hyperparameter out of range, ``step < 1``, or a
        read-only array to update.

    Notes
    -----
    ``d = grad + weight_decay * param``; ``m += (1 - b1) (d - m)``;
    ``v = b2 v + (1 - b2) d²``;
    ``param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    One pass over the four arrays, float64 per element.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> w, m, v = np.array([1.0]), np.zeros(1), np.zeros(1)
    >>> fastdl.adam_step(w, np.array([0.5]), m, v, step=1, lr=0.1)  # first step moves by lr
    array([0.9])
    """
    hyper = _adam_hyperparameters(lr, betas, eps, weight_decay)
    _adam_update(param, grad, exp_avg, exp_avg_sq, hyper, _step_number(step), backend)
    return param


def _step_number(step):
    try:
        t = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an integer, got {step!r}") from None
    if t < 1:
        raise ValueError(f"step counts from 1, got {t}")
    return t


def _adam_hyperparameters(lr, betas, eps, weight_decay):
    """Adam's checked hyperparameters ``(lr, beta1, beta2, eps, weight_decay)``."""
    lr = _hyper(lr, "lr")
    eps = _hyper(eps, "eps")
    weight_decay = _hyper(weight_decay, "weight_decay")
    beta1, beta2 = (_hyper(b, f"betas[{i}]", upper=1.0) for i, b in enumerate(betas))
    return lr, beta1, beta2, eps, weight_decay


def _adam_update(param, grad, exp_avg, exp_avg_sq, hyper, t, backend):
    """:func:`adam_step` with checked hyperparameters and step number ``t``."""
    lr, beta1, beta2, eps, weight_decay = hyper
    flats, pending = _flat_views(
        [("param", param), ("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)])
    w, g, m, v = flats
    resolve("adam_step", backend, FAMILY).adam_step(
        w, g, m, v, lr, beta1, beta2, eps, weight_decay, 1.0 - beta1 ** t, 1.0 - beta2 ** t)
    _write_back(pending)
