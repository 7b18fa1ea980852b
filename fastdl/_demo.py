"""``python -m fastdl bench``: the benchmark report (see :mod:`fastdl._bench_report`).

:func:`run_kernel_demo` is the command's entry point; it runs the full report
(copy bandwidth, GEMM throughput, every core kernel against NumPy and PyTorch,
start-up costs, the targets) and writes ``RESULTS.md`` and ``results.png``.

:func:`run_demo` keeps the former quick side-by-side table (float32, three
kernels, NumPy against each compiled backend) for interactive use:
``python -c "import fastdl._demo as d; d.run_demo()"``.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

import fastdl
from ._bench_report import np_cross_entropy_with_grad as numpy_cross_entropy_with_grad
from ._bench_report import np_softmax as numpy_softmax


def _median_time(fn, repeat):
    fn()  # warm-up: JIT compilation, first touch of buffers
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _limit_blas_threads(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=n, user_api="blas")


def run_kernel_demo(argv=None):
    """Command-line entry point of ``python -m fastdl bench``: the benchmark report."""
    from ._bench_report import run_report

    return run_report(argv)


def run_demo(batch=4096, classes=1000, repeat=15):
    rng = np.random.default_rng(0)
    threads = fastdl.get_num_threads()
    _limit_blas_threads(threads)
    logits = rng.standard_normal((batch, classes), dtype=np.float32) * 3
    target = rng.integers(0, classes, batch)
    D, H = 1024, 1024
    x = rng.standard_normal((batch // 4, D), dtype=np.float32)
    W = rng.standard_normal((H, D), dtype=np.float32) / math.sqrt(D)
    b = rng.standard_normal(H, dtype=np.float32)
    buf = np.empty_like(logits)
    out_aff = np.empty((batch // 4, H), np.float32)

    rows = [
        (f"cross-entropy loss+grad ({batch}x{classes})",
         lambda: numpy_cross_entropy_with_grad(logits, target),
         lambda be: (lambda: fastdl.cross_entropy_with_grad(logits, target, out=buf,
                                                            backend=be))),
        (f"softmax ({batch}x{classes})",
         lambda: numpy_softmax(logits),
         lambda be: (lambda: fastdl.softmax(logits, out=buf, backend=be))),
        (f"affine forward ({batch // 4}x{D} -> {H})",
         lambda: x @ W.T + b,
         lambda be: (lambda: fastdl.affine_forward(x, W, b, out=out_aff, backend=be))),
    ]
    compiled = [name for name in fastdl.available_backends() if name != "numpy"]
    print(f"fastdl {fastdl.__version__} demo: float32, {threads} threads for every contender, "
          f"median of {repeat} runs")
    print(f"backends available: {', '.join(fastdl.available_backends())}")
    header = f"{'operation':<40} {'numpy ms':>9}" + "".join(
        f" {name + ' ms':>10} {'speed-up':>8}" for name in compiled)
    print(header)
    print("-" * len(header))
    for label, numpy_fn, make in rows:
        # Check the answer before trusting the time.
        ref = numpy_fn()
        t_np = _median_time(numpy_fn, repeat)
        line = f"{label:<40} {t_np * 1e3:>9.2f}"
        for name in compiled:
            fn = make(name)
            got = fn()
            _check(label, ref, got)
            t = _median_time(fn, repeat)
            line += f" {t * 1e3:>10.2f} {t_np / t:>7.1f}x"
        print(line)
    if not compiled:
        print("no compiled backend is available: see fastdl.show_config()")
        return 1
    return 0


def _check(label, ref, got):
    if isinstance(ref, tuple):
        ref_loss, ref = ref
        got_loss, got = got
        if not np.isclose(ref_loss, got_loss, rtol=1e-4):
            raise AssertionError(f"{label}: loss {got_loss} != NumPy's {ref_loss}")
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-5, err_msg=label)
