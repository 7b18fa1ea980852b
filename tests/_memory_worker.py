"""Memory behaviour of the core kernels, run in a subprocess by ``test_memory.py``.

``python tests/_memory_worker.py rss CALLS``
    For every backend × core kernel, serial and parallel path: warm up, then
    CALLS calls; report the resident-set growth (bytes) over those calls.
``python tests/_memory_worker.py peak``
    tracemalloc's peak of extra memory during one call of each core kernel
    (N=256, C=1024, float32: one [N, C] buffer is 1 MiB), per backend.

Prints one JSON line.  Resident memory is read from /proc/self/statm (Linux)
or, elsewhere, ru_maxrss (a high-water mark, which is enough to see growth).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tracemalloc

import numpy as np

import fastdl
from fastdl import _config


def rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import resource
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def core_calls(n, c, dtype=np.float32):
    """name -> f(backend) running one core kernel on fixed inputs."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c)).astype(dtype)
    dy = rng.standard_normal((n, c)).astype(dtype)
    W = rng.standard_normal((c, c)).astype(dtype) / 16
    b = rng.standard_normal(c).astype(dtype)
    y = fastdl.softmax(x, backend="numpy")
    t = rng.integers(0, c, n)
    t[::7] = -100  # some ignored rows
    w = rng.random(c).astype(dtype)
    return {
        "affine_forward": lambda be: fastdl.affine_forward(x, W, b, backend=be),
        "affine_backward": lambda be: fastdl.affine_backward(dy, x, W, backend=be),
        "logsumexp": lambda be: fastdl.logsumexp(x, backend=be),
        "softmax": lambda be: fastdl.softmax(x, backend=be),
        "log_softmax": lambda be: fastdl.log_softmax(x, backend=be),
        "softmax_backward": lambda be: fastdl.softmax_backward(dy, y, backend=be),
        "log_softmax_backward": lambda be: fastdl.log_softmax_backward(dy, y, backend=be),
        "cross_entropy": lambda be: fastdl.cross_entropy(x, t, weight=w, label_smoothing=0.1,
                                                         backend=be),
        "cross_entropy_backward": lambda be: fastdl.cross_entropy_backward(x, t, backend=be),
        "cross_entropy_with_grad": lambda be: fastdl.cross_entropy_with_grad(x, t, backend=be),
    }


def rss_main(calls):
    report = {}
    threshold = _config.PARALLEL_MIN_ELEMENTS
    fns = core_calls(32, 48)
    for be in fastdl.available_backends():
        for path, limit in (("serial", threshold), ("parallel", 0)):
            # A zero threshold sends these small calls down the threaded path.
            _config.PARALLEL_MIN_ELEMENTS = limit
            for name, f in fns.items():
                for _ in range(min(1000, calls)):
                    f(be)
                gc.collect()
                before = rss_bytes()
                for _ in range(calls):
                    f(be)
                gc.collect()
                report[f"{be}/{path}/{name}"] = rss_bytes() - before
    _config.PARALLEL_MIN_ELEMENTS = threshold
    return {"calls": calls, "rss_growth": report}


def peak_main():
    n, c = 256, 1024
    buffer = n * c * 4
    fns = core_calls(n, c)
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((n, c)).astype(np.float32)
    t = rng.integers(0, c, n)
    fns["cross_entropy_with_grad(out=logits)"] = lambda be: fastdl.cross_entropy_with_grad(
        logits, t, out=logits, backend=be)
    fns["softmax(out=x)"] = lambda be: fastdl.softmax(logits, out=logits, backend=be)
    report = {}
    tracemalloc.start()
    for be in fastdl.available_backends():
        for name, f in fns.items():
            f(be)  # warm up: compile, load, allocate caches
            gc.collect()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            f(be)
            peak = tracemalloc.get_traced_memory()[1] - base
            report[f"{be}/{name}"] = peak
    tracemalloc.stop()
    return {"n": n, "c": c, "buffer_bytes": buffer, "peak_extra": report}


if __name__ == "__main__":
    if sys.argv[1] == "rss":
        print(json.dumps(rss_main(int(sys.argv[2]))))
    elif sys.argv[1] == "peak":
        print(json.dumps(peak_main()))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
