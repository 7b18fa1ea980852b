"""The pure-NumPy reference for the "elementwise" kernel family.

Activations, pointwise losses and the entropy, written for clarity: every
kernel widens its inputs to float64, evaluates the textbook stable formula
with NumPy and rounds once when it stores the result.  It is the oracle the
compiled backends (:mod:`fastdl.backends.numba_elementwise`,
:mod:`fastdl.backends.cython_elementwise`) are tested against, and the
fallback when neither works.

Kernel contract
---------------
The public wrappers in :mod:`fastdl._activations` and :mod:`fastdl._losses`
validate everything first; a kernel trusts its arguments:

* every array argument is 1-D and C-contiguous (the wrapper ravels), except
  for :func:`entropy`, whose ``p`` is 2-D (rows) and C-contiguous;
* the float arrays of one call share one dtype, float32 or float64, and one
  length ``n`` (which may be 0);
* outputs are preallocated by the caller and may be the very same array as
  any input of the call (each element is read before it is written), so
  ``out=x`` and ``out=dy`` work in place;
* scalar options (``beta``, ``threshold``, ``negative_slope``, ``alpha``,
  ``delta``, ``scale``) are Python floats, ``log_target`` a bool; the wrapper
  has already checked their ranges.

Activations, ``x`` the forward input, ``dy`` the gradient of the output:

``sigmoid(x, out)``, ``log_sigmoid(x, out)``, ``tanh(x, out)``, ``relu(x, out)``, ``silu(x, out)``
    ``out = f(x)``.
``softplus(x, beta, threshold, out)``, ``leaky_relu(x, negative_slope, out)``, ``elu(x, alpha, out)``
    The same with the activation's option(s).
``<name>_backward(dy, x[, options], out)``
    ``out = dy * f'(x)`` (PyTorch's choice of one-sided derivative at kinks).

Pointwise losses, ``input`` and ``target`` of equal length ``n``:

``mse_loss(input, target, out)``, ``l1_loss(input, target, out)``,
``huber_loss(input, target, delta, out)``, ``log_cosh_loss(input, target, out)``,
``kl_div(input, target, log_target, out)``,
``binary_cross_entropy_with_logits(input, target, weight, pos_weight, out)``
    Return the float64 sum of the per-element losses ``l_i`` (accumulated in
    float64).  When ``out`` is not None, also store ``out[i] = l_i``.
    ``weight`` and ``pos_weight`` are None or arrays of length ``n`` (the
    wrapper materialises their broadcast).
``<loss>_backward(dy, input, target[, options], scale, out)``
    ``out[i] = scale * dy[i] * d l_i / d input[i]``; ``dy`` None means 1.

Entropy:

``entropy(p, out)``
    p (M, C), out (M,): ``out[i] = -sum_j p[i, j] * log(p[i, j])`` with
    ``0 * log(0) = 0``, accumulated in float64; a row with C = 0 gives 0.

Reductions ("mean", "sum", "batchmean") and ``grad_output`` are the
wrapper's job; kernels see per-element quantities only, so every backend
shares one reduction.
"""

from __future__ import annotations

import math

import numpy as np

NAME = "numpy"

_LOG2 = math.log(2.0)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _store(out, value):
    """Round the float64 ``value`` once into ``out`` (which may alias an input)."""
    out[...] = value


def _errstate():
    # Overflow/invalid warnings would fire on the discarded branch of np.where
    # and on inf/NaN inputs whose NaN/inf result is the intended answer.
    return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")


# ---------------------------------------------------------------------------
# float64 building blocks (stable forms, each cut-off explained)
# ---------------------------------------------------------------------------

def _sigmoid64(z):
    """sigma(z) = 1 / (1 + exp(-z)) without overflow.

    For z >= 0, exp(-z) <= 1; for z < 0 the equal form exp(z) / (1 + exp(z))
    has exp(z) < 1.  Neither exponential can overflow, so sigma is never NaN
    for finite z (and sigma(-inf) = 0, sigma(inf) = 1).
    """
    e = np.exp(-np.abs(z))  # in (0, 1]
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus64(z):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): exp's argument is <= 0."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------

def sigmoid(x, out):
    with _errstate():
        _store(out, _sigmoid64(_f64(x)))


def sigmoid_backward(dy, x, out):
    # sigma'(x) = sigma(x) * (1 - sigma(x)) = sigma(x) * sigma(-x): the second
    # factor is computed directly, not as a difference that cancels to 0.
    with _errstate():
        z = _f64(x)
        _store(out, _f64(dy) * (_sigmoid64(z) * _sigmoid64(-z)))


def log_sigmoid(x, out):
    # log sigma(x) = -softplus(-x) (course notes) = min(x, 0) - log1p(exp(-|x|)):
    # -1000 gives -1000, not log(0) = -inf; written with min so that
    # log_sigmoid(inf) is +0.0 as in PyTorch, not -0.0.
    with _errstate():
        z = _f64(x)
        _store(out, np.minimum(z, 0.0) - np.log1p(np.exp(-np.abs(z))))


def log_sigmoid_backward(dy, x, out):
    # d/dx log sigma(x) = 1 - sigma(x) = sigma(-x).
    with _errstate():
        _store(out, _f64(dy) * _sigmoid64(-_f64(x)))


def softplus(x, beta, threshold, out):
    # PyTorch: x itself once beta*x > threshold (there log1p(exp(bx))/b and x
    # agree to float precision); below it the overflow-free form, so even a
    # huge threshold cannot make exp overflow.
    with _errstate():
        z = _f64(x)
        bz = beta * z
        _store(out, np.where(bz > threshold, z, _softplus64(bz) / beta))


def softplus_backward(dy, x, beta, threshold, out):
    # d/dx softplus(beta x)/beta = sigma(beta x); 1 above the threshold.
    with _errstate():
        bz = beta * _f64(x)
        _store(out, _f64(dy) * np.where(bz > threshold, 1.0, _sigmoid64(bz)))


def tanh(x, out):
    with _errstate():
        _store(out, np.tanh(_f64(x)))


def tanh_backward(dy, x, out):
    # 1 - tanh(x)^2 = sech(x)^2, formed as (1 / cosh(x))^2: no cancellation
    # when tanh(x) is near ±1 (full relative accuracy in the tails), and
    # cosh overflowing to inf for |x| > 710 gives the right limit 0.
    with _errstate():
        r = 1.0 / np.cosh(_f64(x))
        _store(out, _f64(dy) * (r * r))


def relu(x, out):
    # where(x < 0, 0, x), not max(x, 0): NaN stays NaN and -0.0 stays -0.0
    # (as in PyTorch).
    z = _f64(x)
    _store(out, np.where(z < 0, 0.0, z))


def relu_backward(dy, x, out):
    # PyTorch's threshold_backward: 0 where x <= 0 (so the derivative at 0 is
    # 0), dy elsewhere, including where x is NaN.
    _store(out, np.where(_f64(x) <= 0, 0.0, _f64(dy)))


def leaky_relu(x, negative_slope, out):
    z = _f64(x)
    _store(out, np.where(z > 0, z, negative_slope * z))


def leaky_relu_backward(dy, x, negative_slope, out):
    g = _f64(dy)
    _store(out, np.where(_f64(x) > 0, g, negative_slope * g))


def elu(x, alpha, out):
    # expm1 keeps alpha*(exp(x) - 1) accurate for small negative x.
    with _errstate():
        z = _f64(x)
        _store(out, np.where(z > 0, z, alpha * np.expm1(np.where(z > 0, 0.0, z))))


def elu_backward(dy, x, alpha, out):
    # PyTorch: alpha * exp(x) for x <= 0, 1 otherwise (NaN counts as "otherwise").
    with _errstate():
        z = _f64(x)
        _store(out, _f64(dy) * np.where(z <= 0, alpha * np.exp(np.minimum(z, 0.0)), 1.0))


def silu(x, out):
    with _errstate():
        z = _f64(x)
        _store(out, z * _sigmoid64(z))


def silu_backward(dy, x, out):
    # d/dx x sigma(x) = sigma(x) (1 + x (1 - sigma(x))) with 1 - sigma(x)
    # formed as sigma(-x): no cancellation for large x.
    with _errstate():
        z = _f64(x)
        s = _sigmoid64(z)
        _store(out, _f64(dy) * (s * (1.0 + z * _sigmoid64(-z))))


# ---------------------------------------------------------------------------
# pointwise losses
# ---------------------------------------------------------------------------

def _finish(values, out):
    """Store per-element losses (if wanted) and return their float64 sum."""
    if out is not None:
        _store(out, values)
    return float(np.sum(values, dtype=np.float64))


def _grad(dy, scale, deriv, out):
    g = scale * deriv
    if dy is not None:
        g = g * _f64(dy)
    _store(out, g)


def mse_loss(input, target, out):
    d = _f64(input) - _f64(target)
    with _errstate():
        return _finish(d * d, out)


def mse_loss_backward(dy, input, target, scale, out):
    with _errstate():
        _grad(dy, scale, 2.0 * (_f64(input) - _f64(target)), out)


def l1_loss(input, target, out):
    with _errstate():
        return _finish(np.abs(_f64(input) - _f64(target)), out)


def l1_loss_backward(dy, input, target, scale, out):
    # sign(d): 0 at d == 0 (PyTorch's subgradient), NaN for NaN.
    with _errstate():
        _grad(dy, scale, np.sign(_f64(input) - _f64(target)), out)


def huber_loss(input, target, delta, out):
    # 0.5 d^2 inside |d| <= delta, delta (|d| - delta/2) outside: the two
    # pieces and their slopes meet at |d| = delta.
    with _errstate():
        d = _f64(input) - _f64(target)
        a = np.abs(d)
        return _finish(np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta)), out)


def huber_loss_backward(dy, input, target, delta, scale, out):
    with _errstate():
        d = _f64(input) - _f64(target)
        _grad(dy, scale, np.where(d < -delta, -delta, np.where(d > delta, delta, d)), out)


def _log_cosh64(d):
    """log(cosh(d)) without overflow and without cancellation near 0.

    For |d| <= 1: cosh(d) - 1 = 2 sinh(d/2)^2 exactly, so log1p of it keeps
    full relative accuracy down to d^2/2 (a plain log(cosh(d)) would round
    cosh(d) to 1 and return 0 for |d| < 1e-8).  For |d| > 1:
    log cosh(d) = |d| + log1p(exp(-2|d|)) - log 2, where exp's argument is
    < -2, so nothing overflows for any finite d (and log_cosh(inf) = inf).
    """
    a = np.abs(d)
    s = np.sinh(0.5 * np.minimum(a, 1.0))
    return np.where(a <= 1.0, np.log1p(2.0 * s * s), a + np.log1p(np.exp(-2.0 * a)) - _LOG2)


def log_cosh_loss(input, target, out):
    with _errstate():
        return _finish(_log_cosh64(_f64(input) - _f64(target)), out)


def log_cosh_loss_backward(dy, input, target, scale, out):
    # d/dd log cosh(d) = tanh(d), bounded: far from the target it acts like L1.
    with _errstate():
        _grad(dy, scale, np.tanh(_f64(input) - _f64(target)), out)


def kl_div(input, target, log_target, out):
    """Pointwise KL term; ``input`` holds log q, ``target`` p (or log p)."""
    with _errstate():
        x = _f64(input)
        t = _f64(target)
        if log_target:
            # exp(log p) * (log p - log q)
            values = np.exp(t) * (t - x)
        else:
            # p * (log p - log q), with PyTorch's xlogy rule 0 * log 0 = 0:
            # a zero target contributes -0 * log q, which is 0 for finite
            # log q (and NaN for log q = -inf or NaN, as in PyTorch).
            values = np.where(t == 0, -(t * x), t * (np.log(np.where(t == 0, 1.0, t)) - x))
        return _finish(values, out)


def kl_div_backward(dy, input, target, log_target, scale, out):
    with _errstate():
        t = _f64(target)
        _grad(dy, scale, -np.exp(t) if log_target else -t, out)


def binary_cross_entropy_with_logits(input, target, weight, pos_weight, out):
    """l = w * ((1 - t) x + (1 + (pw - 1) t) softplus(-x)).

    With pw = 1 this is -w (t log sigma(x) + (1 - t) log sigma(-x)), using
    log sigma(x) = -softplus(-x) and log sigma(-x) = -x - softplus(-x); the
    stable softplus keeps it finite for every finite x.
    """
    with _errstate():
        x = _f64(input)
        t = _f64(target)
        coef = 1.0 if pos_weight is None else 1.0 + (_f64(pos_weight) - 1.0) * t
        values = (1.0 - t) * x + coef * _softplus64(-x)
        if weight is not None:
            values = values * _f64(weight)
        return _finish(values, out)


def binary_cross_entropy_with_logits_backward(dy, input, target, weight, pos_weight,
                                              scale, out):
    # dl/dx = w * ((1 - t) - (1 + (pw - 1) t) sigma(-x)); = w (sigma(x) - t) if pw = 1.
    with _errstate():
        x = _f64(input)
        t = _f64(target)
        coef = 1.0 if pos_weight is None else 1.0 + (_f64(pos_weight) - 1.0) * t
        deriv = (1.0 - t) - coef * _sigmoid64(-x)
        if weight is not None:
            deriv = deriv * _f64(weight)
        _grad(dy, scale, deriv, out)


# ---------------------------------------------------------------------------
# entropy
# ---------------------------------------------------------------------------

def entropy(p, out):
    # -sum p log p with 0 log 0 = 0 (the limit p log p -> 0 as p -> 0+);
    # negative p gives NaN through log, NaN propagates.
    with _errstate():
        q = _f64(p)
        terms = np.where(q == 0, 0.0, q * np.log(np.where(q == 0, 1.0, q)))
        # 0.0 - sum, not -sum: a zero entropy is +0.0, not -0.0.
        _store(out, 0.0 - np.sum(terms, axis=1))
