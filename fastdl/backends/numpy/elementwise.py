"""The pure-NumPy reference for the "elementwise" kernel family.

Activations, pointwise losses and the entropy, written for clarity: every
kernel widens its inputs to float64, evaluates the textbook stable formula
with NumPy and rounds once when it stores the result.  It is the oracle the
compiled backends (:mod:`fastdl.backends.numba.elementwise`,
:mod:`fastdl.backends.cython.elementwise`) are tested against, and the
fallback when neither works.

Kernel contract
---------------
The public wrappers in :mod:`fastdl._activations` and :mod:`fastdl._loss_functions`
validate everything first; a kernel trusts its arguments:

* every array argument is 1-D and C-contiguous (the wrapper ravels), except
  for :func:`entropy`, whose ``p`` is 2-D (rows) and C-contiguous;
* the float arrays of one call share one dtype, float32 or float64, and one
  length ``n`` (which may be 0);
* outputs are preallocated by the caller and may be the very same array as
  any input of the call (each element is read before it is written), so
  ``out=x`` and ``out=dy`` work in place;
* ``options`` is a tuple of Python floats, the op's keyword options in the
  order of its row in the op table (:mod:`fastdl._ops`), booleans and
  choices encoded as floats (``log_target`` 0/1, gelu's ``approximate``
  "none"/"tanh" as 0/1); the wrapper has already checked their ranges.
  ``scale`` is a Python float.

Activations (kind ``activation``), ``x`` the forward input, ``dy`` the
gradient of the output:

``<name>(x, options, out)``
    ``out = f(x)``.
``<name>_backward(dy, x, options, out)``
    ``out = dy * f'(x)`` (PyTorch's choice of one-sided derivative at kinks;
    where that derivative is 0, as for relu at x <= 0, the result is 0 even
    for a NaN ``dy``).

Pointwise losses (kind ``pointwise_loss``), ``input`` and ``target`` of
equal length ``n``; ``weight`` and ``aux`` are None or arrays of length
``n`` (the wrapper materialises their broadcast); ``aux`` is the op's
auxiliary array (``pos_weight`` for BCE with logits), read as 1 where None.
With ``l_i`` the loss of element i times ``weight[i]`` and ``g_i`` its
derivative with respect to ``input[i]`` times ``weight[i]``:

``<loss>(input, target, weight, aux, options, out)``
    Return the float64 sum of ``l_i`` (accumulated in float64).  When
    ``out`` is not None, also store ``out[i] = l_i``.
``<loss>_backward(dy, input, target, weight, aux, options, scale, out)``
    ``out[i] = scale * g_i * dy[i]``; ``dy`` None means 1.
``<loss>_with_grad(input, target, weight, aux, options, scale, loss_out, grad)``
    One pass: ``grad[i] = scale * g_i``, ``loss_out[i] = l_i`` when
    ``loss_out`` is not None; returns the float64 sum of ``l_i``.  ``grad``
    may be ``input`` or ``target``; ``loss_out`` is a separate array.

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

from ... import _ops

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

# Each op of the table (fastdl._ops) is written once here, on float64 arrays:
# an activation as _<name>_fwd(x, o0, o1) and _<name>_bwd(dy, x, o0, o1)
# (o0, o1 its options, unused ones 0), a pointwise loss as
# _<name>_value(x, t, a, o0) and _<name>_deriv(x, t, a, o0) (a: the
# auxiliary array, pos_weight for BCE, 1.0 where absent).  The contract
# kernels at the end of the module bind them, one wrapper per kind.

def _sigmoid_fwd(x, o0, o1):
    return _sigmoid64(x)


def _sigmoid_bwd(dy, x, o0, o1):
    # sigma'(x) = sigma(x) * (1 - sigma(x)) = sigma(x) * sigma(-x): the second
    # factor is computed directly, not as a difference that cancels to 0.
    return dy * (_sigmoid64(x) * _sigmoid64(-x))


def _log_sigmoid_fwd(x, o0, o1):
    # log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)):
    # -1000 gives -1000, not log(0) = -inf; written with min so that
    # log_sigmoid(inf) is +0.0 as in PyTorch, not -0.0.
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def _log_sigmoid_bwd(dy, x, o0, o1):
    # d/dx log sigma(x) = 1 - sigma(x) = sigma(-x).
    return dy * _sigmoid64(-x)


def _softplus_fwd(x, beta, threshold):
    # PyTorch: x itself once beta*x > threshold (there log1p(exp(bx))/b and x
    # agree to float precision); below it the overflow-free form, so even a
    # huge threshold cannot make exp overflow.
    bz = beta * x
    return np.where(bz > threshold, x, _softplus64(bz) / beta)


def _softplus_bwd(dy, x, beta, threshold):
    # d/dx softplus(beta x)/beta = sigma(beta x); 1 above the threshold.
    bz = beta * x
    return dy * np.where(bz > threshold, 1.0, _sigmoid64(bz))


def _tanh_fwd(x, o0, o1):
    return np.tanh(x)


def _tanh_bwd(dy, x, o0, o1):
    # 1 - tanh(x)^2 = sech(x)^2, formed as (1 / cosh(x))^2: no cancellation
    # when tanh(x) is near ±1 (full relative accuracy in the tails), and
    # cosh overflowing to inf for |x| > 710 gives the right limit 0.
    r = 1.0 / np.cosh(x)
    return dy * (r * r)


def _relu_fwd(x, o0, o1):
    # where(x < 0, 0, x), not max(x, 0): NaN stays NaN and -0.0 stays -0.0
    # (as in PyTorch).
    return np.where(x < 0, 0.0, x)


def _relu_bwd(dy, x, o0, o1):
    # PyTorch's threshold_backward: 0 where x <= 0 (so the derivative at 0 is
    # 0), dy elsewhere, including where x is NaN.
    return np.where(x <= 0, 0.0, dy)


def _leaky_relu_fwd(x, negative_slope, o1):
    return np.where(x > 0, x, negative_slope * x)


def _leaky_relu_bwd(dy, x, negative_slope, o1):
    return np.where(x > 0, dy, negative_slope * dy)


def _elu_fwd(x, alpha, o1):
    # expm1 keeps alpha*(exp(x) - 1) accurate for small negative x.
    return np.where(x > 0, x, alpha * np.expm1(np.where(x > 0, 0.0, x)))


def _elu_bwd(dy, x, alpha, o1):
    # PyTorch: alpha * exp(x) for x <= 0, 1 otherwise (NaN counts as "otherwise").
    return dy * np.where(x <= 0, alpha * np.exp(np.minimum(x, 0.0)), 1.0)


def _silu_fwd(x, o0, o1):
    return x * _sigmoid64(x)


def _silu_bwd(dy, x, o0, o1):
    # d/dx x sigma(x) = sigma(x) (1 + x (1 - sigma(x))) with 1 - sigma(x)
    # formed as sigma(-x): no cancellation for large x.
    return dy * (_sigmoid64(x) * (1.0 + x * _sigmoid64(-x)))


#: erf elementwise (NumPy has none; math.erf is correctly rounded to < 1 ulp).
_erf = np.vectorize(math.erf, otypes=[np.float64])
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


def _gelu_fwd(x, tanh_form, o1):
    # Exact (approximate="none"): x Phi(x) = x (1 + erf(x / sqrt 2)) / 2.
    # approximate="tanh" (Hendrycks & Gimpel 2016, PyTorch's formula):
    # x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2.  x^3 overflowing to
    # inf only saturates tanh, so neither form overflows.
    if tanh_form:
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_bwd(dy, x, tanh_form, o1):
    # Exact: Phi(x) + x phi(x).  Tanh form: d/dx of the above, sech^2 of the
    # inner argument as (1 / cosh)^2; beyond |x| = 1e10 tanh has saturated
    # and the second term is exactly 0 (inf * 0 would give NaN).
    if tanh_form:
        inner = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x ** 3)
        left = 0.5 * (1.0 + np.tanh(inner))
        r = 1.0 / np.cosh(inner)
        second = 0.5 * x * (r * r) * (_SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x))
        return dy * (left + np.where(np.abs(x) > 1e10, 0.0, second))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dy * (0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * pdf)


# ---------------------------------------------------------------------------
# pointwise losses
# ---------------------------------------------------------------------------

def _mse_loss_value(x, t, a, o0):
    d = x - t
    return d * d


def _mse_loss_deriv(x, t, a, o0):
    return 2.0 * (x - t)


def _l1_loss_value(x, t, a, o0):
    return np.abs(x - t)


def _l1_loss_deriv(x, t, a, o0):
    # sign(d): 0 at d == 0 (PyTorch's subgradient), NaN for NaN.
    return np.sign(x - t)


def _huber_loss_value(x, t, a, delta):
    # 0.5 d^2 inside |d| <= delta, delta (|d| - delta/2) outside: the two
    # pieces and their slopes meet at |d| = delta.
    d = x - t
    ad = np.abs(d)
    return np.where(ad <= delta, 0.5 * d * d, delta * (ad - 0.5 * delta))


def _huber_loss_deriv(x, t, a, delta):
    d = x - t
    return np.where(d < -delta, -delta, np.where(d > delta, delta, d))


def _log_cosh_loss_value(x, t, a, o0):
    """log(cosh(d)) without overflow and without cancellation near 0.

    For |d| <= 1: cosh(d) - 1 = 2 sinh(d/2)^2 exactly, so log1p of it keeps
    full relative accuracy down to d^2/2 (a plain log(cosh(d)) would round
    cosh(d) to 1 and return 0 for |d| < 1e-8).  For |d| > 1:
    log cosh(d) = |d| + log1p(exp(-2|d|)) - log 2, where exp's argument is
    < -2, so nothing overflows for any finite d (and log_cosh(inf) = inf).
    """
    ad = np.abs(x - t)
    s = np.sinh(0.5 * np.minimum(ad, 1.0))
    return np.where(ad <= 1.0, np.log1p(2.0 * s * s), ad + np.log1p(np.exp(-2.0 * ad)) - _LOG2)


def _log_cosh_loss_deriv(x, t, a, o0):
    # d/dd log cosh(d) = tanh(d), bounded: far from the target it acts like L1.
    return np.tanh(x - t)


def _kl_div_value(x, t, a, log_target):
    """Pointwise KL term; ``x`` holds log q, ``t`` p (or log p)."""
    if log_target:
        # exp(log p) * (log p - log q)
        return np.exp(t) * (t - x)
    # p * (log p - log q), with PyTorch's xlogy rule 0 * log 0 = 0: a zero
    # target contributes -0 * log q, which is 0 for finite log q (and NaN
    # for log q = -inf or NaN, as in PyTorch).
    return np.where(t == 0, -(t * x), t * (np.log(np.where(t == 0, 1.0, t)) - x))


def _kl_div_deriv(x, t, a, log_target):
    return -np.exp(t) if log_target else -t


def _bce_coef(t, pos_weight):
    # 1 + (pw - 1) t, exactly 1 where pw is 1 (absent) whatever t is.
    return np.where(pos_weight == 1.0, 1.0, 1.0 + (pos_weight - 1.0) * t)


def _binary_cross_entropy_with_logits_value(x, t, pos_weight, o0):
    """l = (1 - t) x + (1 + (pw - 1) t) softplus(-x), before the weight.

    With pw = 1 this is -(t log sigma(x) + (1 - t) log sigma(-x)), using
    log sigma(x) = -softplus(-x) and log sigma(-x) = -x - softplus(-x); the
    stable softplus keeps it finite for every finite x.
    """
    return (1.0 - t) * x + _bce_coef(t, pos_weight) * _softplus64(-x)


def _binary_cross_entropy_with_logits_deriv(x, t, pos_weight, o0):
    # dl/dx = (1 - t) - (1 + (pw - 1) t) sigma(-x); = sigma(x) - t if pw = 1.
    return (1.0 - t) - _bce_coef(t, pos_weight) * _sigmoid64(-x)


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


# ---------------------------------------------------------------------------
# the kernel functions of the contract: one wrapper per kind
# ---------------------------------------------------------------------------

def _two(options):
    o = tuple(options) + (0.0, 0.0)
    return o[0], o[1]


def _activation_kernels(fwd, bwd):
    def forward(x, options, out):
        with _errstate():
            _store(out, fwd(_f64(x), *_two(options)))

    def backward(dy, x, options, out):
        with _errstate():
            _store(out, bwd(_f64(dy), _f64(x), *_two(options)))

    return forward, backward


def _loss_kernels(value, deriv):
    def per_element(f, input, target, weight, aux, options):
        a = 1.0 if aux is None else _f64(aux)
        v = f(_f64(input), _f64(target), a, _two(options)[0])
        return v if weight is None else v * _f64(weight)

    def forward(input, target, weight, aux, options, out):
        with _errstate():
            values = per_element(value, input, target, weight, aux, options)
            if out is not None:
                _store(out, values)
            return float(np.sum(values, dtype=np.float64))

    def backward(dy, input, target, weight, aux, options, scale, out):
        with _errstate():
            g = scale * per_element(deriv, input, target, weight, aux, options)
            _store(out, g if dy is None else g * _f64(dy))

    def with_grad(input, target, weight, aux, options, scale, loss_out, grad):
        # Both computed before anything is stored: grad may be the input.
        with _errstate():
            values = per_element(value, input, target, weight, aux, options)
            g = scale * per_element(deriv, input, target, weight, aux, options)
            if loss_out is not None:
                _store(loss_out, values)
            _store(grad, g)
            return float(np.sum(values, dtype=np.float64))

    return forward, backward, with_grad


def _publish(name, fn, what):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``{name}`` of the elementwise contract ({what}, NumPy reference)."
    globals()[name] = fn


for _op in _ops.of_kind("activation"):
    _fns = _activation_kernels(globals()[f"_{_op.name}_fwd"], globals()[f"_{_op.name}_bwd"])
    for _suffix, _fn in zip(("", "_backward"), _fns):
        _publish(_op.name + _suffix, _fn, "activation")
for _op in _ops.of_kind("pointwise_loss"):
    _fns = _loss_kernels(globals()[f"_{_op.name}_value"], globals()[f"_{_op.name}_deriv"])
    for _suffix, _fn in zip(("", "_backward", "_with_grad"), _fns):
        _publish(_op.name + _suffix, _fn, "pointwise loss")
del _op, _fns, _suffix, _fn
