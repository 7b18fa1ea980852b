"""pytest-benchmark suite for the pointwise ops of the op table: activations
(forward and backward) and pointwise losses (forward and the fused
``_with_grad``), every fastdl backend against the NumPy reference backend and
PyTorch.

The cases come from :mod:`fastdl._ops`, so an op added to the table is
benchmarked here without a new line.  The NumPy row is fastdl's reference
backend (clear NumPy, float64 internally: the formulas a careful user would
write).  PyTorch rows: ``torch.nn.functional.<name>`` forward; a loss's
forward + ``backward()`` for ``_with_grad``; activation backward passes have
no PyTorch row (autograd's would include the forward).  Each case warms up
before timing and checks its result against the reference after.
"""

import numpy as np
import pytest

import fastdl
from fastdl import _ops

from conftest import DTYPES, POINTWISE_SIZES, contenders, torch



def _inputs(op, n, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    t = rng.standard_normal(n).astype(dtype)
    if op.sample == "binary":
        t = rng.uniform(0, 1, n).astype(dtype)
    elif op.sample == "logprob":
        t = rng.uniform(0.01, 1, n).astype(dtype)
        x = np.log(rng.uniform(0.01, 1, n)).astype(dtype)
    return x, t


def _torch_fn(op):
    return _ops.torch_function(op, torch)


def _check(dtype):
    rtol = 1e-4 if dtype == np.float32 else 1e-10

    def check(got, expected):
        pairs = zip(got, expected) if isinstance(expected, tuple) else [(got, expected)]
        for g, e in pairs:
            np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol)
    return check


def _run(benchmark, fn, expected, check):
    fn()  # warm-up: JIT compile, first touch of buffers
    check(benchmark(fn), expected)


def _cases(kind, parts):
    return [pytest.param(op, part, id=f"{op.name}{part}")
            for op in _ops.of_kind(kind) for part in parts]


@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n", POINTWISE_SIZES, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("op, part", _cases("activation", ("", "_backward")))
def test_activation(benchmark, op, part, n, dtype, contender):
    benchmark.group = f"{op.name}{part} {n} {np.dtype(dtype).name}"
    x, dy = _inputs(op, n, dtype)
    fn_ = getattr(fastdl, op.name + part)
    args = (x,) if part == "" else (dy, x)
    expected = fn_(*args, backend="numpy")
    out = np.empty_like(x)
    if contender == "torch":
        tf = _torch_fn(op)
        if tf is None or part:
            pytest.skip("no PyTorch twin for this row")
        tx = torch.from_numpy(x)
        fn = lambda: tf(tx).numpy()  # noqa: E731
    else:
        be = contender.split("-", 1)[-1]
        fn = lambda: fn_(*args, out=out, backend=be)  # noqa: E731
    _run(benchmark, fn, expected, _check(dtype))


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n", POINTWISE_SIZES, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("op, part", _cases("pointwise_loss", ("", "_with_grad")))
def test_pointwise_loss(benchmark, op, part, n, dtype, contender):
    benchmark.group = f"{op.name}{part} {n} {np.dtype(dtype).name}"
    x, t = _inputs(op, n, dtype)
    fn_ = getattr(fastdl, op.name + part)
    expected = fn_(x, t, backend="numpy")
    if contender == "torch":
        tf = _torch_fn(op)
        if tf is None:
            pytest.skip("no PyTorch twin for this row")
        tt = torch.from_numpy(t)
        if part == "":
            tx = torch.from_numpy(x)
            fn = lambda: tf(tx, tt).numpy()  # noqa: E731
        else:
            tx = torch.from_numpy(x.copy()).requires_grad_(True)

            def fn():
                tx.grad = None
                loss = tf(tx, tt)
                loss.backward()
                return loss.detach().numpy(), tx.grad.numpy()
    else:
        be = contender.split("-", 1)[-1]
        if part == "":
            fn = lambda: fn_(x, t, backend=be)  # noqa: E731
        else:
            out = np.empty_like(x)
            fn = lambda: fn_(x, t, out=out, backend=be)  # noqa: E731
    _run(benchmark, fn, expected, _check(dtype))
