"""Pointwise losses, their gradients and the entropy (the public wrappers).

PyTorch semantics and defaults (``torch.nn.functional``), with one stricter
rule: ``input`` and ``target`` must have the same shape (PyTorch broadcasts
some of these with a warning; fastdl raises ``ValueError`` naming both
shapes).  Only ``weight`` and ``pos_weight`` of
:func:`binary_cross_entropy_with_logits` broadcast, against the input's shape.

Every loss returns a NumPy scalar of the input's dtype for "mean"/"sum" (and
"batchmean" for :func:`kl_div`), an array of the input's shape for "none".
Sums are accumulated in float64 by the kernels; "mean" over zero elements is
NaN and "sum" is 0, as in PyTorch.

Each ``<loss>_backward(grad_output, input, target, ...)`` returns the
gradient with respect to ``input``; ``grad_output`` is the gradient of the
final objective with respect to the loss: a scalar for reduced losses, a
scalar or an array of the input's shape for "none".  Each
``<loss>_with_grad(input, target, ...)`` returns ``(loss, d loss / d input)``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _ops
from ._activations import _finite_float, _flat, kernels
from ._validate import (
    check_out,
    check_reduction,
    float_array,
    float_arrays_alike,
    kernel_buffer,
    normalize_axis,
    plain_alike,
    same_dtype,
)

__all__ = [name for op in _ops.OPS if op.kind in ("pointwise_loss", "entropy")
           for name in _ops.public_names(op)]


# ---------------------------------------------------------------------------
# shared machinery
# ---------------------------------------------------------------------------

class _Args:
    """Validated loss arguments, flattened for the kernels."""

    __slots__ = ("op", "shape", "dtype", "input", "target", "weight", "aux", "options",
                 "reduction", "n", "denom")


def _loss_args(op, input, target, reduction, *, extra=(), options=()):
    """Check ``input``/``target`` (and the broadcastable ``extra`` arrays).

    ``extra`` holds (name, array or None) pairs in the order of the op's
    ``extras`` in the op table: the kernels' ``weight``, then ``aux``.
    """
    a = _Args()
    a.op = op
    dt = plain_alike((input, target))
    if dt is not None:  # the common case: C-contiguous arrays of one float dtype and shape
        x, t, a.dtype, a.shape = input, target, dt, input.shape
        a.input = x.reshape(-1)
        a.target = t.reshape(-1)
    else:
        ((_, x), (_, t)), a.dtype, a.shape = float_arrays_alike(
            [("input", input), ("target", target)])
        a.input = _flat(x)
        a.target = _flat(t)
    a.reduction = check_reduction(
        reduction, ("none", "mean", "sum") + _ops.BY_NAME[op].more_reductions)
    a.n = a.input.shape[0]
    flats = []
    for name, e in extra:
        if e is None:
            flats.append(None)
            continue
        e = float_array(e, name)
        same_dtype(("input", x), (name, e))
        try:
            ok = np.broadcast_shapes(e.shape, x.shape) == x.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} has shape {e.shape}, which does not broadcast to the input's shape {x.shape}"
            )
        flats.append(_flat(np.broadcast_to(e, x.shape)))
    a.weight, a.aux = (flats + [None, None])[:2]
    a.options = tuple(options)
    if a.reduction == "batchmean":
        a.denom = float(x.shape[0]) if x.ndim else 1.0
    else:
        a.denom = float(a.n)
    return a


def _shaped(a, flat):
    result = flat.reshape(a.shape)
    return result[()] if result.ndim == 0 else result


def _reduce(a, total):
    """The reduced loss from the float64 sum of the per-element losses."""
    if a.reduction == "sum":
        return a.dtype.type(total)
    if a.denom:  # the same IEEE division as below, without errstate's 1 us
        return a.dtype.type(float(total) / a.denom)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty batch: 0/0 is NaN
        return a.dtype.type(np.float64(total) / np.float64(a.denom))


def _forward(a, backend):
    """The loss, reduced as asked."""
    kernel = getattr(kernels(a.op, backend), a.op)
    if a.reduction == "none":
        out = np.empty(a.n, a.dtype)
        kernel(a.input, a.target, a.weight, a.aux, a.options, out)
        return _shaped(a, out)
    return _reduce(a, kernel(a.input, a.target, a.weight, a.aux, a.options, None))


def _grad_output(a, grad_output):
    """(dy flat array or None, float scale) for the backward kernel."""
    g = np.asarray(grad_output)
    if g.dtype.kind not in "fiu" or (g.dtype.kind == "f" and g.dtype not in (np.float32, np.float64)):
        raise TypeError(f"grad_output has dtype {g.dtype}; fastdl supports float32 and float64")
    if isinstance(grad_output, (np.ndarray, np.generic)) and g.dtype.kind == "f" \
            and g.dtype != a.dtype:
        raise TypeError(
            f"input is {a.dtype} but grad_output is {g.dtype}; "
            "inputs of one call must share one float dtype"
        )
    if a.reduction == "none":
        if g.shape == ():
            return None, float(g)
        if g.shape != a.shape:
            raise ValueError(
                f"grad_output has shape {g.shape}; reduction='none' needs the input's "
                f"shape {a.shape} or a scalar"
            )
        return _flat(g.astype(a.dtype, copy=False)), 1.0
    if g.shape != ():
        raise ValueError(
            f"grad_output has shape {g.shape}; reduction={a.reduction!r} needs a scalar"
        )
    scale = float(g)
    if a.reduction in ("mean", "batchmean"):
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = float(np.float64(scale) / np.float64(a.denom))
    return None, scale


def _grad_buffer(a, out, dy=None):
    """(buffer the kernel writes the gradient into, ``out``'s flat view or None)."""
    target = None
    if out is not None:
        check_out(out, a.shape, a.dtype)
        if out.flags.c_contiguous:
            target = out.reshape(-1)
    inputs = [e for e in (a.input, a.target, a.weight, a.aux, dy) if e is not None]
    return kernel_buffer(target, (a.n,), a.dtype, may_alias=inputs), target


def _finish_grad(a, out, buf, target):
    if out is None:
        return _shaped(a, buf)
    if buf is not target:
        out[...] = buf.reshape(a.shape)
    return out


def _backward(a, grad_output, out, backend):
    dy, scale = _grad_output(a, grad_output)
    buf, target = _grad_buffer(a, out, dy)
    op = a.op + "_backward"
    getattr(kernels(op, backend), op)(dy, a.input, a.target, a.weight, a.aux, a.options,
                                      scale, buf)
    return _finish_grad(a, out, buf, target)


def _with_grad(a, out, backend):
    """(loss, gradient for grad_output = 1) from one fused kernel pass."""
    _, scale = _grad_output(a, 1.0)
    buf, target = _grad_buffer(a, out)
    loss_out = np.empty(a.n, a.dtype) if a.reduction == "none" else None
    op = a.op + "_with_grad"
    total = getattr(kernels(op, backend), op)(a.input, a.target, a.weight, a.aux, a.options,
                                              scale, loss_out, buf)
    loss = _shaped(a, loss_out) if loss_out is not None else _reduce(a, total)
    return loss, _finish_grad(a, out, buf, target)


# ---------------------------------------------------------------------------
# docstrings
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# the losses
# ---------------------------------------------------------------------------

def mse_loss(input, target, *, reduction="mean", backend=None):
    """Mean squared error ``(input - target)**2`` (PyTorch ``mse_loss``).

    Parameters
    ----------
    input : ndarray
        Predictions, any shape, float32 or float64.
    target : ndarray, shape of input
        Targets, of the input's dtype.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": the per-element losses, input's shape.  "sum": their sum.
        "mean": the sum divided by the number of elements (NaN when there
        are none).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        Per element ``(input - target)**2``, reduced.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``.

    Notes
    -----
    The squared error of the course's linear regression.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> float(fastdl.mse_loss(np.array([1., 2.]), np.array([0., 0.])))
    2.5
    """
    return _forward(_loss_args("mse_loss", input, target, reduction), backend)


def mse_loss_backward(grad_output, input, target, *, reduction="mean", out=None, backend=None):
    """Gradient of :func:`mse_loss` with respect to ``input``.

    Parameters
    ----------
    grad_output : float or ndarray
        Gradient of the objective with respect to the loss: a scalar for
        "mean"/"sum", a scalar or an array of the input's shape for "none".
    input, target : ndarray
        As for :func:`mse_loss`.
    reduction : str, default "mean"
        As for :func:`mse_loss`.
    out : ndarray, optional
        Buffer of the input's shape and dtype; may be ``input`` (in place).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dinput : ndarray, shape of input
        ``2 * (input - target)``, times ``grad_output`` (divided by the element count for "mean").

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``, a ``grad_output`` of
        the wrong shape, a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.mse_loss_backward(1.0, np.array([1., 2.]), np.array([0., 0.]))
    array([1., 2.])
    """
    return _backward(_loss_args("mse_loss", input, target, reduction), grad_output, out, backend)


def mse_loss_with_grad(input, target, *, reduction="mean", out=None, backend=None):
    """Loss and gradient of :func:`mse_loss` in one call.

    Takes the arguments of :func:`mse_loss`, plus ``out`` (a buffer for the
    gradient, may be ``input``).  Returns ``(loss, dinput)``, the
    gradient being that of ``loss`` (of ``loss.sum()`` for "none").

    Parameters
    ----------
    input, target : ndarray
        As for :func:`mse_loss`.
    reduction : str, default "mean"
        As for :func:`mse_loss`.
    out : ndarray, optional
        Buffer for the gradient, of the input's shape and dtype; may be
        ``input`` (overwritten with the gradient).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        As :func:`mse_loss` returns it.
    dinput : ndarray, shape of input
        As :func:`mse_loss_backward` returns it for ``grad_output=1``.
    """
    return _with_grad(_loss_args("mse_loss", input, target, reduction), out, backend)


def l1_loss(input, target, *, reduction="mean", backend=None):
    """Mean absolute error ``|input - target|`` (PyTorch ``l1_loss``).

    Parameters
    ----------
    input : ndarray
        Predictions, any shape, float32 or float64.
    target : ndarray, shape of input
        Targets, of the input's dtype.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": the per-element losses, input's shape.  "sum": their sum.
        "mean": the sum divided by the number of elements (NaN when there
        are none).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        Per element ``|input - target|``, reduced.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``.

    Notes
    -----
    Robust to outliers; its gradient has constant size (the course's MAE).

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> float(fastdl.l1_loss(np.array([1., -3.]), np.array([0., 0.])))
    2.0
    """
    return _forward(_loss_args("l1_loss", input, target, reduction), backend)


def l1_loss_backward(grad_output, input, target, *, reduction="mean", out=None, backend=None):
    """Gradient of :func:`l1_loss` with respect to ``input``.

    Parameters
    ----------
    grad_output : float or ndarray
        Gradient of the objective with respect to the loss: a scalar for
        "mean"/"sum", a scalar or an array of the input's shape for "none".
    input, target : ndarray
        As for :func:`l1_loss`.
    reduction : str, default "mean"
        As for :func:`l1_loss`.
    out : ndarray, optional
        Buffer of the input's shape and dtype; may be ``input`` (in place).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dinput : ndarray, shape of input
        ``sign(input - target)`` (0 where they are equal), times ``grad_output`` (divided by the
        element count for "mean").

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``, a ``grad_output`` of
        the wrong shape, a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.l1_loss_backward(1.0, np.array([1., -3., 0.]), np.zeros(3), reduction='sum')
    array([ 1., -1.,  0.])
    """
    return _backward(_loss_args("l1_loss", input, target, reduction), grad_output, out, backend)


def l1_loss_with_grad(input, target, *, reduction="mean", out=None, backend=None):
    """Loss and gradient of :func:`l1_loss` in one call.

    Takes the arguments of :func:`l1_loss`, plus ``out`` (a buffer for the
    gradient, may be ``input``).  Returns ``(loss, dinput)``, the
    gradient being that of ``loss`` (of ``loss.sum()`` for "none").

    Parameters
    ----------
    input, target : ndarray
        As for :func:`l1_loss`.
    reduction : str, default "mean"
        As for :func:`l1_loss`.
    out : ndarray, optional
        Buffer for the gradient, of the input's shape and dtype; may be
        ``input`` (overwritten with the gradient).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        As :func:`l1_loss` returns it.
    dinput : ndarray, shape of input
        As :func:`l1_loss_backward` returns it for ``grad_output=1``.
    """
    return _with_grad(_loss_args("l1_loss", input, target, reduction), out, backend)


def huber_loss(input, target, *, reduction="mean", delta=1.0, backend=None):
    """Huber loss (PyTorch ``huber_loss``).

    Parameters
    ----------
    input : ndarray
        Predictions, any shape, float32 or float64.
    target : ndarray, shape of input
        Targets, of the input's dtype.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": the per-element losses, input's shape.  "sum": their sum.
        "mean": the sum divided by the number of elements (NaN when there
        are none).
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; > 0.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        Per element ``0.5 d**2`` if ``|d| <= delta`` else ``delta (|d| - delta/2)``, d = input -
        target.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``, a ``delta`` that is
        not > 0.

    Notes
    -----
    Quadratic near the target, linear far from it: MSE's convergence with
    MAE's robustness (Huber, "Robust Estimation of a Location Parameter",
    Ann. Math. Statist. 35, 1964).

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> float(fastdl.huber_loss(np.array([0.5, 3.]), np.zeros(2), reduction='sum'))
    2.625
    """
    delta = _finite_float(delta, "delta", positive=True)
    return _forward(_loss_args("huber_loss", input, target, reduction, options=(delta,)), backend)


def huber_loss_backward(grad_output, input, target, *, reduction="mean", delta=1.0, out=None,
                        backend=None):
    """Gradient of :func:`huber_loss` with respect to ``input``.

    Parameters
    ----------
    grad_output : float or ndarray
        Gradient of the objective with respect to the loss: a scalar for
        "mean"/"sum", a scalar or an array of the input's shape for "none".
    input, target : ndarray
        As for :func:`huber_loss`.
    reduction : str, default "mean"
        As for :func:`huber_loss`.
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; > 0.
    out : ndarray, optional
        Buffer of the input's shape and dtype; may be ``input`` (in place).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dinput : ndarray, shape of input
        ``clip(input - target, -delta, delta)``, times ``grad_output`` (divided by the element
        count for "mean").

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``, a ``delta`` that is
        not > 0, a ``grad_output`` of the wrong shape, a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.huber_loss_backward(1.0, np.array([0.5, 3.]), np.zeros(2), reduction='sum')
    array([0.5, 1. ])
    """
    delta = _finite_float(delta, "delta", positive=True)
    a = _loss_args("huber_loss", input, target, reduction, options=(delta,))
    return _backward(a, grad_output, out, backend)


def huber_loss_with_grad(input, target, *, reduction="mean", delta=1.0, out=None, backend=None):
    """Loss and gradient of :func:`huber_loss` in one call.

    Takes the arguments of :func:`huber_loss`, plus ``out`` (a buffer for the
    gradient, may be ``input``).  Returns ``(loss, dinput)``, the
    gradient being that of ``loss`` (of ``loss.sum()`` for "none").

    Parameters
    ----------
    input, target : ndarray
        As for :func:`huber_loss`.
    reduction : str, default "mean"
        As for :func:`huber_loss`.
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; > 0.
    out : ndarray, optional
        Buffer for the gradient, of the input's shape and dtype; may be
        ``input`` (overwritten with the gradient).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        As :func:`huber_loss` returns it.
    dinput : ndarray, shape of input
        As :func:`huber_loss_backward` returns it for ``grad_output=1``.
    """
    delta = _finite_float(delta, "delta", positive=True)
    a = _loss_args("huber_loss", input, target, reduction, options=(delta,))
    return _with_grad(a, out, backend)


def log_cosh_loss(input, target, *, reduction="mean", backend=None):
    """Log-cosh loss ``log(cosh(input - target))`` (no PyTorch equivalent).

    Parameters
    ----------
    input : ndarray
        Predictions, any shape, float32 or float64.
    target : ndarray, shape of input
        Targets, of the input's dtype.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": the per-element losses, input's shape.  "sum": their sum.
        "mean": the sum divided by the number of elements (NaN when there
        are none).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        Per element ``log(cosh(input - target))``, reduced.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``.

    Notes
    -----
    For |d| <= 1 the kernels use ``log1p(2 sinh(d/2)**2)`` (exact rewrite of
    cosh(d) - 1, full relative accuracy near 0), beyond it
    ``|d| + log1p(exp(-2|d|)) - log 2``, which never overflows:
    ``log_cosh_loss(1000, 0) == 1000 - log 2``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> import math
    >>> float(fastdl.log_cosh_loss(np.array([1000.]), np.array([0.]))) == 1000 - math.log(2)
    True
    """
    return _forward(_loss_args("log_cosh_loss", input, target, reduction), backend)


def log_cosh_loss_backward(grad_output, input, target, *, reduction="mean", out=None,
                           backend=None):
    """Gradient of :func:`log_cosh_loss` with respect to ``input``.

    Parameters
    ----------
    grad_output : float or ndarray
        Gradient of the objective with respect to the loss: a scalar for
        "mean"/"sum", a scalar or an array of the input's shape for "none".
    input, target : ndarray
        As for :func:`log_cosh_loss`.
    reduction : str, default "mean"
        As for :func:`log_cosh_loss`.
    out : ndarray, optional
        Buffer of the input's shape and dtype; may be ``input`` (in place).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dinput : ndarray, shape of input
        ``tanh(input - target)``, times ``grad_output`` (divided by the element count for "mean").

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``, a ``grad_output`` of
        the wrong shape, a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.log_cosh_loss_backward(1.0, np.array([0., 1000.]), np.zeros(2), reduction='sum')
    array([0., 1.])
    """
    a = _loss_args("log_cosh_loss", input, target, reduction)
    return _backward(a, grad_output, out, backend)


def log_cosh_loss_with_grad(input, target, *, reduction="mean", out=None, backend=None):
    """Loss and gradient of :func:`log_cosh_loss` in one call.

    Takes the arguments of :func:`log_cosh_loss`, plus ``out`` (a buffer for the
    gradient, may be ``input``).  Returns ``(loss, dinput)``, the
    gradient being that of ``loss`` (of ``loss.sum()`` for "none").

    Parameters
    ----------
    input, target : ndarray
        As for :func:`log_cosh_loss`.
    reduction : str, default "mean"
        As for :func:`log_cosh_loss`.
    out : ndarray, optional
        Buffer for the gradient, of the input's shape and dtype; may be
        ``input`` (overwritten with the gradient).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        As :func:`log_cosh_loss` returns it.
    dinput : ndarray, shape of input
        As :func:`log_cosh_loss_backward` returns it for ``grad_output=1``.
    """
    return _with_grad(_loss_args("log_cosh_loss", input, target, reduction), out, backend)


def _kl_args(input, target, reduction, log_target):
    return _loss_args("kl_div", input, target, reduction,
                      options=(1.0 if log_target else 0.0,))


def kl_div(input, target, *, reduction="mean", log_target=False, backend=None):
    """Kullback-Leibler divergence ``KL(target || exp(input))`` (PyTorch ``kl_div``).

    Parameters
    ----------
    input : ndarray
        Predictions, any shape, float32 or float64.
    target : ndarray, shape of input
        Targets, of the input's dtype.
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
        As below; "batchmean" divides the sum by ``input.shape[0]`` (by 1
        for a 0-d input), which is the true KL divergence per sample.
        PyTorch's default "mean" divides by the element count instead.
    log_target : bool, default False
        Whether ``target`` holds log-probabilities.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        Per element ``p * (log p - input)`` (``exp(t) * (t - input)`` with
        ``log_target``), reduced.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``.

    Notes
    -----
    ``input`` holds log-probabilities log q.  A zero target contributes 0
    (PyTorch's ``xlogy`` rule ``0 * log 0 = 0``), except that ``0 * input`` is
    NaN where input is -inf or NaN, as in PyTorch.  KL(p || q) >= 0 with
    equality iff p == q (Gibbs' inequality; Cover & Thomas, *Elements of
    Information Theory*, 2nd ed., Thm. 2.6.3).

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> p = np.array([[0.5, 0.5]]); logq = np.log([[0.25, 0.75]])
    >>> round(float(fastdl.kl_div(logq, p, reduction='batchmean')), 6)
    0.143841
    """
    return _forward(_kl_args(input, target, reduction, log_target), backend)


def kl_div_backward(grad_output, input, target, *, reduction="mean", log_target=False,
                    out=None, backend=None):
    """Gradient of :func:`kl_div` with respect to ``input``.

    Parameters
    ----------
    grad_output : float or ndarray
        Gradient of the objective with respect to the loss: a scalar for
        "mean"/"sum", a scalar or an array of the input's shape for "none".
    input, target : ndarray
        As for :func:`kl_div`.
    reduction : str, default "mean"
        As for :func:`kl_div`.
    log_target : bool, default False
        Whether ``target`` holds log-probabilities.
    out : ndarray, optional
        Buffer of the input's shape and dtype; may be ``input`` (in place).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dinput : ndarray, shape of input
        ``-target`` (``-exp(target)`` with ``log_target``), times ``grad_output`` (divided by
        the element count for "mean").

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``, a ``grad_output`` of
        the wrong shape, a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.kl_div_backward(1.0, np.log([0.25, 0.75]), np.array([0.5, 0.5]), reduction='sum')
    array([-0.5, -0.5])
    """
    return _backward(_kl_args(input, target, reduction, log_target), grad_output, out, backend)


def kl_div_with_grad(input, target, *, reduction="mean", log_target=False, out=None,
                     backend=None):
    """Loss and gradient of :func:`kl_div` in one call.

    Takes the arguments of :func:`kl_div`, plus ``out`` (a buffer for the
    gradient, may be ``input``).  Returns ``(loss, dinput)``, the
    gradient being that of ``loss`` (of ``loss.sum()`` for "none").

    Parameters
    ----------
    input, target : ndarray
        As for :func:`kl_div`.
    reduction : str, default "mean"
        As for :func:`kl_div`.
    log_target : bool, default False
        Whether ``target`` holds log-probabilities.
    out : ndarray, optional
        Buffer for the gradient, of the input's shape and dtype; may be
        ``input`` (overwritten with the gradient).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        As :func:`kl_div` returns it.
    dinput : ndarray, shape of input
        As :func:`kl_div_backward` returns it for ``grad_output=1``.
    """
    return _with_grad(_kl_args(input, target, reduction, log_target), out, backend)


def _bce_args(logits, target, weight, pos_weight, reduction):
    return _loss_args("binary_cross_entropy_with_logits", logits, target, reduction,
                      extra=(("weight", weight), ("pos_weight", pos_weight)))


def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None,
                                     reduction="mean", backend=None):
    """Binary cross-entropy on logits (PyTorch ``binary_cross_entropy_with_logits``).

    Parameters
    ----------
    logits : ndarray
        Predictions, any shape, float32 or float64.
    target : ndarray, shape of input
        Targets, of the input's dtype.
    weight : ndarray, optional
        Per-element rescaling, broadcastable to the input's shape.
    pos_weight : ndarray, optional
        Weight of the positive term, broadcastable to the input's shape
        (typically (C,) for input (N, C)).
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": the per-element losses, input's shape.  "sum": their sum.
        "mean": the sum divided by the number of elements (NaN when there
        are none).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        Per element ``-w (pw t log sigma(x) + (1 - t) log sigma(-x))``, reduced.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``,
        ``weight``/``pos_weight`` that do not broadcast.

    Notes
    -----
    Computed as ``w ((1 - t) x + (1 + (pw - 1) t) softplus(-x))`` with the
    overflow-free softplus, i.e. ``log sigma(x) = -softplus(-x)``: finite for
    every finite logit (a logit of -1000 with target 1 costs 1000, not inf).
    ``logits`` is the first positional argument (PyTorch calls it ``input``).

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> float(fastdl.binary_cross_entropy_with_logits(np.array([-1000.]), np.array([1.])))
    1000.0
    """
    return _forward(_bce_args(logits, target, weight, pos_weight, reduction), backend)


def binary_cross_entropy_with_logits_backward(grad_output, logits, target, *, weight=None,
                                              pos_weight=None, reduction="mean", out=None,
                                              backend=None):
    """Gradient of :func:`binary_cross_entropy_with_logits` with respect to ``logits``.

    Parameters
    ----------
    grad_output : float or ndarray
        Gradient of the objective with respect to the loss: a scalar for
        "mean"/"sum", a scalar or an array of the input's shape for "none".
    logits, target : ndarray
        As for :func:`binary_cross_entropy_with_logits`.
    weight : ndarray, optional
        Per-element rescaling, broadcastable to the input's shape.
    pos_weight : ndarray, optional
        Weight of the positive term, broadcastable to the input's shape
        (typically (C,) for input (N, C)).
    reduction : str, default "mean"
        As for :func:`binary_cross_entropy_with_logits`.
    out : ndarray, optional
        Buffer of the input's shape and dtype; may be ``input`` (in place).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dinput : ndarray, shape of input
        ``w ((1 - t) - (1 + (pw - 1) t) sigma(-x))`` (``w (sigma(x) - t)`` without pos_weight),
        times ``grad_output`` (divided by the element count for "mean").

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        ``input`` and ``target`` shapes differ, an unknown ``reduction``,
        ``weight``/``pos_weight`` that do not broadcast, a ``grad_output`` of the wrong shape, a
        wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.binary_cross_entropy_with_logits_backward(1.0, np.zeros(2), np.array([0., 1.]))
    array([ 0.25, -0.25])
    """
    a = _bce_args(logits, target, weight, pos_weight, reduction)
    return _backward(a, grad_output, out, backend)


def binary_cross_entropy_with_logits_with_grad(logits, target, *, weight=None,
                                               pos_weight=None, reduction="mean", out=None,
                                               backend=None):
    """Loss and gradient of :func:`binary_cross_entropy_with_logits` in one call.

    Takes the arguments of :func:`binary_cross_entropy_with_logits`, plus ``out`` (a buffer for the
    gradient, may be ``logits``).  Returns ``(loss, dlogits)``, the
    gradient being that of ``loss`` (of ``loss.sum()`` for "none").

    Parameters
    ----------
    logits, target : ndarray
        As for :func:`binary_cross_entropy_with_logits`.
    weight : ndarray, optional
        Per-element rescaling, broadcastable to the input's shape.
    pos_weight : ndarray, optional
        Weight of the positive term, broadcastable to the input's shape
        (typically (C,) for input (N, C)).
    reduction : str, default "mean"
        As for :func:`binary_cross_entropy_with_logits`.
    out : ndarray, optional
        Buffer for the gradient, of the input's shape and dtype; may be
        ``logits`` (overwritten with the gradient).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the input's dtype, or ndarray of the input's shape for "none"
        As :func:`binary_cross_entropy_with_logits` returns it.
    dlogits : ndarray, shape of logits
        As :func:`binary_cross_entropy_with_logits_backward` returns it for ``grad_output=1``.
    """
    return _with_grad(_bce_args(logits, target, weight, pos_weight, reduction), out, backend)


# ---------------------------------------------------------------------------
# entropy
# ---------------------------------------------------------------------------

def entropy(p, axis=-1, *, backend=None):
    """Shannon entropy ``-sum(p * log(p), axis)`` in nats.

    Parameters
    ----------
    p : ndarray
        Probabilities (not checked to sum to 1), any shape with ndim >= 1,
        float32 or float64.
    axis : int, default -1
        The axis the distribution runs along.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    h : ndarray or scalar of p's dtype
        ``p``'s shape without ``axis``; a NumPy scalar for 1-D ``p``.

    Raises
    ------
    TypeError
        Unsupported dtype.
    ValueError
        ``axis`` out of range, or a 0-d ``p``.

    Notes
    -----
    ``0 * log(0)`` is taken as its limit 0, so a deterministic distribution
    has entropy 0; negative entries give NaN.  Sums are in float64.  Divide
    by ``log(2)`` for bits.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> round(float(fastdl.entropy(np.array([0.5, 0.5]))), 6)  # log 2: a fair coin
    0.693147
    >>> float(fastdl.entropy(np.array([1., 0.])))
    0.0
    """
    p = float_array(p, "p")
    if p.ndim == 0:
        raise ValueError("entropy needs p with at least one axis, got a 0-d array")
    ax = normalize_axis(axis, p.ndim)
    moved = np.moveaxis(p, ax, -1)
    kept = moved.shape[:-1]
    mat = np.ascontiguousarray(moved).reshape(math.prod(kept), moved.shape[-1])
    out = np.empty(mat.shape[0], p.dtype)
    kernels("entropy", backend).entropy(mat, out)
    out = out.reshape(kept)
    return out[()] if out.ndim == 0 else out
