"""pytest-benchmark suite for the core kernels: NumPy, fastdl backends, PyTorch.

The NumPy baselines live in :mod:`fastdl._bench.baselines`, which the one-shot
report ``python -m fastdl bench`` also times.

Groups are one operation × size × dtype, so each table compares contenders
measured side by side in one run.  Each case warms up (JIT, first touch)
before timing and checks its result against NumPy after timing.
"""

import numpy as np
import pytest

import fastdl

from conftest import AFFINE_SIZES, DTYPES, ROW_SIZES, contenders, torch

from fastdl._bench.baselines import (  # the NumPy baselines, shared with `python -m fastdl bench`
    np_cross_entropy,
    np_cross_entropy_with_grad,
    np_log_softmax,
    np_log_softmax_backward,
    np_logsumexp,
    np_softmax,
    np_softmax_backward,
)

F = torch.nn.functional if torch is not None else None


def _torch_ce_with_grad(tz, tt):
    tz.grad = None
    loss = F.cross_entropy(tz, tt)
    loss.backward()
    return loss.detach().numpy(), tz.grad.numpy()


ROW_OPS = {
    "softmax": (np_softmax, lambda x, be, out: fastdl.softmax(x, out=out, backend=be),
                lambda t: torch.softmax(t, -1)),
    "log_softmax": (np_log_softmax, lambda x, be, out: fastdl.log_softmax(x, out=out, backend=be),
                    lambda t: torch.log_softmax(t, -1)),
    "logsumexp": (np_logsumexp, lambda x, be, out: fastdl.logsumexp(x, backend=be),
                  lambda t: torch.logsumexp(t, -1)),
}


def _run(benchmark, fn, check):
    fn()  # warm-up: JIT compile, first touch of buffers
    result = benchmark(fn)
    check(result)


@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", ROW_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op", list(ROW_OPS))
def test_row_op(benchmark, op, size, dtype, contender):
    benchmark.group = f"{op} {size[0]}x{size[1]} {np.dtype(dtype).name}"
    x = (np.random.default_rng(0).standard_normal(size) * 3).astype(dtype)
    ref_fn, fastdl_fn, torch_fn = ROW_OPS[op]
    expected = ref_fn(x)
    if contender == "numpy":
        fn = lambda: ref_fn(x)  # noqa: E731
    elif contender == "torch":
        tx = torch.from_numpy(x)
        fn = lambda: torch_fn(tx).numpy()  # noqa: E731
    else:
        out = np.empty_like(x)
        be = contender.split("-", 1)[1]
        fn = lambda: fastdl_fn(x, be, out)  # noqa: E731
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    _run(benchmark, fn, lambda r: np.testing.assert_allclose(r, expected, rtol=rtol, atol=1e-6))


BACKWARD_OPS = {
    # op: (forward reference giving y, NumPy backward, torch's backward op)
    "softmax_backward": (np_softmax, np_softmax_backward,
                         lambda: torch._softmax_backward_data),
    "log_softmax_backward": (np_log_softmax, np_log_softmax_backward,
                             lambda: torch._log_softmax_backward_data),
}


@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", ROW_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op", list(BACKWARD_OPS))
def test_row_backward(benchmark, op, size, dtype, contender):
    benchmark.group = f"{op} {size[0]}x{size[1]} {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    forward, ref_fn, torch_op = BACKWARD_OPS[op]
    y = forward((rng.standard_normal(size) * 3).astype(dtype))
    dy = rng.standard_normal(size).astype(dtype)
    # Reference in float64 from the same inputs: dy - exp(y) * sum(dy) cancels, so two
    # float32 results may differ by more than rtol; atol is scaled by the output's size.
    expected = ref_fn(dy.astype(np.float64), y.astype(np.float64))
    atol = (1e-5 if dtype == np.float32 else 1e-13) * max(1.0, np.abs(expected).max())
    if contender == "numpy":
        fn = lambda: ref_fn(dy, y)  # noqa: E731
    elif contender == "torch":
        # What autograd runs for the backward of torch.softmax / log_softmax.
        tdy, ty, tf = torch.from_numpy(dy), torch.from_numpy(y), torch_op()
        fn = lambda: tf(tdy, ty, -1, ty.dtype).numpy()  # noqa: E731
    else:
        out = np.empty_like(y)
        be = contender.split("-", 1)[1]
        fastdl_fn = getattr(fastdl, op)
        fn = lambda: fastdl_fn(dy, y, out=out, backend=be)  # noqa: E731
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    _run(benchmark, fn, lambda r: np.testing.assert_allclose(r, expected, rtol=rtol, atol=atol))


@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", ROW_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cross_entropy(benchmark, size, dtype, contender):
    benchmark.group = f"cross_entropy {size[0]}x{size[1]} {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(size) * 3).astype(dtype)
    target = rng.integers(0, size[1], size[0])
    expected = np_cross_entropy(logits, target)
    if contender == "numpy":
        fn = lambda: np_cross_entropy(logits, target)  # noqa: E731
    elif contender == "torch":
        tz, tt = torch.from_numpy(logits), torch.from_numpy(target)

        def fn():
            with torch.no_grad():
                return F.cross_entropy(tz, tt).numpy()
    else:
        be = contender.split("-", 1)[1]
        fn = lambda: fastdl.cross_entropy(logits, target, backend=be)  # noqa: E731
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    _run(benchmark, fn, lambda r: np.testing.assert_allclose(r, expected, rtol=rtol))


@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", ROW_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cross_entropy_with_grad(benchmark, size, dtype, contender):
    benchmark.group = f"cross_entropy_with_grad {size[0]}x{size[1]} {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(size) * 3).astype(dtype)
    target = rng.integers(0, size[1], size[0])
    exp_loss, exp_grad = np_cross_entropy_with_grad(logits, target)
    if contender == "numpy":
        fn = lambda: np_cross_entropy_with_grad(logits, target)  # noqa: E731
    elif contender == "torch":
        tz = torch.from_numpy(logits.copy()).requires_grad_(True)
        tt = torch.from_numpy(target)
        fn = lambda: _torch_ce_with_grad(tz, tt)  # noqa: E731
    else:
        be = contender.split("-", 1)[1]
        out = np.empty_like(logits)
        fn = lambda: fastdl.cross_entropy_with_grad(logits, target, out=out, backend=be)  # noqa: E731
    rtol = 1e-4 if dtype == np.float32 else 1e-10

    def check(result):
        loss, grad = result
        np.testing.assert_allclose(loss, exp_loss, rtol=rtol)
        np.testing.assert_allclose(grad, exp_grad, rtol=rtol, atol=1e-7)

    _run(benchmark, fn, check)


@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", AFFINE_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_affine_forward(benchmark, size, dtype, contender):
    N, D, H = size
    benchmark.group = f"affine_forward {N}x{D}x{H} {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)).astype(dtype)
    W = (rng.standard_normal((H, D)) / np.sqrt(D)).astype(dtype)
    b = rng.standard_normal(H).astype(dtype)
    expected = x @ W.T + b
    if contender == "numpy":
        fn = lambda: x @ W.T + b  # noqa: E731
    elif contender == "torch":
        tx, tW, tb = map(torch.from_numpy, (x, W, b))
        fn = lambda: F.linear(tx, tW, tb).numpy()  # noqa: E731
    else:
        be = contender.split("-", 1)[1]
        out = np.empty((N, H), dtype)
        fn = lambda: fastdl.affine_forward(x, W, b, out=out, backend=be)  # noqa: E731
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    _run(benchmark, fn, lambda r: np.testing.assert_allclose(r, expected, rtol=rtol, atol=1e-4))


@pytest.mark.parametrize("contender", contenders())
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("size", AFFINE_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_affine_backward(benchmark, size, dtype, contender):
    N, D, H = size
    benchmark.group = f"affine_backward {N}x{D}x{H} {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)).astype(dtype)
    W = (rng.standard_normal((H, D)) / np.sqrt(D)).astype(dtype)
    dy = rng.standard_normal((N, H)).astype(dtype)
    expected = (dy @ W, dy.T @ x, dy.sum(0))
    if contender == "numpy":
        fn = lambda: (dy @ W, dy.T @ x, dy.sum(0))  # noqa: E731
    elif contender == "torch":
        tx = torch.from_numpy(x).requires_grad_(True)
        tW = torch.from_numpy(W).requires_grad_(True)
        tb = torch.zeros(H, dtype=tx.dtype, requires_grad=True)
        ty = F.linear(tx, tW, tb)
        tdy = torch.from_numpy(dy)

        def fn():
            gx, gW, gb = torch.autograd.grad(ty, (tx, tW, tb), tdy, retain_graph=True)
            return gx.numpy(), gW.numpy(), gb.numpy()
    else:
        be = contender.split("-", 1)[1]
        fn = lambda: fastdl.affine_backward(dy, x, W, backend=be)  # noqa: E731
    rtol = 1e-3 if dtype == np.float32 else 1e-9

    def check(result):
        for got, exp in zip(result, expected):
            np.testing.assert_allclose(got, exp, rtol=rtol, atol=1e-3)

    _run(benchmark, fn, check)
