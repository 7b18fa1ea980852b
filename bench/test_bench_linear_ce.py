"""pytest-benchmark suite for the fused linear + cross-entropy (the LM head).

One group per size and op, the contenders of ``python -m fastdl bench``
(:mod:`fastdl._bench.linear_ce`, shared, not repeated here): fastdl's
``linear_cross_entropy_with_grad`` (each compiled backend), the NumPy a user
would write, PyTorch's ``F.linear_cross_entropy`` forward + backward on its
reference and chunked paths, and the bare three GEMMs (logits, dx, dW) as the
floor; then the loss alone against one GEMM.  Each case also records the peak
resident memory of one call in a fresh child process
(:func:`~fastdl._bench.linear_ce.rss_peak_extra`, in ``extra_info``), the only
view of PyTorch's allocations.

The calls take seconds at the full sizes, so each case runs a fixed three
rounds (after one warm-up call) instead of pytest-benchmark's calibration;
results are checked after timing against the NumPy contender.
"""

import functools
import os

import pytest

from fastdl import _linear_ce
from fastdl._bench import linear_ce as lce

from conftest import COMPILED, THREADS, torch

SIZES = list(lce.SIZES["full"])
if os.environ.get("FASTDL_BENCH_SIZES") == "small":
    SIZES = list(lce.SIZES["tiny"])

ROUNDS = 3


def _ids(size):
    return "x".join(map(str, size))


@functools.lru_cache(maxsize=1)
def _inputs(size):
    return lce.make_inputs(size)


@functools.lru_cache(maxsize=2)
def _expected(op, size):
    return lce.contenders(op, size, (), None, _inputs(size))["numpy"]()


def _contenders(op):
    params = [pytest.param("numpy", id="numpy")]
    params += [pytest.param(f"fastdl-{b}", id=f"fastdl-{b}") for b in COMPILED or ("numpy",)]
    skip = pytest.mark.skipif(torch is None, reason="torch not installed")
    params += [pytest.param("torch", id="torch", marks=skip),
               pytest.param("torch-chunked", id="torch-chunked", marks=skip),
               pytest.param(lce.FLOOR[op], id=lce.FLOOR[op])]
    return params


def _bench(benchmark, op, size, contender):
    n, h, v = size
    benchmark.group = f"{op} {n}x{h}x{v} float32"
    benchmark.extra_info["gemm_blas"] = _linear_ce.gemm_blas
    compiled = COMPILED or ("numpy",)
    fn = lce.contenders(op, size, compiled, torch, _inputs(size))[contender]
    fn()  # warm-up: JIT compile, BLAS threads, first touch of buffers
    result = benchmark.pedantic(fn, rounds=ROUNDS, iterations=1)
    if contender != lce.FLOOR[op]:  # the floor computes part of the result only
        lce.check(contender, result, _expected(op, size))
    benchmark.extra_info["rss_peak_extra_bytes"] = lce.rss_peak_extra(op, contender, size,
                                                                      THREADS)


@pytest.mark.parametrize("contender", _contenders(lce.GRAD_OP))
@pytest.mark.parametrize("size", SIZES, ids=_ids)
def test_linear_cross_entropy_with_grad(benchmark, size, contender):
    _bench(benchmark, lce.GRAD_OP, size, contender)


@pytest.mark.parametrize("contender", _contenders(lce.LOSS_OP))
@pytest.mark.parametrize("size", SIZES, ids=_ids)
def test_linear_cross_entropy_forward(benchmark, size, contender):
    _bench(benchmark, lce.LOSS_OP, size, contender)
