"""The core functional API: affine, the softmax family and cross-entropy.

Each public function validates and converts its inputs, allocates the result
and hands C-contiguous 2-D arrays to the kernel of the backend in force (see
:mod:`fastdl.backends` for that contract).  Nothing unchecked reaches a kernel.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from . import _config
from ._backend import resolve
from ._validate import (
    fast_out,
    plain,
    plain_float,
    c_contiguous,
    check_out,
    check_reduction,
    float_array,
    float_arrays_alike,
    kernel_buffer,
    normalize_axis,
    same_dtype,
)

__all__ = [
    "affine_forward",
    "affine_backward",
    "logsumexp",
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "cross_entropy_with_grad",
]


# --------------------------------------------------------------------------
# affine
# --------------------------------------------------------------------------

def _affine_shapes(x, W):
    if W.ndim != 2:
        raise ValueError(f"W must be (out_features, in_features), got shape {W.shape}")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must be (N, in_features) or (in_features,), got shape {x.shape}")
    if x.shape[-1] != W.shape[1]:
        raise ValueError(
            f"x has shape {x.shape} and W has shape {W.shape}: x's last "
            f"dimension must equal W's in_features ({W.shape[1]})"
        )


def affine_forward(x, W, b=None, *, out=None, backend=None):
    """Fully connected layer: ``x @ W.T + b``.

    Parameters
    ----------
    x : ndarray, shape (N, D) or (D,)
        Inputs, float32 or float64.
    W : ndarray, shape (H, D)
        Weights, out_features × in_features as in PyTorch's ``nn.Linear``.
    b : ndarray, shape (H,), optional
        Bias; omitted means no bias.
    out : ndarray, shape (N, H) or (H,), optional
        Buffer for the result (exact shape and dtype).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape (N, H) or (H,)

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        Inconsistent shapes, or a wrong ``out``.

    Notes
    -----
    The product runs in BLAS; the bias add is a separate streaming pass in
    the compiled backends, which costs little next to the GEMM.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> x = np.ones((2, 3)); W = np.arange(6.).reshape(2, 3); b = np.array([1., -1.])
    >>> fastdl.affine_forward(x, W, b)
    array([[ 4., 11.],
           [ 4., 11.]])
    """
    # Fast path (see fastdl._validate): 2-D contiguous inputs of one dtype.
    dt = plain_float(x)
    if (dt is not None and x.ndim == 2 and plain(W, dt) and W.ndim == 2
            and x.shape[1] == W.shape[1]
            and (b is None or (plain(b, dt) and b.shape == (W.shape[0],)))):
        shape = (x.shape[0], W.shape[0])
        buf = np.empty(shape, dt) if out is None else fast_out(out, shape, dt, (x, W, b))
        if buf is not None:
            resolve("affine_forward", backend).affine_forward(x, W, b, buf)
            return buf
    x = float_array(x, "x")
    W = float_array(W, "W")
    named = [("x", x), ("W", W)]
    if b is not None:
        b = float_array(b, "b")
        named.append(("b", b))
    dtype = same_dtype(*named)
    _affine_shapes(x, W)
    H = W.shape[0]
    if b is not None and b.shape != (H,):
        raise ValueError(f"b has shape {b.shape}; W has shape {W.shape}, so b must be ({H},)")
    x2 = c_contiguous(x.reshape(1, -1) if x.ndim == 1 else x)
    shape = (x2.shape[0], H)
    result_shape = (H,) if x.ndim == 1 else shape
    if out is not None:
        check_out(out, result_shape, dtype)
    W = c_contiguous(W)
    b = None if b is None else c_contiguous(b)
    target = None if out is None or not out.flags.c_contiguous else out.reshape(shape)
    buf = kernel_buffer(target, shape, dtype, others=[x2, W] + ([] if b is None else [b]))
    resolve("affine_forward", backend).affine_forward(x2, W, b, buf)
    if out is None:
        return buf.reshape(result_shape)
    if buf is not target:
        out[...] = buf.reshape(result_shape)
    return out


def affine_backward(dy, x, W, *, bias=True, input_grad=True, out=None, backend=None):
    """Gradients of :func:`affine_forward`.

    Parameters
    ----------
    dy : ndarray, shape (N, H) or (H,)
        Gradient of the loss with respect to the layer's output.
    x : ndarray, shape (N, D) or (D,)
        The forward input.
    W : ndarray, shape (H, D)
        The weights.
    bias : bool, default True
        Whether to return the bias gradient.
    input_grad : bool, default True
        Whether to compute ``dx``.  The first layer of a network needs no
        input gradient; False skips its GEMM (as PyTorch does for inputs
        that do not require grad) and returns None for ``dx``.
    out : tuple (dx, dW, db) of ndarray, optional
        Buffers for the three results (exact shapes and dtype; ``db`` is
        None when ``bias=False``, ``dx`` may be None), e.g. a layer's
        gradient arrays, so a training step allocates nothing.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x, or None
        ``dy @ W``; None when ``input_grad=False``.
    dW : ndarray, shape (H, D)
        ``dy.T @ x``.
    db : ndarray, shape (H,), or None
        ``dy.sum(0)``; None when ``bias=False``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Inconsistent shapes, or a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> dx, dW, db = fastdl.affine_backward(np.ones((4, 2)), np.ones((4, 3)), np.ones((2, 3)))
    >>> dx.shape, dW.shape, db
    ((4, 3), (2, 3), array([4., 4.]))
    """
    input_grad = bool(input_grad)
    # Fast path (see fastdl._validate): 2-D contiguous arrays of one dtype.
    dt = plain_float(x)
    if (dt is not None and x.ndim == 2 and plain(W, dt) and W.ndim == 2
            and plain(dy, dt) and dy.shape == (x.shape[0], W.shape[0])
            and x.shape[1] == W.shape[1]):
        bufs = _affine_backward_fast_bufs(dy, x, W, bool(bias), input_grad, out, dt)
        if bufs is not None:
            resolve("affine_backward", backend).affine_backward(dy, x, W, *bufs)
            return bufs
    dy = float_array(dy, "dy")
    x = float_array(x, "x")
    W = float_array(W, "W")
    dtype = same_dtype(("dy", dy), ("x", x), ("W", W))
    _affine_shapes(x, W)
    H, D = W.shape
    expected_dy = (H,) if x.ndim == 1 else (x.shape[0], H)
    if dy.shape != expected_dy:
        raise ValueError(
            f"dy has shape {dy.shape}; with x {x.shape} and W {W.shape} it must be {expected_dy}"
        )
    dy2 = c_contiguous(dy.reshape(1, -1) if dy.ndim == 1 else dy)
    x2 = c_contiguous(x.reshape(1, -1) if x.ndim == 1 else x)
    W = c_contiguous(W)
    shapes = [(x.shape, x2.shape), ((H, D), (H, D)), ((H,), (H,))]
    if out is None:
        outs = [None, None, None]
    else:
        _check_affine_out(out, bias)
        outs = list(out)
        for name, o, (shape, _) in zip(("dx", "dW", "db"), outs, shapes):
            if o is not None:
                check_out(o, shape, dtype, f"out {name}")
    targets = [None if o is None or not o.flags.c_contiguous else o.reshape(kshape)
               for o, (_, kshape) in zip(outs, shapes)]
    dx, dW, db = [kernel_buffer(t, kshape, dtype, others=[dy2, x2, W])
                  for t, (_, kshape) in zip(targets, shapes)]
    if not bias:
        db = None
    if not input_grad:
        dx = outs[0] = None
    resolve("affine_backward", backend).affine_backward(dy2, x2, W, dx, dW, db)
    results = []
    for o, t, buf, (shape, _) in zip(outs, targets, (dx, dW, db), shapes):
        if o is not None and buf is not t:
            o[...] = buf.reshape(shape)
        results.append(o if o is not None else None if buf is None else buf.reshape(shape))
    return tuple(results)


def _check_affine_out(out, bias):
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError("out must be a tuple (dx, dW, db)")
    if (out[2] is None) == bool(bias):
        raise ValueError("out's db must be None exactly when bias=False")


def _affine_backward_fast_bufs(dy, x, W, bias, input_grad, out, dt):
    """(dx, dW, db) the kernel can write directly, or None for the general path."""
    inputs = (dy, x, W)
    shapes = (x.shape, W.shape, (W.shape[0],))
    wanted = (input_grad, True, bias)
    if out is None:
        return tuple(np.empty(s, dt) if w else None for s, w in zip(shapes, wanted))
    _check_affine_out(out, bias)
    bufs = []
    for o, s, w in zip(out, shapes, wanted):
        if not w:
            bufs.append(None)
            continue
        b = np.empty(s, dt) if o is None else fast_out(o, s, dt, inputs)
        if b is None:
            return None
        bufs.append(b)
    if bufs[2] is not None and (np.may_share_memory(bufs[2], bufs[1])
                                or bufs[0] is not None
                                and np.may_share_memory(bufs[2], bufs[0])):
        return None
    if bufs[0] is not None and np.may_share_memory(bufs[0], bufs[1]):
        return None
    return tuple(bufs)


# --------------------------------------------------------------------------
# softmax family
# --------------------------------------------------------------------------

def _rows(a, axis):
    """``a`` with ``axis`` moved last (C-contiguous), and the axis index."""
    if a.ndim == 0:
        a = a.reshape(1)
    axis = normalize_axis(axis, a.ndim)
    moved = a if axis == a.ndim - 1 else np.moveaxis(a, axis, -1)
    return c_contiguous(moved), axis


def _as_matrix(a):
    """The C-contiguous ``a`` viewed as (rows, last axis)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _fast_rows(x, y, axis, out):
    """The output buffer of a row kernel's common case, or None.

    The case (see fastdl._validate): ``x`` (and ``y`` unless None) a
    C-contiguous 2-D float ndarray (of one dtype and shape), reduced along
    the last axis (``axis`` the int -1 or 1), ``out`` absent (a new array
    is returned) or a separate buffer :func:`fast_out` accepts.  Anything
    else returns None: the general path (:func:`_rowwise`) runs, with its
    errors.
    """
    if type(axis) is not int or (axis != -1 and axis != 1):
        return None
    dt = plain_float(x)
    if dt is None or x.ndim != 2:
        return None
    if y is not None and not (plain(y, dt) and y.shape == x.shape):
        return None
    if out is None:
        return np.empty(x.shape, dt)
    return fast_out(out, x.shape, dt, (x, y))


def _rowwise(kernel_name, inputs, axis, out, backend):
    """Run a row kernel on ``inputs`` (name, array pairs) along ``axis``.

    The general path of the row functions (after :func:`_fast_rows`).  The
    kernel's output may be any of its inputs (in place).
    """
    named, dtype, shape = float_arrays_alike(inputs)
    moved = []
    for _, a in named:
        m, ax = _rows(a, axis)
        moved.append(m)
    target = None
    if out is not None:
        check_out(out, shape, dtype)
        o = out.reshape(1) if out.ndim == 0 else out
        target = o if ax == o.ndim - 1 else np.moveaxis(o, ax, -1)
    buf = kernel_buffer(target, moved[0].shape, dtype, may_alias=moved)
    kernel = getattr(resolve(kernel_name, backend), kernel_name)
    kernel(*[_as_matrix(m) for m in moved], _as_matrix(buf))
    if out is None:
        result = buf if ax == buf.ndim - 1 else np.moveaxis(buf, -1, ax)
        return result.reshape(shape)
    if buf is not target:
        target[...] = buf
    return out


def softmax(x, axis=-1, *, out=None, backend=None):
    """Numerically stable softmax along ``axis``.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    axis : int, default -1
        The axis the probabilities sum over.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``exp(x - max) / sum(exp(x - max))``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        ``axis`` out of range, or a wrong ``out`` shape.

    Notes
    -----
    Subtracting the row max makes every exponent ≤ 0, so nothing overflows
    and the largest term is exactly 1.  Sums accumulate in float64.  A slice
    that is all -inf, or holds +inf, gives NaN (as in PyTorch); NaN
    propagates.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.softmax(np.array([0., np.log(3.)]))
    array([0.25, 0.75])
    """
    buf = _fast_rows(x, None, axis, out)
    if buf is not None:
        resolve("softmax", backend).softmax(x, buf)
        return buf
    return _rowwise("softmax", [("x", x)], axis, out, backend)


def log_softmax(x, axis=-1, *, out=None, backend=None):
    """Numerically stable log-softmax along ``axis``.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    axis : int, default -1
        The axis of the normalisation.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``(x - max) - log(sum(exp(x - max)))``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        ``axis`` out of range, or a wrong ``out`` shape.

    Notes
    -----
    The shift by the max is subtracted before the log term, so the largest
    entry's result is exactly ``-log(sum)`` and huge offsets are exact:
    ``log_softmax([1000, 1, 0]) == [0, -999, -1000]``.  All -inf or +inf
    slices give NaN; NaN propagates.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.log_softmax(np.array([1000., 1., 0.]))
    array([    0.,  -999., -1000.])
    """
    buf = _fast_rows(x, None, axis, out)
    if buf is not None:
        resolve("log_softmax", backend).log_softmax(x, buf)
        return buf
    return _rowwise("log_softmax", [("x", x)], axis, out, backend)


def softmax_backward(dy, y, axis=-1, *, out=None, backend=None):
    """Gradient of :func:`softmax` given its output.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``y``.
    y : ndarray, shape of dy
        The softmax output.
    axis : int, default -1
        The softmax axis.
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``y``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray
        ``y * (dy - sum(dy * y, axis, keepdims=True))``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        Shapes of ``dy`` and ``y`` differ, ``axis`` out of range, or a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.softmax_backward(np.array([1., 0.]), np.array([0.5, 0.5]))
    array([ 0.25, -0.25])
    """
    buf = _fast_rows(dy, y, axis, out)
    if buf is not None:
        resolve("softmax_backward", backend).softmax_backward(dy, y, buf)
        return buf
    return _rowwise("softmax_backward", [("dy", dy), ("y", y)], axis, out, backend)


def log_softmax_backward(dy, y, axis=-1, *, out=None, backend=None):
    """Gradient of :func:`log_softmax` given its output.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``y``.
    y : ndarray, shape of dy
        The log_softmax output.
    axis : int, default -1
        The log_softmax axis.
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``y``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray
        ``dy - exp(y) * sum(dy, axis, keepdims=True)``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes.
    ValueError
        Shapes of ``dy`` and ``y`` differ, ``axis`` out of range, or a wrong ``out``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.log_softmax_backward(np.array([1., 0.]), np.log([0.5, 0.5]))
    array([ 0.5, -0.5])
    """
    buf = _fast_rows(dy, y, axis, out)
    if buf is not None:
        resolve("log_softmax_backward", backend).log_softmax_backward(dy, y, buf)
        return buf
    return _rowwise("log_softmax_backward", [("dy", dy), ("y", y)], axis, out, backend)


def _reduced_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        axes = tuple(normalize_axis(a, ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in {axis!r}")
        return axes
    return (normalize_axis(axis, ndim),)


def logsumexp(x, axis=-1, *, keepdims=False, backend=None):
    """Numerically stable ``log(sum(exp(x), axis))``.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    axis : int, tuple of int or None, default -1
        Axis or axes to reduce; None reduces everything.
    keepdims : bool, default False
        Keep the reduced axes with length 1.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    lse : ndarray or scalar of x's dtype

    Raises
    ------
    TypeError
        Unsupported dtype.
    ValueError
        ``axis`` out of range or repeated.

    Notes
    -----
    ``m + log(sum(exp(x - m)))`` with ``m`` the max, accumulated in float64.
    As in SciPy: an all -inf slice gives -inf, a slice holding +inf gives
    +inf, an empty slice gives -inf, NaN propagates.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> round(float(fastdl.logsumexp(np.array([1000., 1000.])) - 1000.), 6)  # log(2)
    0.693147
    """
    dt = plain_float(x)
    if dt is not None and x.ndim == 2 and type(axis) is int and (axis == -1 or axis == 1) \
            and not keepdims:  # the fast path (see fastdl._validate)
        res = np.empty(x.shape[0], dt)
        resolve("logsumexp", backend).logsumexp(x, res)
        return res
    x = float_array(x, "x")
    axes = _reduced_axes(axis, x.ndim)
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, kept + list(axes))
    kept_shape = tuple(x.shape[a] for a in kept)
    M = math.prod(kept_shape)
    C = math.prod(x.shape[a] for a in axes)
    mat = c_contiguous(moved).reshape(M, C)
    res = np.empty(M, x.dtype)
    resolve("logsumexp", backend).logsumexp(mat, res)
    if keepdims:
        res = res.reshape(tuple(1 if a in axes else n for a, n in enumerate(x.shape)))
    else:
        res = res.reshape(kept_shape)
    return res[()] if res.ndim == 0 else res


# --------------------------------------------------------------------------
# cross-entropy
# --------------------------------------------------------------------------

class _CEArgs:
    """Validated cross-entropy arguments, shaped for the kernels.

    Made by :func:`_ce_args`, the one validator; the public functions then
    run one kernel call on them (:func:`_ce_run`).  ``valid`` is the mask
    of the class-index rows that count, or None when every row does (and
    for probability targets).
    """

    __slots__ = ("logits", "target", "weight", "kind", "squeeze", "dtype", "n",
                 "n_classes", "ignore_index", "eps", "reduction", "valid",
                 "shape", "axis", "rows_shape")


def _class_axis(logits, axis):
    """The class axis of ``logits`` (PyTorch's by default: 0 for (C,), else 1)."""
    if axis is None:
        return 0 if logits.ndim == 1 else 1
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer or None, got {axis!r}") from None
    if not -logits.ndim <= axis < logits.ndim:
        raise np.exceptions.AxisError(axis, logits.ndim)
    return axis % logits.ndim


def _ce_args(logits, target, weight, ignore_index, reduction, label_smoothing, axis=None):
    a = _CEArgs()
    logits = float_array(logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have a class axis, got a 0-d array")
    a.squeeze = logits.ndim == 1
    a.dtype = logits.dtype
    a.shape = logits.shape
    a.axis = _class_axis(logits, axis)
    # The kernels read rows of classes: K-dimensional logits (N, C, d1, ..., dk)
    # become (N*d1*...*dk, C) rows with the class axis moved last (one copy
    # unless it already is last, as for (N, C) or an (N, L, C) with axis=-1).
    a.rows_shape = logits.shape[:a.axis] + logits.shape[a.axis + 1:]
    if a.squeeze:
        mat = logits.reshape(1, -1)
    else:
        mat = np.moveaxis(logits, a.axis, -1).reshape(math.prod(a.rows_shape),
                                                        logits.shape[a.axis])
    a.n, a.n_classes = mat.shape
    a.reduction = check_reduction(reduction)
    try:
        a.ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    a.eps = eps

    t = np.asarray(target)
    if t.dtype.kind in "iu":
        a.kind = "index"
        if t.shape != a.rows_shape:
            raise ValueError(
                f"class-index target has shape {t.shape}; logits {logits.shape} need "
                f"{a.rows_shape} (the logits' shape without the class axis {a.axis})"
            )
        t = t.reshape(a.n)
        # Range check in the target's own dtype (a uint64 could wrap in int64).
        valid = t != a.ignore_index
        bad = valid & ((t < 0) | (t >= a.n_classes))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise IndexError(
                f"target {t[first]} (row {first}) is out of bounds for "
                f"{a.n_classes} classes; valid labels are 0..{a.n_classes - 1} "
                f"or ignore_index={a.ignore_index}"
            )
        # The kernels compare int64 labels with an int64 ignore_index.  An
        # ignore_index outside int64 (e.g. 2**70, or 2**64 - 1 matching a
        # uint64 label) would overflow there, so every ignored row gets a
        # label the kernels read as ignored: ignore_index itself when it
        # fits, else -1 (no valid label is negative).
        kernel_ignore = a.ignore_index if -2**63 <= a.ignore_index < 2**63 else -1
        target64 = c_contiguous(t, np.int64)
        if kernel_ignore != a.ignore_index and not valid.all():
            target64 = np.where(valid, target64, kernel_ignore)
        a.target = c_contiguous(target64)
        a.ignore_index = kernel_ignore
        a.valid = None if valid.all() else valid
    elif t.dtype.kind == "f":
        a.kind = "prob"
        # The shape first: a float target of another shape is most likely
        # float class labels, and cannot be valid whatever its dtype.
        if t.shape != logits.shape:
            if a.squeeze:
                indices, example = "an integer", "int(target)"
            else:
                indices, example = (f"an integer array of shape {a.rows_shape}",
                                    "target.astype(np.int64)")
            raise ValueError(
                f"target is a float array of shape {t.shape}; float targets are read as "
                f"class probabilities, which must have the logits' shape {logits.shape}; "
                f"class indices must be {indices} (e.g. {example})"
            )
        t = float_array(t, "target")
        same_dtype(("logits", logits), ("target", t))
        a.target = c_contiguous(np.moveaxis(t, a.axis, -1).reshape(mat.shape))
        a.valid = None
    else:
        raise TypeError(
            f"target has dtype {t.dtype}; use integer class indices or float32/float64 "
            "probabilities with the logits' shape"
        )

    if weight is not None:
        weight = float_array(weight, "weight")
        same_dtype(("logits", logits), ("weight", weight))
        if weight.shape != (a.n_classes,):
            raise ValueError(
                f"weight has shape {weight.shape}; logits {logits.shape} need ({a.n_classes},)"
            )
        weight = c_contiguous(weight)
    a.weight = weight
    a.logits = c_contiguous(mat)
    return a


_I64 = np.dtype(np.int64)
_ndarray = np.ndarray
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _ce_fast(logits, target, ignore_index, reduction, label_smoothing, out, backend,
             want_grad):
    """:func:`cross_entropy` (``want_grad=False``) or
    :func:`cross_entropy_with_grad` for the common case, or None.

    The backend's ``cross_entropy_index_fast`` kernel (see
    :mod:`fastdl.backends`) recognises the case, runs it and sums it in one
    call; this passes it only what its contract asks the caller to have
    checked: real ndarrays (an array-like's attributes of the same names
    need not mean the same; array-likes go to the full checks'
    ``np.asarray``), an int ``ignore_index`` of int64's range and a float
    ``label_smoothing`` in [0, 1].  None means "not the common case": the
    full checks (:func:`_ce_args`) run, with their errors.
    """
    if type(logits) is not _ndarray or type(target) is not _ndarray:
        return None
    if type(ignore_index) is not int or not _I64_MIN <= ignore_index <= _I64_MAX:
        return None
    if type(label_smoothing) is not float and type(label_smoothing) is not int:
        return None
    if not 0.0 <= label_smoothing <= 1.0:
        return None
    return resolve("cross_entropy", backend).cross_entropy_index_fast(
        logits, target, ignore_index, float(label_smoothing), reduction == "mean", out,
        want_grad)


def _ce_denominator(a):
    """What "mean" divides by: the summed weight of the rows that count."""
    if a.kind == "prob":
        return float(a.n)
    if a.weight is None:
        return float(a.n if a.valid is None else np.count_nonzero(a.valid))
    t = a.target if a.valid is None else a.target[a.valid]
    return float(np.sum(a.weight[t], dtype=np.float64))


def _ce_run(a, scale, grad, backend):
    """The one kernel call: per-row losses (float64, (N,)) and their exact
    sum when the kernel gives it (else None); fills ``grad`` if given."""
    loss = np.empty(a.n, np.float64)
    kernels = resolve("cross_entropy", backend)
    if a.kind == "index":
        total = kernels.cross_entropy_index(a.logits, a.target, a.weight, a.ignore_index,
                                            a.eps, scale, loss, grad)
    else:
        total = kernels.cross_entropy_prob(a.logits, a.target, a.weight, a.eps, scale,
                                           loss, grad)
    return loss, total


# A NumPy scalar of a float dtype from a Python float: np.float32(v) costs
# 0.23 us, a weak-scalar product with 1 (NumPy 2's promotion keeps float32,
# the same rounding of v) 0.05 us.  NumPy 1's value-based promotion would
# give a float64 there, so it keeps the constructor.
_ONE = {dt: dt.type(1.0) for dt in (np.dtype(np.float32), np.dtype(np.float64))}
if type(_ONE[np.dtype(np.float32)] * 0.1) is not np.float32:  # pragma: no cover - NumPy 1
    _ONE = {dt: None for dt in _ONE}


def _scalar(dtype, value):
    one = _ONE[dtype]
    return dtype.type(value) if one is None else one * value


def _ce_reduce(a, loss, total, denom):
    """The loss the public functions return: per row ("none"), or the sum
    (``total`` when the kernel gave it, else summed here) or the mean."""
    if a.reduction == "none":
        return a.dtype.type(loss[0]) if a.squeeze else loss.astype(a.dtype).reshape(a.rows_shape)
    if total is None:
        total = (math.fsum(loss.data) if loss.size < _config.EXACT_SUM_MAX_ROWS
                 else float(np.sum(loss)))
    if a.reduction == "sum":
        return _scalar(a.dtype, total)
    if denom == 0.0:  # an empty or all-ignored batch: NaN (0/0), as PyTorch
        with np.errstate(invalid="ignore", divide="ignore"):
            return a.dtype.type(np.float64(total) / np.float64(denom))
    return _scalar(a.dtype, total / denom)


def _ce_scale(a, grad_output, denom):
    """The per-row gradient multiplier for ``grad_output``: a float when it is
    the same for every row, else a float64 (N,) array."""
    if type(grad_output) is float:
        # The common case (cross_entropy_with_grad passes 1.0); an empty or
        # all-ignored "mean" divides by 0 (every row's gradient is 0 then).
        if a.reduction != "mean":
            return grad_output
        if denom != 0.0:
            return grad_output / denom
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.float64(grad_output) / np.float64(denom))
    g = np.asarray(grad_output)
    if g.dtype.kind not in "fiu" or (g.dtype.kind == "f" and g.dtype not in (np.float32, np.float64)):
        raise TypeError(f"grad_output has dtype {g.dtype}; fastdl supports float32 and float64")
    if isinstance(grad_output, (np.ndarray, np.generic)) and g.dtype.kind == "f" \
            and g.dtype != a.dtype:
        raise TypeError(
            f"logits is {a.dtype} but grad_output is {g.dtype}; "
            "inputs of one call must share one float dtype"
        )
    if a.reduction == "none" and not a.squeeze:
        if g.shape not in ((), a.rows_shape):
            raise ValueError(
                f"grad_output has shape {g.shape}; reduction='none' needs "
                f"{a.rows_shape} or a scalar"
            )
        g = g.reshape(-1) if g.shape else g
    elif g.shape != ():
        raise ValueError(
            f"grad_output has shape {g.shape}; reduction={a.reduction!r} needs a scalar"
        )
    scale = np.empty(a.n, np.float64)
    scale[...] = g
    if a.reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            scale /= denom
    return scale


def _ce_grad_buffer(a, out):
    """The (N, C) buffer the kernel writes the gradient into, and ``out`` as (N, C)."""
    if out is None:
        return np.empty(a.logits.shape, a.dtype), None
    if _class_axis_last(a):
        # The common case: a separate C-contiguous buffer of the right kind.
        buf = fast_out(out, a.logits.shape, a.dtype, (a.logits, a.target, a.weight))
        if buf is not None:
            return buf, buf
    target = None
    check_out(out, a.shape, a.dtype)
    if out.flags.c_contiguous and _class_axis_last(a):
        target = out.reshape(a.logits.shape)
    # The gradient may overwrite the logits (each row is read before it is
    # written), never the target probabilities or the weights.
    others = [x for x in (a.target if a.kind == "prob" else None, a.weight) if x is not None]
    return kernel_buffer(target, a.logits.shape, a.dtype, may_alias=[a.logits], others=others), target


def _class_axis_last(a):
    return a.squeeze or a.axis == len(a.shape) - 1


def _ce_finish_grad(a, out, buf, target):
    if _class_axis_last(a):
        grad = buf if buf.shape == a.shape else buf.reshape(a.shape)
    else:  # rows back to the logits' layout
        moved = a.shape[:a.axis] + a.shape[a.axis + 1:] + (a.n_classes,)
        grad = np.moveaxis(buf.reshape(moved), -1, a.axis)
        if out is None:
            return np.ascontiguousarray(grad)
    if out is None:
        return grad
    if buf is not target:
        out[...] = grad
    return out


def cross_entropy(logits, target, *, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, axis=None, backend=None):
    """Cross-entropy between softmax(logits) and the target (PyTorch semantics).

    Parameters
    ----------
    logits : ndarray, shape (N, C), (C,) or (N, C, d1, ..., dk)
        Unnormalised scores, float32 or float64; the class axis is ``axis``.
    target : ndarray
        Class indices: an integer array of the logits' shape without the
        class axis ((N,) for (N, C) logits, an int for 1-D logits), each in
        ``[0, C)`` or equal to ``ignore_index``.  Or class probabilities: a
        float array of the logits' shape and dtype.  A float array of
        another shape (float class labels) is a ValueError.
    weight : ndarray, shape (C,), optional
        Per-class rescaling weights, of the logits' dtype.
    ignore_index : int, default -100
        Class-index target value that contributes neither loss nor gradient
        nor (for "mean") denominator.  Not used with probability targets.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": per-row losses, shape (N,).  "sum": their sum.  "mean": the
        sum divided by the summed weight ``weight[target]`` of the rows not
        ignored (their count without ``weight``); with probability targets,
        divided by N.  "mean" over an empty or all-ignored batch is NaN,
        "sum" is 0.
    label_smoothing : float in [0, 1], default 0.0
        Mixes the target with the uniform distribution:
        ``(1-ε)·nll + ε/C·Σ_c(-w_c·logp_c)``.
    axis : int, optional
        The class axis.  None (default) is PyTorch's: axis 0 of (C,) logits,
        axis 1 otherwise, so (N, C, d1, ..., dk) logits take (N, d1, ..., dk)
        class indices (segmentation, sequence models).  ``axis=-1`` reads
        (N, d1, ..., dk, C) logits, whose rows the kernels use in place;
        any other class axis costs one transposed copy of the logits (and
        of the gradient).
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the logits' dtype, or for "none" an ndarray of the
        target's shape ((N,) for (N, C) logits)

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, a non-integer ``ignore_index`` or ``axis``.
    ValueError
        Inconsistent shapes, a bad ``reduction`` or ``label_smoothing``.
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index`` (named
        in the message).

    Notes
    -----
    Each row's ``lse = log(sum(exp(logits)))`` is computed stably (max
    shift, float64 sums); the loss of a row is ``w[t] * (lse - logits[t])``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> logits = np.array([[2., 0., 0.], [0., 0., 0.]])
    >>> round(float(fastdl.cross_entropy(logits, np.array([0, 2]))), 6)
    0.669079
    """
    if weight is None and axis is None and (reduction == "mean" or reduction == "sum"):
        fast = _ce_fast(logits, target, ignore_index, reduction, label_smoothing, None,
                        backend, False)
        if fast is not None:
            return fast[0]
    a = _ce_args(logits, target, weight, ignore_index, reduction, label_smoothing, axis)
    loss, total = _ce_run(a, None, None, backend)
    return _ce_reduce(a, loss, total, _ce_denominator(a))


def cross_entropy_backward(logits, target, grad_output=1.0, *, weight=None,
                           ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, axis=None, out=None, backend=None):
    """Gradient of :func:`cross_entropy` with respect to the logits.

    Parameters
    ----------
    logits, target
        As for :func:`cross_entropy`.
    grad_output : float or ndarray, default 1.0
        Gradient of the final objective with respect to the loss: a scalar
        for "mean"/"sum", shape (N,) (or a scalar) for "none".
    weight : ndarray, shape (C,), optional
        Per-class rescaling weights, of the logits' dtype.
    ignore_index : int, default -100
        Class-index target value that contributes neither loss nor gradient
        nor (for "mean") denominator.  Not used with probability targets.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": per-row losses, shape (N,).  "sum": their sum.  "mean": the
        sum divided by the summed weight ``weight[target]`` of the rows not
        ignored (their count without ``weight``); with probability targets,
        divided by N.  "mean" over an empty or all-ignored batch is NaN,
        "sum" is 0.
    label_smoothing : float in [0, 1], default 0.0
        Mixes the target with the uniform distribution:
        ``(1-ε)·nll + ε/C·Σ_c(-w_c·logp_c)``.
    axis : int, optional
        The class axis.  None (default) is PyTorch's: axis 0 of (C,) logits,
        axis 1 otherwise, so (N, C, d1, ..., dk) logits take (N, d1, ..., dk)
        class indices (segmentation, sequence models).  ``axis=-1`` reads
        (N, d1, ..., dk, C) logits, whose rows the kernels use in place;
        any other class axis costs one transposed copy of the logits (and
        of the gradient).
    out : ndarray, optional
        Buffer of the logits' shape and dtype; ``out=logits`` overwrites them.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dlogits : ndarray, shape of logits

    Raises
    ------
    TypeError, ValueError, IndexError
        As for :func:`cross_entropy`; also a ``grad_output`` of the wrong shape.

    Notes
    -----
    For class indices the row gradient is
    ``g·((1-ε)·w_t + ε/C·Σw)·p - g·ε/C·w - g·(1-ε)·w_t·onehot(t)`` with ``p``
    the softmax; for probabilities ``q``, ``g·(p·Σ_c w_c q_c - w·q)``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.cross_entropy_backward(np.zeros((1, 2)), np.array([1]))
    array([[ 0.5, -0.5]])
    """
    a = _ce_args(logits, target, weight, ignore_index, reduction, label_smoothing, axis)
    scale = _ce_scale(a, grad_output, _ce_denominator(a))
    buf, target_buf = _ce_grad_buffer(a, out)
    _ce_run(a, scale, buf, backend)
    return _ce_finish_grad(a, out, buf, target_buf)


def cross_entropy_with_grad(logits, target, *, weight=None, ignore_index=-100,
                            reduction="mean", label_smoothing=0.0, axis=None, out=None,
                            backend=None):
    """Loss and its gradient in one fused pass over the logits.

    Parameters
    ----------
    logits, target
        As for :func:`cross_entropy`.
    weight : ndarray, shape (C,), optional
        Per-class rescaling weights, of the logits' dtype.
    ignore_index : int, default -100
        Class-index target value that contributes neither loss nor gradient
        nor (for "mean") denominator.  Not used with probability targets.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": per-row losses, shape (N,).  "sum": their sum.  "mean": the
        sum divided by the summed weight ``weight[target]`` of the rows not
        ignored (their count without ``weight``); with probability targets,
        divided by N.  "mean" over an empty or all-ignored batch is NaN,
        "sum" is 0.
    label_smoothing : float in [0, 1], default 0.0
        Mixes the target with the uniform distribution:
        ``(1-ε)·nll + ε/C·Σ_c(-w_c·logp_c)``.
    axis : int, optional
        The class axis.  None (default) is PyTorch's: axis 0 of (C,) logits,
        axis 1 otherwise, so (N, C, d1, ..., dk) logits take (N, d1, ..., dk)
        class indices (segmentation, sequence models).  ``axis=-1`` reads
        (N, d1, ..., dk, C) logits, whose rows the kernels use in place;
        any other class axis costs one transposed copy of the logits (and
        of the gradient).
    out : ndarray, optional
        Buffer for the gradient; ``out=logits`` overwrites the logits with
        it, so the step allocates nothing the size of the batch.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    loss : scalar of the logits' dtype, or ndarray (N,) for "none"
        As :func:`cross_entropy` returns.
    dlogits : ndarray, shape of logits
        Gradient of ``loss`` (of ``loss.sum()`` for "none") with respect to
        the logits.

    Raises
    ------
    TypeError, ValueError, IndexError
        As for :func:`cross_entropy`.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> loss, dlogits = fastdl.cross_entropy_with_grad(np.zeros((1, 2)), np.array([1]))
    >>> round(float(loss), 6), dlogits
    (0.693147, array([[ 0.5, -0.5]]))
    """
    if weight is None and axis is None and (reduction == "mean" or reduction == "sum"):
        fast = _ce_fast(logits, target, ignore_index, reduction, label_smoothing, out,
                        backend, True)
        if fast is not None:
            return fast
    a = _ce_args(logits, target, weight, ignore_index, reduction, label_smoothing, axis)
    denom = _ce_denominator(a)
    scale = _ce_scale(a, 1.0, denom)
    buf, target_buf = _ce_grad_buffer(a, out)
    loss, total = _ce_run(a, scale, buf, backend)
    return _ce_reduce(a, loss, total, denom), _ce_finish_grad(a, out, buf, target_buf)


