"""Elementwise activations and their backward passes (the public wrappers).

Each function validates and converts its inputs, flattens them to
C-contiguous 1-D arrays and calls the "elementwise" kernel family of the
backend in force (the contract is in :mod:`fastdl.backends.numpy.elementwise`).
The ops themselves are listed once, in the op table (:mod:`fastdl._ops`).

Shapes: any shape (0-d included) is accepted; the result has the input's
shape and dtype.  A 0-d input without ``out`` gives a NumPy scalar, as a
NumPy ufunc does.  ``dy`` and ``x`` of a backward call must have the same
shape (no broadcasting).
"""

from __future__ import annotations

import math

import numpy as np

from . import _ops
from ._backend import resolve
from ._validate import (
    c_contiguous, check_out, fast_out, float_arrays_alike, kernel_buffer, plain_alike, plain_float,
)

__all__ = [name for op in _ops.of_kind("activation") for name in _ops.public_names(op)]

FAMILY = "elementwise"


def kernels(op, backend):
    """The elementwise-family module that runs ``op`` for ``backend``."""
    return resolve(op, backend, family=FAMILY)


def _finite_float(value, name, *, positive=False, nonzero=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonzero and v == 0:
        raise ValueError(f"{name} must be nonzero, got {value!r}")
    return v


def _flat(a):
    """``a`` as a C-contiguous 1-D array (a view when it already is contiguous)."""
    return c_contiguous(a).reshape(-1)


def _apply(op, named, options, out, backend):
    """Validate ``named`` (name, array) pairs, run kernel ``op`` and shape the result.

    The kernel is called as ``op(*flat_inputs, options, out_flat)``
    (``options``: a tuple of floats); the output may alias any input exactly
    (elementwise kernels read element i before writing it).
    """
    # Fast path (see fastdl._validate): contiguous inputs of one dtype and
    # shape, ``out`` absent or separate from them.
    if len(named) == 1:  # the forward passes: one input, no list to build
        x = named[0][1]
        dt = plain_float(x)
        if dt is not None and x.ndim:
            buf = np.empty(x.shape, dt) if out is None else fast_out(out, x.shape, dt, (x,))
            if buf is not None:
                getattr(kernels(op, backend), op)(x.ravel(), options, buf.ravel())
                return buf
    inputs = [a for _, a in named]
    first = inputs[0]
    dt = plain_alike(inputs)
    if dt is not None and first.ndim:
        buf = (np.empty(first.shape, dt) if out is None
               else fast_out(out, first.shape, dt, inputs))
        if buf is not None:
            getattr(kernels(op, backend), op)(*[a.ravel() for a in inputs], options,
                                               buf.ravel())
            return buf
    named, dtype, shape = float_arrays_alike(named)
    flats = [_flat(a) for _, a in named]
    target = None
    if out is not None:
        check_out(out, shape, dtype)
        if out.flags.c_contiguous:
            target = out.reshape(-1)
    buf = kernel_buffer(target, flats[0].shape, dtype, may_alias=flats)
    getattr(kernels(op, backend), op)(*flats, options, buf)
    if out is None:
        result = buf.reshape(shape)
        return result[()] if result.ndim == 0 else result
    if buf is not target:
        out[...] = buf.reshape(shape)
    return out


# ---------------------------------------------------------------------------
# sigmoid family
# ---------------------------------------------------------------------------

def sigmoid(x, *, out=None, backend=None):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, overflow-free.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``sigma(x)``, in [0, 1].

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape.

    Notes
    -----
    For x >= 0 the kernel uses ``1 / (1 + exp(-x))``, for x < 0 the equal
    ``exp(x) / (1 + exp(x))``: exp's argument is never positive, so no finite
    input gives NaN (``sigmoid(-1000.) == 0``, ``sigmoid(1000.) == 1``).

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.sigmoid(np.array([-1000., 0., 1000.]))
    array([0. , 0.5, 1. ])
    """
    return _apply("sigmoid", [("x", x)], (), out, backend)


def sigmoid_backward(dy, x, *, out=None, backend=None):
    """Gradient of :func:`sigmoid` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``sigmoid(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy * sigma(x) * sigma(-x)`` (``1 - sigma(x)`` formed without cancellation).

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.sigmoid_backward(np.array([1.]), np.array([0.]))
    array([0.25])
    """
    return _apply("sigmoid_backward", [("dy", dy), ("x", x)], (), out, backend)


def log_sigmoid(x, *, out=None, backend=None):
    """``log(sigmoid(x))``, stable for every finite x.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``-softplus(-x) = min(x, 0) - log1p(exp(-|x|))``, in (-inf, 0].

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape.

    Notes
    -----
    The identity ``log sigma(x) = -softplus(-x)`` avoids ``log(0)`` for very
    negative x: ``log_sigmoid(-1000.) == -1000.``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.log_sigmoid(np.array([-1000., 0.])).round(6).tolist()
    [-1000.0, -0.693147]
    """
    return _apply("log_sigmoid", [("x", x)], (), out, backend)


def log_sigmoid_backward(dy, x, *, out=None, backend=None):
    """Gradient of :func:`log_sigmoid` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``log_sigmoid(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy * sigma(-x)``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.log_sigmoid_backward(np.array([1.]), np.array([0.]))
    array([0.5])
    """
    return _apply("log_sigmoid_backward", [("dy", dy), ("x", x)], (), out, backend)


def softplus(x, *, beta=1.0, threshold=20.0, out=None, backend=None):
    """Softplus ``log(1 + exp(beta * x)) / beta`` (PyTorch semantics).

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    beta : float, default 1.0
        Sharpness; nonzero and finite.
    threshold : float, default 20.0
        Where ``beta * x > threshold`` the result is ``x`` (PyTorch's rule).
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``x`` where ``beta * x > threshold``, else ``softplus(beta * x) / beta``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape, a zero or non-finite ``beta``, a NaN ``threshold``.

    Notes
    -----
    Below the threshold the kernel evaluates ``max(z, 0) + log1p(exp(-|z|))``
    (z = beta * x): exp's argument is never positive, so the result is finite
    whatever ``threshold`` is.  Above it ``log1p(exp(z)) / beta`` equals x to
    within ``exp(-threshold)``: ``softplus(1000.) == 1000.``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.softplus(np.array([0., 1000.])).round(6).tolist()
    [0.693147, 1000.0]
    """
    beta = _finite_float(beta, "beta", nonzero=True)
    threshold = _threshold(threshold)
    return _apply("softplus", [("x", x)], (beta, threshold), out, backend)


def softplus_backward(dy, x, *, beta=1.0, threshold=20.0, out=None, backend=None):
    """Gradient of :func:`softplus` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``softplus(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    beta : float, default 1.0
        Sharpness; nonzero and finite.
    threshold : float, default 20.0
        Where ``beta * x > threshold`` the result is ``x`` (PyTorch's rule).
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy * sigma(beta * x)``; ``dy`` where ``beta * x > threshold``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape, a zero or non-finite
        ``beta``, a NaN ``threshold``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.softplus_backward(np.array([1.]), np.array([0.]))
    array([0.5])
    """
    beta = _finite_float(beta, "beta", nonzero=True)
    threshold = _threshold(threshold)
    return _apply("softplus_backward", [("dy", dy), ("x", x)], (beta, threshold), out, backend)


def _threshold(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"threshold must be a real number, got {value!r}") from None
    if math.isnan(v):
        raise ValueError("threshold must not be NaN")
    return v


def tanh(x, *, out=None, backend=None):
    """Hyperbolic tangent.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``tanh(x)``, in [-1, 1].

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape.

    Notes
    -----
    The C library's tanh saturates to ±1 without overflow.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.tanh(np.array([-1000., 0., 1000.]))
    array([-1.,  0.,  1.])
    """
    return _apply("tanh", [("x", x)], (), out, backend)


def tanh_backward(dy, x, *, out=None, backend=None):
    """Gradient of :func:`tanh` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``tanh(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy * (1 - tanh(x)**2)``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.tanh_backward(np.array([2.]), np.array([0.]))
    array([2.])
    """
    return _apply("tanh_backward", [("dy", dy), ("x", x)], (), out, backend)


# ---------------------------------------------------------------------------
# rectifiers
# ---------------------------------------------------------------------------

def relu(x, *, out=None, backend=None):
    """Rectified linear unit ``max(x, 0)``.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``0`` where ``x < 0``, else ``x``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape.

    Notes
    -----
    Written as a select on ``x < 0`` so that NaN propagates and -0.0 stays
    -0.0, as in PyTorch.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.relu(np.array([-2., 3.]))
    array([0., 3.])
    """
    return _apply("relu", [("x", x)], (), out, backend)


def relu_backward(dy, x, *, out=None, backend=None):
    """Gradient of :func:`relu` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``relu(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``0`` where ``x <= 0`` (the derivative at 0 is taken as 0), else ``dy``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.relu_backward(np.array([5., 5., 5.]), np.array([-1., 0., 1.]))
    array([0., 0., 5.])
    """
    return _apply("relu_backward", [("dy", dy), ("x", x)], (), out, backend)


def leaky_relu(x, *, negative_slope=0.01, out=None, backend=None):
    """Leaky ReLU.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    negative_slope : float, default 0.01
        Slope for x <= 0; finite.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``x`` where ``x > 0``, else ``negative_slope * x``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape, a non-finite ``negative_slope``.

    Notes
    -----
    Exact: one multiply per negative element.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.leaky_relu(np.array([-100., 2.]))
    array([-1.,  2.])
    """
    slope = _finite_float(negative_slope, "negative_slope")
    return _apply("leaky_relu", [("x", x)], (slope,), out, backend)


def leaky_relu_backward(dy, x, *, negative_slope=0.01, out=None, backend=None):
    """Gradient of :func:`leaky_relu` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``leaky_relu(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    negative_slope : float, default 0.01
        Slope for x <= 0; finite.
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy`` where ``x > 0``, else ``negative_slope * dy``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape, a non-finite
        ``negative_slope``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.leaky_relu_backward(np.array([1., 1.]), np.array([-1., 1.]))
    array([0.01, 1.  ])
    """
    slope = _finite_float(negative_slope, "negative_slope")
    return _apply("leaky_relu_backward", [("dy", dy), ("x", x)], (slope,), out, backend)


def elu(x, *, alpha=1.0, out=None, backend=None):
    """Exponential linear unit.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    alpha : float, default 1.0
        Saturation value for x -> -inf; finite.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape, a non-finite ``alpha``.

    Notes
    -----
    ``expm1`` keeps ``exp(x) - 1`` accurate for small negative x; exp's
    argument is never positive, so nothing overflows.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.elu(np.array([-1000., 2.]))
    array([-1.,  2.])
    """
    alpha = _finite_float(alpha, "alpha")
    return _apply("elu", [("x", x)], (alpha,), out, backend)


def elu_backward(dy, x, *, alpha=1.0, out=None, backend=None):
    """Gradient of :func:`elu` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``elu(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    alpha : float, default 1.0
        Saturation value for x -> -inf; finite.
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy * alpha * exp(x)`` where ``x <= 0``, else ``dy`` (PyTorch's rule).

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape, a non-finite ``alpha``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.elu_backward(np.array([1., 1.]), np.array([0., 1.]))
    array([1., 1.])
    """
    alpha = _finite_float(alpha, "alpha")
    return _apply("elu_backward", [("dy", dy), ("x", x)], (alpha,), out, backend)


def silu(x, *, out=None, backend=None):
    """SiLU (swish) ``x * sigmoid(x)``; :func:`swish` is the same function.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``x * sigma(x)``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape.

    Notes
    -----
    Uses the overflow-free sigmoid, so every finite x gives a finite result
    (``silu(-1000.) == -0.``).  ``silu(-inf)`` is NaN (``-inf * 0``), as in PyTorch.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.silu(np.array([0., 1000.]))
    array([   0., 1000.])
    """
    return _apply("silu", [("x", x)], (), out, backend)


def silu_backward(dy, x, *, out=None, backend=None):
    """Gradient of :func:`silu` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``silu(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy * sigma(x) * (1 + x * sigma(-x))``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.silu_backward(np.array([1.]), np.array([0.]))
    array([0.5])
    """
    return _apply("silu_backward", [("dy", dy), ("x", x)], (), out, backend)


def _approximate(value):
    return _ops.encode_option(_ops.BY_NAME["gelu"].options[0], value)


def gelu(x, *, approximate="none", out=None, backend=None):
    """Gaussian error linear unit (PyTorch ``gelu``).

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64.
    approximate : {"none", "tanh"}, default "none"
        "none": the exact ``x * Phi(x)``; "tanh": the tanh approximation
        (as ``torch.nn.functional.gelu``).
    out : ndarray, optional
        Buffer of x's shape and dtype; ``out=x`` computes in place.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    y : ndarray, shape of x
        ``x * Phi(x) = x (1 + erf(x / sqrt(2))) / 2``; with ``approximate="tanh"``
        ``x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3))) / 2``.

    Raises
    ------
    TypeError
        Unsupported dtype, or a wrong ``out`` dtype.
    ValueError
        A wrong ``out`` shape, an ``approximate`` other than "none"/"tanh".

    Notes
    -----
    Phi is the standard normal CDF (Hendrycks and Gimpel, "Gaussian Error
    Linear Units", 2016, arXiv:1606.08415, give both forms).  Both are
    overflow-free: ``x**3`` overflowing to inf only saturates tanh, so
    ``gelu(1e300) == 1e300`` and ``gelu(-1e300) == -0.``.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.gelu(np.array([-1000., 0., 1000.]))
    array([  -0.,    0., 1000.])
    >>> round(float(fastdl.gelu(np.array(1.0), approximate='tanh')), 6)
    0.841192
    """
    return _apply("gelu", [("x", x)], (_approximate(approximate),), out, backend)


def gelu_backward(dy, x, *, approximate="none", out=None, backend=None):
    """Gradient of :func:`gelu` with respect to its input.

    Parameters
    ----------
    dy : ndarray
        Gradient of the loss with respect to ``gelu(x)``.
    x : ndarray, shape of dy
        The forward input (not the output).
    approximate : {"none", "tanh"}, default "none"
        "none": the exact ``x * Phi(x)``; "tanh": the tanh approximation
        (as ``torch.nn.functional.gelu``).
    out : ndarray, optional
        Buffer of dy's shape and dtype; may be ``dy`` or ``x``.
    backend : str, optional
        Backend for this call; None uses :func:`fastdl.get_backend`.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy * (Phi(x) + x * phi(x))`` (phi the normal density); the
        derivative of the tanh form with ``approximate="tanh"``.

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes, or a wrong ``out`` dtype.
    ValueError
        Shapes of ``dy`` and ``x`` differ, or a wrong ``out`` shape, an ``approximate`` other
        than "none"/"tanh".

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> fastdl.gelu_backward(np.array([1.]), np.array([0.]))
    array([0.5])
    """
    return _apply("gelu_backward", [("dy", dy), ("x", x)], (_approximate(approximate),),
                  out, backend)


#: SiLU under the name Ramachandran, Zoph & Le gave it ("Searching for Activation
#: Functions", 2017): Swish with beta = 1.
swish = silu
swish_backward = silu_backward
