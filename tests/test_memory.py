"""Memory: no growth over many calls, and bounded temporary memory per call.

Measured in subprocesses (``tests/_memory_worker.py``) so that nothing else
in the test session moves the numbers.

* Resident memory does not grow over repeated calls of each core kernel of
  every backend, on the serial and on the parallel path (after warm-up):
  a smoke run here, 100,000 calls per kernel with ``-m slow``.
* tracemalloc's peak of extra memory during one call: the compiled
  backends allocate the result and O(N) scratch only; the fused
  ``cross_entropy_with_grad`` at most one [N, C] buffer (the gradient), and
  none with ``out=logits``.
"""

import json

import pytest

from _stress_util import TESTS_DIR, describe, require_slow, run_python

WORKER = str(TESTS_DIR / "_memory_worker.py")
MiB = 1 << 20


def _run(*args, timeout):
    proc = run_python([WORKER, *args], timeout=timeout)
    assert proc.returncode == 0, describe(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_rss(report, limit):
    grown = {k: v for k, v in report["rss_growth"].items() if v > limit}
    assert not grown, f"RSS grew over {report['calls']} calls (bytes): {grown}"


def test_rss_smoke():
    _check_rss(_run("rss", "200", timeout=300), limit=1 * MiB)


@pytest.mark.slow
def test_rss_100k_calls(request):
    require_slow(request)
    # 2 MiB over 100,000 calls: under 21 bytes per call, i.e. no leak.
    _check_rss(_run("rss", "100000", timeout=7200), limit=2 * MiB)


def test_peak_memory_per_call():
    report = _run("peak", timeout=300)
    buf = report["buffer_bytes"]  # one [N, C] float32 array
    small = 32 * 1024  # O(N) scratch: per-row losses, scales, int64 labels
    n, c = report["n"], report["c"]
    # Results each call returns, in [N, C] buffers (affine_backward: dx (N, C)
    # and dW (C, C); affine_forward: its (N, C) output, W being (C, C)).
    results = {"affine_forward": 1, "affine_backward": 1 + c / n, "logsumexp": 0, "softmax": 1,
               "log_softmax": 1, "softmax_backward": 1, "log_softmax_backward": 1,
               "cross_entropy": 0, "cross_entropy_backward": 1,
               "cross_entropy_with_grad": 1, "cross_entropy_with_grad(out=logits)": 0,
               "softmax(out=x)": 0}
    for key, peak in report["peak_extra"].items():
        backend, name = key.split("/", 1)
        if backend == "numpy":
            continue  # the reference favours clarity over memory
        assert peak <= results[name] * buf + small, (key, peak / buf)
