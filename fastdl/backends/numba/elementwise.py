"""The "elementwise" kernel family on Numba: activations, pointwise losses, entropy.

Same kernel contract as the reference, :mod:`fastdl.backends.numpy.elementwise`.
Each op of the table (:mod:`fastdl._ops`) is written once, as float64
scalar functions:

* an activation ``name``: ``_name_fwd(x, o0, o1)`` and
  ``_name_bwd(dy, x, o0, o1)`` (the result for one element; ``o0``, ``o1``
  its options, unused ones 0);
* a pointwise loss ``name``: ``_name_value(x, t, a, o0)`` (the loss of one
  element) and ``_name_deriv(x, t, a, o0)`` (d loss / d x); ``a`` is the
  element's auxiliary value (``pos_weight`` for BCE, 1 where absent).

One ``prange`` loop per kind (``_activation_forward``/``_backward``,
``_loss_forward``/``_backward``/``_with_grad``) is bound to each op's
scalars by :func:`_bind` (and the scalars inlined into it by Numba,
``inline="always"``), so every op gets its own compiled loop, cached on disk
under its own name, with no per-element call.  The core backend's
:func:`~fastdl.backends.numba._jit._serial_and_parallel` turns each loop
into a serial and a parallel dispatcher and
:func:`~fastdl.backends.numba.core._pick` chooses one per call from the
element count (``_config.threads_for``).  Nothing compiles at import time.

Precision: every element is widened to float64, evaluated with the stable
formulas below (the reference's) and rounded once when stored; loss sums
accumulate in float64.  Fastmath: reassociation for the loops that sum, and
nothing else (see ``_REDUCE_FLAGS``), so inf/NaN and overflow behave as in
the reference.

Optional arrays (``weight``, ``aux``, ``out`` of a loss, ``dy`` of a loss
backward) are passed as None, and the ``x is None`` tests are resolved when
Numba compiles the specialisation for that argument type.
"""

from __future__ import annotations

import math
import types as _pytypes

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ... import _config, _ops
from ._jit import (
    _erf_for_float64 as _erf,
    _exp_for_float64 as _exp,
    _expm1_for_float64 as _expm1,
    _log1p_for_float64 as _log1p,
    _log_for_float64 as _log,
    _serial_and_parallel,
    _tanh_for_float64 as _tanh,
)
from .core import _pick

NAME = "numba"

_LOG2 = math.log(2.0)
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715

#: Scalars are inlined into the loops at Numba IR level, so they take the
#: loop's fastmath flags and error model.  They use _exp, _expm1, _log1p,
#: _log, _tanh and _erf (fastdl.backends.numba._jit: plain arithmetic,
#: within 1.3 ulp, exact at the special values) rather than libm's, whose
#: calls would keep LLVM from vectorising the loops (measured, 1 thread:
#: log1p 8.6 -> 1.35 ns per float64 element).
_scalar = numba.njit(inline="always", error_model="numpy")


# ---------------------------------------------------------------------------
# shared float64 helpers
# ---------------------------------------------------------------------------

@_scalar
def _sigmoid(z):
    """sigma(z) with exp's argument <= 0: never NaN for finite z."""
    e = _exp(-abs(z))  # in (0, 1]; NaN propagates
    return 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)


@_scalar
def _softplus(z):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): no overflow."""
    m = z if z > 0.0 else 0.0
    return m + _log1p(_exp(-abs(z)))


@_scalar
def _sech2(x):
    """sech(x)^2 = (2 e / (1 + e^2))^2 with e = exp(-|x|) <= 1: no overflow,
    no cancellation (1 - tanh(x)^2 would lose all digits in the tails)."""
    e = _exp(-abs(x))
    r = 2.0 * e / (1.0 + e * e)
    return r * r


# ---------------------------------------------------------------------------
# activations: _<name>_fwd(x, o0, o1), _<name>_bwd(dy, x, o0, o1)
# ---------------------------------------------------------------------------

@_scalar
def _sigmoid_fwd(x, o0, o1):
    return _sigmoid(x)


@_scalar
def _sigmoid_bwd(dy, x, o0, o1):
    # sigma(x) sigma(-x) = sigma(x) (1 - sigma(x)) without cancellation.
    return dy * (_sigmoid(x) * _sigmoid(-x))


@_scalar
def _log_sigmoid_fwd(x, o0, o1):
    # log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)):
    # log_sigmoid(-1000) = -1000, not -inf; log_sigmoid(inf) = +0.0.
    m = x if x < 0.0 else 0.0
    return m - _log1p(_exp(-abs(x)))


@_scalar
def _log_sigmoid_bwd(dy, x, o0, o1):
    return dy * _sigmoid(-x)


@_scalar
def _softplus_fwd(x, beta, threshold):
    # x itself above the threshold (PyTorch); the overflow-free form below.
    bz = beta * x
    return x if bz > threshold else _softplus(bz) / beta


@_scalar
def _softplus_bwd(dy, x, beta, threshold):
    bz = beta * x
    return dy if bz > threshold else dy * _sigmoid(bz)


@_scalar
def _tanh_fwd(x, o0, o1):
    return _tanh(x)


@_scalar
def _tanh_bwd(dy, x, o0, o1):
    return dy * _sech2(x)


@_scalar
def _relu_fwd(x, o0, o1):
    # A select on x < 0 keeps NaN (comparison false) and -0.0, like PyTorch.
    return 0.0 if x < 0.0 else x


@_scalar
def _relu_bwd(dy, x, o0, o1):
    # 0 where x <= 0 (derivative at 0 taken as 0), dy elsewhere incl. NaN.
    return 0.0 if x <= 0.0 else dy


@_scalar
def _leaky_relu_fwd(x, negative_slope, o1):
    return x if x > 0.0 else negative_slope * x


@_scalar
def _leaky_relu_bwd(dy, x, negative_slope, o1):
    return dy if x > 0.0 else negative_slope * dy


@_scalar
def _elu_fwd(x, alpha, o1):
    # expm1: accurate exp(x) - 1 for small |x|; its argument is <= 0 here.
    return x if x > 0.0 else alpha * _expm1(x)


@_scalar
def _elu_bwd(dy, x, alpha, o1):
    return dy * (alpha * _exp(x)) if x <= 0.0 else dy


@_scalar
def _silu_fwd(x, o0, o1):
    return x * _sigmoid(x)


@_scalar
def _silu_bwd(dy, x, o0, o1):
    # sigma(x) (1 + x sigma(-x)); sigma(-x) rather than 1 - sigma(x).
    return dy * (_sigmoid(x) * (1.0 + x * _sigmoid(-x)))


@_scalar
def _gelu_fwd(x, tanh_form, o1):
    # Exact: x Phi(x) = x (1 + erf(x / sqrt 2)) / 2.  Tanh form (PyTorch's
    # approximate="tanh"): x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2;
    # x^3 overflowing to inf only saturates tanh, so both are overflow-free.
    if tanh_form != 0.0:
        inner = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x)
        return 0.5 * x * (1.0 + _tanh(inner))
    return 0.5 * x * (1.0 + _erf(x * _SQRT_HALF))


@_scalar
def _gelu_bwd(dy, x, tanh_form, o1):
    # Exact: Phi(x) + x phi(x).  Tanh form: PyTorch's formula, with sech^2
    # as (1 / cosh)^2; beyond |x| = 1e10 tanh has saturated and the second
    # term is exactly 0 (its inf * 0 would otherwise give NaN).
    if tanh_form != 0.0:
        inner = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x)
        half_x = 0.5 * x
        left = 0.5 * (1.0 + _tanh(inner))
        if abs(x) > 1e10:
            return dy * left
        inner_d = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x)
        return dy * (left + half_x * _sech2(inner) * inner_d)
    cdf = 0.5 * (1.0 + _erf(x * _SQRT_HALF))
    return dy * (cdf + x * (_INV_SQRT_2PI * _exp(-0.5 * x * x)))


# ---------------------------------------------------------------------------
# pointwise losses: _<name>_value(x, t, a, o0), _<name>_deriv(x, t, a, o0)
# ---------------------------------------------------------------------------

@_scalar
def _mse_loss_value(x, t, a, o0):
    d = x - t
    return d * d


@_scalar
def _mse_loss_deriv(x, t, a, o0):
    return 2.0 * (x - t)


@_scalar
def _l1_loss_value(x, t, a, o0):
    return abs(x - t)


@_scalar
def _l1_loss_deriv(x, t, a, o0):
    d = x - t
    # sign(d), 0 at d == 0 (PyTorch's subgradient); d * 0 keeps NaN.
    return 1.0 if d > 0.0 else (-1.0 if d < 0.0 else d * 0.0)


@_scalar
def _huber_loss_value(x, t, a, delta):
    d = x - t
    ad = abs(d)
    return 0.5 * d * d if ad <= delta else delta * (ad - 0.5 * delta)


@_scalar
def _huber_loss_deriv(x, t, a, delta):
    d = x - t
    return -delta if d < -delta else (delta if d > delta else d)


@_scalar
def _log_cosh_loss_value(x, t, a, o0):
    # |d| <= 1: log1p(2 sinh(d/2)^2) (no cancellation near 0);
    # beyond: |d| + log1p(exp(-2|d|)) - log 2 (no overflow).
    # sinh(y) = (em + em / (em + 1)) / 2 with em = expm1(y): no cancellation.
    # One log1p, of the side's argument: a vectorised loop computes both
    # sides, and log1p is the dearer part.
    ad = abs(x - t)
    near = ad <= 1.0
    em = _expm1(0.5 * ad)
    s = 0.5 * (em + em / (em + 1.0))
    r = _log1p(2.0 * s * s if near else _exp(-2.0 * ad))
    return r if near else ad + r - _LOG2


@_scalar
def _log_cosh_loss_deriv(x, t, a, o0):
    return _tanh(x - t)


@_scalar
def _kl_div_value(x, t, a, log_target):
    if log_target != 0.0:
        return _exp(t) * (t - x)
    if t == 0.0:
        # xlogy(0, 0) = 0: only -0 * log q remains (NaN for log q = -inf).
        return -(t * x)
    return t * (_log(t) - x)  # log of a negative target is NaN


@_scalar
def _kl_div_deriv(x, t, a, log_target):
    return -_exp(t) if log_target != 0.0 else -t


@_scalar
def _binary_cross_entropy_with_logits_value(x, t, pos_weight, o0):
    # (1 - t) x + (1 + (pw - 1) t) softplus(-x), see the reference; pw = 1
    # (absent) gives the coefficient 1 exactly, whatever t is.
    coef = 1.0 if pos_weight == 1.0 else 1.0 + (pos_weight - 1.0) * t
    return (1.0 - t) * x + coef * _softplus(-x)


@_scalar
def _binary_cross_entropy_with_logits_deriv(x, t, pos_weight, o0):
    coef = 1.0 if pos_weight == 1.0 else 1.0 + (pos_weight - 1.0) * t
    return (1.0 - t) - coef * _sigmoid(-x)


# ---------------------------------------------------------------------------
# one loop per kind
# ---------------------------------------------------------------------------
#
# The loops call the op's scalars through the global names _fwd, _bwd (an
# activation) or _value, _deriv (a loss); _bind gives each op a copy of the
# loops whose globals hold that op's scalars.  Globals, not closure cells:
# Numba keys its on-disk cache entries by a pickle of a function's closure
# cells, and a pickled dispatcher differs in every process, so closures
# over the scalars would never load from the cache.

def _activation_forward(x, o0, o1, out):
    for i in prange(x.shape[0]):
        out[i] = _fwd(np.float64(x[i]), o0, o1)  # noqa: F821 (bound by _bind)


def _activation_backward(dy, x, o0, o1, out):
    for i in prange(x.shape[0]):
        out[i] = _bwd(np.float64(dy[i]), np.float64(x[i]), o0, o1)  # noqa: F821


def _part(a, lo, hi):
    """``a[lo:hi]``, or None for None (an optional array's block)."""


@overload(_part)
def _part_overload(a, lo, hi):
    if isinstance(a, types.NoneType):
        return lambda a, lo, hi: None
    return lambda a, lo, hi: a[lo:hi]


# The block functions take the block's own slices: indexing whole arrays at
# lo + j instead kept LLVM from vectorising them (measured: a weighted sum
# over 4M float32 took 4.6 ms instead of 0.9).

def _block_values(x, t, w, a, o0, loss_out):
    # The loss sum of one block (loss_out stored when wanted).  It writes
    # nothing the loop reads, so LLVM vectorises its sum even when
    # with_grad's grad is x itself: the sum's order, and so its bits, do not
    # depend on where the gradient goes.  Compiled on its own with "reassoc"
    # (_REDUCE_FLAGS) for the sum; its callers have no flags.
    s = 0.0
    for i in range(x.shape[0]):
        ai = 1.0 if a is None else np.float64(a[i])
        v = _value(np.float64(x[i]), np.float64(t[i]), ai, o0)  # noqa: F821
        if w is not None:
            v = v * np.float64(w[i])
        if loss_out is not None:
            loss_out[i] = v
        s += v
    return s


def _grad_at(x, t, w, a, o0, i):
    # d loss_i / d x_i, times the weight (backward and with_grad share it).
    ai = 1.0 if a is None else np.float64(a[i])
    g = _deriv(np.float64(x[i]), np.float64(t[i]), ai, o0)  # noqa: F821
    return g if w is None else g * np.float64(w[i])


def _block_grads(x, t, w, a, o0, scale, grad):
    for i in range(x.shape[0]):
        grad[i] = scale * _grad_of(x, t, w, a, o0, i)  # noqa: F821


def _loss_forward(x, t, w, a, o0, out):
    # Blocks as in with_grad, so the two return the same sum, bit for bit.
    n = x.shape[0]
    s = 0.0
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        hi = min(lo + _BLOCK, n)
        s += _block_sum(x[lo:hi], t[lo:hi], _part(w, lo, hi), _part(a, lo, hi),  # noqa: F821
                        o0, _part(out, lo, hi))
    return s


def _loss_backward(dy, x, t, w, a, o0, scale, out):
    for i in prange(x.shape[0]):
        g = scale * _grad_of(x, t, w, a, o0, i)  # noqa: F821
        out[i] = g if dy is None else g * np.float64(dy[i])


def _loss_with_grad(x, t, w, a, o0, scale, loss_out, grad):
    # One pass over memory in blocks that stay in L1: the block's loss sum
    # (reading x, t), then its gradient (the same elements, from cache),
    # computed exactly as in backward, so both give the same bits; grad may
    # be x or t (element i is read before grad[i] is written).
    n = x.shape[0]
    s = 0.0
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        hi = min(lo + _BLOCK, n)
        xs, ts, ws, as_ = x[lo:hi], t[lo:hi], _part(w, lo, hi), _part(a, lo, hi)
        s += _block_sum(xs, ts, ws, as_, o0, _part(loss_out, lo, hi))  # noqa: F821
        _block_grad(xs, ts, ws, as_, o0, scale, grad[lo:hi])  # noqa: F821
    return s


def _bind(fn, name, **scalars):
    """A copy of ``fn`` named ``name`` whose globals bind ``scalars``."""
    env = dict(globals(), _BLOCK=_config.POINTWISE_BLOCK, **scalars)
    twin = _pytypes.FunctionType(fn.__code__, env, name, fn.__defaults__)
    twin.__qualname__ = name
    return twin


def _entropy_rows(p, out):
    # -sum p log p with 0 log 0 = 0, in float64; 0.0 - sum avoids -0.0.
    for i in prange(p.shape[0]):
        s = 0.0
        for j in range(p.shape[1]):
            q = np.float64(p[i, j])
            if q != 0.0:
                s += q * _log(q)
        out[i] = 0.0 - s


# Fastmath flags: only the code that sums (the loss block sums, entropy)
# gets "reassoc", so LLVM can vectorise the sum; every other loop gets
# none.  "reassoc" would let LLVM regroup a product such as
# dy * (a * b) into (dy * a) * b, and "contract" would fuse (1 - t) * x + c
# into an FMA that skips an intermediate overflow: either can turn an inf
# that NumPy, Cython (built with -ffp-contract=off) and PyTorch give at
# extreme inputs into a finite number, or the reverse.
_REDUCE_FLAGS = {"reassoc"}
_NO_FLAGS = set()


def _dispatchers(loop, name, **scalars):
    """``_serial_and_parallel`` of ``loop`` bound to ``scalars``, as ``name``.

    Numba's on-disk cache names entries after the function's qualname: each
    op's loop needs its own, since the loops of one kind share their code.
    """
    return _serial_and_parallel(_bind(loop, name, **scalars), fastmath=_NO_FLAGS)


#: (serial, parallel) dispatchers of every kernel, by contract name.
_K = {}
for _op in _ops.of_kind("activation"):
    _s = dict(_fwd=globals()[f"_{_op.name}_fwd"], _bwd=globals()[f"_{_op.name}_bwd"])
    _K[_op.name] = _dispatchers(_activation_forward, _op.name, **_s)
    _K[_op.name + "_backward"] = _dispatchers(_activation_backward, _op.name + "_backward",
                                              **_s)
for _op in _ops.of_kind("pointwise_loss"):
    _s = dict(_value=globals()[f"_{_op.name}_value"], _deriv=globals()[f"_{_op.name}_deriv"])
    _s.update(
        _block_sum=numba.njit(fastmath=_REDUCE_FLAGS, error_model="numpy")(
            _bind(_block_values, _op.name + "_block_values", **_s)),
        _grad_of=_scalar(_bind(_grad_at, _op.name + "_grad_at", **_s)))
    _s["_block_grad"] = numba.njit(error_model="numpy")(
        _bind(_block_grads, _op.name + "_block_grads", **_s))
    for _suffix, _loop in (("", _loss_forward), ("_backward", _loss_backward),
                           ("_with_grad", _loss_with_grad)):
        _K[_op.name + _suffix] = _dispatchers(_loop, _op.name + _suffix, **_s)
_K["entropy"] = _serial_and_parallel(_entropy_rows, fastmath=_REDUCE_FLAGS)


# ---------------------------------------------------------------------------
# the kernel functions of the contract
# ---------------------------------------------------------------------------

def _two(options):
    """The options as the loops' two float arguments (unused ones 0)."""
    o = tuple(options) + (0.0, 0.0)
    return float(o[0]), float(o[1])


def _activation_kernels(name):
    fwd, bwd = _K[name], _K[name + "_backward"]

    def forward(x, options, out):
        n = x.shape[0]
        if n:
            _pick(fwd, n)(x, *_two(options), out)

    def backward(dy, x, options, out):
        n = x.shape[0]
        if n:
            _pick(bwd, n)(dy, x, *_two(options), out)

    return forward, backward


def _loss_kernels(name):
    fwd, bwd, both = _K[name], _K[name + "_backward"], _K[name + "_with_grad"]

    def forward(input, target, weight, aux, options, out):
        n = input.shape[0]
        if n == 0:
            return 0.0
        return _pick(fwd, n)(input, target, weight, aux, _two(options)[0], out)

    def backward(dy, input, target, weight, aux, options, scale, out):
        n = input.shape[0]
        if n:
            _pick(bwd, n)(dy, input, target, weight, aux, _two(options)[0], float(scale), out)

    def with_grad(input, target, weight, aux, options, scale, loss_out, grad):
        n = input.shape[0]
        if n == 0:
            return 0.0
        return _pick(both, n)(input, target, weight, aux, _two(options)[0], float(scale),
                              loss_out, grad)

    return forward, backward, with_grad


def _publish(name, fn, what):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``{name}`` of the elementwise contract ({what}, Numba)."
    globals()[name] = fn


for _op in _ops.of_kind("activation"):
    for _suffix, _fn in zip(("", "_backward"), _activation_kernels(_op.name)):
        _publish(_op.name + _suffix, _fn, "activation")
for _op in _ops.of_kind("pointwise_loss"):
    for _suffix, _fn in zip(("", "_backward", "_with_grad"), _loss_kernels(_op.name)):
        _publish(_op.name + _suffix, _fn, "pointwise loss")
del _op, _suffix, _fn, _s, _loop


def entropy(p, out):
    """``entropy`` of the elementwise contract (Numba), rows of p."""
    if p.shape[0] == 0:
        return
    _pick(_K["entropy"], p.size)(p, out)
