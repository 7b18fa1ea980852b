"""pytest-benchmark suite for the fused linear + cross-entropy (the LM head).

One group per size: fastdl's ``linear_cross_entropy_with_grad`` (each
compiled backend), the NumPy a user would write (``logits = x @ W.T + b``, the
cs231n softmax loss, then the GEMMs of dx, dW and db), PyTorch's
``F.linear_cross_entropy`` forward + backward on its default (reference) path
and on its chunked path (``options=LinearCrossEntropyOptions()``), and the
bare three GEMMs (logits, dx, dW) as the floor any implementation pays.  A
second set of groups times the loss alone against one GEMM.

The calls take seconds at the full sizes, so each case runs a fixed three
rounds (after one warm-up call) instead of pytest-benchmark's calibration;
results are checked after timing against the NumPy contender.
"""

import functools
import os

import numpy as np
import pytest

import fastdl
from fastdl import _linear_ce

from conftest import COMPILED, torch

from fastdl._bench.baselines import np_affine_backward, np_cross_entropy, np_cross_entropy_with_grad

F = torch.nn.functional if torch is not None else None

# (N, H, V): a 1024-token micro-batch of a 1024-wide model with a 32k
# vocabulary, 4096 tokens at width 512, and GPT-2's vocabulary at width 256.
SIZES = [(1024, 1024, 32000), (4096, 512, 32000), (8192, 256, 50257)]
if os.environ.get("FASTDL_BENCH_SIZES") == "small":
    SIZES = [(256, 128, 4096)]

ROUNDS = 3


def _ids(size):
    return "x".join(map(str, size))


@functools.lru_cache(maxsize=1)
def _inputs(size):
    n, h, v = size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h), np.float32)
    W = rng.standard_normal((v, h), np.float32) * np.float32(1 / np.sqrt(h))
    b = rng.standard_normal(v, np.float32) * np.float32(0.1)
    target = rng.integers(0, v, n)
    return x, W, b, target


def np_linear_ce_with_grad(x, W, b, target):
    """What a NumPy user writes: the (N, V) logits, softmax CE, three GEMMs."""
    logits = x @ W.T + b
    loss, g = np_cross_entropy_with_grad(logits, target)
    dx, dW, db = np_affine_backward(g, x, W)
    return loss, dx, dW, db


@functools.lru_cache(maxsize=1)
def _expected(size):
    return np_linear_ce_with_grad(*_inputs(size))


def _contenders():
    params = [pytest.param("numpy", id="numpy")]
    params += [pytest.param(f"fastdl-{b}", id=f"fastdl-{b}") for b in COMPILED or ("numpy",)]
    skip = pytest.mark.skipif(torch is None, reason="torch not installed")
    params += [pytest.param("torch", id="torch", marks=skip),
               pytest.param("torch-chunked", id="torch-chunked", marks=skip),
               pytest.param("gemm-floor", id="gemm-floor")]
    return params


def _torch_with_grad(tx, tW, tb, tt, options):
    loss = F.linear_cross_entropy(tx, tW, tt, linear_bias=tb, options=options)
    gx, gW, gb = torch.autograd.grad(loss, (tx, tW, tb))
    return loss.detach().numpy(), gx.numpy(), gW.numpy(), gb.numpy()


def _run(benchmark, fn, check):
    fn()  # warm-up: JIT compile, BLAS threads, first touch of buffers
    result = benchmark.pedantic(fn, rounds=ROUNDS, iterations=1)
    check(result)


def _check_grads(result, size):
    exp = _expected(size)
    for got, e in zip(result, exp):
        e = np.asarray(e)
        atol = 1e-3 * max(1.0, float(np.abs(e).max()))
        np.testing.assert_allclose(got, e, rtol=1e-3, atol=atol)


@pytest.mark.parametrize("contender", _contenders())
@pytest.mark.parametrize("size", SIZES, ids=_ids)
def test_linear_cross_entropy_with_grad(benchmark, size, contender):
    n, h, v = size
    benchmark.group = f"linear_cross_entropy_with_grad {n}x{h}x{v} float32"
    benchmark.extra_info["gemm_blas"] = _linear_ce.gemm_blas
    x, W, b, target = _inputs(size)
    check = functools.partial(_check_grads, size=size)
    if contender == "numpy":
        fn = lambda: np_linear_ce_with_grad(x, W, b, target)  # noqa: E731
    elif contender.startswith("torch"):
        tx, tW, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, W, b))
        tt = torch.from_numpy(target)
        options = torch.nn.LinearCrossEntropyOptions() if contender == "torch-chunked" else None
        fn = lambda: _torch_with_grad(tx, tW, tb, tt, options)  # noqa: E731
    elif contender == "gemm-floor":
        z = np.empty((n, v), np.float32)
        dx = np.empty_like(x)
        dW = np.empty_like(W)

        def fn():
            np.matmul(x, W.T, out=z)
            np.matmul(z, W, out=dx)
            np.matmul(z.T, x, out=dW)

        check = lambda result: None  # noqa: E731  (nothing to check: the floor)
    else:
        be = contender.split("-", 1)[1]
        out = (np.empty_like(x), np.empty_like(W), np.empty_like(b))
        f = getattr(fastdl, "linear_cross_entropy_with_grad",
                    _linear_ce.linear_cross_entropy_with_grad)
        fn = lambda: f(x, W, target, b=b, out=out, backend=be)  # noqa: E731
    _run(benchmark, fn, check)


@pytest.mark.parametrize("contender", ["numpy", *(f"fastdl-{b}" for b in COMPILED or ("numpy",)),
                                       pytest.param("torch", marks=pytest.mark.skipif(
                                           torch is None, reason="torch not installed")),
                                       "one-gemm"])
@pytest.mark.parametrize("size", SIZES, ids=_ids)
def test_linear_cross_entropy_forward(benchmark, size, contender):
    n, h, v = size
    benchmark.group = f"linear_cross_entropy (loss only) {n}x{h}x{v} float32"
    x, W, b, target = _inputs(size)
    expected = float(_expected(size)[0])

    def check(result):
        np.testing.assert_allclose(float(result), expected, rtol=1e-4)

    if contender == "numpy":
        fn = lambda: np_cross_entropy(x @ W.T + b, target)  # noqa: E731
    elif contender == "torch":
        tx, tW, tb = map(torch.from_numpy, (x, W, b))
        tt = torch.from_numpy(target)

        def fn():
            with torch.no_grad():
                return F.linear_cross_entropy(tx, tW, tt, linear_bias=tb).item()
    elif contender == "one-gemm":
        z = np.empty((n, v), np.float32)
        fn = lambda: np.matmul(x, W.T, out=z)  # noqa: E731
        check = lambda result: None  # noqa: E731
    else:
        be = contender.split("-", 1)[1]
        f = getattr(fastdl, "linear_cross_entropy", _linear_ce.linear_cross_entropy)
        fn = lambda: f(x, W, target, b=b, backend=be)  # noqa: E731
    _run(benchmark, fn, check)
