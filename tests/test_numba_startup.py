"""First calls of Numba kernels in a new process with a warm on-disk cache.

Loading a kernel from the cache goes through ``fastdl.backends.numba._jit._KernelCache``,
which skips Numba's full context refresh (the import and registration of
every feature Numba compiles, SciPy's linalg included).  These tests check
that a warm process then loads every kernel without compiling, gets the same
results as the reference, never pays for the refresh, and can still compile
new Numba code afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastdl

numba = pytest.importorskip("numba")
needs_numba = pytest.mark.skipif(
    "numba" not in fastdl.available_backends(), reason="Numba backend unavailable"
)

#: Warmed in both processes: None is every kernel fastdl.warmup knows, so a
#: new kernel is loaded from the cache here without a new test.  With an
#: empty cache the first process compiles them all (about 70 s on 2 cores).
KERNELS = None

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import fastdl
    from fastdl import _config
    from fastdl.backends.numba import _jit as nk, elementwise as ne, optim as no

    kernels, check = json.loads(sys.argv[1]), sys.argv[2] == "check"
    fastdl.warmup(kernels, backends="numba")
    report = {"cache": bool(_config.numba_cache_status.get("enabled")),
              "refreshed": "numba.np.arraymath" in sys.modules}
    dispatchers = [d for v in vars(nk).values() if isinstance(v, tuple) for d in v
                   if hasattr(d, "stats")]
    dispatchers += [d for pair in ne._K.values() for d in pair] + [*no._SGD, *no._ADAM]
    report["hits"] = sum(sum(d.stats.cache_hits.values()) for d in dispatchers)
    report["misses"] = sum(sum(d.stats.cache_misses.values()) for d in dispatchers)
    if check:
        rng = np.random.default_rng(0)
        for dtype, rtol in ((np.float32, 2e-5), (np.float64, 1e-12)):
            for shape in ((4, 8), (256, 160)):  # serial and parallel kernels
                x = rng.standard_normal(shape).astype(dtype)
                t = rng.integers(0, shape[1], shape[0])
                W = rng.standard_normal((16, shape[1])).astype(dtype)
                b = rng.standard_normal(16).astype(dtype)
                for name, call in {
                    "softmax": lambda be: fastdl.softmax(x, backend=be),
                    "log_softmax": lambda be: fastdl.log_softmax(x, backend=be),
                    "logsumexp": lambda be: fastdl.logsumexp(x, backend=be),
                    "cross_entropy_with_grad": lambda be: fastdl.cross_entropy_with_grad(
                        x, t, label_smoothing=0.1, backend=be)[1],
                    "affine_forward": lambda be: fastdl.affine_forward(x, W, b, backend=be),
                    "relu": lambda be: fastdl.relu(x, backend=be),
                }.items():
                    np.testing.assert_allclose(call("numba"), call("numpy"), rtol=rtol,
                                               atol=rtol / 10, err_msg=name)
        # New compilation in the same process: needs the registrations the
        # cache loads skipped, and calls a kernel that was loaded from the cache.
        import numba

        softmax_serial = nk.softmax[0]

        @numba.njit
        def user(x, out):
            softmax_serial(x, out)
            return np.sort(out[0]).sum()

        x = np.random.default_rng(1).standard_normal((3, 5))
        out = np.empty_like(x)
        report["user"] = float(user(x, out))
        report["user_expected"] = float(np.sort(fastdl.softmax(x, backend="numpy")[0]).sum())
    print(json.dumps(report))
    """
)


def _run_worker(mode):
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(KERNELS), mode],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_numba
def test_kernels_use_the_light_cache_class_where_numba_would_cache():
    from numba.core import caching

    from fastdl import _config
    from fastdl.backends.numba import _jit as nk

    if not _config.numba_cache_status.get("enabled"):
        pytest.skip("no writable Numba cache directory here")
    assert nk._KernelCache is not None, "this Numba's cache classes are not the known ones"
    for dispatcher in nk.softmax:
        cache = dispatcher._cache
        assert type(cache) is nk._KernelCache
        # Same place and same entries as Numba's own cache=True would use.
        reference = caching.FunctionCache(dispatcher.py_func)
        assert cache.cache_path == reference.cache_path
        assert cache._cache_file._index_path == reference._cache_file._index_path


@needs_numba
def test_warm_first_calls_load_without_refresh_or_compilation():
    _run_worker("fill")  # compiles what the cache lacks
    report = _run_worker("check")
    if not report["cache"]:
        pytest.skip("no writable Numba cache directory here")
    assert report["misses"] == 0, report
    assert report["hits"] > 0, report
    # The refresh would have imported numba.np.arraymath (and with it
    # scipy.linalg); loading cached kernels must not.
    assert not report["refreshed"], report
    assert report["user"] == pytest.approx(report["user_expected"], rel=1e-12)
