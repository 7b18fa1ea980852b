"""Threads and processes: parallel kernels stay correct and never abort or hang.

Every scenario runs in a subprocess (``tests/_concurrency_worker.py``) with
a timeout, so an abort or a deadlock fails the test instead of pytest.

* Threads: 8 Python threads call the parallel kernels of every backend
  (inputs above the parallel threshold) mixed with NumPy BLAS products.
  Also on Numba's "workqueue" layer, which is not thread-safe and which
  fastdl serialises with a lock, whether the user chose it or Numba fell
  back to it (simulated by hiding Numba's OpenMP pool module).
* Fork: after the parent ran parallel kernels of every backend, a "fork"
  pool and a bare ``os.fork()`` child run every kernel correctly, on one
  thread (GNU OpenMP cannot run a parallel region in such a child); a
  "spawn" pool keeps the full thread count.
"""

import json

import pytest

import fastdl

from _stress_util import TESTS_DIR, describe, require_slow, run_python

WORKER = str(TESTS_DIR / "_concurrency_worker.py")

# Makes Numba's "omp" layer unloadable in the child, as on a machine without
# an OpenMP runtime for Numba, before fastdl chooses a layer.
_HIDE_OMP = ("import sys; sys.modules['numba.np.ufunc.omppool'] = None; "
             "import runpy; sys.argv = {argv!r}; runpy.run_path({path!r}, run_name='__main__')")


def _threads(seconds, backends=None, env=None, hide_omp=False, timeout=None):
    argv = [WORKER, "threads", str(seconds)] + ([",".join(backends)] if backends else [])
    if hide_omp:
        args = ["-c", _HIDE_OMP.format(argv=argv, path=WORKER)]
    else:
        args = argv
    proc = run_python(args, timeout=timeout or seconds + 120, env=env)
    assert proc.returncode == 0, describe(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n_errors"] == 0, result["errors"]
    assert result["kernel_calls"] >= 8 and result["blas_calls"] > 0, result
    return result


def test_threads_all_backends():
    result = _threads(2)
    if "numba" in fastdl.available_backends():
        # fastdl asks for "omp" where available (shared libgomp pool with Cython).
        assert result["numba_layer"]["layer"] in ("omp", "tbb", "workqueue"), result
        assert result["numba_layer"]["serialised"] == (result["numba_layer"]["layer"] == "workqueue")


needs_numba = pytest.mark.skipif("numba" not in fastdl.available_backends(),
                                 reason="Numba backend unavailable")


@needs_numba
def test_threads_on_user_chosen_workqueue_layer():
    # Without fastdl's lock this aborts: "Concurrent access has been detected".
    result = _threads(1, ["numba"], env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert result["numba_layer"]["layer"] == "workqueue"
    assert result["numba_layer"]["serialised"]


@needs_numba
def test_threads_when_numba_falls_back_to_workqueue():
    result = _threads(1, ["numba"], hide_omp=True)
    layer = result["numba_layer"]
    assert layer["layer"] in ("tbb", "workqueue"), layer
    assert "omp unavailable" in layer["note"], layer
    assert layer["serialised"] == (layer["layer"] == "workqueue")


def _check_fork_report(report):
    assert not report["parent_after"]["errors"]
    assert report["parent_after"]["threads"] == report["parent_threads"]
    for method in ("fork", "os.fork"):
        for child in report[method]:
            assert child["errors"] == [], (method, child)
            assert child["forked_child"] and child["threads"] == 1, (method, child)
            assert child["set_2_raised"] and "forked child" in child["set_2_raised"]
    for child in report["spawn"]:
        assert child["errors"] == [], child
        assert not child["forked_child"]
        if report["parent_threads"] >= 2:  # set_num_threads(2) worked there
            assert child["set_2_raised"] is None and child["threads"] == 2, child


def test_fork_and_spawn_after_parallel_kernels():
    proc = run_python([WORKER, "fork"], timeout=180)
    assert proc.returncode == 0, describe(proc)
    _check_fork_report(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_forked_child_flag_in_this_process():
    assert fastdl._backend.forked_child() is False


@pytest.mark.slow
def test_threads_long(request):
    require_slow(request)
    _threads(30, timeout=400)
    _threads(10, ["numba"], env={"NUMBA_THREADING_LAYER": "workqueue"}, timeout=300)


@pytest.mark.slow
def test_fork_repeated(request):
    require_slow(request)
    for _ in range(3):
        proc = run_python([WORKER, "fork"], timeout=300)
        assert proc.returncode == 0, describe(proc)
        _check_fork_report(json.loads(proc.stdout.strip().splitlines()[-1]))
