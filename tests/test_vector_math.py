"""The vectorisable float64 log1p, expm1, tanh, erf and log.

``_log1p_for_float64``, ``_expm1_for_float64``, ``_tanh_for_float64``,
``_erf_for_float64`` and ``_log_for_float64`` in
fastdl/backends/numba/_jit.py, and their C twins ``fastdl_log1p``,
``fastdl_expm1``, ``fastdl_tanh``, ``fastdl_erf`` and ``fastdl_log`` in
kernels/_fastexp.h, replace libm's scalar calls with arithmetic that LLVM
and GCC vectorise.  Checked here:

* accuracy, in ulps of float64 at the exact value, on 200k-point samples of
  each function's ranges (uniform, log-uniform over the whole domain, next
  to the thresholds, subnormals), against the C library's long double
  functions (x87, 64-bit significand: their own error is a 2^-11 of a
  float64 ulp; NumPy has no erf, so erf's reference is mpmath at 30 digits
  on 20k-point samples), and at selected points against mpmath at 100
  digits;
* special values (signed zeros, infinities, NaN, -1 for log1p, the
  overflow and saturation thresholds), exactly;
* both ways the functions get compiled: inside a loop without fastmath
  flags (the elementwise kernels) and with ``_config.NUMBA_FASTMATH``
  ("reassoc" and "contract", the row kernels), where LLVM fuses some
  multiply-adds;
* that a Numba loop of each function is SIMD code with no libm call left;
* that the C functions, compiled with setup.py's floating-point flags, give
  the bits of the Numba ones compiled without fastmath flags, and that gcc
  vectorises a loop of them.
"""

import math
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")
mpmath = pytest.importorskip("mpmath")

from fastdl import _config  # noqa: E402
from fastdl.backends.numba import _jit as kernels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

NAMES = ("log1p", "expm1", "tanh", "erf", "log")
FUNCS = {"log1p": kernels._log1p_for_float64, "expm1": kernels._expm1_for_float64,
         "tanh": kernels._tanh_for_float64, "erf": kernels._erf_for_float64,
         "log": kernels._log_for_float64}


def _mp_longdouble(f):
    """f in mpmath at 30 digits, elementwise, as long doubles (the rounded
    value plus the rounded remainder: exact to far below a float64 ulp)."""
    def ref(x):
        out = np.empty(x.shape, dtype=np.longdouble)
        with mpmath.workdps(30):
            for i, v in enumerate(x.astype(np.float64)):
                exact = f(mpmath.mpf(float(v)))
                hi = float(exact)
                out[i] = np.longdouble(hi) + np.longdouble(float(exact - hi))
        return out
    return ref


LONG_DOUBLE_REFS = {"log1p": np.log1p, "expm1": np.expm1, "tanh": np.tanh,
                    "erf": _mp_longdouble(mpmath.erf), "log": np.log}
MP_REFS = {"log1p": mpmath.log1p, "expm1": mpmath.expm1, "tanh": mpmath.tanh,
           "erf": mpmath.erf, "log": mpmath.log}

#: The fastmath flag sets the functions are compiled under: none (the
#: elementwise loops) and the row kernels' narrow set.
FLAG_SETS = {"no-flags": frozenset(), "kernel-flags": frozenset(_config.NUMBA_FASTMATH)}

#: Allowed error in ulps.  Measured maxima on 1e7-point samples of the
#: ranges below (no flags / kernel flags): log1p 0.854 / 0.851, expm1
#: 1.025 / 1.102 (x near 0.35), tanh 1.116 / 1.061 (x near 0.87); erf,
#: on 6e4-point samples of each of its ranges: 1.179 / 1.076 (x near 0.99,
#: just below the switch of forms at 1; glibc's erf is below 1); log, on
#: 2e5-point samples: 0.846 / 0.846 (next to the reduction's switch at 0.707).
ULP_BOUND = {"log1p": 1.0, "expm1": 1.25, "tanh": 1.25, "erf": 1.25, "log": 1.0}

N_POINTS = 200_000
#: Fewer points where the reference is mpmath (about 20 us a point).
N_POINTS_FOR = {"erf": 20_000}
DBL_MAX = np.finfo(np.float64).max
TINY = np.finfo(np.float64).smallest_subnormal

needs_longdouble = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63, reason="long double is not x87 extended here")


def _log_uniform(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _subnormals(rng, n):
    x = rng.integers(1, 2**52, n).view(np.float64)
    return np.where(rng.random(n) < 0.5, -x, x)


#: (name, sampler) per function; each sampler draws N_POINTS inputs.
RANGES = {
    "log1p": [
        ("[0,1]", lambda rng, n: rng.uniform(0.0, 1.0, n)),
        ("[-1,1]", lambda rng, n: rng.uniform(-1.0, 1.0, n)),
        ("log-uniform (0,max]", lambda rng, n: _log_uniform(rng, 1e-320, DBL_MAX, n)),
        ("log-uniform [-1,0)", lambda rng, n: -_log_uniform(rng, 1e-320, 1.0, n)),
        # 1 + x next to 0: x within 2^-53 .. 1/2 above -1.
        ("near -1", lambda rng, n: -1.0 + _log_uniform(rng, 2.0**-53, 0.5, n)),
        # 1 + x next to the reduction's switch points sqrt(2) and sqrt(1/2).
        ("near m split", lambda rng, n: np.concatenate(
            [rng.uniform(0.40, 0.43, n // 2), rng.uniform(-0.30, -0.28, n - n // 2)])),
        ("subnormal", _subnormals),
    ],
    "expm1": [
        ("[-1,1]", lambda rng, n: rng.uniform(-1.0, 1.0, n)),
        ("[-40,709.78]", lambda rng, n: rng.uniform(-40.0, 709.78, n)),
        ("log-uniform (0,709.78]", lambda rng, n: _log_uniform(rng, 1e-320, 709.78, n)),
        ("log-uniform [-800,0)", lambda rng, n: -_log_uniform(rng, 1e-320, 800.0, n)),
        ("overflow edge", lambda rng, n: rng.uniform(709.0, 709.7827, n)),
        # k = 1 with r near -ln2/2: the largest errors.
        ("[0.34,0.45]", lambda rng, n: rng.uniform(0.34, 0.45, n)),
        # Where the result reaches -1 (e^x below 2^-54 at x = -37.43).
        ("[-38,-36]", lambda rng, n: rng.uniform(-38.0, -36.0, n)),
        ("subnormal", _subnormals),
    ],
    "tanh": [
        ("[-1,1]", lambda rng, n: rng.uniform(-1.0, 1.0, n)),
        ("log-uniform +-[0,25]", lambda rng, n: _log_uniform(rng, 1e-320, 25.0, n)
         * np.where(rng.random(n) < 0.5, -1.0, 1.0)),
        # The switch between the rational and the exp form, at 0.75.
        ("[0.6,1.2]", lambda rng, n: rng.uniform(0.6, 1.2, n)),
        # Saturation to 1 at 55 ln(2)/2 = 19.0615.
        ("[18.5,19.5]", lambda rng, n: rng.uniform(18.5, 19.5, n)),
        ("subnormal", _subnormals),
    ],
    "erf": [
        ("[-1,1]", lambda rng, n: rng.uniform(-1.0, 1.0, n)),
        # The top of a + a P(a^2), where it is at its worst, and the switch
        # of forms at 1.
        ("[0.9,1.2]", lambda rng, n: rng.uniform(0.9, 1.2, n)),
        ("[1,6.5]", lambda rng, n: rng.uniform(1.0, 6.5, n)),
        ("log-uniform +-[0,8]", lambda rng, n: _log_uniform(rng, 1e-320, 8.0, n)
         * np.where(rng.random(n) < 0.5, -1.0, 1.0)),
        # Rounding to 1 at 5.93; the clamp at 6.
        ("[5.8,6.2]", lambda rng, n: rng.uniform(5.8, 6.2, n)),
        ("subnormal", _subnormals),
    ],
    "log": [
        ("[0.5,2]", lambda rng, n: rng.uniform(0.5, 2.0, n)),
        ("log-uniform (0,max]", lambda rng, n: _log_uniform(rng, 1e-320, DBL_MAX, n)),
        # log(x) next to 0, where f = m - 1 is tiny; the reduction's switch
        # points sqrt(2) and sqrt(1/2).
        ("near 1", lambda rng, n: 1.0 + rng.uniform(-1e-3, 1e-3, n)),
        ("near m split", lambda rng, n: np.concatenate(
            [rng.uniform(1.40, 1.43, n // 2), rng.uniform(0.70, 0.72, n - n // 2)])),
        # Positive subnormals (scaled by 2^54 first); negative ones give NaN.
        ("subnormal", lambda rng, n: np.abs(_subnormals(rng, n))),
    ],
}

RANGE_CASES = [(name, i) for name in NAMES for i in range(len(RANGES[name]))]


def _loop_body(fn):
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
    return loop


_LOOPS = {}


def _loop(name, flags):
    """A Numba loop out[i] = f(x[i]), compiled with the given fastmath flags
    and error_model="numpy" as fastdl's kernels are."""
    key = (name, flags)
    if key not in _LOOPS:
        _LOOPS[key] = numba.njit(fastmath=set(FLAG_SETS[flags]),
                                 error_model="numpy")(_loop_body(FUNCS[name]))
    return _LOOPS[key]


def _apply(name, flags, x):
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _loop(name, flags)(x, out)
    return out


def _ulp_errors(got, ref):
    """|got - ref| in float64 ulps at the exact value ref (a long double
    array); 0 where ref rounds to an infinity that got equals."""
    _, e = np.frexp(ref)
    ulp = np.ldexp(np.longdouble(1), np.maximum(e - 53, -1074))
    ref64 = ref.astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.longdouble) - ref) / ulp
    overflow = np.isinf(ref64)
    err[overflow] = np.where(got[overflow] == ref64[overflow], 0.0, np.inf)
    return err


@needs_longdouble
@pytest.mark.parametrize("flags", list(FLAG_SETS))
@pytest.mark.parametrize("name,which", RANGE_CASES,
                         ids=[f"{n}-{RANGES[n][i][0]}" for n, i in RANGE_CASES])
def test_accuracy_against_long_double(name, which, flags):
    label, sample = RANGES[name][which]
    rng = np.random.default_rng([NAMES.index(name), which])
    x = sample(rng, N_POINTS_FOR.get(name, N_POINTS))
    got = _apply(name, flags, x)
    with np.errstate(over="ignore"):
        ref = LONG_DOUBLE_REFS[name](x.astype(np.longdouble))
    err = _ulp_errors(got, ref)
    worst = int(np.argmax(err))
    assert err[worst] <= ULP_BOUND[name], (
        f"{name} on {label}: {float(err[worst]):.3f} ulp at x={x[worst]!r}: "
        f"got {got[worst]!r}, exact {ref[worst]!r}")


def _selected_points(name):
    """Thresholds, the worst cases found by the sweeps, and a log-uniform
    spread of both signs over the domain."""
    rng = np.random.default_rng(99)
    spread = _log_uniform(rng, 1e-300, 700.0, 150)
    common = [1e-300, 2.0**-60, 1e-17, 1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 10.0]
    if name == "log1p":
        special = [math.sqrt(2) - 1, math.sqrt(0.5) - 1, 0.40414951677942335,
                   0.4101430854487928, -0.38979279125969474, -0.5, -0.75,
                   -1 + 2.0**-53, -1 + 1e-10, 1e10, 1e100, 1e300, DBL_MAX]
        pts = [*common, *special, *spread, *(-_log_uniform(rng, 1e-300, 1.0, 150))]
    elif name == "expm1":
        special = [math.log(2) / 2, -math.log(2) / 2, 0.3490169243211426,
                   0.34992241583728523, -0.2822682441425088, 37.0, -37.0, -37.4,
                   709.0, 709.78, 709.782712893384]
        pts = [*common, *special, *spread, *(-spread)]
    elif name == "log":
        special = [math.sqrt(2), math.sqrt(0.5), 1 + 2.0**-52, 1 - 2.0**-53, 2.0, 0.5,
                   np.nextafter(2.0**-1022, 0.0), 2.0**-1022, TINY, 1e10, 1e300, DBL_MAX]
        pts = [*common, *special, *spread, *(1 / spread)]
    elif name == "erf":
        special = [1.0, np.nextafter(1.0, 0.0), 0.965, 0.9731666666666666, 1.0558333,
                   0.5, 3.0, 5.9, 5.93, 6.0, np.nextafter(6.0, 0.0)]
        pts = [*common, *special, *spread[spread < 8], *(-spread[spread < 8])]
    else:
        special = [0.75, np.nextafter(0.75, 0.0), 0.8717547320789965,
                   0.8737816321627156, 0.625, 3.0, 19.0, 19.06,
                   55 * math.log(2) / 2, np.nextafter(55 * math.log(2) / 2, 0.0)]
        pts = [*common, *special, *spread[spread < 25], *(-spread[spread < 25])]
    return np.array(pts, dtype=np.float64)


@pytest.mark.parametrize("flags", list(FLAG_SETS))
@pytest.mark.parametrize("name", NAMES)
def test_selected_points_against_mpmath(name, flags):
    x = _selected_points(name)
    got = _apply(name, flags, x)
    f = MP_REFS[name]
    with mpmath.workdps(100):
        for xi, gi in zip(x, got):
            exact = f(mpmath.mpf(float(xi)))
            if abs(exact) > DBL_MAX:
                assert gi == math.copysign(math.inf, float(exact)), (name, xi, gi)
                continue
            _, e = math.frexp(float(exact))
            ulp = mpmath.ldexp(1, max(e - 53, -1074))
            err = float(abs(mpmath.mpf(float(gi)) - exact) / ulp)
            assert err <= ULP_BOUND[name], f"{name}({xi!r}) = {gi!r}: {err:.3f} ulp"


def _special_cases(name):
    """(x, expected) pairs whose results are fixed: compared bit for bit, so
    the sign of a zero counts; None means NaN."""
    inf, nan = math.inf, math.nan
    if name == "log1p":
        # log1p(DBL_MAX) = 709.78271289338397 (mpmath, rounded).
        return [(0.0, 0.0), (-0.0, -0.0), (-1.0, -inf), (inf, inf), (-inf, None),
                (nan, None), (-1.5, None), (np.nextafter(-1.0, -2.0), None),
                (-DBL_MAX, None), (TINY, TINY), (-TINY, -TINY), (2.0**-60, 2.0**-60),
                (-(2.0**-60), -(2.0**-60)), (1e-300, 1e-300),
                (DBL_MAX, float(mpmath.log1p(mpmath.mpf(DBL_MAX)))),
                (-1 + 2.0**-53, -53 * math.log(2))]
    if name == "expm1":
        # 709.782712893384 is the largest x with a finite exp (test_fastexp).
        big = 709.782712893384
        return [(0.0, 0.0), (-0.0, -0.0), (inf, inf), (-inf, -1.0), (nan, None),
                (np.nextafter(big, inf), inf), (710.0, inf), (DBL_MAX, inf),
                (-DBL_MAX, -1.0), (-1000.0, -1.0), (-40.0, -1.0), (-37.5, -1.0),
                (TINY, TINY), (-TINY, -TINY), (1e-300, 1e-300), (-1e-300, -1e-300),
                (2.0**-60, 2.0**-60)]
    if name == "log":
        # log(TINY) = -1074 ln 2 = -744.44007192138126 (mpmath, rounded).
        return [(1.0, 0.0), (0.0, -inf), (-0.0, -inf), (inf, inf), (-inf, None),
                (nan, None), (-1.0, None), (-TINY, None), (-DBL_MAX, None),
                (TINY, float(mpmath.log(mpmath.mpf(TINY)))),
                (DBL_MAX, float(mpmath.log(mpmath.mpf(DBL_MAX)))), (2.0, math.log(2.0))]
    if name == "erf":
        # erf(x) = 2x/sqrt(pi) (1 - x^2/3 + ...): 2/sqrt(pi) times x, rounded,
        # for tiny x; 1 from 5.93 on.
        c = 2 / math.sqrt(math.pi)
        return [(0.0, 0.0), (-0.0, -0.0), (inf, 1.0), (-inf, -1.0), (nan, None),
                (6.0, 1.0), (-6.0, -1.0), (30.0, 1.0), (DBL_MAX, 1.0), (-DBL_MAX, -1.0),
                (1e-300, c * 1e-300), (-1e-300, -c * 1e-300),
                (2.0**-30, float(mpmath.erf(mpmath.mpf(2.0**-30))))]
    return [(0.0, 0.0), (-0.0, -0.0), (inf, 1.0), (-inf, -1.0), (nan, None),
            (19.1, 1.0), (-19.1, -1.0), (40.0, 1.0), (1e300, 1.0), (-DBL_MAX, -1.0),
            (TINY, TINY), (-TINY, -TINY), (1e-300, 1e-300), (-1e-300, -1e-300),
            (2.0**-30, float(mpmath.tanh(mpmath.mpf(2.0**-30))))]


@pytest.mark.parametrize("flags", list(FLAG_SETS))
@pytest.mark.parametrize("name", NAMES)
def test_special_values(name, flags):
    cases = _special_cases(name)
    x = np.array([c[0] for c in cases])
    got = _apply(name, flags, x)
    for (xi, want), g in zip(cases, got):
        if want is None:
            assert np.isnan(g), (name, xi, g)
        else:
            assert np.float64(g).view(np.int64) == np.float64(want).view(np.int64), (
                name, xi, g, want)


def test_expm1_largest_finite_and_tanh_just_below_saturation():
    # expm1 at the largest x with a finite exp is finite and close to
    # DBL_MAX; tanh(19.0) and tanh(19.06) are the float64 just below 1 and
    # tanh(19.07) is 1: 1 - tanh(x) = 2/(e^(2x) + 1) falls below half the
    # spacing below 1, 2^-54, at x = 55 ln(2)/2 = 19.0615.
    for flags in FLAG_SETS:
        e = _apply("expm1", flags, np.array([709.782712893384]))[0]
        assert math.isfinite(e) and e > DBL_MAX / 1.0001
        t = _apply("tanh", flags, np.array([19.0, 19.06, 19.07, -19.0]))
        below_1 = np.nextafter(1.0, 0.0)
        assert list(t) == [below_1, below_1, 1.0, -below_1]


@pytest.mark.parametrize("flags", list(FLAG_SETS))
def test_log1p_below_minus_one_is_nan(flags):
    rng = np.random.default_rng(4)
    x = -1.0 - _log_uniform(rng, 2.0**-52, DBL_MAX, 100_000)
    assert np.isnan(_apply("log1p", flags, x)).all()


@pytest.mark.parametrize("flags", list(FLAG_SETS))
def test_tanh_is_odd(flags):
    x = _log_uniform(np.random.default_rng(5), 1e-300, 30.0, 100_000)
    pos = _apply("tanh", flags, x)
    neg = _apply("tanh", flags, -x)
    np.testing.assert_array_equal(neg.view(np.int64), (-pos).view(np.int64))


_PACKED_OP = re.compile(
    r"^\s*v?(?:mul|add|sub|div|fn?m(?:add|sub)\d{3})pd\s+[^\n]*%([xyz])mm", re.M)
#: A libm function referenced from the code: Numba calls it through a
#: register loaded with its address (movabsq $log1p, %r13; callq *%r13).
_LIBM_CALL = re.compile(r"(?:\$|\bcall\w*\s+)(?:log1p|expm1|tanh|erf|exp|log)\b")


def _cpu_has_avx():
    try:
        return " avx" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _packed_ops(asm):
    """The packed double arithmetic in ``asm``: on ymm/zmm registers when
    the CPU has AVX (Numba compiles for the host), else on xmm."""
    regs = _PACKED_OP.findall(asm)
    return [r for r in regs if r in "yz"] if _cpu_has_avx() else regs


_SIG = (numba.float64[::1], numba.float64[::1])

needs_x86_64 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                  reason="the assembly check is written for x86-64")


@needs_x86_64
@pytest.mark.parametrize("flags", list(FLAG_SETS))
@pytest.mark.parametrize("name", NAMES)
def test_numba_loop_vectorises(name, flags):
    loop = _loop(name, flags)
    loop.compile(_SIG)
    asm = loop.inspect_asm(_SIG)
    assert not _LIBM_CALL.search(asm), _LIBM_CALL.search(asm).group(0)
    # Each function is dozens of packed operations per vector of 4 or 8.
    n_packed = len(_packed_ops(asm))
    assert n_packed >= 20, f"{n_packed} packed double operations on SIMD registers"
    if flags == "kernel-flags" and " fma" in Path("/proc/cpuinfo").read_text():
        assert re.search(r"vfn?m(?:add|sub)\d{3}pd", asm)


@needs_x86_64
def test_the_assembly_check_flags_a_libm_loop():
    # The control: the same loop calling libm's log1p is caught by both checks.
    @numba.njit(error_model="numpy")
    def libm_loop(x, out):
        for i in range(x.shape[0]):
            out[i] = math.log1p(x[i])

    libm_loop.compile(_SIG)
    asm = libm_loop.inspect_asm(_SIG)
    assert _LIBM_CALL.search(asm)
    assert len(_packed_ops(asm)) < 20


needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="no gcc")

#: setup.py's floating-point flags.
C_FLAGS = ["-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]

_C_DRIVER = r"""
#include "_fastexp.h"
#include <stdio.h>
#include <stdlib.h>

/* argv[1]: n doubles in; argv[2]: log1p, expm1, tanh, erf, log of each, 5n doubles. */
int main(int argc, char **argv)
{
    FILE *in, *out;
    long n, i;
    double *x, *y;
    if (argc != 3 || !(in = fopen(argv[1], "rb")) || !(out = fopen(argv[2], "wb")))
        return 2;
    fseek(in, 0, SEEK_END);
    n = ftell(in) / (long)sizeof(double);
    fseek(in, 0, SEEK_SET);
    x = malloc(n * sizeof(double));
    y = malloc(5 * n * sizeof(double));
    if (!x || !y || fread(x, sizeof(double), n, in) != (size_t)n)
        return 3;
    for (i = 0; i < n; i++) {
        y[i] = fastdl_log1p(x[i]);
        y[n + i] = fastdl_expm1(x[i]);
        y[2 * n + i] = fastdl_tanh(x[i]);
        y[3 * n + i] = fastdl_erf(x[i]);
        y[4 * n + i] = fastdl_log(x[i]);
    }
    if (fwrite(y, sizeof(double), 5 * n, out) != (size_t)(5 * n))
        return 4;
    return fclose(out) != 0;
}
"""


@needs_gcc
def test_c_functions_give_the_numba_bits(tmp_path):
    src = tmp_path / "vector_math.c"
    src.write_text(_C_DRIVER)
    exe = tmp_path / "vector_math"
    subprocess.run(["gcc", "-O2", *C_FLAGS, f"-I{ROOT / 'kernels'}", str(src),
                    "-o", str(exe), "-lm"], check=True, capture_output=True, text=True)
    rng = np.random.default_rng(2024)
    parts = [sample(rng, 20_000) for name in NAMES for _, sample in RANGES[name]]
    parts.append(rng.integers(-2**63, 2**63 - 1, 200_000, dtype=np.int64).view(np.float64))
    parts.append(np.array([c[0] for name in NAMES for c in _special_cases(name)]))
    x = np.concatenate(parts)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                   check=True)
    c_out = np.fromfile(tmp_path / "out.bin", dtype=np.float64).reshape(5, -1)
    for j, name in enumerate(NAMES):
        got = _apply(name, "no-flags", x)
        same = (got.view(np.int64) == c_out[j].view(np.int64)) | (
            np.isnan(got) & np.isnan(c_out[j]))
        bad = np.flatnonzero(~same)
        assert bad.size == 0, (
            f"{name}: {bad.size} of {x.size} differ, first x={x[bad[0]]!r}: "
            f"numba {got[bad[0]]!r}, C {c_out[j][bad[0]]!r}")


@needs_gcc
@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
                    reason="checked for gcc on x86-64 Linux")
def test_gcc_vectorises_loops_of_the_c_functions(tmp_path):
    src = tmp_path / "loops.c"
    text = '#include "_fastexp.h"\n' + "".join(
        f"void loop_{n}(const double *restrict x, double *restrict y, long m)\n"
        f"{{ for (long i = 0; i < m; i++) y[i] = fastdl_{n}(x[i]); }}\n" for n in NAMES)
    src.write_text(text)
    loop_lines = {i + 1 for i, line in enumerate(text.splitlines()) if "for (" in line}
    proc = subprocess.run(
        ["gcc", "-O3", *C_FLAGS, "-fopt-info-vec-optimized", f"-I{ROOT / 'kernels'}",
         "-c", str(src), "-o", str(tmp_path / "loops.o")],
        check=True, capture_output=True, text=True)
    vectorised = {int(m) for m in re.findall(r"loops\.c:(\d+):\d+: optimized: loop vectorized",
                                             proc.stderr)}
    assert vectorised == loop_lines, proc.stderr[-2000:]
