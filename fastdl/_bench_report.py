"""``python -m fastdl bench``: the benchmark report, in one run.

Measures, side by side on this machine and in one process:

1. the physical limits: streaming copy bandwidth with all threads (a
   parallel array copy) and BLAS GEMM throughput (float32 and float64);
2. every core kernel at the sizes of ``BENCHMARKS.md``, float32 and float64:
   median time of the NumPy code a user would write, of each compiled fastdl
   backend and of PyTorch CPU (when installed; skipped, never faked), each
   result checked against NumPy before its time is trusted; the ratios
   ``numpy_time / fastdl_time`` and ``torch_time / fastdl_time``, the
   fraction of copy bandwidth reached and the peak extra memory per call;
3. start-up costs in fresh subprocesses: ``import fastdl``, and the first call
   of each kernel with a cold and then a warm Numba cache (``NUMBA_CACHE_DIR``
   pointed at a new temporary directory per kernel);

then checks the issue's targets and writes ``RESULTS.md`` and ``results.png``
(skipped, with a message, without matplotlib).

Every contender gets the same thread count: fastdl's kernels, BLAS (via
threadpoolctl), PyTorch and the copy-bandwidth probe.  Each contender is timed
in blocks after an untimed settling run (so that another library's
busy-waiting threads do not bill it), in two passes of opposite order (so
that a drift of the shared machine hits every contender alike); only ratios
taken in the same run are reported.

The NumPy baselines (``np_*`` below) are also the ones ``bench/`` times.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

import fastdl
from . import _config

# ---------------------------------------------------------------------------
# NumPy baselines: the code a user would write (shared with bench/)
# ---------------------------------------------------------------------------


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_log_softmax(x):
    s = x - x.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def np_logsumexp(x):
    m = x.max(axis=1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=1))


def np_softmax_backward(dy, y):
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


def np_log_softmax_backward(dy, y):
    return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def np_cross_entropy(logits, target):
    """Mean cross-entropy of class-index targets, max-shifted."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(n), target].mean()


def np_cross_entropy_with_grad(logits, target):
    """The cs231n-style softmax loss and its gradient."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = -(shifted[np.arange(n), target] - np.log(s[:, 0])).mean()
    grad = e / s
    grad[np.arange(n), target] -= 1
    grad /= n
    return loss, grad


def np_affine_forward(x, W, b):
    return x @ W.T + b


def np_affine_backward(dy, x, W):
    return dy @ W, dy.T @ x, dy.sum(0)


# ---------------------------------------------------------------------------
# Sizes, kernels, contenders
# ---------------------------------------------------------------------------

#: (N, C) row sizes and affine (N, D, H) sizes per mode; "full" is BENCHMARKS.md.
SIZES = {
    "full": ([(64, 10), (256, 1000), (4096, 1000), (1024, 32000)],
             [(64, 784, 128), (256, 1024, 1024), (2048, 1024, 1024)]),
    "quick": ([(64, 10), (256, 1000), (1024, 1000), (256, 8000)],
              [(64, 784, 128), (256, 512, 512)]),
    # Below the parallel threshold: compiles only the serial kernels (tests).
    "tiny": ([(64, 10), (128, 200)], [(64, 128, 64)]),
}
#: Timed repeats (median of), copy-probe MiB per array, GEMM side, per mode.
REPEATS = {"full": 15, "quick": 7, "tiny": 3}
COPY_MIB = {"full": 256, "quick": 64, "tiny": 16}
GEMM_N = {"full": 2048, "quick": 1024, "tiny": 256}
#: Seconds of timing per contender and case at most (fewer repeats, min 5).
CASE_BUDGET = {"full": 3.0, "quick": 1.0, "tiny": 0.2}
#: Seconds each contender runs untimed before each of its timed blocks.
SETTLE = {"full": 0.1, "quick": 0.05, "tiny": 0.01}
#: Timed blocks per contender and row, in alternating order (see time_contenders).
PASSES = {"full": 4, "quick": 2, "tiny": 2}
#: A timing sample lasts at least this long (tiny calls are looped).
MIN_SAMPLE = 2e-3

ROW_KERNELS = ("softmax", "log_softmax", "logsumexp", "softmax_backward",
               "log_softmax_backward", "cross_entropy_with_grad", "cross_entropy")
AFFINE_KERNELS = ("affine_forward", "affine_backward")
CORE_KERNELS = ROW_KERNELS + AFFINE_KERNELS
#: fastdl op name -> key of _config.AUTO_ORDER.
AUTO_KEY = {"cross_entropy_with_grad": "cross_entropy"}
#: The sizes the issue's row-kernel targets name.
LARGE = ((4096, 1000), (1024, 32000))

TORCH_NOTE = {
    "softmax": "torch.softmax",
    "log_softmax": "torch.log_softmax",
    "logsumexp": "torch.logsumexp",
    "softmax_backward": "torch._softmax_backward_data (what autograd runs)",
    "log_softmax_backward": "torch._log_softmax_backward_data (what autograd runs)",
    "cross_entropy_with_grad": "F.cross_entropy + loss.backward()",
    "cross_entropy": "F.cross_entropy (no grad)",
    "affine_forward": "F.linear",
    "affine_backward": "torch.autograd.grad of F.linear (dx, dW, db)",
}
NUMPY_NOTE = {
    "affine_forward": "bare GEMM = np.matmul(x, W.T, out=buf), the floor",
    "affine_backward": "GEMMs = (dy @ W, dy.T @ x) without dy.sum(0), the floor",
}


def _compiled_backends():
    return tuple(b for b in fastdl.available_backends() if b != "numpy")


def _auto_backend(op, compiled):
    for name in _config.AUTO_ORDER.get(AUTO_KEY.get(op, op), _config.DEFAULT_AUTO_ORDER):
        if name in compiled:
            return name
    return None


def _reference(fn, *args):
    """NumPy baseline ``fn`` computed in float64 from the same (rounded) inputs.

    Every contender, the NumPy one included, is checked against this: outputs
    such as ``dy - exp(y) * sum(dy)`` cancel, and two float32 computations
    that are each within a few ulps of the exact value can differ by more
    than any sensible tolerance between themselves.
    """
    return fn(*(a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                else a for a in args))


def _tolerances(op, dtype):
    """(rtol, atol relative to the largest |expected| value) against the float64 reference."""
    if op in AFFINE_KERNELS:
        return (1e-3, 1e-4) if dtype == np.float32 else (1e-9, 1e-12)
    return (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-13)


def _check(name, got, expected, rtol, atol):
    """Raise AssertionError unless ``got`` matches the reference ``expected``.

    ``atol`` is scaled by the largest magnitude in ``expected`` (a cancelling
    output is accurate relative to the terms that cancelled, not to itself).
    """
    if isinstance(expected, tuple):
        for g, e in zip(got, expected):
            _check(name, g, e, rtol, atol)
        return
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected, rtol=rtol,
                               atol=atol * scale, err_msg=name)


def _bytes_moved(op, size, itemsize):
    """Bytes a kernel must read plus write, at the least (for bandwidth)."""
    if op in AFFINE_KERNELS:
        n, d, h = size
        if op == "affine_forward":
            return (n * d + h * d + h + n * h) * itemsize
        return (n * h + n * d + h * d + n * d + h * d + h) * itemsize
    n, c = size
    nc = n * c * itemsize
    return {
        "softmax": 2 * nc,
        "log_softmax": 2 * nc,
        "logsumexp": nc + n * itemsize,
        "softmax_backward": 3 * nc,
        "log_softmax_backward": 3 * nc,
        "cross_entropy_with_grad": 2 * nc + 8 * n,
        "cross_entropy": nc + 8 * n,
    }[op]


def _flops(op, size):
    n, d, h = size
    return 2 * n * d * h * (1 if op == "affine_forward" else 2)


def make_case(op, size, dtype, compiled, torch):
    """Inputs, NumPy reference and contenders ``{name: fn}`` for one row."""
    rng = np.random.default_rng(0)
    F = torch.nn.functional if torch is not None else None
    c = {}
    if op in AFFINE_KERNELS:
        n, d, h = size
        x = rng.standard_normal((n, d)).astype(dtype)
        W = (rng.standard_normal((h, d)) / np.sqrt(d)).astype(dtype)
        if op == "affine_forward":
            b = rng.standard_normal(h).astype(dtype)
            buf = np.empty((n, h), dtype)
            expected = _reference(np_affine_forward, x, W, b)
            c["numpy"] = lambda: np_affine_forward(x, W, b)
            c["GEMM"] = lambda: np.matmul(x, W.T, out=buf)
            for be in compiled:
                out = np.empty((n, h), dtype)
                c[be] = lambda be=be, out=out: fastdl.affine_forward(x, W, b, out=out, backend=be)
            if torch is not None:
                tx, tW, tb = map(torch.from_numpy, (x, W, b))
                c["torch"] = lambda: F.linear(tx, tW, tb).numpy()
            return expected, c, ("GEMM",)
        dy = rng.standard_normal((n, h)).astype(dtype)
        expected = _reference(np_affine_backward, dy, x, W)
        c["numpy"] = lambda: np_affine_backward(dy, x, W)
        c["GEMMs"] = lambda: (dy @ W, dy.T @ x)
        for be in compiled:
            c[be] = lambda be=be: fastdl.affine_backward(dy, x, W, backend=be)
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_(True)
            tW = torch.from_numpy(W).requires_grad_(True)
            tb = torch.zeros(h, dtype=tx.dtype, requires_grad=True)
            ty = F.linear(tx, tW, tb)
            tdy = torch.from_numpy(dy)

            def torch_affine_backward():
                gx, gW, gb = torch.autograd.grad(ty, (tx, tW, tb), tdy, retain_graph=True)
                return gx.numpy(), gW.numpy(), gb.numpy()

            c["torch"] = torch_affine_backward
        return expected, c, ("GEMMs",)

    x = (rng.standard_normal(size) * 3).astype(dtype)
    if op in ("softmax", "log_softmax", "logsumexp"):
        ref = {"softmax": np_softmax, "log_softmax": np_log_softmax,
               "logsumexp": np_logsumexp}[op]
        expected = _reference(ref, x)
        c["numpy"] = lambda: ref(x)
        fd = getattr(fastdl, op)
        for be in compiled:
            if op == "logsumexp":
                c[be] = lambda be=be: fd(x, backend=be)
            else:
                out = np.empty_like(x)
                c[be] = lambda be=be, out=out: fd(x, out=out, backend=be)
        if torch is not None:
            tf = getattr(torch, op)
            tx = torch.from_numpy(x)
            c["torch"] = lambda: tf(tx, -1).numpy()
        return expected, c, ()

    if op in ("softmax_backward", "log_softmax_backward"):
        y = np_softmax(x) if op == "softmax_backward" else np_log_softmax(x)
        dy = rng.standard_normal(size).astype(dtype)
        ref = np_softmax_backward if op == "softmax_backward" else np_log_softmax_backward
        expected = _reference(ref, dy, y)
        c["numpy"] = lambda: ref(dy, y)
        fd = getattr(fastdl, op)
        for be in compiled:
            out = np.empty_like(x)
            c[be] = lambda be=be, out=out: fd(dy, y, out=out, backend=be)
        if torch is not None:
            tf = (torch._softmax_backward_data if op == "softmax_backward"
                  else torch._log_softmax_backward_data)
            tdy, ty, tdt = torch.from_numpy(dy), torch.from_numpy(y), torch.from_numpy(y).dtype
            c["torch"] = lambda: tf(tdy, ty, -1, tdt).numpy()
        return expected, c, ()

    target = rng.integers(0, size[1], size[0])
    if op == "cross_entropy":
        expected = _reference(np_cross_entropy, x, target)
        c["numpy"] = lambda: np_cross_entropy(x, target)
        for be in compiled:
            c[be] = lambda be=be: fastdl.cross_entropy(x, target, backend=be)
        if torch is not None:
            tx, tt = torch.from_numpy(x), torch.from_numpy(target)

            def torch_ce():
                with torch.no_grad():
                    return F.cross_entropy(tx, tt).numpy()

            c["torch"] = torch_ce
        return expected, c, ()

    assert op == "cross_entropy_with_grad", op
    expected = _reference(np_cross_entropy_with_grad, x, target)
    c["numpy"] = lambda: np_cross_entropy_with_grad(x, target)
    for be in compiled:
        out = np.empty_like(x)
        c[be] = lambda be=be, out=out: fastdl.cross_entropy_with_grad(x, target, out=out,
                                                                      backend=be)
    if torch is not None:
        tz = torch.from_numpy(x.copy()).requires_grad_(True)
        tt = torch.from_numpy(target)

        def torch_ce_with_grad():
            tz.grad = None
            loss = F.cross_entropy(tz, tt)
            loss.backward()
            return loss.detach().numpy(), tz.grad.numpy()

        c["torch"] = torch_ce_with_grad
    return expected, c, ()


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------


def time_contenders(fns, repeats, budget, settle=0.1, passes=2):
    """Median seconds per call of each ``fns[name]``.

    Contenders are timed in blocks, one contender at a time, in ``passes``
    passes of alternating order (A..Z, then Z..A) so that a drift of the
    shared machine does not fall on one contender alone.  Before each block
    the contender runs untimed for ``settle`` seconds (at least twice): the
    thread pools of the contender before it (OpenBLAS busy-waits for about
    0.1 s after a GEMM; PyTorch's and fastdl's OpenMP threads spin briefly)
    would otherwise steal a core from its first calls -- measured here, a
    64x64 GEMM took 0.8 ms instead of 17 us right after an OpenMP kernel.
    Calls shorter than ``MIN_SAMPLE`` are looped so a sample is long enough
    for the clock.  Rounds are cut (to no fewer than 5 in all) when the
    slowest contender would exceed ``budget`` seconds.
    """
    names = list(fns)
    number, single = {}, {}
    for name in names:
        fns[name]()  # warm-up: JIT, first touch of buffers
        t0 = time.perf_counter()
        fns[name]()
        single[name] = max(time.perf_counter() - t0, 1e-7)
        number[name] = max(1, int(MIN_SAMPLE / single[name]))
    slowest = max(single[n] * number[n] for n in names)
    rounds = max(min(repeats, 5), min(repeats, int(budget / slowest)))
    per_pass = max(1, math.ceil(rounds / passes))
    samples = {name: [] for name in names}
    for p in range(passes):
        for name in (names if p % 2 == 0 else names[::-1]):
            fn, reps = fns[name], number[name]
            fn()
            t_end = time.perf_counter() + settle
            while time.perf_counter() < t_end:
                fn()
            for _ in range(per_pass):
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                samples[name].append((time.perf_counter() - t0) / reps)
    return {name: statistics.median(s) for name, s in samples.items()}


def peak_extra_bytes(fn):
    """Peak bytes allocated during one call that tracemalloc sees (NumPy's)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        del result
    finally:
        tracemalloc.stop()
    return max(0, peak)


def copy_bandwidth(threads, mib, repeats):
    """Bytes/s of a parallel array copy (read + write), ``threads`` chunks at once."""
    n = mib * (1 << 20) // 8
    src = np.ones(n)
    dst = np.zeros(n)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    chunks = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        def copy():  # np.copyto releases the GIL: the chunks copy in parallel
            list(pool.map(lambda ds: np.copyto(*ds), chunks))

        t = time_contenders({"copy": copy}, max(repeats, 9), 5.0, settle=0.2)["copy"]
    return 2 * src.nbytes / t


def gemm_throughput(n, dtype, repeats):
    """FLOP/s of BLAS ``np.matmul`` on (n, n) @ (n, n) into a preallocated output."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    t = time_contenders({"gemm": lambda: np.matmul(a, b, out=out)}, repeats, 5.0,
                        settle=0.2)["gemm"]
    return 2 * n ** 3 / t


def run_case(op, size, dtype, compiled, torch, repeats, budget, settle, passes):
    """Times, checks and memory of every contender on one (op, size, dtype)."""
    expected, fns, floors = make_case(op, size, dtype, compiled, torch)
    rtol, atol = _tolerances(op, dtype)
    errors = {}
    for name, fn in list(fns.items()):
        if name in floors:
            continue  # the bare GEMMs compute part of the result only
        try:  # check the answer before trusting the time
            _check(name, fn(), expected, rtol, atol)
        except AssertionError as exc:
            errors[name] = str(exc).strip().splitlines()[0][:200]
            del fns[name]
    times = time_contenders(fns, repeats, budget, settle, passes)
    memory = {name: (None if name == "torch" else peak_extra_bytes(fn))
              for name, fn in fns.items()}
    return {
        "op": op, "size": list(size), "dtype": np.dtype(dtype).name,
        "times": times, "memory": memory, "errors": errors, "floors": list(floors),
        "bytes": _bytes_moved(op, size, np.dtype(dtype).itemsize),
        "flops": _flops(op, size) if op in AFFINE_KERNELS else None,
    }


# --- start-up, in fresh subprocesses ---------------------------------------

_IMPORT_SCRIPT = ("import time; t0 = time.perf_counter(); import {mod}; "
                  "print(time.perf_counter() - t0)")

_FIRST_CALL_SCRIPT = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import fastdl
from fastdl import _backend
t_import = time.perf_counter() - t0
op, backend = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
assert _backend._load(backend) is not None, backend
t_load = time.perf_counter() - t0
rng = np.random.default_rng(0)

def call(size):
    if op.startswith("affine"):
        n, d, h = size
        x = rng.standard_normal((n, d), dtype=np.float32)
        W = rng.standard_normal((h, d), dtype=np.float32)
        if op == "affine_forward":
            b = rng.standard_normal(h, dtype=np.float32)
            return lambda: fastdl.affine_forward(x, W, b, backend=backend)
        dy = rng.standard_normal((n, h), dtype=np.float32)
        return lambda: fastdl.affine_backward(dy, x, W, backend=backend)
    x = rng.standard_normal(size, dtype=np.float32)
    if op.startswith("cross_entropy"):
        t = rng.integers(0, size[1], size[0])
        return lambda: getattr(fastdl, op)(x, t, backend=backend)
    if op.endswith("_backward"):
        return lambda: getattr(fastdl, op)(x, x, backend=backend)
    return lambda: getattr(fastdl, op)(x, backend=backend)

small, large = json.loads(sys.argv[3]), json.loads(sys.argv[4])
fn_small, fn_large = call(small), call(large)
t0 = time.perf_counter(); fn_small(); t_small = time.perf_counter() - t0
t0 = time.perf_counter(); fn_large(); t_large = time.perf_counter() - t0
t0 = time.perf_counter(); fn_large(); t_again = time.perf_counter() - t0
print(json.dumps(dict(import_s=t_import, load_s=t_load, first_serial_s=t_small,
                      first_parallel_s=t_large, steady_s=t_again)))
"""


def _subprocess_env(threads, cache_dir=None):
    env = dict(os.environ)
    env[_config.NUM_THREADS_ENV] = str(threads)
    env.pop(_config.BACKEND_ENV, None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
        env[_config.NUMBA_CACHE_ENV] = cache_dir
    return env


def _run_python(code, args=(), env=None):
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip().splitlines()[-1]


def import_times(threads, runs):
    """Median seconds of ``import numpy`` and ``import fastdl`` in fresh interpreters."""
    env = _subprocess_env(threads)
    result = {}
    for mod in ("numpy", "fastdl"):
        _run_python(_IMPORT_SCRIPT.format(mod=mod), env=env)  # byte-compile, page cache
        result[mod] = statistics.median(
            float(_run_python(_IMPORT_SCRIPT.format(mod=mod), env=env)) for _ in range(runs))
    return result


def first_call_times(kernels, compiled, threads, log):
    """First-call seconds per (kernel, backend): cold, then warm Numba cache.

    Each kernel gets its own new cache directory, so no kernel finds another's
    compiled code; the first process compiles (cold), the second loads (warm).
    The first call runs at a size below the parallel threshold (serial kernel),
    the second at one above it (the parallel kernel's own first call).
    """
    small_row, large_row = (64, 10), (256, 1000)
    small_aff, large_aff = (64, 784, 128), (256, 1024, 1024)
    rows = []
    for op in kernels:
        small, large = (small_aff, large_aff) if op in AFFINE_KERNELS else (small_row, large_row)
        for be in compiled:
            with tempfile.TemporaryDirectory(prefix="fastdl-numba-cache-") as cache:
                env = _subprocess_env(threads, cache)
                args = (op, be, json.dumps(small), json.dumps(large))
                cold = json.loads(_run_python(_FIRST_CALL_SCRIPT, args, env))
                warm = json.loads(_run_python(_FIRST_CALL_SCRIPT, args, env))
            rows.append({"op": op, "backend": be, "cold": cold, "warm": warm})
            log(f"  first call {op:<24} {be:<7} cold {cold['first_serial_s']:.3f}s "
                f"+ {cold['first_parallel_s']:.3f}s, warm {warm['first_serial_s']:.3f}s "
                f"+ {warm['first_parallel_s']:.3f}s")
    return rows


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads, torch):
    try:
        from ._info import _blas_info, _cpu_simd
        blas, simd = _blas_info()["blas"], _cpu_simd()
    except Exception as exc:  # the report must not die on a description helper
        blas = simd = f"unknown ({type(exc).__name__})"
    try:
        import numba
        numba_version = numba.__version__
    except ImportError:
        numba_version = "not installed"
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "unknown"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load average at start (1, 5, 15 min)": load,
        "cpu": _cpu_model(),
        "cpu simd": simd,
        "cores usable": str(_config.default_num_threads()),
        "threads used (every contender)": str(threads),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba_version,
        "torch": torch.__version__ if torch is not None else "not installed (rows skipped)",
        "fastdl": fastdl.__version__,
        "fastdl compiled backends": ", ".join(_compiled_backends()) or "none",
        "blas": blas,
    }


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def _fmt_time(t):
    if t is None:
        return "—"
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def _fmt_bytes(b):
    if b is None:
        return "n/t"
    if b < 1024:
        return f"{b} B"
    if b < 1 << 20:
        return f"{b / 1024:.0f} KiB"
    return f"{b / (1 << 20):.1f} MiB"


def _fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def _size_label(size):
    return "x".join(str(s) for s in size)


def _ratio(num, den):
    return None if num is None or den is None else num / den


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def row_table(cases, compiled, copy_bw):
    header = ["kernel", "N×C", "dtype", "numpy", "torch"]
    header += [f"{b}" for b in compiled]
    for b in compiled:
        header += [f"numpy/{b}", f"torch/{b}"]
    header += [f"BW {name}" for name in ("numpy", "torch", *compiled)]
    header += [f"mem {name}" for name in ("numpy", *compiled)]
    rows = []
    for c in cases:
        t = c["times"]
        row = [c["op"], _size_label(c["size"]), c["dtype"],
               _fmt_time(t.get("numpy")), _fmt_time(t.get("torch"))]
        row += [_fmt_time(t.get(b)) if b not in c["errors"] else "WRONG" for b in compiled]
        for b in compiled:
            row += [_fmt_ratio(_ratio(t.get("numpy"), t.get(b))),
                    _fmt_ratio(_ratio(t.get("torch"), t.get(b)))]
        for name in ("numpy", "torch", *compiled):
            tt = t.get(name)
            row.append("—" if tt is None else f"{c['bytes'] / tt / copy_bw:.0%}")
        row += [_fmt_bytes(c["memory"].get(name)) for name in ("numpy", *compiled)]
        rows.append(row)
    return _table(header, rows)


def affine_table(cases, compiled, gemm_peak):
    header = ["kernel", "N×D×H", "dtype", "numpy", "floor", "torch", *compiled]
    for b in compiled:
        header += [f"{b}/floor", f"numpy/{b}", f"torch/{b}"]
    header += [f"GEMM-peak {name}" for name in ("floor", *compiled)]
    header += [f"mem {name}" for name in ("numpy", *compiled)]
    rows = []
    for c in cases:
        t = c["times"]
        floor = c["floors"][0]
        row = [c["op"], _size_label(c["size"]), c["dtype"], _fmt_time(t.get("numpy")),
               f"{_fmt_time(t.get(floor))} ({floor})", _fmt_time(t.get("torch"))]
        row += [_fmt_time(t.get(b)) if b not in c["errors"] else "WRONG" for b in compiled]
        for b in compiled:
            row += [_fmt_ratio(_ratio(t.get(b), t.get(floor))),
                    _fmt_ratio(_ratio(t.get("numpy"), t.get(b))),
                    _fmt_ratio(_ratio(t.get("torch"), t.get(b)))]
        for name in (floor, *compiled):
            tt = t.get(name)
            row.append("—" if tt is None else f"{c['flops'] / tt / gemm_peak[c['dtype']]:.0%}")
        row += [_fmt_bytes(c["memory"].get(name)) for name in ("numpy", *compiled)]
        rows.append(row)
    return _table(header, rows)


def fastest_backends(cases, compiled):
    """Per kernel and dtype: the backend with the best geometric-mean time."""
    result = {}
    for op in CORE_KERNELS:
        for dtype in ("float32", "float64"):
            sel = [c for c in cases if c["op"] == op and c["dtype"] == dtype]
            if not sel or not compiled:
                continue
            score = {}
            for b in compiled:
                ts = [c["times"].get(b) for c in sel]
                if all(ts):
                    score[b] = math.exp(statistics.fmean(math.log(x) for x in ts))
            if score:
                best = min(score, key=score.get)
                wins = {b: sum(1 for c in sel if c["times"].get(b) and
                               c["times"][b] == min(c["times"].get(x) or math.inf
                                                    for x in compiled)) for b in compiled}
                result[(op, dtype)] = (best, score, wins, len(sel))
    return result


def check_targets(cases, compiled, copy_bw, startup, import_s, train=None):
    """The issue's targets: list of (target, met: bool or None, figure)."""
    checks = []
    if train:
        fast = train.get("fastdl compile_step")
        layers_t = train.get("fastdl layer API (auto)")
        for other, need in (("hand-written NumPy", 3.0), ("PyTorch eager", 2.0)):
            label = f"digits MLP training step (compile_step): ≥ {need:g}× {other}"
            r = _ratio(train.get(other), fast)
            if r is None:
                checks.append((label, None, "not measured"))
                continue
            checks.append((label, r >= need,
                           f"{r:.2f}× ({_fmt_time(fast)} vs {_fmt_time(train[other])}); "
                           f"layer API {_fmt_ratio(_ratio(train[other], layers_t))}"))

    def get(op, size, dtype="float32"):
        for c in cases:
            if c["op"] == op and tuple(c["size"]) == tuple(size) and c["dtype"] == dtype:
                return c
        return None

    def ratio_check(label, op, size, other, at_least):
        c = get(op, size)
        be = _auto_backend(op, compiled)
        if c is None or be is None:
            checks.append((label, None, "not measured (size not in this run)"))
            return
        r = _ratio(c["times"].get(other), c["times"].get(be))
        if r is None:
            checks.append((label, None, f"no {other} time"))
            return
        best = max(compiled, key=lambda b: _ratio(c["times"].get(other), c["times"].get(b)) or 0)
        rb = _ratio(c["times"].get(other), c["times"].get(best))
        extra = f"; best backend {best} {rb:.2f}×" if best != be and rb else ""
        checks.append((label, r >= at_least,
                       f"{be} (auto) {r:.2f}× (need ≥ {at_least}×, "
                       f"{other} {_fmt_time(c['times'][other])} vs {_fmt_time(c['times'][be])})"
                       f"{extra}"))

    for size in LARGE:
        s = _size_label(size)
        ratio_check(f"cross_entropy_with_grad {s}: ≥ 5× NumPy", "cross_entropy_with_grad",
                    size, "numpy", 5)
        ratio_check(f"cross_entropy_with_grad {s}: ≥ 2× PyTorch", "cross_entropy_with_grad",
                    size, "torch", 2)
    ratio_check("cross_entropy_with_grad 64x10: ≥ 10× PyTorch", "cross_entropy_with_grad",
                (64, 10), "torch", 10)
    for op in ("softmax", "log_softmax"):
        for size in LARGE:
            s = _size_label(size)
            ratio_check(f"{op} {s}: ≥ 3× NumPy", op, size, "numpy", 3)
            ratio_check(f"{op} {s}: ≥ 1.2× PyTorch", op, size, "torch", 1.2)
    for size in ((64, 10), (256, 1000)) + LARGE:
        ratio_check(f"logsumexp {_size_label(size)}: ≥ 1.5× PyTorch", "logsumexp", size,
                    "torch", 1.5)

    # Bandwidth: every memory-bound kernel at the large sizes, float32.
    for op in ROW_KERNELS:
        for size in LARGE:
            c = get(op, size)
            be = _auto_backend(op, compiled)
            label = f"{op} {_size_label(size)}: ≥ 60% of copy bandwidth"
            if c is None or be is None or be not in c["times"]:
                checks.append((label, None, "not measured"))
                continue
            frac = c["bytes"] / c["times"][be] / copy_bw
            checks.append((label, frac >= 0.6, f"{be} (auto) {frac:.0%}"))

    for op, limit in (("affine_forward", 1.10), ("affine_backward", 1.15)):
        be = _auto_backend(op, compiled)
        sel = [c for c in cases if c["op"] == op and c["dtype"] == "float32"]
        for c in sel:
            floor = c["floors"][0]
            r = _ratio(c["times"].get(be), c["times"].get(floor))
            label = f"{op} {_size_label(c['size'])}: ≤ {limit}× {floor}"
            checks.append((label, None if r is None else r <= limit,
                           "—" if r is None else
                           f"{be} (auto) {r:.2f}× ({_fmt_time(c['times'][be])} vs "
                           f"{_fmt_time(c['times'][floor])})"))

    if import_s is not None:
        checks.append(("import fastdl ≤ 0.5 s", import_s["fastdl"] <= 0.5,
                       f"{import_s['fastdl']:.3f} s (import numpy alone "
                       f"{import_s['numpy']:.3f} s)"))
    else:
        checks.append(("import fastdl ≤ 0.5 s", None, "not measured (--no-startup)"))
    if startup:
        for row in startup:
            w = row["warm"]
            first = w["load_s"] + w["first_serial_s"]
            checks.append((f"warm first call {row['op']} ({row['backend']}) ≤ 0.3 s",
                           first <= 0.3,
                           f"{first:.3f} s (backend load {w['load_s']:.3f} s + call "
                           f"{w['first_serial_s']:.3f} s); parallel path first call "
                           f"{w['first_parallel_s']:.3f} s"))
    else:
        checks.append(("warm first call ≤ 0.3 s", None, "not measured (--no-startup)"))

    slower = []
    n64 = 0
    for c in cases:
        if c["dtype"] != "float64":
            continue
        for b in compiled:
            if b in c["times"] and "numpy" in c["times"]:
                n64 += 1
                r = c["times"]["numpy"] / c["times"][b]
                if r < 1:
                    slower.append(f"{c['op']} {_size_label(c['size'])} {b} {r:.2f}×")
    checks.append(("float64 never slower than NumPy (every backend, every row)",
                   (not slower) if n64 else None,
                   f"all {n64} rows ≥ 1×" if not slower else
                   f"{len(slower)} of {n64} rows slower: " + "; ".join(slower)))
    return checks


#: Training-step timing: batches of the digits MLP's shapes (64 features,
#: 10 classes, batch 64) from a seeded generator, so the bench needs no
#: scikit-learn; the step's time does not depend on the values.
TRAIN_BATCHES = {"full": 21, "quick": 11, "tiny": 6}
TRAIN_REPEAT = {"full": 9, "quick": 5, "tiny": 2}


def _gemm_floor_step(hidden=128):
    """The five GEMMs of the MLP step alone (np.matmul into buffers): the floor."""
    rng = np.random.default_rng(0)
    W1 = rng.random((hidden, 64), dtype=np.float32)
    W2 = rng.random((10, hidden), dtype=np.float32)
    bufs = {}

    def step(x, y):
        n = len(x)
        if n not in bufs:
            bufs[n] = (np.empty((n, hidden), np.float32), np.empty((n, 10), np.float32),
                       np.empty_like(W2), np.empty((n, hidden), np.float32),
                       np.empty_like(W1))
        h, z, dW2, da, dW1 = bufs[n]
        np.matmul(x, W1.T, out=h)
        np.matmul(h, W2.T, out=z)
        np.matmul(z.T, h, out=dW2)
        np.matmul(z, W2, out=da)
        np.matmul(da.T, x, out=dW1)
    return step


def training_step_times(mode, torch, log):
    """Per-step medians (seconds) of the digits MLP step, 1 thread for all.

    64 -> 128 -> ReLU -> 10, CrossEntropyLoss, Adam, float32, batch 64: the
    layer API ("auto"), :func:`fastdl.compile_step`, the hand-written NumPy
    MLP and PyTorch eager of ``python -m fastdl demo``, and the five GEMMs
    alone, each pass over the batches timed in turn for every contender.
    One thread: at batch 64 a second one costs more than it saves,
    for every contender.
    """
    from . import _train_demo as demo

    rng = np.random.default_rng(0)
    n = 64 * TRAIN_BATCHES[mode]
    X = rng.random((n, 64), dtype=np.float32)
    y = rng.integers(0, 10, n)
    batches = [(X[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)]
    old = fastdl.get_num_threads()
    fastdl.set_num_threads(1)
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        pass
    if torch is not None:
        old_torch = torch.get_num_threads()
        torch.set_num_threads(1)
    variants = [("fastdl layer API (auto)", lambda: demo._fastdl_step(0, 1e-3))]
    variants.append(("fastdl compile_step", lambda: demo._compiled_fastdl_step(0, 1e-3)))
    variants.append(("hand-written NumPy", lambda: demo._numpy_step(0, 1e-3)))
    if torch is not None:
        variants.append(("PyTorch eager", lambda: demo._torch_step(0, 1e-3, 1)[0]))
    variants.append(("GEMMs alone (floor)", _gemm_floor_step))
    steps = {}
    samples = {}
    try:
        for name, make in variants:
            try:
                steps[name] = make()
            except ImportError as exc:
                log(f"training step: {name} skipped ({exc})")
                continue
            samples[name] = []
            for x, t in batches[:5]:  # warm-up: JIT compilation, buffers
                steps[name](x, t)
        # Passes alternate between the contenders, in a rotating order, so a
        # disturbance of the machine lands on all of them alike.
        names = list(steps)
        for k in range(TRAIN_REPEAT[mode]):
            for name in names[k % len(names):] + names[:k % len(names)]:
                step = steps[name]
                t0 = time.perf_counter()
                for x, t in batches:
                    step(x, t)
                samples[name].append((time.perf_counter() - t0) / len(batches))
        times = {name: statistics.median(v) for name, v in samples.items()}
        log("training step: " + ", ".join(f"{k} {_fmt_time(v)}" for k, v in times.items()))
    finally:
        fastdl.set_num_threads(old)
        if limiter is not None:
            limiter.restore_original_limits()
        if torch is not None:
            torch.set_num_threads(old_torch)
    return times


def train_table(times):
    base = times.get("hand-written NumPy")
    torch_t = times.get("PyTorch eager")
    rows = [[name, _fmt_time(t), _fmt_ratio(_ratio(base, t)), _fmt_ratio(_ratio(torch_t, t))]
            for name, t in times.items()]
    return _table(["variant", "time/step", "NumPy/X", "torch/X"], rows)


def startup_table(startup, import_s):
    parts = []
    if import_s is not None:
        parts.append(f"`import numpy`: {import_s['numpy'] * 1e3:.0f} ms; `import fastdl` "
                     f"(including NumPy): {import_s['fastdl'] * 1e3:.0f} ms "
                     "(median of fresh interpreters).")
    if startup:
        header = ["kernel", "backend", "load (cold)", "1st call serial cold",
                  "1st call parallel cold", "load (warm)", "1st call serial warm",
                  "1st call parallel warm", "steady call"]
        rows = []
        for r in startup:
            c, w = r["cold"], r["warm"]
            rows.append([r["op"], r["backend"], _fmt_time(c["load_s"]),
                         _fmt_time(c["first_serial_s"]), _fmt_time(c["first_parallel_s"]),
                         _fmt_time(w["load_s"]), _fmt_time(w["first_serial_s"]),
                         _fmt_time(w["first_parallel_s"]), _fmt_time(w["steady_s"])])
        parts.append(_table(header, rows))
    return "\n\n".join(parts)


def write_markdown(path, info, opts, copy_bw, gemm_peak, cases, compiled, fastest,
                   checks, startup, import_s, train=None):
    L = ["# fastdl benchmark report", ""]
    command = " ".join(["python -m fastdl bench", *opts["argv"]])
    L.append(f"Generated by `{command}` (mode: {opts['mode']}; median of up to "
             f"{opts['repeats']} samples per contender and row, timed in "
             f"{PASSES[opts['mode']]} blocks of alternating contender order, each after "
             "an untimed settling run).")
    L += ["", "## Machine", ""]
    L += [f"- **{k}**: {v}" for k, v in info.items()]
    L += ["", "## Physical limits (same run)", "",
          f"- streaming copy bandwidth, {opts['threads']} threads (parallel array copy, "
          f"{COPY_MIB[opts['mode']]} MiB per array, read + write): "
          f"**{copy_bw / 1e9:.1f} GB/s**, the higher of two probes, before and after "
          "the kernels (" + ", ".join(f"{p / 1e9:.1f}" for p in opts["copy_probes"])
          + " GB/s); every bandwidth fraction below uses it",
          f"- BLAS GEMM ({GEMM_N[opts['mode']]}² matmul): float32 "
          f"**{gemm_peak['float32'] / 1e9:.0f} GFLOP/s**, float64 "
          f"**{gemm_peak['float64'] / 1e9:.0f} GFLOP/s**", ""]
    L += ["## How to read the tables", "",
          "- Times are medians per call. `numpy/X` = numpy_time / X_time and "
          "`torch/X` = torch_time / X_time, measured in the same run (> 1× means X is faster).",
          "- `BW X` = (bytes read + bytes written) / X_time / copy bandwidth, counting only "
          "the bytes the kernel must move (inputs once, outputs once). Above 100% means the "
          "data fits in cache (small sizes).",
          "- `mem X` = peak extra bytes allocated during one call, as tracemalloc sees them "
          "(NumPy allocations); fastdl rows write into a preallocated `out=` where the API "
          "has one. PyTorch allocates outside tracemalloc: `n/t` (not traced).",
          "- `WRONG` = the contender's result did not match NumPy's; its time is not reported.",
          "- Contenders: NumPy as a user would write it; fastdl backends "
          f"({', '.join(compiled) or 'none'}); PyTorch: " +
          "; ".join(f"{k}: {v}" for k, v in TORCH_NOTE.items()) + ".",
          "- Affine: `floor` is " + "; ".join(f"{k}: {v}" for k, v in NUMPY_NOTE.items()) +
          ". `X/floor` = X_time / floor_time (≤ 1.10× / 1.15× is the target). "
          "`GEMM-peak X` = FLOPs / X_time / this run's GEMM throughput.", ""]
    for dtype in ("float32", "float64"):
        sel = [c for c in cases if c["dtype"] == dtype and c["op"] in ROW_KERNELS]
        if sel:
            L += [f"## Row kernels, {dtype}", "", row_table(sel, compiled, copy_bw), ""]
        sel = [c for c in cases if c["dtype"] == dtype and c["op"] in AFFINE_KERNELS]
        if sel:
            L += [f"## Affine, {dtype}", "", affine_table(sel, compiled, gemm_peak), ""]
    errors = [(c, n, e) for c in cases for n, e in c["errors"].items()]
    if errors:
        L += ["## Wrong results", ""]
        L += [f"- {c['op']} {_size_label(c['size'])} {c['dtype']} {n}: {e}"
              for c, n, e in errors]
        L.append("")
    L += ["## Fastest backend per kernel", "",
          "Geometric mean of the times over this run's sizes; `wins` counts sizes where the "
          "backend was fastest. `AUTO_ORDER` is what `\"auto\"` tries first "
          "(fastdl/_config.py).", ""]
    rows = []
    for (op, dtype), (best, score, wins, n) in fastest.items():
        auto = _auto_backend(op, compiled)
        others = ", ".join(f"{b} {score[best] / score[b]:.2f}" for b in score if b != best)
        rows.append([op, dtype, best, f"{wins[best]}/{n}",
                     f"{others} (time ratio best/other)" if others else "—",
                     auto, "yes" if auto == best else "**no**"])
    L += [_table(["kernel", "dtype", "fastest", "wins", "others", "auto picks", "agrees"],
                 rows), ""]
    if train:
        L += ["## Training step (digits MLP)", "",
              "64 → 128 → ReLU → 10, cross-entropy, Adam, float32, batch 64, synthetic "
              "batches of the digits shapes; one thread for every contender (fastdl, BLAS, "
              "PyTorch); time per step = one pass over the batches / their number, "
              f"median over {TRAIN_REPEAT[opts['mode']]} passes per contender, the "
              "contenders' passes interleaved. `NumPy/X` and `torch/X` > 1× mean X is "
              "faster. `GEMMs alone` is the five matrix products of the step without "
              "anything else: the floor for any implementation calling this BLAS.", "",
              train_table(train), ""]
    L += ["## Start-up", ""]
    if startup or import_s:
        L += ["Fresh interpreters; each kernel × backend gets a new empty `NUMBA_CACHE_DIR`: "
              "the first process compiles (cold), the second loads the cache (warm). "
              "`load` = importing the backend (Numba itself for numba); `1st call serial` = "
              "first call at (64, 10) / (64, 784, 128), below the parallel threshold; "
              "`1st call parallel` = next call at (256, 1000) / (256, 1024, 1024), the "
              "parallel kernel's first call; `steady` = a third call at that size. float32.",
              "", startup_table(startup, import_s), ""]
    else:
        L += ["Not measured (`--no-startup`).", ""]
    L += ["## Targets", ""]
    mark = {True: "met", False: "**missed**", None: "n/a"}
    L += [_table(["target", "result", "figure"],
                 [[label, mark[ok], fig] for label, ok, fig in checks]), ""]
    met = sum(1 for _, ok, _ in checks if ok is True)
    missed = sum(1 for _, ok, _ in checks if ok is False)
    L += [f"{met} met, {missed} missed, {len(checks) - met - missed} not measured.", ""]
    if opts.get("plot_note"):
        L += [opts["plot_note"], ""]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(L))


def write_plot(path, cases, compiled, copy_bw, gemm_peak):
    """results.png: speed-ups over NumPy and PyTorch, and bandwidth fractions (float32)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [c for c in cases if c["dtype"] == "float32"]
    labels = [f"{c['op']}\n{_size_label(c['size'])}" for c in sel]
    x = np.arange(len(sel))
    colors = {"cython": "tab:blue", "numba": "tab:orange", "torch": "tab:red",
              "numpy": "tab:gray", "floor": "tab:green"}
    fig, axes = plt.subplots(3, 1, figsize=(max(12, 0.55 * len(sel) + 3), 14))

    def bars(ax, series, title, ylabel, log=True, ref=None):
        width = 0.8 / max(1, len(series))
        for i, (name, values) in enumerate(series):
            v = [np.nan if a is None else a for a in values]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width, label=name,
                   color=colors.get(name.split()[0]))
        if ref is not None:
            for y, style in ref:
                ax.axhline(y, color="black", lw=0.8, ls=style)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=11, loc="left")
        ax.set_ylabel(ylabel)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
        ax.set_xlim(-0.6, len(sel) - 0.4)
        ax.set_axisbelow(True)
        ax.grid(axis="y", which="major", alpha=0.4)
        ax.legend(fontsize=8, ncol=4, loc="upper right")

    series = [(b, [_ratio(c["times"].get("numpy"), c["times"].get(b)) for c in sel])
              for b in (*compiled, "torch")]
    bars(axes[0], series, "Speed-up over the NumPy a user would write (numpy_time / time), "
         "float32, same run", "× faster than NumPy", ref=[(1, "-")])
    series = [(b, [_ratio(c["times"].get("torch"), c["times"].get(b)) for c in sel])
              for b in compiled]
    bars(axes[1], series, "Speed-up over PyTorch CPU (torch_time / fastdl_time), float32",
         "× faster than PyTorch", ref=[(1, "-")])
    # Bandwidth (row kernels) or GEMM-peak fraction (affine).
    series = []
    for name in ("numpy", "torch", *compiled):
        vals = []
        for c in sel:
            t = c["times"].get(name)
            if t is None:
                vals.append(None)
            elif c["flops"]:
                vals.append(c["flops"] / t / gemm_peak["float32"])
            else:
                vals.append(c["bytes"] / t / copy_bw)
        series.append((name, vals))
    bars(axes[2], series, f"Fraction of copy bandwidth ({copy_bw / 1e9:.1f} GB/s) reached; "
         f"affine: fraction of GEMM throughput ({gemm_peak['float32'] / 1e9:.0f} GFLOP/s); "
         "dashed: 60% target", "fraction", ref=[(1, "-"), (0.6, "--")])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m fastdl bench",
        description="Benchmark report: fastdl against NumPy and PyTorch, with this "
                    "machine's copy bandwidth and GEMM throughput, start-up costs and the "
                    "issue's targets; writes RESULTS.md and results.png.")
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes and fewer repeats (about 1-2 minutes; CI)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests
    p.add_argument("--out", default=os.path.join("bench", "results"),
                   help="output directory (default bench/results/)")
    p.add_argument("--no-startup", action="store_true",
                   help="skip the start-up measurements (subprocesses)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every contender (default: fastdl's, all cores)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (median of)")
    p.add_argument("--kernels", default=None,
                   help=f"comma-separated subset of {','.join(CORE_KERNELS)}")
    p.add_argument("--startup-kernels", default=None,
                   help="comma-separated kernels for the first-call measurement "
                        "(default: the benchmarked ones)")
    p.add_argument("--dtypes", default="float32,float64", help="default float32,float64")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-train", action="store_true",
                   help="leave out the training-step timing of the digits MLP")
    return p


def _import_torch():
    """``torch``, or None; imported with the OpenMP environment a torch user has.

    ``import fastdl`` sets ``GOMP_SPINCOUNT`` for its own OpenMP threads
    (``_config.GOMP_SPINCOUNT``) unless the user set it; PyTorch's bundled
    libgomp reads the environment when it loads, so it is imported without
    fastdl's value, as in a script that uses PyTorch alone.
    """
    ours = os.environ.get("GOMP_SPINCOUNT") == _config.GOMP_SPINCOUNT
    saved = os.environ.pop("GOMP_SPINCOUNT") if ours else None
    try:
        import torch
    except ImportError:
        return None
    finally:
        if saved is not None:
            os.environ["GOMP_SPINCOUNT"] = saved
    return torch


def _kernel_list(text, default):
    if text is None:
        return default
    names = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in names if k not in CORE_KERNELS]
    if unknown:
        raise SystemExit(f"fastdl bench: unknown kernels {unknown}; choose from {CORE_KERNELS}")
    return names


def run_report(argv=None) -> int:
    """Command-line entry point of ``python -m fastdl bench``; returns the exit status."""
    args = _parser().parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    repeats = args.repeats or REPEATS[mode]
    kernels = _kernel_list(args.kernels, CORE_KERNELS)
    startup_kernels = _kernel_list(args.startup_kernels, kernels)
    dtypes = [np.dtype(d.strip()) for d in args.dtypes.split(",") if d.strip()]
    if any(d not in (np.float32, np.float64) for d in dtypes):
        raise SystemExit("fastdl bench: --dtypes takes float32 and/or float64")

    threads = args.threads or fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        print("threadpoolctl is not installed: BLAS thread count not matched")
    compiled = _compiled_backends()  # loads the backends (and their OpenMP runtime)
    torch = None if args.no_torch else _import_torch()
    if torch is None and not args.no_torch:
        print("PyTorch not installed: its rows are skipped")
    if torch is not None:
        torch.set_num_threads(threads)

    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    try:
        info = machine_info(threads, torch)
        log(f"fastdl bench ({mode}): {threads} threads for every contender; backends "
            f"{', '.join(compiled) or 'none'}; torch {'yes' if torch else 'no'}")
        # Copy bandwidth is probed before and after the kernels, and the
        # fractions use the higher figure: one probe alone varied between
        # 24 and 37 GB/s across runs here (other tenants of the host), and
        # a low probe would flatter every fraction.
        copy_probes = [copy_bandwidth(threads, COPY_MIB[mode], repeats)]
        copy_bw = copy_probes[0]
        gemm_peak = {np.dtype(d).name: gemm_throughput(GEMM_N[mode], d, repeats)
                     for d in (np.float32, np.float64)}
        log(f"copy bandwidth {copy_bw / 1e9:.1f} GB/s; GEMM float32 "
            f"{gemm_peak['float32'] / 1e9:.0f} GFLOP/s, float64 "
            f"{gemm_peak['float64'] / 1e9:.0f} GFLOP/s")

        row_sizes, affine_sizes = SIZES[mode]
        cases = []
        for dtype in dtypes:
            for op in kernels:
                for size in (affine_sizes if op in AFFINE_KERNELS else row_sizes):
                    case = run_case(op, size, dtype, compiled, torch, repeats,
                                    CASE_BUDGET[mode], SETTLE[mode], PASSES[mode])
                    cases.append(case)
                    t = case["times"]
                    summary = ", ".join(f"{n} {_fmt_time(v)}" for n, v in t.items())
                    bad = f"  WRONG: {', '.join(case['errors'])}" if case["errors"] else ""
                    log(f"{op} {_size_label(size)} {np.dtype(dtype).name}: {summary}{bad}")

        copy_probes.append(copy_bandwidth(threads, COPY_MIB[mode], repeats))
        copy_bw = max(copy_probes)
        log(f"copy bandwidth again {copy_probes[-1] / 1e9:.1f} GB/s; fractions use "
            f"{copy_bw / 1e9:.1f} GB/s")

        import_s, startup = None, []
        if not args.no_startup:
            import_s = import_times(threads, 5 if mode == "full" else 3)
            log(f"import numpy {import_s['numpy']:.3f}s, import fastdl "
                f"{import_s['fastdl']:.3f}s")
            startup = first_call_times(startup_kernels, compiled, threads, log)

        train = None if args.no_train else training_step_times(mode, torch, log)
        fastest = fastest_backends(cases, compiled)
        checks = check_targets(cases, compiled, copy_bw, startup, import_s, train)
        opts = {"argv": list(argv if argv is not None else sys.argv[2:]), "mode": mode,
                "repeats": repeats, "threads": threads, "copy_probes": copy_probes}
        png = os.path.join(args.out, "results.png")
        try:
            write_plot(png, cases, compiled, copy_bw, gemm_peak)
            opts["plot_note"] = "Plot: [results.png](results.png)."
        except ImportError:
            opts["plot_note"] = "No plot: matplotlib is not installed."
            print("matplotlib is not installed: skipping results.png")
        try:
            info["load average at end (1, 5, 15 min)"] = "%.2f %.2f %.2f" % os.getloadavg()
        except OSError:
            pass
        with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
            json.dump({"machine": info, "copy_bandwidth_Bps": copy_bw,
                       "copy_bandwidth_probes_Bps": copy_probes,
                       "gemm_flops": gemm_peak, "cases": cases, "import_s": import_s,
                       "first_call": startup, "train_step_s": train}, fh, indent=1)
        md = os.path.join(args.out, "RESULTS.md")
        write_markdown(md, info, opts, copy_bw, gemm_peak, cases, compiled, fastest, checks,
                       startup, import_s, train)
        with open(md, encoding="utf-8") as fh:
            print(fh.read())
        log(f"wrote {md}" + ("" if "No plot" in opts["plot_note"] else f" and {png}"))
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    if any(c["errors"] for c in cases):
        return 1
    return 0 if compiled else 1
