"""The compiled backends' polynomial exps, seen through the public kernels.

Both compiled backends replace libm's scalar exp with vectorisable
polynomials (kernels/_fastexp.h for Cython, ``_exp_diff_float32`` /
``_exp_for_float64`` in fastdl/backends/numba/_jit.py).  Their claimed
bounds, from sweeps run outside the test suite (all float32 in [-105, 89.5];
3.4e8 float64 points against long double, see the header): float32 <= 1.16
ulp, float64 <= 1.21 ulp.  Here a dense sample of the same ranges, plus the
thresholds, goes through ``log_softmax_backward``, which computes
``dy - exp(y) * sum(dy)``: with a row ``dy = [-1, 0, 0, ...]`` the sum is
-1 and every other entry is ``0 + exp(y_j)``, exactly the exp the kernel
computed.  The reference is exp in long double (x87, 64-bit mantissa).
"""

import math

import numpy as np
import pytest

import fastdl

#: Allowed error in ulps of the dtype (measured maxima 1.16 and 1.21).
ULP_BOUND = {np.dtype(np.float32): 2.0, np.dtype(np.float64): 1.5}

#: Sampled ranges: the whole finite-result domain, then the parts where a
#: polynomial exp is most likely to slip (denormal results, the overflow
#: edge, the reduction's branch points near 0).
RANGES = {
    np.dtype(np.float32): [(-103.9, 88.72), (-1.0, 1.0), (-103.97, -87.3), (88.0, 88.7228)],
    np.dtype(np.float64): [(-745.13, 709.78), (-1.0, 1.0), (-745.13, -708.4),
                           (709.0, 709.7827)],
}

needs_longdouble = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63, reason="long double is not x87 extended here")


def _exp_through_kernel(y, backend):
    """exp(y) for a 1-d y as computed inside log_softmax_backward."""
    row = np.concatenate([np.zeros(1, y.dtype), y])[None, :]
    dy = np.zeros_like(row)
    dy[0, 0] = -1
    return fastdl.log_softmax_backward(dy, row, backend=backend)[0, 1:]


def _ulp_errors(got, x):
    """|got - exp(x)| in ulps of got's dtype at the exact value (long double)."""
    return _ulp_errors_vs(got, np.exp(x.astype(np.longdouble)))


def _ulp_errors_vs(got, ref):
    """|got - ref| in ulps of got's dtype at ref (a long double array)."""
    finfo = np.finfo(got.dtype)
    _, e = np.frexp(ref)
    ulp = np.ldexp(np.longdouble(1), np.maximum(e - (finfo.nmant + 1),
                                                finfo.minexp - finfo.nmant))
    return np.abs(got.astype(np.longdouble) - ref) / ulp


@needs_longdouble
@pytest.mark.parametrize("lo_hi", range(4), ids=["all", "unit", "denormal", "overflow-edge"])
def test_dense_sample_within_ulp_bound(compiled_backend, dtype, lo_hi):
    lo, hi = RANGES[dtype][lo_hi]
    x = np.random.default_rng(lo_hi).uniform(lo, hi, 250_000).astype(dtype)
    got = _exp_through_kernel(x, compiled_backend)
    err = _ulp_errors(got, x)
    worst = int(np.argmax(err))
    assert err[worst] <= ULP_BOUND[dtype], (
        f"{float(err[worst]):.3f} ulp at x={x[worst]!r}: got {got[worst]!r}")


def _thresholds(dtype):
    """(x, expected exp(x)) pairs fixed by IEEE rounding, for either dtype."""
    if dtype == np.float32:
        # Neighbours of the thresholds, found with mpmath: ln(FLT_MAX + half
        # an ulp) = 88.7228391..., ln(2^-150) = -103.9720770839918.
        big = np.float32(88.72283)            # largest x with a finite exp
        tiny = np.float32(-103.97208)         # exp rounds to the smallest denormal
        below = np.float32(-103.972084)       # exp rounds to 0
        max_finite = np.float32(np.finfo(np.float32).max)
    else:
        # ln(2^-1075) = -745.13321910194120762...
        big = 709.782712893384
        tiny = -745.1332191019411             # exp rounds to the smallest denormal
        below = -745.1332191019412            # exp rounds to 0
        max_finite = np.finfo(np.float64).max
    over = np.nextafter(dtype.type(big), dtype.type(np.inf))
    smallest = np.finfo(dtype).smallest_subnormal
    return [
        (-np.inf, 0.0), (np.inf, np.inf), (0.0, 1.0), (-0.0, 1.0),
        (big, None), (over, np.inf), (tiny, smallest), (below, 0.0),
        (-1000.0, 0.0), (1000.0, np.inf), (dtype.type(max_finite), np.inf),
        (-dtype.type(max_finite), 0.0),
    ]


def test_special_values_and_thresholds(compiled_backend, dtype):
    pairs = _thresholds(dtype)
    x = np.array([p[0] for p in pairs] + [np.nan], dtype=dtype)
    got = _exp_through_kernel(x, compiled_backend)
    for (xi, want), g in zip(pairs, got[:-1]):
        if want is None:  # the largest finite exp: finite, within a ulp of FLT/DBL_MAX
            assert math.isfinite(g) and g > np.finfo(dtype).max / 2, (xi, g)
        else:
            assert g == want, (xi, g, want)
    assert np.isnan(got[-1])


def test_exp_zero_is_exactly_one_inside_log_softmax(compiled_backend, dtype):
    # The dominant entry's log-probability must be exactly 0: exp(0) == 1 in
    # the exp-sum, and the other terms underflow to 0.
    x = np.array([[1000.0, 1.0, 0.0], [0.0, -800.0, -900.0]], dtype=dtype)
    ls = fastdl.log_softmax(x, backend=compiled_backend)
    assert ls[0, 0] == 0 and ls[1, 0] == 0
    assert ls[0, 1] == -999 and ls[0, 2] == -1000


@needs_longdouble
def test_softmax_float64_near_extremes(compiled_backend, rng):
    # Rows whose shifted exps span the whole float64 range, down into the
    # denormals: softmax must agree with the long-double reference to a few
    # ulps of each entry (exp error + one division), and gradually underflow.
    x = np.concatenate([rng.uniform(-744.0, 0.0, (8, 300)), np.zeros((8, 1))], axis=1)
    got = fastdl.softmax(x, backend=compiled_backend)
    e = np.exp(x.astype(np.longdouble) - x.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    normal = ref >= np.finfo(np.float64).tiny
    rel = np.abs(got.astype(np.longdouble) - ref)[normal] / ref[normal]
    assert float(rel.max()) <= 4 * np.finfo(np.float64).eps
    # Denormal results: within a couple of the smallest denormal spacings.
    den = ~normal
    assert np.all(np.abs(got.astype(np.longdouble) - ref)[den]
                  <= 2 * np.finfo(np.float64).smallest_subnormal)


@needs_longdouble
@pytest.mark.parametrize("scale", [1.0, 4.0, 30.0])
def test_softmax_float32_within_3_ulp(compiled_backend, scale, rng):
    # exp error (<= 1 ulp in the AVX2+FMA loops), the float32 rescale by
    # 1/sum (<= 1 ulp) and the sum's rounding: within 3 ulp of the exact
    # softmax of the float32 logits (measured: 2.2 Cython, 1.5 Numba).  Both
    # backends exponentiate the exact difference x - max: Numba forms it in
    # float64, Cython adds its float32 rounding error back (TwoSum in
    # _fastexp.h).  Rounding x - max to float32 first, as PyTorch does,
    # gives 15-40 ulp on these rows: the test tells the two apart.
    x = (rng.standard_normal((64, 1000)) * scale).astype(np.float32)
    got = fastdl.softmax(x, backend=compiled_backend)
    d = x.astype(np.longdouble) - x.max(axis=1, keepdims=True)
    e = np.exp(d)
    err = _ulp_errors_vs(got, e / e.sum(axis=1, keepdims=True))
    assert float(err.max()) <= 3.0


def test_numba_float32_exp_is_the_fused_body():
    """Numba's float32 exp (``_exp_diff_float32``) is fastdl_expf's fused
    arithmetic, so on a CPU where the Cython kernels run a fused (AVX2+FMA or
    AVX-512F) copy the two backends give the same bits, and the fused body's
    exhaustive sweep (0.976 ulp) covers Numba's exp too."""
    if not {"cython", "numba"} <= set(fastdl.available_backends()):
        pytest.skip("needs both compiled backends")
    from fastdl import _build_info
    from fastdl._info import _simd_in_use
    copy = _simd_in_use(_build_info.SIMD_CLONES).split()[0]
    if copy not in ("avx2+fma", "avx512f"):
        pytest.skip(f"the Cython kernels run the {copy} copy (not fused) here")
    rng = np.random.default_rng(7)
    for lo, hi in RANGES[np.dtype(np.float32)]:
        y = rng.uniform(lo, hi, 200_000).astype(np.float32)
        a = _exp_through_kernel(y, "cython")
        b = _exp_through_kernel(y, "numba")
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_numba_summing_exp_is_the_exp_of_the_rounded_difference():
    """The Numba row kernels' passes that only sum float32 exps (logsumexp,
    log_softmax, the cross-entropy loss) take ``_exp_rounded_float32(x, s)``:
    exactly ``_exp_diff_float32`` of ``x - s`` rounded to float32, whose bits
    test_numba_float32_exp_is_the_fused_body ties to the Cython kernels."""
    numba = pytest.importorskip("numba")
    from fastdl import _config
    from fastdl.backends.numba import _jit

    @numba.njit(fastmath=set(_config.NUMBA_FASTMATH), error_model="numpy")
    def both(x, s, rounded, exact):
        for i in range(x.shape[0]):
            rounded[i] = _jit._exp_rounded_float32(x[i], s[i])
            exact[i] = _jit._exp_diff_float32(np.float32(x[i] - s[i]), np.float32(0.0))

    rng = np.random.default_rng(11)
    n = 400_000
    x = rng.uniform(-120.0, 100.0, n).astype(np.float32)
    s = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(-30.0, 30.0, n)).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, -103.97, 89.0, -104.0],
                       dtype=np.float32)
    x = np.concatenate([x, special, special])
    s = np.concatenate([s, np.zeros_like(special), np.full_like(special, 1.5)])
    rounded, exact = np.empty_like(x), np.empty_like(x)
    both(x, s, rounded, exact)
    same = (rounded.view(np.uint32) == exact.view(np.uint32)) | (
        np.isnan(rounded) & np.isnan(exact))
    assert same.all(), x[~same][:5]
    # The exact difference's exp is another function (the comparison above
    # would fail if _exp_rounded_float32 took it): it differs wherever the
    # rounding of x - s moved the exp by more than half an ulp.
    d = x.astype(np.float64) - s.astype(np.float64)
    with np.errstate(invalid="ignore"):
        moved = np.isfinite(d) & (d != d.astype(np.float32)) & (np.abs(d) < 80)
    exact_diff = _numba_exp_diff(x, s)
    assert (exact_diff[moved].view(np.uint32) != rounded[moved].view(np.uint32)).sum() > 1000


def _numba_exp_diff(x, s):
    numba = pytest.importorskip("numba")
    from fastdl import _config
    from fastdl.backends.numba import _jit

    @numba.njit(fastmath=set(_config.NUMBA_FASTMATH), error_model="numpy")
    def loop(x, s, out):
        for i in range(x.shape[0]):
            out[i] = _jit._exp_diff_float32(x[i], s[i])

    out = np.empty_like(x)
    loop(x, s, out)
    return out


def test_numba_in_range_exp_gives_the_same_bits():
    """Where a row's spread is at most 86, the Numba summing passes take the
    shorter in-range exp (no clamps, one scaling multiply): it must give the
    bits of the full rounded exp for every difference in [-86, 0].  Checked
    here on 2M random differences, the ends and every power of two; the
    whole range (all 1.1e9 float32) was checked when it was written."""
    numba = pytest.importorskip("numba")
    from fastdl import _config
    from fastdl.backends.numba import _jit

    @numba.njit(fastmath=set(_config.NUMBA_FASTMATH), error_model="numpy")
    def both(x, s, full, short):
        for i in range(x.shape[0]):
            full[i] = _jit._exp_rounded_float32(x[i], s[i])
            short[i] = _jit._exp_rounded_in_range_float32(x[i], s[i])

    rng = np.random.default_rng(12)
    n = 2_000_000
    s = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(-20.0, 20.0, n)).astype(np.float32)
    x = (s + rng.uniform(-86.0, 0.0, n).astype(np.float32)).astype(np.float32)
    keep = (x.astype(np.float64) - s) >= -86.0  # the in-range condition
    x, s = x[keep], s[keep]
    edges = np.array([0.0, -0.0, -86.0, np.nextafter(np.float32(-86.0), np.float32(0.0)),
                      *(-(2.0 ** np.arange(-149, 7)))], dtype=np.float32)
    x = np.concatenate([x, edges, [np.nan]]).astype(np.float32)
    s = np.concatenate([s, np.zeros(edges.size + 1, np.float32)])
    full, short = np.empty_like(x), np.empty_like(x)
    both(x, s, full, short)
    same = (full.view(np.uint32) == short.view(np.uint32)) | (np.isnan(full) & np.isnan(short))
    assert same.all(), (x[~same][:5], s[~same][:5])


def test_numba_in_range_exp_of_the_exact_difference_gives_the_same_bits():
    """The storing passes (softmax, the cross-entropy gradient) take the
    in-range exp of the exact difference where a row's spread is at most
    86: it must give the bits of the full one (``_exp_diff_float32``),
    TwoSum error included, for every x - s in [-86, 0].  2M random pairs
    with a nonzero shift (so most differences are inexact and their error
    counts), the ends and every power of two."""
    numba = pytest.importorskip("numba")
    from fastdl import _config
    from fastdl.backends.numba import _jit

    @numba.njit(fastmath=set(_config.NUMBA_FASTMATH), error_model="numpy")
    def three(x, s, full, short, rounded):
        for i in range(x.shape[0]):
            full[i] = _jit._exp_diff_float32(x[i], s[i])
            short[i] = _jit._exp_diff_in_range_float32(x[i], s[i])
            rounded[i] = _jit._exp_rounded_in_range_float32(x[i], s[i])

    rng = np.random.default_rng(13)
    n = 2_000_000
    s = rng.uniform(-30.0, 30.0, n).astype(np.float32)
    x = (s + rng.uniform(-86.0, 0.0, n).astype(np.float32)).astype(np.float32)
    d = x.astype(np.float64) - s
    keep = (d >= -86.0) & (d <= 0.0)  # the in-range condition, exactly
    x, s = x[keep], s[keep]
    inexact = (x.astype(np.float64) - s) != (x - s).astype(np.float64)
    assert inexact.mean() > 0.3
    edges = np.array([0.0, -0.0, -86.0, np.nextafter(np.float32(-86.0), np.float32(0.0)),
                      *(-(2.0 ** np.arange(-149, 7)))], dtype=np.float32)
    x = np.concatenate([x, edges, [np.nan]]).astype(np.float32)
    s = np.concatenate([s, np.zeros(edges.size + 1, np.float32)])
    inexact = np.concatenate([inexact, np.zeros(edges.size + 1, bool)])
    full, short, rounded = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    three(x, s, full, short, rounded)
    same = (full.view(np.uint32) == short.view(np.uint32)) | (np.isnan(full) & np.isnan(short))
    assert same.all(), (x[~same][:5], s[~same][:5])
    # It is the exact difference's exp: the rounded difference's differs
    # wherever rounding x - s moved the exp by more than half an ulp.
    assert (rounded[inexact].view(np.uint32) != short[inexact].view(np.uint32)).sum() > 1000
