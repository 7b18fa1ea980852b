"""One place for fastdl's tunables.

Kernels and backends read their thresholds, thread counts and cache settings
from here instead of carrying literals of their own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import _load

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

#: Elements per block of the fused pointwise loss-and-gradient kernels: the
#: block's loss sum is taken first, then its gradient from the same elements
#: while they are still in L1 (1024 float64 inputs and targets: 16 KiB).
POINTWISE_BLOCK = 1024

#: Master switch for Numba's on-disk cache of fastdl's kernels, so the
#: second process does not pay for compilation again.  Where the cache goes
#: (or whether it is silently off) is decided by :func:`numba_cache_setup`.
NUMBA_CACHE = True

#: The fastmath flags Numba kernels may use.  Only reassociation ("reassoc")
#: and contraction ("contract") are allowed: they let LLVM vectorise sums and
#: fuse multiply-adds without touching inf/NaN semantics ("nnan"/"ninf") or
#: flushing denormals, which blanket fastmath would do.
NUMBA_FASTMATH = frozenset({"reassoc", "contract"})

#: Order in which "auto" tries the compiled backends for each operation.  The
#: NumPy reference is used by "auto" only when no compiled backend works.
#: From bench/results/RESULTS.md ("Fastest backend per kernel", geometric
#: mean over the benchmark sizes, float32 and float64, 2 threads): Numba is
#: clearly ahead for softmax_backward (Cython 0.74-0.88x its speed);
#: elsewhere Cython is ahead (log_softmax float32: Numba 0.91x since the
#: SIMD exp loops) or the two are within a few percent, and Cython wins on
#: first-call cost (no JIT, no Numba import), so it goes first.
AUTO_ORDER = {
    "affine_forward": ("cython", "numba"),
    "affine_backward": ("cython", "numba"),
    "logsumexp": ("cython", "numba"),
    "softmax": ("cython", "numba"),
    "log_softmax": ("cython", "numba"),
    "softmax_backward": ("numba", "cython"),
    "log_softmax_backward": ("cython", "numba"),
    "cross_entropy": ("cython", "numba"),
    # Pointwise ops: both backends' loops use fastdl's vectorised exp, log,
    # log1p, expm1, tanh and erf; Numba compiles them for the host (AVX-512
    # where it has it), the Cython modules are built for SSE2, AVX2+FMA and
    # AVX-512 (the loaded one: show_config()).  Measured (4M float32, 2
    # threads, AVX-512F EPYC, one run, bench/results/POINTWISE.md): Numba
    # 1.3-2.4x faster than Cython's AVX2 build on every op that computes a
    # transcendental, both within 15% of each other on the memory-bound ones
    # (relu 0.33 vs 0.32 ms, relu_backward 0.72 vs 0.61).  Against Cython's
    # AVX-512 build (one process, the same machine type): Cython 0.57-1.44x
    # Numba's speed, below 0.9x on 15 of 30 pointwise rows and above 1.1x on
    # 4, so Numba stays first for the family; where a CPU has only AVX2,
    # Numba keeps its lead.
    "relu": ("cython", "numba"),
    "relu_backward": ("cython", "numba"),
}
#: The order for every other op of the "elementwise" family (fastdl._ops).
ELEMENTWISE_AUTO_ORDER = ("numba", "cython")
DEFAULT_AUTO_ORDER = ("cython", "numba")


#: The bias add and the bias gradient of the affine kernels are serial (every
#: backend; there is no parallel copy): right after a multi-threaded GEMM,
#: BLAS's worker threads are still spinning, and a parallel region of our own
#: on the same cores fights them.  Measured (2 cores, 2 threads,
#: 256x1024x1024 float32, interleaved medians): affine_forward took 1.23x the
#: bare GEMM with a parallel bias add and 1.00x with a serial one;
#: affine_backward 1.10x against 0.98x; at 2048x1024x1024 within 1%.  A
#: statement of policy for the kernels' docstrings, not a switch.
BIAS_SERIAL = True

#: From this many bytes of output a row kernel writes its last pass with
#: non-temporal stores (past the caches): softmax, log_softmax and the
#: cross-entropy gradient, whose plain stores first read every output line
#: from memory (kernels/_fastexp.h, "Output passes with non-temporal
#: stores").  An output that fits in the caches is better left there for
#: whatever reads it next; rows shorter than ROW_BLOCK_BYTES (kernels/
#: _common.pxd) keep their plain stores (they are not whole lines).
STREAM_MIN_BYTES = 32 << 20

#: Below this many rows the per-row float64 losses of cross-entropy are
#: summed with ``math.fsum`` (exactly rounded: the loss does not depend on
#: the row order); above it with NumPy's pairwise sum (error O(log N) ulp),
#: where fsum's cost (about 30 ns per row) would show next to the kernel.
EXACT_SUM_MAX_ROWS = 1 << 16

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
    return _usable_cores()


def _usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


_USABLE_CORES = _usable_cores()


class _State:
    """Mutable process-wide settings (the thread count)."""

    num_threads = default_num_threads()


state = _State()


def threads_for(n_elements: int) -> int:
    """Threads a kernel should use for ``n_elements`` of work.

    At most the cores other processes' runnable threads leave free
    (:mod:`fastdl._load`: on a busy machine a parallel region waits for its
    descheduled thread, up to 5x slower than one thread, measured there).
    """
    if n_elements < PARALLEL_MIN_ELEMENTS:
        return 1
    n = state.num_threads
    if n > 1 and _load.ENABLED:
        n = min(n, _load.free_cores(_USABLE_CORES))
    return n


# ---------------------------------------------------------------------------
# Numba cache location
# ---------------------------------------------------------------------------
#
# How Numba picks a cache directory, and why fastdl adds a locator.  Numba
# chooses a "cache locator" for a function when the dispatcher is *created*
# with cache=True (``@njit(cache=True)`` runs ``enable_caching()`` at
# decoration time), trying in order: ``numba.config.CACHE_DIR`` (read from
# NUMBA_CACHE_DIR once, when numba is imported), ``__pycache__`` beside the
# source, then the user-wide ``~/.cache/numba``.  If none is writable -- a
# read-only site-packages and no writable HOME -- it raises RuntimeError
# ("cannot cache function ...: no locator available") at decoration time,
# i.e. while importing the backend.  Setting ``numba.config.CACHE_DIR``
# ourselves would work only if done before the dispatchers are created, and
# would also move the cache of the user's own Numba functions.  Instead
# :func:`numba_cache_setup` (called once by ``backends/numba/_jit.py`` when it
# computes its jit options, before any fastdl dispatcher exists):
#
# 1. picks one directory by probing, in order, FASTDL_NUMBA_CACHE_DIR,
#    NUMBA_CACHE_DIR (numba.config.CACHE_DIR), the in-tree ``__pycache__``,
#    Numba's user-wide cache dir, and a private ``fastdl-numba-<uid>``
#    directory under the temp dir (created 0700 and used only if we own it
#    and nobody else can write to it: cache index files are pickles);
# 2. inserts a locator class at the front of Numba's locator list that
#    claims only functions defined in fastdl's own source files and sends
#    them to that directory; everyone else's functions are untouched;
# 3. returns False (so fastdl compiles with cache=False) when no directory
#    is writable: compiled in every process, but never a crash.
#
# Numba keys each cache entry by signature and by the target CPU and its
# features, and the locator's source stamp (here a hash of all of fastdl's
# Numba sources and flags, see _sources_stamp) invalidates it, so a cache
# directory shared between machines or fastdl versions is safe.  If the user set
# NUMBA_CACHE_LOCATOR_CLASSES they have taken control of locators; fastdl
# then leaves Numba alone.

#: Why and where the cache was placed, for ``show_config``: filled in by
#: :func:`numba_cache_setup`.
numba_cache_status: dict = {"dir": None, "source": "not set up (Numba backend not loaded)"}

_PACKAGE_DIR = Path(__file__).resolve().parent


def _numba_user_cache_dir() -> str | None:
    try:
        from numba.misc.appdirs import AppDirs
    except ImportError:  # pragma: no cover - very old or very new numba
        return None
    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def _private_temp_cache_dir() -> str:
    if hasattr(os, "getuid"):
        uid = str(os.getuid())
    else:  # Windows: the temp dir is already per user
        import getpass

        uid = getpass.getuser()
    return os.path.join(tempfile.gettempdir(), f"fastdl-numba-{uid}")


def _writable_dir(path: str, private: bool = False) -> bool:
    """Whether ``path`` exists or can be created, and accepts a new file.

    The same test Numba's locators make (makedirs + a temporary file).
    ``private``: also require that we own it and that neither group nor
    others can write to it (a shared temp dir must not let another user
    plant cache files).
    """
    try:
        os.makedirs(path, mode=0o700 if private else 0o777, exist_ok=True)
        if private and hasattr(os, "getuid"):
            st = os.stat(path)
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return False
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _cache_candidates():
    """(kind, base directory, description) in order of preference."""
    import numba

    env = os.environ.get(NUMBA_CACHE_ENV, "").strip()
    if env:
        yield "dir", os.path.abspath(os.path.expanduser(env)), f"${NUMBA_CACHE_ENV}"
    if numba.config.CACHE_DIR:
        yield "dir", os.path.abspath(numba.config.CACHE_DIR), "$NUMBA_CACHE_DIR"
    yield "intree", None, "__pycache__ beside the package sources"
    user = _numba_user_cache_dir()
    if user:
        yield "dir", user, "Numba's user-wide cache dir"
    yield "private", _private_temp_cache_dir(), "private temp dir (no writable default)"


def _subpath(py_file: str) -> str:
    """Per-source-directory subfolder, Numba's own naming (parent dir name +
    hash of its absolute path), so two installs never share entries."""
    from numba.core.caching import _CacheLocator

    return _CacheLocator.get_suitable_cache_subpath(py_file)


_STAMP: list = []


def _sources_stamp() -> bytes:
    """One hash of every source that shapes fastdl's Numba machine code.

    Numba invalidates a cache entry only when the *defining* file changes.
    fastdl's kernels span files: ``numba/elementwise.py`` takes its jit
    options (fastmath flags) and helpers from ``numba/_jit.py``, and the
    flags come from this module.  Changing one of those left the other
    files' entries valid, so a process could load machine code built from
    older sources or flags (seen here: a stale entry masked a change in
    special-value behaviour).  The stamp covers ``_config.py``,
    every ``fastdl/backends/numba/*.py`` (the compiled step included), plus the fastmath flags and Numba's
    version, so any change recompiles all of fastdl's kernels once.
    """
    if not _STAMP:
        import hashlib

        import numba

        h = hashlib.sha256()
        h.update(repr((numba.__version__, sorted(NUMBA_FASTMATH))).encode())
        files = [_PACKAGE_DIR / "_config.py"]
        files += sorted((_PACKAGE_DIR / "backends" / "numba").glob("*.py"))
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
        _STAMP.append(h.digest())
    return _STAMP[0]


def numba_cache_setup() -> bool:
    """Choose where Numba caches fastdl's kernels; return whether to cache.

    Call before creating any fastdl dispatcher (``numba/_jit.py`` does, in
    its jit options).  Idempotent.  See the comment above for the mechanism.
    """
    if numba_cache_status.get("done"):
        return numba_cache_status["enabled"]
    import numba
    from numba.core import caching

    status = {"done": True, "enabled": False, "dir": None, "skipped": []}
    numba_cache_status.clear()
    numba_cache_status.update(status)
    if not NUMBA_CACHE:
        numba_cache_status["source"] = "disabled (fastdl._config.NUMBA_CACHE is False)"
        return False
    if getattr(numba.config, "CACHE_LOCATOR_CLASSES", None):
        # The user chose Numba's locators explicitly; do not second-guess it.
        numba_cache_status.update(enabled=True, source="NUMBA_CACHE_LOCATOR_CLASSES")
        return True

    probe_file = str(_PACKAGE_DIR / "backends" / "numba" / "_jit.py")
    chosen = None
    for kind, base, why in _cache_candidates():
        if kind == "intree":
            path = os.path.join(os.path.dirname(probe_file), "__pycache__")
        else:
            path = os.path.join(base, _subpath(probe_file))
        if kind == "private":  # the shared temp dir: our own 0700 folder only
            ok = _writable_dir(base, private=True) and _writable_dir(path)
        else:
            ok = _writable_dir(path)
        if ok:
            chosen = (kind, base, why, path)
            break
        numba_cache_status["skipped"].append(f"{why}: {base or path} not writable")
    if chosen is None:
        numba_cache_status["source"] = "disabled: no writable cache directory"
        return False

    kind, base, why, path = chosen
    # Numba's locator classes are semi-public (CacheImpl was _CacheImpl
    # before 0.61); if a future Numba moves them, compile without a cache
    # rather than lose the backend.
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    mixin = getattr(caching, "_SourceFileBackedLocatorMixin", None)
    if impl is None or mixin is None or not hasattr(impl, "_locator_classes") \
            or not hasattr(caching, "_CacheLocator"):
        numba_cache_status["source"] = "disabled: this Numba's cache locator API is unknown"
        return False

    class FastdlCacheLocator(mixin, caching._CacheLocator):
        """Numba cache locator for functions defined in fastdl's sources."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            if kind == "intree":
                self._cache_path = os.path.join(os.path.dirname(py_file), "__pycache__")
            else:
                self._cache_path = os.path.join(base, _subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            # Not just this file's hash (Numba's default): see _sources_stamp.
            return _sources_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            try:
                ours = _PACKAGE_DIR in Path(py_file).resolve().parents
            except (OSError, ValueError):
                ours = False
            if not ours:
                return None  # not fastdl's: Numba's own locators decide
            return super().from_function(py_func, py_file)

    impl._locator_classes = [
        c for c in impl._locator_classes if c.__name__ != "FastdlCacheLocator"
    ]
    impl._locator_classes.insert(0, FastdlCacheLocator)
    numba_cache_status.update(enabled=True, dir=path, source=why)
    return True
