"""Workloads for ``tests/test_concurrency.py``, run in subprocesses.

``python tests/_concurrency_worker.py threads SECONDS [BACKENDS]``
    8 Python threads call parallel kernels of every backend (inputs above the
    parallel threshold) mixed with NumPy BLAS products, for SECONDS; every
    result is checked against one computed beforehand.
``python tests/_concurrency_worker.py fork``
    The parent runs parallel kernels of every backend, then a "fork" pool,
    a bare ``os.fork()`` child and a "spawn" pool run kernels and check them.

Each prints one JSON line (the last line of stdout) with its counts.  The
functions used by the pools live at module level so "spawn" children can
import them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np

import fastdl
from fastdl import _config

#: Rows × columns of the inputs: 256 × 256 = 65,536 elements, twice the
#: parallel threshold (checked in ``make_cases``).
N, C = 256, 256


def make_cases(backends):
    """(name, backend, thunk, expected) for each kernel × backend."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, C)).astype(np.float32)
    dy = rng.standard_normal((N, C)).astype(np.float32)
    W = (rng.standard_normal((C, C)) / 16).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    labels = rng.integers(0, C, N)
    assert x.size >= 2 * _config.PARALLEL_MIN_ELEMENTS
    calls = {
        "softmax": lambda be: fastdl.softmax(x, backend=be),
        "log_softmax": lambda be: fastdl.log_softmax(x, backend=be),
        "logsumexp": lambda be: fastdl.logsumexp(x, backend=be),
        "softmax_backward": lambda be: fastdl.softmax_backward(dy, x, backend=be),
        "affine_forward": lambda be: fastdl.affine_forward(x, W, b, backend=be),
        "affine_backward_db": lambda be: fastdl.affine_backward(dy, x, W, backend=be)[2],
        "cross_entropy_with_grad": lambda be: fastdl.cross_entropy_with_grad(
            x, labels, label_smoothing=0.1, backend=be)[1],
        "sigmoid": lambda be: fastdl.sigmoid(x, backend=be),
        "silu_backward": lambda be: fastdl.silu_backward(dy, x, backend=be),
        "mse_loss_with_grad": lambda be: fastdl.mse_loss_with_grad(x, dy, backend=be)[1],
        "entropy": lambda be: fastdl.entropy(np.abs(x), backend=be),
    }
    cases = []
    for name, f in calls.items():
        expected = f("numpy")
        for be in backends:
            cases.append((name, be, f, expected))
    return cases


def check(cases, i):
    """Run case ``i``; return an error string or None."""
    name, be, f, expected = cases[i % len(cases)]
    got = f(be)
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return f"{name}[{be}]: max error {np.max(np.abs(got - expected))}"
    return None


def threads_main(seconds, backends):
    cases = make_cases(backends)
    for i in range(len(cases)):  # warm up (compile / load) in the main thread
        assert check(cases, i) is None, check(cases, i)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((384, 384))
    AAT = A @ A.T
    errors, counts = [], {"kernel_calls": 0, "blas_calls": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    deadline = [0.0]

    def run(k):
        barrier.wait()
        i = k * 5
        calls = blas = 0
        while time.monotonic() < deadline[0]:
            try:
                err = check(cases, i)
                if k % 4 == 3:  # some threads also use the per-thread backend switch
                    with fastdl.use_backend(cases[i % len(cases)][1]):
                        fastdl.softmax(A[:8])
            except Exception as exc:  # noqa: BLE001 - report, do not die
                err = f"{type(exc).__name__}: {exc}"
            if err:
                with lock:
                    errors.append(err)
            calls += 1
            i += 1
            if i % 3 == 0:
                if not np.allclose(A @ A.T, AAT):
                    with lock:
                        errors.append("BLAS product wrong")
                blas += 1
        with lock:
            counts["kernel_calls"] += calls
            counts["blas_calls"] += blas

    deadline[0] = time.monotonic() + seconds
    ts = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    layer = None
    if "numba" in backends:
        from fastdl.backends.numba import core as numba_core
        layer = dict(numba_core.layer_status)
    return {"errors": errors[:20], "n_errors": len(errors), **counts,
            "numba_layer": layer, "backends": list(backends)}


# ---------------------------------------------------------------------------
# fork / spawn
# ---------------------------------------------------------------------------

def child_task(seed):
    """Run every case in a pool worker; report errors and the thread count."""
    backends = [b for b in fastdl.available_backends()]
    cases = make_cases(backends)
    errors = [e for e in (check(cases, i) for i in range(len(cases))) if e]
    try:
        fastdl.set_num_threads(2)
        raised = None
    except ValueError as exc:
        raised = str(exc)
    return {"pid": os.getpid(), "errors": errors, "threads": fastdl.get_num_threads(),
            "forked_child": fastdl._backend.forked_child(), "set_2_raised": raised}


def fork_main():
    import multiprocessing as mp

    backends = fastdl.available_backends()
    cases = make_cases(backends)
    for i in range(len(cases)):  # the parent uses every backend's thread pool
        assert check(cases, i) is None
    report = {"parent_threads": fastdl.get_num_threads()}
    # Spawned workers start from scratch (import, load the Numba cache): one
    # is enough to show they keep their threads.
    for method, workers, tasks in (("fork", 2, 4), ("spawn", 1, 2)):
        with mp.get_context(method).Pool(workers) as pool:
            report[method] = pool.map(child_task, range(tasks))
    # A bare fork(), as a server or a data loader may do.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            res = json.dumps(child_task(0)).encode()
        except BaseException as exc:  # noqa: BLE001
            res = json.dumps({"errors": [repr(exc)]}).encode()
        os.write(w, res)
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    report["os.fork"] = [json.loads(data)]
    # The parent itself is unaffected.
    report["parent_after"] = {"threads": fastdl.get_num_threads(),
                              "errors": [e for e in (check(cases, i) for i in range(len(cases)))
                                         if e]}
    return report


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "threads":
        backends = sys.argv[3].split(",") if len(sys.argv) > 3 else fastdl.available_backends()
        result = threads_main(float(sys.argv[2]), backends)
    elif mode == "fork":
        result = fork_main()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))
