"""Numba kernel bodies for :mod:`fastdl.backends.numba.core`.

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
* Row maxima skip NaN, as the Cython kernels' ``vmaxps`` loops do:
  ``llvm.maxnum`` (:func:`_fmaxnum`) for the max alone; for the max and
  min together each NaN becomes -inf and both are ``llvm.maxnum`` of
  numbers (:func:`_fmaxnum_of_numbers`, one instruction).  A row holding NaN still
  gets a NaN in its exp-sum (exp(NaN - m) is NaN), so every output of that
  row is NaN, which is the reference's rule.  Unlike a ``v > m`` select
  chain, LLVM vectorises a ``llvm.maxnum`` reduction without fastmath
  "nnan" on the function; see :func:`_row_max_and_min` for the timings.
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

from ... import _config as config

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


def _serial(body):
    """One lazy serial dispatcher of ``body`` (for kernels that never run in parallel)."""
    return _cached_kernel(dict(_OPTIONS, parallel=False), body)


def _serial_and_parallel(body, *, fastmath=None):
    """Two lazy dispatchers, ``(serial, parallel)``, from one kernel body.

    ``fastmath`` replaces the default flag set for this body (the elementwise
    family narrows it: see numba/elementwise.py).

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

def _maxnum_with(flags):
    """An intrinsic (a, b) -> ``llvm.maxnum(a, b)`` carrying the fast-math
    ``flags`` on the call."""
    @intrinsic
    def maxnum(typingctx, a, b):
        if not (isinstance(a, types.Float) and a == b):
            return None

        def codegen(context, builder, signature, args):
            lltype = context.get_value_type(signature.return_type)
            fn = builder.module.declare_intrinsic(
                "llvm.maxnum", [lltype], ir.FunctionType(lltype, [lltype, lltype]))
            return builder.call(fn, args, fastmath=flags)

        return a(a, b), codegen
    return maxnum


#: IEEE 754 maxNum: the other operand when one is NaN (NaN only when both
#: are); either zero for max(-0, +0).
_fmaxnum = _maxnum_with(())

#: maxNum of a and b that are never NaN (callers replace NaN first; a NaN
#: here would be poison): with "nnan" it lowers to one max instruction,
#: without it to a max, an unordered compare and a blend.
_fmaxnum_of_numbers = _maxnum_with(("nnan",))


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


def _round_log2e_f32_with(magic_value):
    """An intrinsic x -> (kb, k): kb = fma(x, log2 e, magic), whose addition
    rounds x log2 e to the integer k held in kb's low bits, and
    k = kb - magic exactly; magic 1.5 * 2^23 + 254 for the full exp,
    + 126 for the in-range one."""
    @intrinsic
    def round_log2e(typingctx, x):
        if x != types.float32:
            return None
        sig = types.UniTuple(types.float32, 2)(x)

        def codegen(context, builder, signature, args):
            f32 = ir.FloatType()
            fma = builder.module.declare_intrinsic(
                "llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
            magic = ir.Constant(f32, float(magic_value))
            kb = builder.call(fma, [args[0], ir.Constant(f32, float(_EXPF_LOG2E)), magic])
            return context.make_tuple(builder, signature.return_type,
                                      (kb, builder.fsub(kb, magic)))

        return sig, codegen
    return round_log2e


_round_log2e_f32 = _round_log2e_f32_with(_EXPF_MAGIC)


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
def _expf_poly_scaled(r, kb):
    """fastdl_expf's polynomial of the reduced argument r, times 2^k from kb:
    the end that :func:`_exp_diff_float32` and :func:`_exp_rounded_float32`
    share."""
    q = _EXPF_P6 * r + _EXPF_P5
    q = q * r + _EXPF_P4
    q = q * r + _EXPF_P3
    q = q * r + _EXPF_P2
    q = q * r + _EXPF_ONE
    q = q * r + _EXPF_ONE
    return _scale_by_kb_f32(q, kb)


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
    return _expf_poly_scaled(r + e, kb)


@numba.njit(inline="always", **_OPTIONS)
def _exp_rounded_float32(x, shift):
    """exp(x - shift) for float32 x and shift, x - shift rounded to float32
    first: :func:`_exp_diff_float32` without the TwoSum, for the passes
    that only sum the exps (the float32 ``NAME_rounded`` exps of the Cython
    kernels, kernels/_fastexp.h).  Rounding the difference moves a term by
    |x - shift| 2^-24 relative, and a term's share of a sum whose largest
    term is 1 weighs that by exp(x - shift): the sum moves by at most
    2^-24 / e relative.
    """
    d = x - shift
    dc = _EXPF_LO if _EXPF_LO > d else d  # noqa: FURB136 (NaN passes)
    dc = _EXPF_HI if _EXPF_HI < dc else dc  # noqa: FURB136
    kb, k = _round_log2e_f32(dc)
    r = k * _EXPF_NEG_LN2_HI + dc
    r = k * _EXPF_LN2_LO_CORR + r
    return _expf_poly_scaled(r, kb)


#: The in-range float32 exp (below): magic 1.5 * 2^23 + 126, and the lowest
#: difference it takes (kernels/_fastexp.h: FASTDL_EXPF_FAST_MIN).
_EXPF_MAGIC_IN_RANGE = _F32(12583038.0)
_EXPF_FAST_MIN = -86.0
_F32_TWO = _F32(2.0)


_round_log2e_in_range_f32 = _round_log2e_f32_with(_EXPF_MAGIC_IN_RANGE)


@intrinsic
def _scale1_by_kb_f32(typingctx, q, kb):
    """q * 2^(k-1), the power of two made by shifting kb's bits (k + 126 in
    its low bits) into the exponent field."""
    if not (q == types.float32 and kb == types.float32):
        return None

    def codegen(context, builder, signature, args):
        qv, kbv = args
        i32, f32 = ir.IntType(32), ir.FloatType()
        bits = builder.shl(builder.bitcast(kbv, i32), ir.Constant(i32, 23))
        return builder.fmul(qv, builder.bitcast(bits, f32))

    return types.float32(types.float32, types.float32), codegen


@numba.njit(inline="always", **_OPTIONS)
def _expf_poly2_scaled1(r, kb):
    """2p(r), the polynomial of :func:`_expf_poly_scaled` with every
    coefficient doubled (each Horner step exactly twice p's), times 2^(k-1)
    from kb: the end that the two in-range exps share."""
    q = (_F32_TWO * _EXPF_P6) * r + _F32_TWO * _EXPF_P5
    q = q * r + _F32_TWO * _EXPF_P4
    q = q * r + _F32_TWO * _EXPF_P3
    q = q * r + _F32_TWO * _EXPF_P2
    q = q * r + _F32_TWO * _EXPF_ONE
    q = q * r + _F32_TWO * _EXPF_ONE
    return _scale1_by_kb_f32(q, kb)


@numba.njit(inline="always", **_OPTIONS)
def _exp_rounded_in_range_float32(x, shift):
    """:func:`_exp_rounded_float32`, bit for bit, where x - shift rounds into
    [-86, 0] or is NaN: the Cython kernels' in-range exp
    (FASTDL_DEFINE_EXPF_V_IN_RANGE in kernels/_fastexp.h, whose comment
    gives the argument).  No clamps, and one multiply by 2^(k-1) (k >= -125,
    so it and the result are normal) of 2p, the polynomial with every
    coefficient doubled (exactly twice each Horner step of p).
    """
    d = x - shift
    kb, k = _round_log2e_in_range_f32(d)
    r = k * _EXPF_NEG_LN2_HI + d
    r = k * _EXPF_LN2_LO_CORR + r
    return _expf_poly2_scaled1(r, kb)


@numba.njit(inline="always", **_OPTIONS)
def _exp_diff_in_range_float32(x, shift):
    """:func:`_exp_diff_float32`, bit for bit, where x - shift is in [-86, 0]
    (exactly) or NaN: the in-range reduction and scaling of
    :func:`_exp_rounded_in_range_float32` with the TwoSum error added to the
    reduced argument, as the Cython kernels' in-range storing exp
    (FASTDL_DEFINE_EXPF_V_IN_RANGE).  In that range the full version's
    clamps keep d and its error, so both evaluate the same polynomial
    argument; the rest is the in-range argument."""
    d, e = _two_diff_f32(x, shift)
    kb, k = _round_log2e_in_range_f32(d)
    r = k * _EXPF_NEG_LN2_HI + d
    r = k * _EXPF_LN2_LO_CORR + r
    r = r + e
    return _expf_poly2_scaled1(r, kb)


def _exp_diff_in_range(like, x, shift):
    """:func:`_exp_diff` where every x - shift of the row is in [-86, 0]:
    float32's in-range exp of the exact difference (the same bits,
    shorter); float64 unchanged.  Only callable from compiled code."""
    raise NotImplementedError


@overload(_exp_diff_in_range, jit_options=_OPTIONS)
def _exp_diff_in_range_overload(like, x, shift):
    if isinstance(like, types.Array) and like.dtype == types.float32:
        return lambda like, x, shift: np.float64(
            _exp_diff_in_range_float32(np.float32(x), np.float32(shift)))
    return lambda like, x, shift: _exp_for_float64(np.float64(x) - shift)


def _exp_term_in_range(like, x, shift):
    """:func:`_exp_term` where every x - shift of the row is in [-86, 0]:
    float32's in-range exp (the same bits, shorter); float64 unchanged.
    Only callable from compiled code."""
    raise NotImplementedError


@overload(_exp_term_in_range, jit_options=_OPTIONS)
def _exp_term_in_range_overload(like, x, shift):
    if isinstance(like, types.Array) and like.dtype == types.float32:
        return lambda like, x, shift: np.float64(
            _exp_rounded_in_range_float32(np.float32(x), np.float32(shift)))
    return lambda like, x, shift: _exp_for_float64(np.float64(x) - shift)


def _exp_term(like, x, shift):
    """``exp(x - shift)`` as a float64, for a pass that only sums the exps:
    as :func:`_exp_diff` but with float32's difference rounded first
    (:func:`_exp_rounded_float32`).  Only callable from compiled code."""
    raise NotImplementedError


@overload(_exp_term, jit_options=_OPTIONS)
def _exp_term_overload(like, x, shift):
    if isinstance(like, types.Array) and like.dtype == types.float32:
        return lambda like, x, shift: np.float64(
            _exp_rounded_float32(np.float32(x), np.float32(shift)))
    return lambda like, x, shift: _exp_for_float64(np.float64(x) - shift)


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
    """Max of a non-empty row's non-NaN values (NaN when they all are), by
    ``llvm.maxnum`` (:func:`_fmaxnum`): a NaN in the row reaches every
    output through the row's exp-sum.  (The NaN-to-(-inf) form of
    :func:`_row_max_and_min` does not vectorise for the max alone: LLVM
    folds the select into the max.)  One thread, 128x1000 rows, float32 and
    float64: 0.14 ns per element, against 0.17-0.20 with llvm.maximum."""
    m = xr[0]
    for j in range(1, xr.shape[0]):
        m = _fmaxnum(m, xr[j])
    return m


@_njit
def _row_max_and_min(xr):
    """(max, min) of a non-empty row in one loop: the max of its non-NaN
    values (-inf when they all are NaN) and the min, or -inf when the row
    holds a NaN (a bound, which keeps such a row off the in-range exp; its
    exp-sum is NaN either way).  Each NaN becomes -inf, and the min is
    -max(-x), exact, so both are maxima of numbers (:func:`_fmaxnum_of_numbers`):
    one thread, 128x1000 float32, 0.081 ns per element against 0.164 with
    a plain llvm.maxnum and 0.241 with the NaN-propagating llvm.maximum; a
    plain select for the min made the loop 30x slower (LLVM vectorised
    neither)."""
    neg_inf = _in_dtype(xr, -np.inf)
    v = xr[0]
    v = v if v == v else neg_inf
    m = v
    neg = -v
    for j in range(1, xr.shape[0]):
        v = xr[j]
        v = v if v == v else neg_inf
        m = _fmaxnum_of_numbers(m, v)
        neg = _fmaxnum_of_numbers(neg, -v)
    return m, -neg


def _row_max_min(xr):
    """(max of the row, a lower bound of it) for :func:`_row_expsum_only`:
    the row's min for float32, whose summing passes can use the in-range
    exp; -inf for float64, which has none (the min would only cost).  Only
    callable from compiled code."""
    raise NotImplementedError


@overload(_row_max_min, jit_options=_OPTIONS)
def _row_max_min_overload(xr):
    if isinstance(xr, types.Array) and xr.dtype == types.float32:
        return lambda xr: _row_max_and_min(xr)
    return lambda xr: (_row_max(xr), -np.inf)


@_njit
def _row_expsum_only(xr, shift, lo):
    """``sum_j exp(xr[j] - shift)`` in float64, the terms only summed: the
    exps of :func:`_exp_term` (float32's difference rounded first, as the
    Cython kernels' summing passes do), or of the shorter
    :func:`_exp_term_in_range` (the same bits) when shift is the row's
    finite max and ``lo``, a lower bound of the row, is within 86 of it.
    Measured, one thread, 4096x1000 float32, the row loop with its max
    pass: 2.52 ms with the exact difference's exp, 2.18 with the rounded
    one."""
    s = 0.0
    if math.isfinite(shift) and np.float64(lo) - shift >= _EXPF_FAST_MIN:
        for j in range(xr.shape[0]):
            s += _exp_term_in_range(xr, xr[j], shift)
    else:
        for j in range(xr.shape[0]):
            s += _exp_term(xr, xr[j], shift)
    return s


@_njit
def _row_expsum(xr, shift, er, lo):
    """``sum_j exp(xr[j] - shift)`` in float64, storing each term (the exp of
    the exact difference) in ``er``; with the shorter
    :func:`_exp_diff_in_range` (the same bits) when shift is the row's
    finite max and ``lo``, a lower bound of the row, is within 86 of it (as
    :func:`_row_expsum_only`)."""
    s = 0.0
    if math.isfinite(shift) and np.float64(lo) - shift >= _EXPF_FAST_MIN:
        for j in range(xr.shape[0]):
            e = _exp_diff_in_range(xr, xr[j], shift)
            er[j] = e
            s += e
    else:
        for j in range(xr.shape[0]):
            e = _exp_diff(xr, xr[j], shift)
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
    """out[i, :] += b for every row i (serial: see ``_config.BIAS_SERIAL``)."""
    h = out.shape[1]
    for i in range(out.shape[0]):
        outr = out[i]
        for j in range(h):
            outr[j] += b[j]


def _column_sums(dy, db, acc):
    """db = dy.sum(0) accumulated in float64 (serial: see ``_config.BIAS_SERIAL``).

    Each row is added into the zeroed float64 row ``acc`` (H,) given by the
    caller, a contiguous, vectorisable inner loop with no cross-lane
    reduction.
    """
    n, h = dy.shape
    for i in range(n):
        dyr = dy[i]
        for j in range(h):
            acc[j] += dyr[j]
    for j in range(h):
        db[j] = acc[j]


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
        m, lo = _row_max_min(xr)
        m = np.float64(m)
        if math.isfinite(m):
            s = _row_expsum_only(xr, m, lo)
            shift = m
        else:
            s = _row_expsum_only(xr, 0.0, -np.inf)
            shift = 0.0
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
        m, lo = _row_max_min(xr)
        m = np.float64(m)
        s = _row_expsum(xr, m, outr, lo)
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
        m, lo = _row_max_min(xr)
        m = np.float64(m)
        log_s = math.log(_row_expsum_only(xr, m, lo))
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
            sc = 0.0
            if grad is not None:
                sc = scale[i]
            loss[i] = _ce_index_row(logits, t, weight, weight_sum, label_smoothing, sc,
                                    grad, i)


def _cross_entropy_index_fast(logits, target, ignore_index, label_smoothing, mean,
                              grad, loss, exact_max_rows):
    """The common case of the index cross-entropy in one kernel call (see
    ``cross_entropy_index_fast`` in fastdl.backends): False, having written
    nothing, unless every label is in [0, C) and none is ``ignore_index``;
    else the rows as :func:`_cross_entropy_index` computes them with unit
    weights and the scale 1/N (``mean``) or 1, and True with the exact sum
    of the row losses below ``exact_max_rows`` rows (NaN where math.fsum
    must decide, and above: the caller sums).  One call instead of the
    labels' argmin/argmax, the scale array and the sum's own call: 64x10
    float32, cross_entropy 9.3-9.6 -> 6.6-6.7 us, with the gradient
    10.4-10.9 -> 7.6-7.8 (one thread, against the previous build)."""
    n, c = logits.shape
    lo = target[0]
    hi = lo
    for i in range(1, n):
        t = target[i]
        lo = min(lo, t)
        hi = max(hi, t)
    if lo < 0 or hi >= c or (lo <= ignore_index and ignore_index <= hi):
        return False, np.nan
    sc = 1.0 / n if mean else 1.0
    weight_sum = np.float64(c)
    for i in prange(n):
        loss[i] = _ce_index_row(logits, target[i], None, weight_sum, label_smoothing, sc,
                                grad, i)
    if n >= exact_max_rows:
        return True, np.nan
    return True, exact_sum(loss)


@numba.njit(inline="always", **_OPTIONS)
def _ce_index_row(logits, t, weight, weight_sum, label_smoothing, sc, grad, i):
    """Row i's loss for its (not ignored) target t, and its gradient times
    sc into grad[i] when grad is given: the row of :func:`_cross_entropy_index`."""
    c = logits.shape[1]
    smoothing = label_smoothing > 0.0
    eps_per_class = label_smoothing / c
    zr = logits[i]
    m, lo = _row_max_min(zr)
    m = np.float64(m)
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
            s = _row_expsum_only(zr, m, lo)
    else:
        if smoothing:
            s, smooth_sum = _row_expsum_wdot(zr, m, weight, grad[i])
        else:
            s = _row_expsum(zr, m, grad[i], lo)
    log_s = math.log(s)
    row_loss = -(1.0 - label_smoothing) * w_t * ((z_t - m) - log_s)
    if smoothing:
        row_loss -= eps_per_class * (smooth_sum - weight_sum * log_s)
    if grad is not None:
        gr = grad[i]
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
            # float32: a float32 product with coef rounded to float32,
            # as softmax's scale and the Cython kernels' scale_row.
            coef_t = _in_dtype(gr, coef)
            for j in range(c):
                gr[j] = gr[j] * coef_t
        p_t = math.exp(z_t - m) / s
        gr[t] = sc * (a * p_t - eps_per_class * w_t
                      - (1.0 - label_smoothing) * w_t)
    return row_loss


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


def _exact_sum(x):
    """``math.fsum(x)``: the correctly rounded sum, or NaN where this cannot
    give it (a non-finite term or partial sum), for the caller to ask
    math.fsum itself (which returns the special value or raises its error).

    Shewchuk's exact partials ("Adaptive precision floating-point
    arithmetic", 1997) with the half-even correction of the final rounding,
    the method math.fsum documents; the same steps as _exact_sum in
    kernels/cross_entropy.pyx.  Compiled without fastmath flags: "reassoc"
    would let LLVM simplify the two-sums' error terms to 0.
    """
    p = np.empty(_MAX_PARTIALS)
    m = 0
    for i in range(x.shape[0]):
        v = x[i]
        if not math.isfinite(v):
            return math.nan
        k = 0
        for j in range(m):
            y = p[j]
            if abs(v) < abs(y):
                v, y = y, v
            hi = v + y
            lo = y - (hi - v)
            if lo != 0.0:
                p[k] = lo
                k += 1
            v = hi
        if not math.isfinite(v) or k == _MAX_PARTIALS:
            return math.nan
        p[k] = v
        m = k + 1
    hi = 0.0
    if m > 0:
        m -= 1
        hi = p[m]
        lo = 0.0
        while m > 0:
            v = hi
            m -= 1
            y = p[m]
            hi = v + y
            yr = hi - v
            lo = y - yr
            if lo != 0.0:
                break
        # The partials below p[m] can tip a tie (lo exactly half an ulp of
        # hi) the other way: round half to even as if they were included.
        if m > 0 and ((lo < 0.0 and p[m - 1] < 0.0) or (lo > 0.0 and p[m - 1] > 0.0)):
            y = lo * 2.0
            v = hi + y
            yr = v - hi
            if y == yr:
                hi = v
    return hi


#: Shewchuk's partials are non-overlapping doubles at least 53 exponent
#: steps apart, so a finite sum never needs more than ~40.
_MAX_PARTIALS = 64


bias_add = _serial(_bias_add)
column_sums = _serial(_column_sums)
logsumexp = _serial_and_parallel(_logsumexp)
softmax = _serial_and_parallel(_softmax)
log_softmax = _serial_and_parallel(_log_softmax)
softmax_backward = _serial_and_parallel(_softmax_backward)
log_softmax_backward = _serial_and_parallel(_log_softmax_backward)
cross_entropy_index = _serial_and_parallel(_cross_entropy_index)
cross_entropy_prob = _serial_and_parallel(_cross_entropy_prob)
exact_sum = _cached_kernel(dict(_OPTIONS, parallel=False, fastmath=False), _exact_sum)
cross_entropy_index_fast = _serial_and_parallel(_cross_entropy_index_fast)


# ---------------------------------------------------------------------------
# float64 log1p, expm1 and tanh without libm calls
# ---------------------------------------------------------------------------
#
# math.log1p / math.expm1 / math.tanh are scalar libm calls, so a loop of
# them runs one element at a time (about 7-14 ns per element here).  The
# three functions below are plain arithmetic, selects and integer bit
# operations (no float -> int conversion, which AVX2 lacks), which LLVM
# vectorises.  Measured, a loop over 4M float64 in [0, 1], one thread, AMD
# Zen 4 (AVX-512), medians of 3 x 9 runs, ns per element, libm -> no flags
# / "reassoc"+"contract": log1p 8.6 -> 1.35 / 1.07, expm1 8.6 -> 1.60 /
# 1.19, tanh 12.2 -> 1.78 / 1.27; compiled for AVX2 only (NUMBA_CPU_NAME=
# haswell) on the same machine, one run of 7: 2.2 / 1.7, 2.6 / 1.8,
# 3.3 / 2.2.  kernels/_fastexp.h has the same algorithms with the same
# constants (fastdl_log1p, fastdl_expm1, fastdl_tanh).  Compiled without the
# "contract" flag (the elementwise loops use no fastmath flags) they give
# the C functions' bits, -ffp-contract=off being setup.py's flag; with it
# LLVM fuses some multiply-adds, which changes the last bit of a few results
# and keeps them within the same bounds.  tests/test_vector_math.py checks
# accuracy, special values, vectorisation and the agreement with C.
#
# Like the rest of this module they assume error_model="numpy" in the loop
# they are inlined into (Numba inlines them at IR level, so the caller's
# flags and error model apply): log1p(-1) divides 0 by 0 on the way to its
# selected -inf, which the Python error model would turn into an exception,
# and its division checks would stop the vectorisation anyway.
#
# The error-free transformations are intrinsics whose instructions carry no
# fast-math flags, so that no caller's flags ("reassoc" in the reducing
# loops) can let LLVM simplify their exact error terms to 0.

@intrinsic
def _two_sum_f64(typingctx, a, b):
    """(s, e): s = a + b rounded and e = (a + b) - s exactly (Knuth's
    TwoSum, TAOCP vol. 2, 4.2.2: any two float64s, no FMA needed), with no
    fast-math flags."""
    if not (a == types.float64 and b == types.float64):
        return None
    sig = types.UniTuple(types.float64, 2)(a, b)

    def codegen(context, builder, signature, args):
        x, y = args
        s = builder.fadd(x, y)
        bb = builder.fsub(s, x)
        e = builder.fadd(builder.fsub(x, builder.fsub(s, bb)), builder.fsub(y, bb))
        return context.make_tuple(builder, signature.return_type, (s, e))

    return sig, codegen


@intrinsic
def _fast_two_sum_f64(typingctx, a, b):
    """(s, e): s = a + b rounded and e = b - (s - a), which is the exact
    (a + b) - s when a == 0 or exponent(a) >= exponent(b) (Dekker's
    Fast2Sum, 1971), with no fast-math flags."""
    if not (a == types.float64 and b == types.float64):
        return None
    sig = types.UniTuple(types.float64, 2)(a, b)

    def codegen(context, builder, signature, args):
        x, y = args
        s = builder.fadd(x, y)
        e = builder.fsub(y, builder.fsub(s, x))
        return context.make_tuple(builder, signature.return_type, (s, e))

    return sig, codegen


# log1p: log(m) = 2 atanh(s) = 2s + s R(s^2), s = (m - 1)/(m + 1), for m in
# [0x1.6a09ep-1, 0x1.6a09ep0) (sqrt(1/2) and sqrt(2) cut to 20 fraction
# bits), so |s| <= 0.171573 and z = s^2 <= 0.0294374.  R(z) = z Q(z), Q of
# degree 6 interpolating 2 (atanh(s)/s - 1)/z at the 7 Chebyshev nodes of
# [0, 0.0294374] (60-digit mpmath); relative error of 2s + s R(s^2) against
# 2 atanh(s) with the rounded coefficients, 2001 points: 4.6e-18 (2^-57.6,
# 0.03 ulp).  fdlibm's e_log.c and s_log1p.c use the same form with minimax
# coefficients (Lg1..Lg7, bound 2^-58.45).
_LOG1P_R1 = 6.66666666666666963e-01
_LOG1P_R2 = 3.99999999998995048e-01
_LOG1P_R3 = 2.85714286259761863e-01
_LOG1P_R4 = 2.22222111346804779e-01
_LOG1P_R5 = 1.81828891336114851e-01
_LOG1P_R6 = 1.53317213230113630e-01
_LOG1P_R7 = 1.46164531156136090e-01
# Bit-pattern constants of the reduction u = 2^k m (musl's log1p.c does the
# same on the high word): u's bits plus _LOG1P_OFFSET (0x3ff00000 -
# 0x3fe6a09e in the high word) carry into the exponent field exactly when
# u's significand is >= 0x1.6a09e, so that field is then k + 1023 for
# m in [0x1.6a09ep-1, 0x1.6a09ep0); the fraction bits of that sum plus
# _LOG1P_M_BASE (the bits of 0x1.6a09ep-1) undo the offset and are m: they
# carry into the exponent (m in [1, 1.4142)) exactly when the first
# addition did not.
_LOG1P_OFFSET = 0x00095F6200000000
_LOG1P_M_BASE = 0x3FE6A09E00000000
_FRACTION_MASK = 0x000FFFFFFFFFFFFF
# k as a float64 without an int -> float conversion: the bits 0x433... + e
# are the float64 2^52 + e (e < 2^52), minus 2^52 + 1023 exactly.
_TWO52_BITS = 0x4330000000000000
_TWO52_PLUS_BIAS = 4503599627371519.0


@numba.njit(inline="always", **_OPTIONS)
def _log_reduced(u, c, k_sub):
    """log(u) + c for a positive normal u with k_sub taken off its exponent:
    the reduction and polynomial :func:`_log1p_for_float64` and
    :func:`_log_for_float64` share (see the former)."""
    ix = _int64_from_float64(u) + _LOG1P_OFFSET
    k = _float64_from_bits((ix >> 52) + _TWO52_BITS) - _TWO52_PLUS_BIAS
    k = k - k_sub
    m = _float64_from_bits((ix & _FRACTION_MASK) + _LOG1P_M_BASE)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    hfsq = 0.5 * f * f
    q = _LOG1P_R7
    q = q * z + _LOG1P_R6
    q = q * z + _LOG1P_R5
    q = q * z + _LOG1P_R4
    q = q * z + _LOG1P_R3
    q = q * z + _LOG1P_R2
    q = q * z + _LOG1P_R1
    r_z = q * z
    return k * _LN_2_HI - ((hfsq - (s * (hfsq + r_z) + (k * _LN_2_LO + c))) - f)


@numba.njit(inline="always", **_OPTIONS)
def _log1p_for_float64(x):
    """log(1 + x) for float64 ``x`` to 0.86 ulp, written for LLVM to vectorise.

    fdlibm's s_log1p.c without its branches (the algorithm of
    ``fastdl_log1p`` in kernels/_fastexp.h):

    * u = 1 + x rounded, and c = ((1 + x) - u) / u, the rounding error of u
      (exact, from TwoSum) relative to u: log(1 + x) = log(u) + log(1 + c)
      and |c| <= 2^-53, so log(1 + c) = c to within c^2/2 < 2^-107.  For
      x in [-1, -0.5] u is exact (Sterbenz) and c = 0; for tiny |x| u = 1,
      c = x and the result is x exactly (subnormals included).
    * u = 2^k m with m in [0.7071, 1.4142) from u's bits (see the
      constants above); k is an integer-valued float64 from the exponent
      bits.  u >= 2^-53 whenever x > -1, so u is never subnormal.
    * log(m) = log(1 + f), f = m - 1 (exact), as fdlibm evaluates it:
      f - (hfsq - s (hfsq + R)) with hfsq = f^2/2 and s = f/(2 + f), which
      is 2s + s R(s^2) rearranged so that the exact f comes last; then
      k ln2 added with ln2 in two parts (k * _LN_2_HI is exact) and the
      small terms k * _LN_2_LO and c folded in before the large ones.
    * Selects for what the arithmetic gets wrong: log1p(+-0) = +-0 (the sum
      would turn -0 into +0), log1p(-1) = -inf (u = 0), log1p(+inf) = +inf
      (TwoSum gives inf - inf), and NaN for x < -1 and for NaN (both fail
      x >= -1).

    Max error measured 0.854 ulp (0.851 with the "contract" flag) against
    log1p in long double on 1e7-point samples of [0, 1], [-1, 1], [0.3, 3]
    and log-uniform over (0, 1.8e308] and [-1, -1e-320); glibc's log1p: 0.62.
    """
    u, e = _two_sum_f64(1.0, x)
    y = _log_reduced(u, e / u, 0.0)
    y = x if x == 0.0 else y
    y = -np.inf if u == 0.0 else y
    y = np.inf if x == np.inf else y
    return y if x >= -1.0 else np.nan


# log: the subnormal threshold and the exact scale that makes a subnormal
# normal (2^-1022, 2^54).
_DBL_MIN = 2.2250738585072014e-308
_TWO54 = 18014398509481984.0


@numba.njit(inline="always", **_OPTIONS)
def _log_for_float64(x):
    """log(x) for float64 ``x`` to 0.85 ulp, written for LLVM to vectorise.

    The reduction u = 2^k m and the polynomial of :func:`_log1p_for_float64`
    on u = x itself, which has no rounding error to carry (the algorithm of
    ``fastdl_log`` in kernels/_fastexp.h).  A subnormal x (exponent bits 0,
    which the reduction would misread) is scaled by 2^54 first, exactly,
    and 54 taken off k.  Selects: log(+-0) = -inf, log(+inf) = +inf, NaN for
    x < 0 and NaN (both fail x >= 0).  Max error: see
    tests/test_vector_math.py.
    """
    sub = x < _DBL_MIN
    y = _log_reduced(x * _TWO54 if sub else x, 0.0, 54.0 if sub else 0.0)
    y = -np.inf if x == 0.0 else y
    y = np.inf if x == np.inf else y
    return y if x >= 0.0 else np.nan


# expm1: e^r - 1 = r + r^2 P(r) on |r| <= ln(2)/2, P of degree 10
# interpolating (e^r - 1 - r)/r^2 at the 11 Chebyshev nodes of
# [-0.3466, 0.3466] (80-digit mpmath); relative error of r + r^2 P(r)
# against expm1(r) with the rounded coefficients, 4001 points: 8.4e-19
# (2^-60.05).  (Degree 9 gave 4.1e-17, 0.18 ulp.)  P(0) is exactly 1/2.
_EXPM1_P10 = 2.09146851614180674e-09
_EXPM1_P9 = 2.51052144747514130e-08
_EXPM1_P8 = 2.75572736474510872e-07
_EXPM1_P7 = 2.75572554062850442e-06
_EXPM1_P6 = 2.48015873255443207e-05
_EXPM1_P5 = 1.98412698748158344e-04
_EXPM1_P4 = 1.38888888888837503e-03
_EXPM1_P3 = 8.33333333332613585e-03
_EXPM1_P2 = 4.16666666666666713e-02
_EXPM1_P1 = 1.66666666666666713e-01
_EXPM1_P0 = 0.5
# x is clamped to [-40, 710].  Below -54 ln2 = -37.43, e^x < 2^-54 is under
# half the spacing of float64s just above -1, so expm1 rounds to -1 there;
# above 709.79 it overflows (the exp bound of _exp_for_float64).
_EXPM1_LO = -40.0
_EXPM1_HI = 710.0
# 1.5 * 2^52 + 1023: for an integer-valued float64 j in [-1022, 1024],
# j + _POW2_MAGIC is exact and its bit pattern shifted left by 52 is 2^j.
_POW2_MAGIC = 6755399441056767.0


@numba.njit(inline="always", **_OPTIONS)
def _expm1_for_float64(x):
    """exp(x) - 1 for float64 ``x`` to 1.1 ulp, written for LLVM to vectorise.

    The algorithm of ``fastdl_expm1`` in kernels/_fastexp.h:

    * x = k ln2 + r as in :func:`_exp_for_float64` (k = rint(x log2(e)),
      ln2 in two parts), keeping the rounding error c_r of r = r_hi - k ln2_lo
      (Fast2Sum: r_hi = x - k ln2_hi is exact and far larger than k ln2_lo).
    * expm1(x) = 2^k ((1 - 2^-k) + expm1(r)) and expm1(r) = r + q with
      q = r^2 P(r) + c_r, so the bracket is t + r + q with t = 1 - 2^-k.
      t is formed by TwoSum (exact for -53 <= k <= 53; its error e_t matters
      for larger |k|), t + r by Fast2Sum (|t| >= 1/2 > |r| unless t == 0),
      and the bracket b = h + ((e_1 + e_t) + q) is rounded once: h + e_1 +
      e_t is exactly 1 - 2^-k + r, so only q's rounding errors and b's count.
      q is well below b except when k = 1 and r is near -ln2/2 (b = 0.21,
      q = 0.06: the 1.1 ulp worst case, x = 0.35).  For k = 0 this is
      x + q, the plain polynomial; for k <= -1 the bracket is e^r - 2^|k|,
      dominated by the exact t, and the result tends to -1 without
      cancellation.
    * b times 2^k in two factors (:func:`_pow2_factors`, normal for every k
      the clamp allows), so the result overflows to inf exactly when the
      rounded value exceeds the largest float64, as exp does.  2^-k is built
      from bits with -k clamped to >= -1022 (a normal number): for k >= 1023
      the difference is below 2^-1022 in b, which is about 1.
    * expm1(+-0) = +-0 by a select (the sum gives +0 for -0); tiny x gives x
      exactly; -inf clamps to -1, +inf to inf, NaN passes the clamp (the
      operand order of _exp_for_float64's) and comes out NaN.

    Max error measured 1.025 ulp (1.10 with the "contract" flag) against
    expm1 in long double on 1e7-point samples of [-1, 1], [-40, 709.78],
    [0.34, 0.45] and log-uniform over [1e-320, 709.78] and [-40, -1e-320];
    0.75 for x < 0 (glibc's expm1: 0.52).
    """
    xc = _EXPM1_LO if _EXPM1_LO > x else x  # noqa: FURB136 (NaN passes)
    xc = _EXPM1_HI if _EXPM1_HI < xc else xc  # noqa: FURB136
    k = np.rint(xc * _LOG2_E)
    r_hi = xc - k * _LN_2_HI
    r, c_r = _fast_two_sum_f64(r_hi, -(k * _LN_2_LO))
    p = _EXPM1_P10
    p = p * r + _EXPM1_P9
    p = p * r + _EXPM1_P8
    p = p * r + _EXPM1_P7
    p = p * r + _EXPM1_P6
    p = p * r + _EXPM1_P5
    p = p * r + _EXPM1_P4
    p = p * r + _EXPM1_P3
    p = p * r + _EXPM1_P2
    p = p * r + _EXPM1_P1
    p = p * r + _EXPM1_P0
    q = (r * r) * p + c_r
    minus_k = -1022.0 if -1022.0 > -k else -k  # noqa: FURB136
    w = _float64_from_bits(_int64_from_float64(minus_k + _POW2_MAGIC) << 52)
    t, e_t = _two_sum_f64(1.0, -w)
    h, e_1 = _fast_two_sum_f64(t, r)
    b = h + ((e_1 + e_t) + q)
    scale_1, scale_2 = _pow2_factors(k)
    y = (b * scale_1) * scale_2
    return x if x == 0.0 else y


# tanh for |x| < _TANH_SMALL: tanh(a) = a - a^3 N(z)/D(z), z = a^2, from
# the convergent x (34459425 + 4729725 z + 135135 z^2 + 990 z^3 + z^4) /
# (34459425 + 16216200 z + 945945 z^2 + 13860 z^3 + 45 z^4) of Lambert's
# continued fraction tanh x = x/(1 + z/(3 + z/(5 + ...))) (the [9/8] Pade
# approximant; N is D minus the convergent's numerator, over z).  Relative
# error of the convergent on (0, 0.75] (mpmath, 800 points): 1.8e-19.
# Integer coefficients, all exact in float64.  a - a^3 N/D keeps the
# rational part a correction (at most 18% of the result), so its rounding
# errors count for little.
_TANH_N0 = 11486475.0
_TANH_N1 = 810810.0
_TANH_N2 = 12870.0
_TANH_N3 = 44.0
_TANH_D0 = 34459425.0
_TANH_D1 = 16216200.0
_TANH_D2 = 945945.0
_TANH_D3 = 13860.0
_TANH_D4 = 45.0
# Above it tanh(a) = 1 - 2/(1 + e^(2a)), whose error grows as 2/(1 + e^2a)
# does; Cephes' tanh.c switches at 0.625.  Measured here (1e6 points on each
# side, no fastmath flags), the largest errors below / above the switch:
# 0.91 / 1.09 ulp at 0.75, 1.09 / 1.10 at 0.85, and 1.34 above 0.625.
_TANH_SMALL = 0.75
# tanh(a) rounds to 1 once 2/(1 + e^(2a)) < 2^-54 (half the spacing below
# 1), i.e. a > 55 ln(2)/2 = 19.0615; clamping a to 20 keeps e^(2a) finite
# (+-inf gives +-1).
_TANH_CLAMP = 20.0


@numba.njit(inline="always", **_OPTIONS)
def _tanh_for_float64(x):
    """tanh(x) for float64 ``x`` to 1.12 ulp, written for LLVM to vectorise.

    The algorithm of ``fastdl_tanh`` in kernels/_fastexp.h: on a = |x| both
    forms above are computed (the rational one and 1 - 2/(1 + e^(2a)) with
    :func:`_exp_for_float64`), with a single division: the numerator and
    denominator are selected first, N(z) and D(z) below _TANH_SMALL, 2 and
    1 + e^(2a) above.  The sign of x is put back with copysign (a bit
    operation), so tanh is odd and tanh(-0) = -0; tiny x gives x (a^3
    vanishes), NaN gives NaN, and the result saturates to +-1 from
    |x| = 19.0615 on, as the correctly rounded tanh does.

    Max error measured 1.116 ulp (1.061 with the "contract" flag) against
    tanh in long double on 1e7-point samples of [-1, 1], [0.6, 1.2] and
    log-uniform over [1e-320, 25]; glibc's tanh: 1.18 on the same [-1, 1].
    """
    a = abs(x)
    ac = _TANH_CLAMP if _TANH_CLAMP < a else a  # noqa: FURB136 (NaN passes)
    big = _exp_for_float64(2.0 * ac)
    z = a * a
    n = _TANH_N3
    n = n * z + _TANH_N2
    n = n * z + _TANH_N1
    n = n * z + _TANH_N0
    d = _TANH_D4
    d = d * z + _TANH_D3
    d = d * z + _TANH_D2
    d = d * z + _TANH_D1
    d = d * z + _TANH_D0
    small = a < _TANH_SMALL
    ratio = (n if small else 2.0) / (d if small else 1.0 + big)
    t = a - (a * z) * ratio if small else 1.0 - ratio
    return math.copysign(t, x)


# erf: two forms on a = |x|, split at _ERF_SPLIT = 1.
# * a < 1: erf(a) = a + a P(z), z = a^2, P of degree 13 interpolating
#   erf(sqrt z)/sqrt z - 1 at the 14 Chebyshev nodes of [0, 1] (60-digit
#   mpmath, coefficients rounded once).  The exact a is added last, so the
#   rounding of the small correction a P(z) (at most 16% of the result)
#   weighs little.  (Taken up to 1.25 this form reached 1.9 ulp.)
# * a >= 1: erf(a) = 1 - e^(-a^2) erfcx(a), erfcx(a) = s Q(t) with s = 1/a
#   in [1/6, 1], mapped onto t = 2.4 s - 1.4 in [-1, 1]; Q of degree 23
#   interpolating erfcx(1/s)/s at the Chebyshev nodes of s (the mapped
#   variable keeps the monomial coefficients small).  erfc(a) is below 0.16
#   here, so the relative errors of e^(-a^2) (a^2 rounded) and of s Q(t)
#   move the result by well under an ulp; erf rounds to 1 from a = 5.93 on,
#   so a is clamped to 6.
# Max error measured against mpmath (tests/test_vector_math.py, 6e4 points
# on each range): 1.18 ulp just below the split, 0.99 above it; glibc's erf
# is below 1 ulp, but a scalar call.
_ERF_SPLIT = 1.0
_ERF_CLAMP = 6.0
_ERF_P = (
    0.1283791670955126, -0.37612638903183754, 0.1128379167095512, -0.02686617064512984,
    0.0052239776254232985, -0.000854832702193483, 0.00012055332902888736,
    -1.4925647567519332e-05, 1.6462045441468418e-06, -1.6364642158167616e-07,
    1.4792401209404813e-08, -1.216456005728345e-09, 8.709045129053106e-11,
    -4.230945824295338e-12,
)
_ERF_T_SCALE = 2.4  # 2 / (1 - 1/6)
_ERF_T_SHIFT = -1.4  # -(1 + 1/6) / (1 - 1/6)
_ERF_Q = (
    0.49666648512593875, -0.07128287792547401, -0.0019368880677061889,
    0.006219717587559677, -0.002669343030631186, 0.0006408677494091456,
    -2.4390402072001684e-06, -9.30346994792105e-05, 5.9516513750388176e-05,
    -2.385564389256323e-05, 5.8988676570697e-06, 2.1381658016438615e-07,
    -1.2852234269946865e-06, 9.229601666813976e-07, -4.5394568492152867e-07,
    1.571094967489495e-07, -1.29892188928026e-08, -1.7101817689839376e-08,
    1.7540555555328367e-09, -5.08229857908709e-09, 1.3948882353327987e-08,
    -5.503330673720928e-09, -2.433890074703672e-09, 1.4093687372508204e-09,
)


@numba.njit(inline="always", **_OPTIONS)
def _erf_for_float64(x):
    """erf(x) for float64 ``x``, written for LLVM to vectorise.

    The algorithm of ``fastdl_erf`` in kernels/_fastexp.h: both forms above
    are computed on a = |x| (the second with a clamped to [1, 6], so s and
    t stay in the fitted range) and one is selected; NaN fails a < 1 and
    passes through the second; +-inf gives +-1 (the clamp).  The sign of x
    is put back with copysign, so erf is odd and erf(-0) = -0.  Max error:
    see tests/test_vector_math.py.
    """
    a = abs(x)
    z = a * a
    p = _ERF_P[13]
    p = p * z + _ERF_P[12]
    p = p * z + _ERF_P[11]
    p = p * z + _ERF_P[10]
    p = p * z + _ERF_P[9]
    p = p * z + _ERF_P[8]
    p = p * z + _ERF_P[7]
    p = p * z + _ERF_P[6]
    p = p * z + _ERF_P[5]
    p = p * z + _ERF_P[4]
    p = p * z + _ERF_P[3]
    p = p * z + _ERF_P[2]
    p = p * z + _ERF_P[1]
    p = p * z + _ERF_P[0]
    small = a + a * p
    ac = _ERF_CLAMP if _ERF_CLAMP < a else a  # noqa: FURB136 (NaN passes)
    ac = _ERF_SPLIT if _ERF_SPLIT > ac else ac  # noqa: FURB136
    s = 1.0 / ac
    t = s * _ERF_T_SCALE + _ERF_T_SHIFT
    q = _ERF_Q[23]
    q = q * t + _ERF_Q[22]
    q = q * t + _ERF_Q[21]
    q = q * t + _ERF_Q[20]
    q = q * t + _ERF_Q[19]
    q = q * t + _ERF_Q[18]
    q = q * t + _ERF_Q[17]
    q = q * t + _ERF_Q[16]
    q = q * t + _ERF_Q[15]
    q = q * t + _ERF_Q[14]
    q = q * t + _ERF_Q[13]
    q = q * t + _ERF_Q[12]
    q = q * t + _ERF_Q[11]
    q = q * t + _ERF_Q[10]
    q = q * t + _ERF_Q[9]
    q = q * t + _ERF_Q[8]
    q = q * t + _ERF_Q[7]
    q = q * t + _ERF_Q[6]
    q = q * t + _ERF_Q[5]
    q = q * t + _ERF_Q[4]
    q = q * t + _ERF_Q[3]
    q = q * t + _ERF_Q[2]
    q = q * t + _ERF_Q[1]
    q = q * t + _ERF_Q[0]
    big = 1.0 - _exp_for_float64(-(ac * ac)) * (s * q)
    return math.copysign(small if a < _ERF_SPLIT else big, x)
