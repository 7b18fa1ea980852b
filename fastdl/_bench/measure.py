"""The timing harness, this machine's limits and start-up costs.

- :func:`time_contenders`: medians of interleaved, settled timing blocks;
- :func:`peak_extra_bytes`: peak memory a call allocates (tracemalloc);
- :func:`copy_bandwidth` and :func:`gemm_throughput`: the physical limits the
  kernels are compared with, measured in the same run;
- :func:`import_times` and :func:`first_call_times`: start-up in fresh
  subprocesses, with cold and warm Numba caches;
- :func:`machine_info`, :func:`simd_level` and :func:`busy_warning`: what the
  report says about the machine.
"""

from __future__ import annotations

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
from .. import _config

#: A timing sample lasts at least this long (tiny calls are looped).
MIN_SAMPLE = 2e-3


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
        affine = op.startswith("affine")
        small, large = (small_aff, large_aff) if affine else (small_row, large_row)
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


def compiled_backends():
    """fastdl's compiled backends usable here (loads them, and their OpenMP runtime)."""
    return tuple(b for b in fastdl.available_backends() if b != "numpy")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd_level():
    """Which SIMD copy of fastdl's compiled exp this CPU runs (e.g. "avx512f copy")."""
    try:
        from .. import _build_info
        from .._info import _simd_in_use
    except ImportError:  # built without setup.py's build_ext: no record of the copies
        return "unknown (no build record)"
    return _simd_in_use(_build_info.SIMD_CLONES).split(" (", 1)[0] + " copy"


def load_average():
    """The 1-minute load average, or None where the OS does not report it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows; no /proc/loadavg
        return None


def busy_warning(loads):
    """A warning when the machine was busy at any of ``loads`` ({when: load}), else None.

    A 1-minute load average above the number of cores means other work
    competed for them: contenders were then slowed unevenly and the ratios
    are unreliable.  (The report's own threads count towards the load at the
    end, but they use at most all cores, which is not *above* their count.)
    """
    cores = os.cpu_count() or 1
    busy = {when: load for when, load in loads.items() if load is not None and load > cores}
    if not busy:
        return None
    at = ", ".join(f"{load:.2f} at {when}" for when, load in busy.items())
    return (f"the machine was busy (1-minute load average {at}, above its {cores} "
            "cores): other work competed for the cores, so the ratios of this run are "
            "unreliable; re-run on an idle machine")


def machine_info(threads, torch):
    try:
        from .._info import _blas_info, _cpu_simd
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
    except (AttributeError, OSError):
        load = "unknown"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load average at start (1, 5, 15 min)": load,
        "cpu": _cpu_model(),
        "cpu simd": simd,
        "fastdl exp simd copy": simd_level(),
        "cores usable": str(_config.default_num_threads()),
        "threads used (every contender)": str(threads),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba_version,
        "torch": torch.__version__ if torch is not None else "not installed (rows skipped)",
        "fastdl": fastdl.__version__,
        "fastdl compiled backends": ", ".join(compiled_backends()) or "none",
        "blas": blas,
    }
