"""Benchmark fixtures: contenders, sizes and matched thread counts.

Run with ``python -m pytest bench/ --benchmark-only`` (full timing) or
``python -m pytest bench/ --benchmark-disable`` (smoke: each case once, with
its result checked).  Every contender gets ``fastdl.get_num_threads()``
threads: fastdl's kernels, BLAS (threadpoolctl) and PyTorch.
"""

import os

import numpy as np
import pytest

import fastdl

try:
    import torch
except ImportError:  # PyTorch rows are skipped, never faked
    torch = None

THREADS = fastdl.get_num_threads()
COMPILED = tuple(b for b in fastdl.available_backends() if b != "numpy")

# (N, C) sizes from BENCHMARKS.md: latency, medium, large batch, large vocabulary.
ROW_SIZES = [(64, 10), (256, 1000), (4096, 1000), (1024, 32000)]
AFFINE_SIZES = [(64, 784, 128), (256, 1024, 1024), (2048, 1024, 1024)]
# Element counts of the pointwise ops: 64k (in cache) and 4M (16 MiB of float32).
POINTWISE_SIZES = [1 << 16, 1 << 22]
DTYPES = [np.float32, np.float64]

# FASTDL_BENCH_SIZES=small keeps the two smallest sizes: the CI smoke run.
if os.environ.get("FASTDL_BENCH_SIZES") == "small":
    ROW_SIZES, AFFINE_SIZES, POINTWISE_SIZES = ROW_SIZES[:2], AFFINE_SIZES[:1], [1 << 12]


def pytest_report_header(config):
    return (f"fastdl bench: {THREADS} threads for every contender; compiled backends "
            f"{', '.join(COMPILED) or 'none'}; torch {'present' if torch else 'absent'}")


@pytest.fixture(scope="session", autouse=True)
def _matched_threads():
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=THREADS, user_api="blas")
    except ImportError:
        pass
    if torch is not None:
        torch.set_num_threads(THREADS)
    yield
    if limiter is not None:
        limiter.restore_original_limits()


def contenders():
    """("numpy", fastdl backends..., "torch") as pytest params."""
    params = [pytest.param("numpy", id="numpy")]
    params += [pytest.param(f"fastdl-{b}", id=f"fastdl-{b}") for b in COMPILED]
    params.append(pytest.param("torch", id="torch",
                               marks=pytest.mark.skipif(torch is None, reason="torch not installed")))
    return params
