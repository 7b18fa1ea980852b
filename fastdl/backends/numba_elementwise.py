"""The "elementwise" kernel family on Numba: activations, pointwise losses, entropy.

Same kernel contract as the reference, :mod:`fastdl.backends.numpy_elementwise`.
Every operation has one kernel body, generic over float32/float64 (Numba's
dispatcher specialises it per dtype), looping with ``numba.prange``; the
core backend's :func:`~fastdl.backends._numba_kernels._serial_and_parallel`
turns each body into a serial and a parallel dispatcher and
:func:`~fastdl.backends.numba_backend._pick` chooses one per call from the
element count (``_config.threads_for``).  Nothing compiles at import time.

Precision: every element is widened to float64, evaluated with the same
stable formulas as the reference (the scalar helpers below) and rounded once
when stored; loss sums accumulate in float64.  Fastmath: reassociation for
the kernels that sum, nothing else (see ``_flags``), so inf/NaN and overflow
behave exactly as in the reference.

Optional arrays (``out`` of a loss, ``dy`` of a loss backward, ``weight``,
``pos_weight``) are passed as None, and the ``x is None`` tests are resolved
when Numba compiles the specialisation for that argument type.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._numba_kernels import _njit, _serial_and_parallel
from .numba_backend import _pick

NAME = "numba"

_LOG2 = math.log(2.0)


# ---------------------------------------------------------------------------
# float64 scalar helpers (the reference's stable forms, one element at a time)
# ---------------------------------------------------------------------------

@_njit
def _sigmoid(z):
    """sigma(z) with exp's argument <= 0: never NaN for finite z."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)  # z < 0 (or NaN, which propagates)
    return e / (1.0 + e)


@_njit
def _softplus(z):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): no overflow."""
    m = z if z > 0.0 else 0.0
    return m + math.log1p(math.exp(-abs(z)))


@_njit
def _log_cosh(d):
    """log(cosh(d)): log1p(2 sinh(d/2)^2) for |d| <= 1 (no cancellation near 0),
    |d| + log1p(exp(-2|d|)) - log 2 beyond (no overflow)."""
    a = abs(d)
    if a <= 1.0:
        s = math.sinh(0.5 * a)
        return math.log1p(2.0 * s * s)
    return a + math.log1p(math.exp(-2.0 * a)) - _LOG2


# ---------------------------------------------------------------------------
# activation bodies
# ---------------------------------------------------------------------------

def _sigmoid_fwd(x, out):
    for i in prange(x.shape[0]):
        out[i] = _sigmoid(np.float64(x[i]))


def _sigmoid_bwd(dy, x, out):
    # sigma(x) sigma(-x) = sigma(x) (1 - sigma(x)) without cancellation.
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        out[i] = np.float64(dy[i]) * (_sigmoid(z) * _sigmoid(-z))


def _log_sigmoid_fwd(x, out):
    # log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)):
    # log_sigmoid(-1000) = -1000, not -inf; log_sigmoid(inf) = +0.0.
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        m = z if z < 0.0 else 0.0
        out[i] = m - math.log1p(math.exp(-abs(z)))


def _log_sigmoid_bwd(dy, x, out):
    for i in prange(x.shape[0]):
        out[i] = np.float64(dy[i]) * _sigmoid(-np.float64(x[i]))


def _softplus_fwd(x, beta, threshold, out):
    # x itself above the threshold (PyTorch); the overflow-free form below.
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        bz = beta * z
        out[i] = z if bz > threshold else _softplus(bz) / beta


def _softplus_bwd(dy, x, beta, threshold, out):
    for i in prange(x.shape[0]):
        g = np.float64(dy[i])
        bz = beta * np.float64(x[i])
        out[i] = g if bz > threshold else g * _sigmoid(bz)


def _tanh_fwd(x, out):
    for i in prange(x.shape[0]):
        out[i] = math.tanh(np.float64(x[i]))


def _tanh_bwd(dy, x, out):
    # sech(x)^2 = (1 / cosh(x))^2 rather than 1 - tanh(x)^2 (no cancellation).
    for i in prange(x.shape[0]):
        r = 1.0 / math.cosh(np.float64(x[i]))
        out[i] = np.float64(dy[i]) * (r * r)


def _relu_fwd(x, out):
    # A select on x < 0 keeps NaN (comparison false) and -0.0, like PyTorch.
    for i in prange(x.shape[0]):
        v = x[i]
        out[i] = 0.0 if v < 0 else v


def _relu_bwd(dy, x, out):
    # 0 where x <= 0 (derivative at 0 taken as 0), dy elsewhere incl. NaN.
    for i in prange(x.shape[0]):
        out[i] = 0.0 if x[i] <= 0 else dy[i]


def _leaky_relu_fwd(x, negative_slope, out):
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        out[i] = z if z > 0.0 else negative_slope * z


def _leaky_relu_bwd(dy, x, negative_slope, out):
    for i in prange(x.shape[0]):
        g = np.float64(dy[i])
        out[i] = g if x[i] > 0 else negative_slope * g


def _elu_fwd(x, alpha, out):
    # expm1: accurate exp(x) - 1 for small |x|; its argument is <= 0 here.
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        out[i] = z if z > 0.0 else alpha * math.expm1(z)


def _elu_bwd(dy, x, alpha, out):
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        g = np.float64(dy[i])
        out[i] = g * (alpha * math.exp(z)) if z <= 0.0 else g


def _silu_fwd(x, out):
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        out[i] = z * _sigmoid(z)


def _silu_bwd(dy, x, out):
    # sigma(x) (1 + x sigma(-x)); sigma(-x) rather than 1 - sigma(x).
    for i in prange(x.shape[0]):
        z = np.float64(x[i])
        out[i] = np.float64(dy[i]) * (_sigmoid(z) * (1.0 + z * _sigmoid(-z)))


# ---------------------------------------------------------------------------
# loss bodies: forward returns the float64 sum, backward scales by dy * scale
# ---------------------------------------------------------------------------

def _mse_fwd(x, t, out):
    s = 0.0
    for i in prange(x.shape[0]):
        d = np.float64(x[i]) - np.float64(t[i])
        v = d * d
        if out is not None:
            out[i] = v
        s += v
    return s


def _mse_bwd(dy, x, t, scale, out):
    for i in prange(x.shape[0]):
        g = scale * (2.0 * (np.float64(x[i]) - np.float64(t[i])))
        if dy is not None:
            g = g * np.float64(dy[i])
        out[i] = g


def _l1_fwd(x, t, out):
    s = 0.0
    for i in prange(x.shape[0]):
        v = abs(np.float64(x[i]) - np.float64(t[i]))
        if out is not None:
            out[i] = v
        s += v
    return s


def _l1_bwd(dy, x, t, scale, out):
    for i in prange(x.shape[0]):
        d = np.float64(x[i]) - np.float64(t[i])
        # sign(d), 0 at d == 0 (PyTorch's subgradient); d * 0 keeps NaN.
        sgn = 1.0 if d > 0.0 else (-1.0 if d < 0.0 else d * 0.0)
        g = scale * sgn
        if dy is not None:
            g = g * np.float64(dy[i])
        out[i] = g


def _huber_fwd(x, t, delta, out):
    s = 0.0
    for i in prange(x.shape[0]):
        d = np.float64(x[i]) - np.float64(t[i])
        a = abs(d)
        v = 0.5 * d * d if a <= delta else delta * (a - 0.5 * delta)
        if out is not None:
            out[i] = v
        s += v
    return s


def _huber_bwd(dy, x, t, delta, scale, out):
    for i in prange(x.shape[0]):
        d = np.float64(x[i]) - np.float64(t[i])
        c = -delta if d < -delta else (delta if d > delta else d)
        g = scale * c
        if dy is not None:
            g = g * np.float64(dy[i])
        out[i] = g


def _log_cosh_fwd(x, t, out):
    s = 0.0
    for i in prange(x.shape[0]):
        v = _log_cosh(np.float64(x[i]) - np.float64(t[i]))
        if out is not None:
            out[i] = v
        s += v
    return s


def _log_cosh_bwd(dy, x, t, scale, out):
    for i in prange(x.shape[0]):
        g = scale * math.tanh(np.float64(x[i]) - np.float64(t[i]))
        if dy is not None:
            g = g * np.float64(dy[i])
        out[i] = g


def _kl_fwd(x, t, log_target, out):
    s = 0.0
    for i in prange(x.shape[0]):
        xi = np.float64(x[i])
        ti = np.float64(t[i])
        if log_target:
            v = math.exp(ti) * (ti - xi)
        elif ti == 0.0:
            # xlogy(0, 0) = 0: only -0 * log q remains (NaN for log q = -inf).
            v = -(ti * xi)
        else:
            v = ti * (math.log(ti) - xi)  # log of a negative target is NaN
        if out is not None:
            out[i] = v
        s += v
    return s


def _kl_bwd(dy, x, t, log_target, scale, out):
    for i in prange(x.shape[0]):
        ti = np.float64(t[i])
        g = scale * (-math.exp(ti) if log_target else -ti)
        if dy is not None:
            g = g * np.float64(dy[i])
        out[i] = g


def _bce_fwd(x, t, weight, pos_weight, out):
    # w ((1 - t) x + (1 + (pw - 1) t) softplus(-x)), see the reference.
    s = 0.0
    for i in prange(x.shape[0]):
        xi = np.float64(x[i])
        ti = np.float64(t[i])
        coef = 1.0
        if pos_weight is not None:
            coef = 1.0 + (np.float64(pos_weight[i]) - 1.0) * ti
        v = (1.0 - ti) * xi + coef * _softplus(-xi)
        if weight is not None:
            v = v * np.float64(weight[i])
        if out is not None:
            out[i] = v
        s += v
    return s


def _bce_bwd(dy, x, t, weight, pos_weight, scale, out):
    for i in prange(x.shape[0]):
        xi = np.float64(x[i])
        ti = np.float64(t[i])
        coef = 1.0
        if pos_weight is not None:
            coef = 1.0 + (np.float64(pos_weight[i]) - 1.0) * ti
        deriv = (1.0 - ti) - coef * _sigmoid(-xi)
        if weight is not None:
            deriv = deriv * np.float64(weight[i])
        g = scale * deriv
        if dy is not None:
            g = g * np.float64(dy[i])
        out[i] = g


def _entropy_rows(p, out):
    # -sum p log p with 0 log 0 = 0, in float64; 0.0 - sum avoids -0.0.
    for i in prange(p.shape[0]):
        s = 0.0
        for j in range(p.shape[1]):
            q = np.float64(p[i, j])
            if q != 0.0:
                s += q * math.log(q)
        out[i] = 0.0 - s


# Fastmath flags, narrower than the row kernels': only the loss forwards and
# entropy sum anything, and they get "reassoc" so LLVM can vectorise the sum;
# every other kernel gets none.  "reassoc" would let LLVM regroup a product
# such as dy * (a * b) into (dy * a) * b, and "contract" would fuse
# (1 - t) * x + c into an FMA that skips an intermediate overflow: either
# can turn an inf that NumPy, Cython (built with -ffp-contract=off) and
# PyTorch give at extreme inputs into a finite number, or the reverse.
_REDUCING = frozenset({"mse_loss", "l1_loss", "huber_loss", "log_cosh_loss", "kl_div",
                       "binary_cross_entropy_with_logits", "entropy"})


def _flags(name):
    return {"reassoc"} if name in _REDUCING else set()


_K = {name: _serial_and_parallel(body, fastmath=_flags(name)) for name, body in {
    "sigmoid": _sigmoid_fwd, "sigmoid_backward": _sigmoid_bwd,
    "log_sigmoid": _log_sigmoid_fwd, "log_sigmoid_backward": _log_sigmoid_bwd,
    "softplus": _softplus_fwd, "softplus_backward": _softplus_bwd,
    "tanh": _tanh_fwd, "tanh_backward": _tanh_bwd,
    "relu": _relu_fwd, "relu_backward": _relu_bwd,
    "leaky_relu": _leaky_relu_fwd, "leaky_relu_backward": _leaky_relu_bwd,
    "elu": _elu_fwd, "elu_backward": _elu_bwd,
    "silu": _silu_fwd, "silu_backward": _silu_bwd,
    "mse_loss": _mse_fwd, "mse_loss_backward": _mse_bwd,
    "l1_loss": _l1_fwd, "l1_loss_backward": _l1_bwd,
    "huber_loss": _huber_fwd, "huber_loss_backward": _huber_bwd,
    "log_cosh_loss": _log_cosh_fwd, "log_cosh_loss_backward": _log_cosh_bwd,
    "kl_div": _kl_fwd, "kl_div_backward": _kl_bwd,
    "binary_cross_entropy_with_logits": _bce_fwd,
    "binary_cross_entropy_with_logits_backward": _bce_bwd,
    "entropy": _entropy_rows,
}.items()}


# ---------------------------------------------------------------------------
# the kernel functions of the contract
# ---------------------------------------------------------------------------

def _elementwise(name):
    """A contract kernel ``name(*arrays_and_options, out)`` over ``_K[name]``.

    The first argument that is an array sets the element count; scalar
    options arrive as Python floats/bools.  Empty arrays skip the call (a
    loss sum over nothing is 0.0).
    """
    pair = _K[name]
    is_backward_loss = name.endswith("_backward") and name.replace("_backward", "") in (
        "mse_loss", "l1_loss", "huber_loss", "log_cosh_loss", "kl_div",
        "binary_cross_entropy_with_logits")
    size_arg = 1 if is_backward_loss else 0  # backward losses start with dy (maybe None)

    def kernel(*args):
        n = args[size_arg].shape[0]
        if n == 0:
            return 0.0
        return _pick(pair, n)(*args)

    kernel.__name__ = name
    kernel.__qualname__ = name
    kernel.__doc__ = f"``{name}`` of the elementwise contract (Numba)."
    return kernel


for _name in _K:
    if _name != "entropy":
        globals()[_name] = _elementwise(_name)
del _name


def entropy(p, out):
    """``entropy`` of the elementwise contract (Numba), rows of p."""
    if p.shape[0] == 0:
        return
    _pick(_K["entropy"], p.size)(p, out)
