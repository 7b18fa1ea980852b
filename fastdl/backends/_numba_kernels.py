"""Numba kernel bodies for :mod:`fastdl.backends.numba_backend`.

Every operation has one Python body, generic over float32/float64 (Numba's
dispatcher specialises it per dtype) and written with ``numba.prange`` over
rows.  :func:`_serial_and_parallel` turns each body into two lazily compiled
dispatchers, ``parallel=False`` (prange is plain range) and ``parallel=True``;
the dispatch layer picks one per call.  Nothing here compiles at import time.

Conventions shared by all kernels (see :mod:`fastdl.backends` for the
contract):

* Sums (exp-sums, dot products, column sums) accumulate in float64, whatever
  the input dtype.  float32 data: the row kernels' exps are float32
  arithmetic on the exact difference x - max (:func:`_exp_diff_float32`),
  and their output passes (softmax's scale, log_softmax's subtraction, the
  backward passes) run in float32 with the row's scalars rounded to
  float32 (:func:`_in_dtype`), as the Cython kernels do: converting every
  element to float64 and back cost more than the arithmetic.
* Row maxima use ``llvm.maximum`` (:func:`_fmaximum`), which propagates NaN:
  a row holding NaN gets a NaN max, so every output of that row is NaN, which
  is the reference's rule.  Unlike a ``v > m`` select chain, LLVM vectorises
  a ``llvm.maximum`` reduction without fastmath "nnan".
* Kernels assume N >= 1 and C >= 1; the dispatch layer handles empty arrays.
* No kernel allocates anything the size of its input; softmax and the
  cross-entropy gradient reuse their output row to hold the exponentials.
"""

from __future__ import annotations

import math
import types as _pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import caching
from numba.core.runtime import rtsys
from numba.extending import intrinsic, overload

from .. import _config as config

#: Options shared by every dispatcher.  Numba wants a ``set`` for fastmath
#: flags (it rejects a frozenset); the flags are the narrow subset from
#: ``_config``: "reassoc" lets LLVM vectorise the float64 sums, "contract"
#: allows FMAs; inf/NaN semantics and denormals are untouched.
#: ``cache``: numba_cache_setup() runs here, before the first dispatcher is
#: created (Numba picks a function's cache directory at decoration time); it
#: points fastdl's functions at a writable cache directory and returns False
#: when there is none, so a read-only install compiles instead of failing.
#: ``error_model="numpy"``: a float division by zero gives inf/NaN as in
#: NumPy instead of raising ZeroDivisionError; the Python model's check on
#: every division also stops LLVM from vectorising any loop that divides
#: (measured: a float32 Adam update went from 2.8 to 0.5 ns per element).
_OPTIONS = dict(cache=config.numba_cache_setup(), fastmath=set(config.NUMBA_FASTMATH),
                error_model="numpy")

_njit = numba.njit(**_OPTIONS)


# ---------------------------------------------------------------------------
# Loading a kernel from the on-disk cache
# ---------------------------------------------------------------------------
#
# Before it loads any cached function, Numba's FunctionCache.load_overload
# calls target_context.refresh(), which imports and registers the typing and
# lowering of every feature Numba supports (numba.np.arraymath, linalg,
# random, typed containers, cffi, ...); numba.np.arraymath looks for a BLAS
# when imported, which imports scipy.linalg.  Measured with numba 0.68.1 and
# SciPy installed, warm cache, medians of 7 fresh processes on 2 cores: the
# first softmax call took 0.43 s, of which the refresh about 0.4 s (0.15 s
# of it importing scipy.linalg) and loading and linking the kernel's machine
# code 5 ms.  Without the refresh the first call takes 0.045 s (the rest is
# Numba's own first-dispatch work: compiling the NRT, scanning extension
# entry points, importing numpy.ma for typeof).
#
# Loading machine code needs none of those registrations: type inference and
# lowering (compilation) use them, and Numba's compiler refreshes the
# contexts itself before compiling anything (CompilerBase.__init__), so a
# cache miss, or any later compilation in the process, still gets them.
# What loaded code links against is Numba's C helpers and libm (registered
# when Numba creates its CPU target), the parallel runtime (started by the
# cache entry's own reload hook) and the NRT (array views are reference
# counted), which the refresh would have initialised: _KernelCache
# initialises the NRT, then loads.  Numba is left in the state it has right
# after import, plus the loaded kernels.  A kernel whose machine code needed
# a symbol that only the refresh's imports register (hash() of a string, for
# one) would fail to link: tests/test_numba_startup.py loads the kernels in a
# fresh process to catch that.  Only the entry-point dispatchers of
# _serial_and_parallel use _KernelCache; helpers are compiled into their
# callers.
# Should a Numba release rename what this relies on, the kernels use Numba's
# own cache class instead.

def _kernel_cache_class():
    base = getattr(caching, "FunctionCache", None)
    needed = ("_load_overload", "_guard_against_spurious_io_errors")
    if base is None or not all(hasattr(base, name) for name in needed) \
            or not hasattr(rtsys, "initialize"):
        return None

    class _KernelCache(base):
        """Numba's FunctionCache, loading without the full context refresh."""

        def load_overload(self, sig, target_context):
            rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)

    return _KernelCache


_KernelCache = _kernel_cache_class()


def _cached_kernel(options, body):
    """``numba.njit(**options)(body)`` caching through :class:`_KernelCache`.

    The same steps as ``cache=True`` (``Dispatcher.enable_caching``), with
    the cache class swapped, so the cache location and keys are Numba's.
    """
    options = dict(options)
    cache = options.pop("cache")
    if not cache or _KernelCache is None:
        return numba.njit(cache=cache, **options)(body)
    dispatcher = numba.njit(**options)(body)
    if hasattr(dispatcher, "_cache"):  # not the bare function NUMBA_DISABLE_JIT gives
        dispatcher._cache = _KernelCache(dispatcher.py_func)
    return dispatcher


def _serial_and_parallel(body, *, fastmath=None):
    """Two lazy dispatchers, ``(serial, parallel)``, from one kernel body.

    ``fastmath`` replaces the default flag set for this body (the elementwise
    family narrows it: see numba_elementwise).

    The parallel dispatcher is compiled from a copy of the function object
    that shares the body's code but has its own ``__qualname__``: Numba's
    on-disk cache names its files after the qualname and keys entries by
    signature only, not by the ``parallel`` flag, so two dispatchers of the
    very same function object would overwrite and load each other's
    machine code (checked with numba 0.68: the parallel dispatcher got the
    serial code from the cache).
    """
    options = dict(_OPTIONS)
    if fastmath is not None:
        options["fastmath"] = set(fastmath)
    serial = _cached_kernel(dict(options, parallel=False), body)
    twin = _pytypes.FunctionType(body.__code__, body.__globals__,
                                 body.__name__, body.__defaults__,
                                 body.__closure__)
    twin.__qualname__ = body.__qualname__ + "__parallel"
    twin.__doc__ = body.__doc__
    parallel = _cached_kernel(dict(options, parallel=True), twin)
    return serial, parallel


# ---------------------------------------------------------------------------
# Scalar helpers
# ---------------------------------------------------------------------------

@intrinsic
def _fmaximum(typingctx, a, b):
    """``llvm.maximum(a, b)``: IEEE 754-2019 maximum, NaN if either is NaN."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        lltype = context.get_value_type(signature.return_type)
        fn = builder.module.declare_intrinsic(
            "llvm.maximum", [lltype], ir.FunctionType(lltype, [lltype, lltype]))
        return builder.call(fn, args)

    return a(a, b), codegen


@intrinsic
def _float64_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits``."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _int64_from_float64(typingctx, value):
    """The int64 holding the IEEE-754 bit pattern of the float64 ``value``."""
    if value != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


_LOG2_E = 1.4426950408889634


# 1.5 * 2^52 + 2 * 1023: for an integer-valued float64 k with |k| < 2^51,
# k + _EXP_SCALE_MAGIC is exact and holds m = k + 2046 in the low bits of
# its bit pattern.
_EXP_SCALE_MAGIC = 6755399441057790.0


@numba.njit(inline="always", **_OPTIONS)
def _pow2_factors(k):
    """(2^floor(k/2), 2^ceil(k/2)) for an integer-valued float64 k in
    [-1076, 1024], as float64s built from bits.

    With b the bit pattern of k + _EXP_SCALE_MAGIC, (b >> 1) << 52 is the
    float64 with biased exponent floor(m/2) = floor(k/2) + 1023 (the shift
    pushes the magic's own bits out of the word), and (b - (b >> 1)) << 52
    the one with ceil(m/2).  Integer shifts and a subtraction only: AVX2 has
    no float64 -> int64 conversion, and ``np.int64(k)`` made LLVM scalarise
    the exp loops (measured: the float32-data exp went from 2.06 to
    1.54 ns per element with this).
    """
    bits = _int64_from_float64(k + _EXP_SCALE_MAGIC)
    half = bits >> 1
    return (_float64_from_bits(half << 52),
            _float64_from_bits((bits - half) << 52))


# float64: exp(r) ~ 1 + r Q(r) on |r| <= ln(2)/2, Q of degree 10 (the
# polynomial of kernels/_fastexp.h): Q interpolates (e^r - 1)/r at the
# Chebyshev nodes of [-0.3466, 0.3466], computed in 60-digit mpmath; max
# relative error of 1 + r Q(r) with the rounded coefficients: 9.8e-18
# (0.09 float64 ulp).  The constant term is exactly 1 (exp(0) == 1).
_EXP64_Q10 = 2.5105214474751413e-08
_EXP64_Q9 = 2.7626367775723217e-07
_EXP64_Q8 = 2.7557255406285044e-06
_EXP64_Q7 = 2.4801504321690158e-05
_EXP64_Q6 = 1.9841269874815834e-04
_EXP64_Q5 = 1.3888888932508548e-03
_EXP64_Q4 = 8.3333333333261360e-03
_EXP64_Q3 = 4.1666666666573086e-02
_EXP64_Q2 = 1.6666666666666670e-01
_EXP64_Q1 = 5.0000000000000060e-01
# ln2 split as in fdlibm: _LN_2_HI has 32 significant bits, so k * _LN_2_HI
# is exact for |k| < 2^21 and d - k * _LN_2_HI is exact too.
_LN_2_HI = 6.93147180369123816490e-01
_LN_2_LO = 1.90821492927058770002e-10


@numba.njit(inline="always", **_OPTIONS)
def _exp_for_float64(d):
    """exp(d) for float64 ``d`` to about 1 ulp, written for LLVM to vectorise.

    Numba's math.exp is a scalar libm call (PyPI llvmlite has no SVML), so a
    loop using it runs one element at a time; this is plain arithmetic, the
    algorithm of ``fastdl_exp`` in kernels/_fastexp.h:

    * d = k ln2 + r with k = rint(d log2(e)) (llvm.rint, vroundpd) and a
      two-constant (Cody-Waite) ln2, |r| <= ln2/2.
    * exp(r) = 1 + r Q(r), degree-10 Q by Horner (the kernels' "contract"
      flag lets LLVM use FMAs).
    * 2^k in two factors from :func:`_pow2_factors` (integer shifts, no
      float -> int conversion, which would make LLVM scalarise the loop),
      each a normal float64 for every k the clamp allows, so the result
      overflows to inf and underflows gradually to 0 exactly like exp,
      rounding once.
    * d clamped to [-746, 710] (e^-746 rounds to 0, e^710 overflows), written
      so that a NaN passes the clamp and comes out NaN.

    Max error measured 0.89 ulp against exp in long double on 2.8e7 points
    (uniform over the whole range, in [-1, 1], in the denormal range and
    next to the overflow threshold; tests/test_fastexp.py samples the same
    ranges with a 1.5 ulp bound), far inside the 1e-13 relative tolerance
    the float64 kernels promise.
    """
    # Not max()/min(): this operand order is the NaN rule and the codegen
    # described above.
    dc = -746.0 if -746.0 > d else d  # noqa: FURB136
    dc = 710.0 if 710.0 < dc else dc  # noqa: FURB136
    k = np.rint(dc * _LOG2_E)
    r = dc - k * _LN_2_HI
    r = r - k * _LN_2_LO
    q = _EXP64_Q10
    q = q * r + _EXP64_Q9
    q = q * r + _EXP64_Q8
    q = q * r + _EXP64_Q7
    q = q * r + _EXP64_Q6
    q = q * r + _EXP64_Q5
    q = q * r + _EXP64_Q4
    q = q * r + _EXP64_Q3
    q = q * r + _EXP64_Q2
    q = q * r + _EXP64_Q1
    q = q * r + 1.0
    p = q * r + 1.0
    scale_1, scale_2 = _pow2_factors(k)
    return (p * scale_1) * scale_2


# float32 data: exp in float32 arithmetic, the algorithm and constants of
# fastdl_expf in kernels/_fastexp.h (degree-6 polynomial, Cody-Waite ln2,
# magic-number rounding, two-factor scaling), twice as many lanes per vector
# as the float64 exp.  The row kernels' fast-math flags include "reassoc",
# which would let LLVM simplify away the exact-difference and the
# magic-number rounding steps, so those are intrinsics whose instructions
# carry no fast-math flags.
_F32 = np.float32
_EXPF_MAGIC = _F32(12583166.0)  # 1.5 * 2^23 + 2 * 127
_EXPF_LOG2E = _F32(1.44269504088896341)
_EXPF_NEG_LN2_HI = _F32(-0.693359375)
_EXPF_LN2_LO_CORR = _F32(2.12194440e-4)  # -(ln2 - ln2_hi)
_EXPF_P6 = _F32(1.3933647e-3)
_EXPF_P5 = _F32(8.3691543e-3)
_EXPF_P4 = _F32(4.1666467e-2)
_EXPF_P3 = _F32(1.6666505e-1)
_EXPF_P2 = _F32(0.5)
_EXPF_ONE = _F32(1.0)
_EXPF_LO = _F32(-104.0)
_EXPF_HI = _F32(89.0)


@intrinsic
def _two_diff_f32(typingctx, a, b):
    """(d, e): d = a - b rounded to float32 and e its exact rounding error
    (TwoSum, exact without FMA), with no fast-math flags."""
    if not (a == types.float32 and b == types.float32):
        return None
    sig = types.UniTuple(types.float32, 2)(a, b)

    def codegen(context, builder, signature, args):
        x, s = args
        d = builder.fsub(x, s)
        bb = builder.fsub(d, x)
        e = builder.fsub(builder.fsub(x, builder.fsub(d, bb)), builder.fadd(s, bb))
        return context.make_tuple(builder, signature.return_type, (d, e))

    return sig, codegen


@intrinsic
def _keep_if_equal_f32(typingctx, a, b, v):
    """v where a == b (ordered: a NaN compares unequal), else 0."""
    if not (a == types.float32 and b == types.float32 and v == types.float32):
        return None

    def codegen(context, builder, signature, args):
        x, y, val = args
        return builder.select(builder.fcmp_ordered("==", x, y), val,
                              ir.Constant(ir.FloatType(), 0.0))

    return types.float32(types.float32, types.float32, types.float32), codegen


@intrinsic
def _round_log2e_f32(typingctx, x):
    """(kb, k): kb = fma(x, log2 e, magic), whose addition rounds x log2 e to
    the integer k held in kb's low bits, and k = kb - magic exactly."""
    if x != types.float32:
        return None
    sig = types.UniTuple(types.float32, 2)(x)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fma = builder.module.declare_intrinsic("llvm.fma", [f32],
                                               ir.FunctionType(f32, [f32, f32, f32]))
        magic = ir.Constant(f32, float(_EXPF_MAGIC))
        kb = builder.call(fma, [args[0], ir.Constant(f32, float(_EXPF_LOG2E)), magic])
        return context.make_tuple(builder, signature.return_type, (kb, builder.fsub(kb, magic)))

    return sig, codegen


@intrinsic
def _scale_by_kb_f32(typingctx, q, kb):
    """q * 2^k from kb's bits, m = k + 254 in the low bits: (q 2^floor(m/2) - 127)
    then times 2^(ceil(m/2) - 127), each factor normal (fastdl_expf)."""
    if not (q == types.float32 and kb == types.float32):
        return None

    def codegen(context, builder, signature, args):
        qv, kbv = args
        i32, f32 = ir.IntType(32), ir.FloatType()
        bits = builder.bitcast(kbv, i32)
        half = builder.lshr(bits, ir.Constant(i32, 1))
        s2 = builder.bitcast(builder.shl(builder.sub(bits, half), ir.Constant(i32, 23)), f32)
        s1 = builder.bitcast(builder.shl(half, ir.Constant(i32, 23)), f32)
        return builder.fmul(builder.fmul(qv, s1), s2)

    return types.float32(types.float32, types.float32), codegen


@numba.njit(inline="always", **_OPTIONS)
def _exp_diff_float32(x, shift):
    """exp(x - shift) for float32 x and shift, of the exact difference.

    x - shift rounded to float32 would move exp by |x - shift| 2^-24 relative
    (40 ulp at -77); its TwoSum error e is added to the reduced argument
    instead, and dropped where the difference is clamped or not finite.
    Then fastdl_expf's fused arithmetic (LLVM contracts the Horner steps
    under the "contract" flag): the same bits as the Cython kernels' AVX2 and
    AVX-512F copies (tests/test_fastexp.py), whose exhaustive sweep gives
    0.976 ulp; +-inf, NaN, overflow and underflow as exp.  Measured, one
    thread, 64x1000 float32: softmax 1.10 -> 0.77 ns per element with the
    float32 output passes, logsumexp 0.71 -> 0.66.
    """
    d, e = _two_diff_f32(x, shift)
    dc = _EXPF_LO if _EXPF_LO > d else d  # noqa: FURB136 (NaN passes)
    dc = _EXPF_HI if _EXPF_HI < dc else dc  # noqa: FURB136
    e = _keep_if_equal_f32(dc, d, e)
    kb, k = _round_log2e_f32(dc)
    r = k * _EXPF_NEG_LN2_HI + dc
    r = k * _EXPF_LN2_LO_CORR + r
    r = r + e
    q = _EXPF_P6 * r + _EXPF_P5
    q = q * r + _EXPF_P4
    q = q * r + _EXPF_P3
    q = q * r + _EXPF_P2
    q = q * r + _EXPF_ONE
    q = q * r + _EXPF_ONE
    return _scale_by_kb_f32(q, kb)


def _exp_diff(like, x, shift):
    """``exp(x - shift)`` as a float64, x an element of ``like`` and shift a
    float64 holding a value of like's dtype (a row max, or 0).  Only callable
    from compiled code; see the overload below."""
    raise NotImplementedError


@overload(_exp_diff, jit_options=_OPTIONS)
def _exp_diff_overload(like, x, shift):
    # float32 data: the float32 exp of the exact difference (twice the
    # lanes of a float64 exp); float64 data: the float64 polynomial of
    # x - shift, rounded in float64 as NumPy does.
    if isinstance(like, types.Array) and like.dtype == types.float32:
        return lambda like, x, shift: np.float64(
            _exp_diff_float32(np.float32(x), np.float32(shift)))
    return lambda like, x, shift: _exp_for_float64(np.float64(x) - shift)


def _in_dtype(like, v):
    """The float64 scalar ``v`` rounded to ``like``'s dtype (float32 or
    float64), so that an output pass runs in the data's precision.  Only
    callable from compiled code."""
    raise NotImplementedError


@overload(_in_dtype, jit_options=_OPTIONS)
def _in_dtype_overload(like, v):
    if isinstance(like, types.Array) and like.dtype == types.float32:
        return lambda like, v: np.float32(v)
    return lambda like, v: np.float64(v)


@_njit
def _row_max(xr):
    """Max of a non-empty row; NaN when the row holds a NaN."""
    m = xr[0]
    for j in range(1, xr.shape[0]):
        m = _fmaximum(m, xr[j])
    return m


@_njit
def _row_expsum(xr, shift, er):
    """``sum_j exp(xr[j] - shift)`` in float64; stores each term in ``er``
    unless ``er`` is None (the branch is pruned at compile time)."""
    s = 0.0
    for j in range(xr.shape[0]):
        e = _exp_diff(xr, xr[j], shift)
        if er is not None:
            er[j] = e
        s += e
    return s


@_njit
def _row_expsum_wdot(xr, shift, w, er):
    """As :func:`_row_expsum`, and also ``sum_j w[j] * (xr[j] - shift)``
    (w None means all ones) in the same pass, for label smoothing."""
    s = 0.0
    a = 0.0
    for j in range(xr.shape[0]):
        d = np.float64(xr[j]) - shift
        e = _exp_diff(xr, xr[j], shift)
        if er is not None:
            er[j] = e
        s += e
        if w is None:
            a += d
        else:
            a += np.float64(w[j]) * d
    return s, a


# ---------------------------------------------------------------------------
# Kernel bodies (one per operation)
# ---------------------------------------------------------------------------

def _bias_add(out, b):
    """out[i, :] += b for every row i."""
    h = out.shape[1]
    for i in prange(out.shape[0]):
        outr = out[i]
        for j in range(h):
            outr[j] += b[j]


def _column_sums(dy, db, partial):
    """db = dy.sum(0) accumulated in float64.

    Rows are split into ``partial.shape[0]`` blocks, one per thread; each
    block sums its rows into its own zeroed float64 row of ``partial``
    (n_blocks x H, so O(H) extra memory, allocated by the caller) with a
    contiguous, vectorisable inner loop, and the blocks are added at the end.
    This is parallel whatever the shape, unlike a split over columns, which
    has nothing to share out when H is small.
    """
    n, h = dy.shape
    n_blocks = partial.shape[0]
    rows_per_block = (n + n_blocks - 1) // n_blocks
    for k in prange(n_blocks):
        acc = partial[k]
        for i in range(k * rows_per_block, min(n, (k + 1) * rows_per_block)):
            dyr = dy[i]
            for j in range(h):
                acc[j] += dyr[j]
    for j in range(h):
        s = 0.0
        for k in range(n_blocks):
            s += partial[k, j]
        db[j] = s


def _logsumexp(x, out):
    """out[i] = log(sum(exp(x[i]))).

    Shift by the row max m so no exp overflows (every term <= 1 and the
    max's term is exactly 1, so the log's argument is in [1, C]).  When m is
    not finite the shift is 0 instead: an all -inf row then sums exp(-inf)=0
    and gives log(0) = -inf, a row with +inf sums to +inf, and NaN (m is NaN
    then) propagates through the sum -- SciPy's rule, as in the reference.
    """
    for i in prange(x.shape[0]):
        xr = x[i]
        m = np.float64(_row_max(xr))
        shift = m if math.isfinite(m) else 0.0
        s = _row_expsum(xr, shift, None)
        out[i] = math.log(s) + shift


def _softmax(x, out):
    """out[i] = exp(x[i] - m) / sum(exp(x[i] - m)), m the row max.

    Three passes per row: the max; the exponentials, stored straight into
    ``out`` and summed in float64; a scale by 1/sum.  Storing rounds the
    exponential once to the output dtype and the scale rounds again, so
    float32 results are within ~1 ulp.  An all -inf row has m = -inf,
    x - m = NaN and so gives NaN, like a row with +inf or NaN.  ``out`` may
    be ``x``: each element is read before it is overwritten.
    """
    for i in prange(x.shape[0]):
        xr = x[i]
        outr = out[i]
        m = np.float64(_row_max(xr))
        s = _row_expsum(xr, m, outr)
        # float32: a float32 product with 1/s rounded to float32 (at most 1
        # ulp more than rounding in double, and no conversions), as Cython.
        inv_s = _in_dtype(outr, 1.0 / s)
        for j in range(outr.shape[0]):
            outr[j] = outr[j] * inv_s


def _log_softmax(x, out):
    """out[i] = (x[i] - m) - log(sum(exp(x[i] - m))).

    Subtracting m first and log(sum) second (not x - (m + log(sum))) keeps
    the result exact for entries far below the max: log_softmax([1000, 1, 0])
    is exactly [0, -999, -1000] since the sum is 1 + tiny = 1.  ``out`` may be
    ``x``.
    """
    for i in prange(x.shape[0]):
        xr = x[i]
        outr = out[i]
        m = np.float64(_row_max(xr))
        log_s = math.log(_row_expsum(xr, m, None))
        # In the data's precision (float32: within 2 ulp, as Cython's).
        m_t = _in_dtype(xr, m)
        log_s_t = _in_dtype(xr, log_s)
        for j in range(xr.shape[0]):
            outr[j] = (xr[j] - m_t) - log_s_t


def _softmax_backward(dy, y, out):
    """out = y * (dy - sum(dy * y)) per row; out may alias dy or y."""
    for i in prange(y.shape[0]):
        dyr = dy[i]
        yr = y[i]
        outr = out[i]
        dot = 0.0
        for j in range(yr.shape[0]):
            dot += np.float64(dyr[j]) * np.float64(yr[j])
        dot_t = _in_dtype(yr, dot)  # the output pass in the data's precision
        for j in range(yr.shape[0]):
            outr[j] = yr[j] * (dyr[j] - dot_t)


def _log_softmax_backward(dy, y, out):
    """out = dy - exp(y) * sum(dy) per row; out may alias dy or y."""
    for i in prange(y.shape[0]):
        dyr = dy[i]
        yr = y[i]
        outr = out[i]
        sum_dy = 0.0
        for j in range(yr.shape[0]):
            sum_dy += dyr[j]
        t = _in_dtype(yr, sum_dy)  # the output pass in the data's precision
        for j in range(yr.shape[0]):
            outr[j] = dyr[j] - _in_dtype(yr, _exp_diff(yr, yr[j], 0.0)) * t


def _cross_entropy_index(logits, target, weight, ignore_index,
                         label_smoothing, scale, loss, grad):
    """Loss (and scaled gradient) of each row for class-index targets.

    With z a row, m its max, s = sum_c exp(z_c - m) and lse = m + log(s):
    log p_c = (z_c - m) - log(s), so with eps = label_smoothing,
    w_t the target's weight and W = sum_c w_c,

        loss = -(1-eps) w_t log p_t - eps/C sum_c w_c log p_c
             = -(1-eps) w_t ((z_t - m) - log s)
               - eps/C (sum_c w_c (z_c - m) - W log s)

    so one pass over the row gives s and the smoothing sum together.  The
    smoothing term is not evaluated at all when eps == 0: with a -inf logit
    it would be 0 * inf = NaN (PyTorch skips it too).  The gradient is
    scale * ((1-eps) w_t + eps/C W) p_c - scale * eps/C w_c, minus
    scale * (1-eps) w_t at c = t.  The exponentials of the exp-sum pass are
    stored in ``grad`` (so ``grad`` may be ``logits``: z_t is read first and
    every z_c is read before its slot is overwritten) and scaled in a last
    pass.  The target entry is then rewritten from p_t computed in float64:
    p_t - 1 cancels when the prediction is confident, and doing it on the
    float32-rounded p_t would lose all its digits.
    """
    n, c = logits.shape
    smoothing = label_smoothing > 0.0
    eps_per_class = label_smoothing / c
    if weight is None:
        weight_sum = np.float64(c)
    else:
        weight_sum = 0.0
        for j in range(c):
            weight_sum += weight[j]
    for i in prange(n):
        t = target[i]
        if t == ignore_index:
            loss[i] = 0.0
            if grad is not None:
                gr = grad[i]
                for j in range(c):
                    gr[j] = 0.0
        else:
            zr = logits[i]
            m = np.float64(_row_max(zr))
            z_t = np.float64(zr[t])
            if weight is None:
                w_t = 1.0
            else:
                w_t = np.float64(weight[t])
            smooth_sum = 0.0
            if grad is None:
                if smoothing:
                    s, smooth_sum = _row_expsum_wdot(zr, m, weight, None)
                else:
                    s = _row_expsum(zr, m, None)
            else:
                if smoothing:
                    s, smooth_sum = _row_expsum_wdot(zr, m, weight, grad[i])
                else:
                    s = _row_expsum(zr, m, grad[i])
            log_s = math.log(s)
            row_loss = -(1.0 - label_smoothing) * w_t * ((z_t - m) - log_s)
            if smoothing:
                row_loss -= eps_per_class * (smooth_sum - weight_sum * log_s)
            loss[i] = row_loss
            if grad is not None:
                gr = grad[i]
                sc = scale[i]
                a = (1.0 - label_smoothing) * w_t + eps_per_class * weight_sum
                coef = sc * a / s
                if smoothing:
                    if weight is None:
                        offset = sc * eps_per_class
                        for j in range(c):
                            gr[j] = coef * gr[j] - offset
                    else:
                        sc_eps = sc * eps_per_class
                        for j in range(c):
                            gr[j] = coef * gr[j] - sc_eps * weight[j]
                else:
                    for j in range(c):
                        gr[j] = coef * gr[j]
                p_t = math.exp(z_t - m) / s
                gr[t] = sc * (a * p_t - eps_per_class * w_t
                              - (1.0 - label_smoothing) * w_t)


def _cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss,
                        grad):
    """Loss (and scaled gradient) of each row for probability targets.

    With q_c = (1-eps) target_c + eps/C (exactly target_c when eps == 0),
    v_c = w_c q_c, V = sum_c v_c and d_c = z_c - m:

        loss = -sum_c v_c ((z_c - m) - log s) = V log s - sum_c v_c d_c

    (both terms >= 0 for non-negative targets: no cancellation), and
    grad_c = scale * (V p_c - v_c).  One pass gives s, V and sum v_c d_c and
    stores exp(d_c) in ``grad`` (which may be ``logits``).  In float32 the
    gradient's absolute error is a few float32 ulps of V p_c, as for any
    float32 computation of it.
    """
    n, c = logits.shape
    one_minus_eps = 1.0 - label_smoothing
    eps_per_class = label_smoothing / c
    for i in prange(n):
        zr = logits[i]
        tr = target[i]
        m = np.float64(_row_max(zr))
        s = 0.0
        v_sum = 0.0
        vd_sum = 0.0
        for j in range(c):
            d = np.float64(zr[j]) - m
            e = _exp_diff(zr, zr[j], m)
            if grad is not None:
                grad[i, j] = e
            s += e
            v = one_minus_eps * np.float64(tr[j]) + eps_per_class
            if weight is not None:
                v *= weight[j]
            v_sum += v
            vd_sum += v * d
        loss[i] = v_sum * math.log(s) - vd_sum
        if grad is not None:
            gr = grad[i]
            sc = scale[i]
            coef = sc * v_sum / s
            for j in range(c):
                v = one_minus_eps * np.float64(tr[j]) + eps_per_class
                if weight is not None:
                    v *= weight[j]
                gr[j] = coef * gr[j] - sc * v


bias_add = _serial_and_parallel(_bias_add)
column_sums = _serial_and_parallel(_column_sums)
logsumexp = _serial_and_parallel(_logsumexp)
softmax = _serial_and_parallel(_softmax)
log_softmax = _serial_and_parallel(_log_softmax)
softmax_backward = _serial_and_parallel(_softmax_backward)
log_softmax_backward = _serial_and_parallel(_log_softmax_backward)
cross_entropy_index = _serial_and_parallel(_cross_entropy_index)
cross_entropy_prob = _serial_and_parallel(_cross_entropy_prob)
