"""One place for fastdl's tunables.

Kernels and backends read their thresholds, thread counts and cache settings
from here instead of carrying literals of their own.
"""

from __future__ import annotations

import os

#: Float dtypes every public function accepts.
FLOAT_DTYPE_NAMES = ("float32", "float64")

#: Environment variable that sets the starting backend ("auto" when unset).
BACKEND_ENV = "FASTDL_BACKEND"

#: Environment variable that sets the starting thread count.
NUM_THREADS_ENV = "FASTDL_NUM_THREADS"

#: Environment variable that redirects the Numba on-disk cache.
NUMBA_CACHE_ENV = "FASTDL_NUMBA_CACHE_DIR"

#: Below this many elements a kernel runs on one thread: starting a parallel
#: region costs a few microseconds, more than a small batch takes serially.
PARALLEL_MIN_ELEMENTS = 1 << 15

#: Numba compiles with ``cache=True`` so the second process does not pay for
#: compilation again.
NUMBA_CACHE = True

#: The fastmath flags Numba kernels may use.  Only reassociation ("reassoc")
#: and contraction ("contract") are allowed: they let LLVM vectorise sums and
#: fuse multiply-adds without touching inf/NaN semantics ("nnan"/"ninf") or
#: flushing denormals, which blanket fastmath would do.
NUMBA_FASTMATH = frozenset({"reassoc", "contract"})

#: Order in which "auto" tries the compiled backends for each operation.  The
#: NumPy reference is used by "auto" only when no compiled backend works.
AUTO_ORDER = {
    "affine_forward": ("cython", "numba"),
    "affine_backward": ("cython", "numba"),
    "logsumexp": ("cython", "numba"),
    "softmax": ("cython", "numba"),
    "log_softmax": ("cython", "numba"),
    "softmax_backward": ("cython", "numba"),
    "log_softmax_backward": ("cython", "numba"),
    "cross_entropy": ("cython", "numba"),
}
DEFAULT_AUTO_ORDER = ("cython", "numba")


#: How long (in spin iterations) an idle GNU OpenMP thread busy-waits for
#: more work before it sleeps.  libgomp's default (300,000 when
#: OMP_WAIT_POLICY is unset) keeps our OpenMP threads spinning on every core
#: for a while after each kernel, which starves OpenBLAS's threads in the
#: GEMM that typically follows: measured here, matmul + bias add went from
#: 17 ms to 32 ms for (1024, 1024) float32 on 2 cores.  10,000 spins removes
#: that contention and costs the kernels nothing measurable.  Applied with
#: setdefault (a user's GOMP_SPINCOUNT or OMP_WAIT_POLICY wins) before any
#: backend loads libgomp; it has no effect if libgomp was already loaded.
GOMP_SPINCOUNT = "10000"


def _configure_openmp_env():
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)


_configure_openmp_env()


def default_num_threads() -> int:
    """Thread count at start-up: ``FASTDL_NUM_THREADS`` or every usable core."""
    env = os.environ.get(NUM_THREADS_ENV)
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value >= 1:
            return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


class _State:
    """Mutable process-wide settings (the thread count)."""

    num_threads = default_num_threads()


state = _State()


def threads_for(n_elements: int) -> int:
    """Threads a kernel should use for ``n_elements`` of work."""
    if n_elements < PARALLEL_MIN_ELEMENTS:
        return 1
    return state.num_threads
