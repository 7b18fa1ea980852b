"""What the report measures: sizes per mode, kernels, and one row's contenders.

:func:`make_case` builds, for one (kernel, size, dtype), the NumPy baseline,
each compiled fastdl backend, PyTorch CPU when installed, and any floor
(the bare GEMMs of the affine kernels); :func:`run_case` checks every
contender's result against a float64 reference before timing them side by
side.
"""

from __future__ import annotations

import numpy as np

import fastdl
from .. import _config
from .baselines import (np_affine_backward, np_affine_forward, np_cross_entropy,
                        np_cross_entropy_with_grad, np_log_softmax,
                        np_log_softmax_backward, np_logsumexp, np_softmax,
                        np_softmax_backward)
from .measure import peak_extra_bytes, time_contenders

#: (N, C) row sizes and affine (N, D, H) sizes per mode; "full" is BENCHMARKS.md.
SIZES = {
    "full": ([(64, 10), (256, 1000), (4096, 1000), (1024, 32000)],
             [(64, 784, 128), (256, 1024, 1024), (2048, 1024, 1024)]),
    "quick": ([(64, 10), (256, 1000), (1024, 1000), (256, 8000)],
              [(64, 784, 128), (256, 512, 512)]),
    # Below the parallel threshold: compiles only the serial kernels (tests).
    "tiny": ([(64, 10), (128, 200)], [(64, 128, 64)]),
}
#: Timed repeats (median of), copy-probe MiB per array, GEMM side, per mode.
REPEATS = {"full": 15, "quick": 7, "tiny": 3}
COPY_MIB = {"full": 256, "quick": 64, "tiny": 16}
GEMM_N = {"full": 2048, "quick": 1024, "tiny": 256}
#: Seconds of timing per contender and case at most (fewer repeats, min 5).
CASE_BUDGET = {"full": 3.0, "quick": 1.0, "tiny": 0.2}
#: Seconds each contender runs untimed before each of its timed blocks.
SETTLE = {"full": 0.1, "quick": 0.05, "tiny": 0.01}
#: Timed blocks per contender and row, in alternating order (see time_contenders).
PASSES = {"full": 4, "quick": 2, "tiny": 2}
#: Training-step timing (fastdl._bench.training): batches of 64 per pass, and
#: timed passes per contender.
TRAIN_BATCHES = {"full": 21, "quick": 11, "tiny": 6}
TRAIN_REPEAT = {"full": 9, "quick": 5, "tiny": 2}

ROW_KERNELS = ("softmax", "log_softmax", "logsumexp", "softmax_backward",
               "log_softmax_backward", "cross_entropy_with_grad", "cross_entropy")
AFFINE_KERNELS = ("affine_forward", "affine_backward")
CORE_KERNELS = ROW_KERNELS + AFFINE_KERNELS
#: fastdl op name -> key of _config.AUTO_ORDER.
AUTO_KEY = {"cross_entropy_with_grad": "cross_entropy"}

TORCH_NOTE = {
    "softmax": "torch.softmax",
    "log_softmax": "torch.log_softmax",
    "logsumexp": "torch.logsumexp",
    "softmax_backward": "torch._softmax_backward_data (what autograd runs)",
    "log_softmax_backward": "torch._log_softmax_backward_data (what autograd runs)",
    "cross_entropy_with_grad": "F.cross_entropy + loss.backward()",
    "cross_entropy": "F.cross_entropy (no grad)",
    "affine_forward": "F.linear",
    "affine_backward": "torch.autograd.grad of F.linear (dx, dW, db)",
}
NUMPY_NOTE = {
    "affine_forward": "bare GEMM = np.matmul(x, W.T, out=buf), the floor",
    "affine_backward": "GEMMs = (dy @ W, dy.T @ x) without dy.sum(0), the floor",
}


def auto_backend(op, compiled):
    """The backend ``"auto"`` runs ``op`` on, among ``compiled``."""
    for name in _config.AUTO_ORDER.get(AUTO_KEY.get(op, op), _config.DEFAULT_AUTO_ORDER):
        if name in compiled:
            return name
    return None


def _reference(fn, *args):
    """NumPy baseline ``fn`` computed in float64 from the same (rounded) inputs.

    Every contender, the NumPy one included, is checked against this: outputs
    such as ``dy - exp(y) * sum(dy)`` cancel, and two float32 computations
    that are each within a few ulps of the exact value can differ by more
    than any sensible tolerance between themselves.
    """
    return fn(*(a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                else a for a in args))


def _tolerances(op, dtype):
    """(rtol, atol relative to the largest |expected| value) against the float64 reference."""
    if op in AFFINE_KERNELS:
        return (1e-3, 1e-4) if dtype == np.float32 else (1e-9, 1e-12)
    return (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-13)


def check_result(name, got, expected, rtol, atol):
    """Raise AssertionError unless ``got`` matches the reference ``expected``.

    ``atol`` is scaled by the largest magnitude in ``expected`` (a cancelling
    output is accurate relative to the terms that cancelled, not to itself).
    """
    if isinstance(expected, tuple):
        for g, e in zip(got, expected):
            check_result(name, g, e, rtol, atol)
        return
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected, rtol=rtol,
                               atol=atol * scale, err_msg=name)


def _bytes_moved(op, size, itemsize):
    """Bytes a kernel must read plus write, at the least (for bandwidth)."""
    if op in AFFINE_KERNELS:
        n, d, h = size
        if op == "affine_forward":
            return (n * d + h * d + h + n * h) * itemsize
        return (n * h + n * d + h * d + n * d + h * d + h) * itemsize
    n, c = size
    nc = n * c * itemsize
    return {
        "softmax": 2 * nc,
        "log_softmax": 2 * nc,
        "logsumexp": nc + n * itemsize,
        "softmax_backward": 3 * nc,
        "log_softmax_backward": 3 * nc,
        "cross_entropy_with_grad": 2 * nc + 8 * n,
        "cross_entropy": nc + 8 * n,
    }[op]


def _flops(op, size):
    n, d, h = size
    return 2 * n * d * h * (1 if op == "affine_forward" else 2)


def make_case(op, size, dtype, compiled, torch):
    """Inputs, NumPy reference and contenders ``{name: fn}`` for one row."""
    rng = np.random.default_rng(0)
    F = torch.nn.functional if torch is not None else None
    c = {}
    if op in AFFINE_KERNELS:
        n, d, h = size
        x = rng.standard_normal((n, d)).astype(dtype)
        W = (rng.standard_normal((h, d)) / np.sqrt(d)).astype(dtype)
        if op == "affine_forward":
            b = rng.standard_normal(h).astype(dtype)
            buf = np.empty((n, h), dtype)
            expected = _reference(np_affine_forward, x, W, b)
            c["numpy"] = lambda: np_affine_forward(x, W, b)
            c["GEMM"] = lambda: np.matmul(x, W.T, out=buf)
            for be in compiled:
                out = np.empty((n, h), dtype)
                c[be] = lambda be=be, out=out: fastdl.affine_forward(x, W, b, out=out, backend=be)
            if torch is not None:
                tx, tW, tb = map(torch.from_numpy, (x, W, b))
                c["torch"] = lambda: F.linear(tx, tW, tb).numpy()
            return expected, c, ("GEMM",)
        dy = rng.standard_normal((n, h)).astype(dtype)
        expected = _reference(np_affine_backward, dy, x, W)
        c["numpy"] = lambda: np_affine_backward(dy, x, W)
        c["GEMMs"] = lambda: (dy @ W, dy.T @ x)
        for be in compiled:
            c[be] = lambda be=be: fastdl.affine_backward(dy, x, W, backend=be)
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_(True)
            tW = torch.from_numpy(W).requires_grad_(True)
            tb = torch.zeros(h, dtype=tx.dtype, requires_grad=True)
            ty = F.linear(tx, tW, tb)
            tdy = torch.from_numpy(dy)

            def torch_affine_backward():
                gx, gW, gb = torch.autograd.grad(ty, (tx, tW, tb), tdy, retain_graph=True)
                return gx.numpy(), gW.numpy(), gb.numpy()

            c["torch"] = torch_affine_backward
        return expected, c, ("GEMMs",)

    x = (rng.standard_normal(size) * 3).astype(dtype)
    if op in ("softmax", "log_softmax", "logsumexp"):
        ref = {"softmax": np_softmax, "log_softmax": np_log_softmax,
               "logsumexp": np_logsumexp}[op]
        expected = _reference(ref, x)
        c["numpy"] = lambda: ref(x)
        fd = getattr(fastdl, op)
        for be in compiled:
            if op == "logsumexp":
                c[be] = lambda be=be: fd(x, backend=be)
            else:
                out = np.empty_like(x)
                c[be] = lambda be=be, out=out: fd(x, out=out, backend=be)
        if torch is not None:
            tf = getattr(torch, op)
            tx = torch.from_numpy(x)
            c["torch"] = lambda: tf(tx, -1).numpy()
        return expected, c, ()

    if op in ("softmax_backward", "log_softmax_backward"):
        y = np_softmax(x) if op == "softmax_backward" else np_log_softmax(x)
        dy = rng.standard_normal(size).astype(dtype)
        ref = np_softmax_backward if op == "softmax_backward" else np_log_softmax_backward
        expected = _reference(ref, dy, y)
        c["numpy"] = lambda: ref(dy, y)
        fd = getattr(fastdl, op)
        for be in compiled:
            out = np.empty_like(x)
            c[be] = lambda be=be, out=out: fd(dy, y, out=out, backend=be)
        if torch is not None:
            tf = (torch._softmax_backward_data if op == "softmax_backward"
                  else torch._log_softmax_backward_data)
            tdy, ty, tdt = torch.from_numpy(dy), torch.from_numpy(y), torch.from_numpy(y).dtype
            c["torch"] = lambda: tf(tdy, ty, -1, tdt).numpy()
        return expected, c, ()

    target = rng.integers(0, size[1], size[0])
    if op == "cross_entropy":
        expected = _reference(np_cross_entropy, x, target)
        c["numpy"] = lambda: np_cross_entropy(x, target)
        for be in compiled:
            c[be] = lambda be=be: fastdl.cross_entropy(x, target, backend=be)
        if torch is not None:
            tx, tt = torch.from_numpy(x), torch.from_numpy(target)

            def torch_ce():
                with torch.no_grad():
                    return F.cross_entropy(tx, tt).numpy()

            c["torch"] = torch_ce
        return expected, c, ()

    assert op == "cross_entropy_with_grad", op
    expected = _reference(np_cross_entropy_with_grad, x, target)
    c["numpy"] = lambda: np_cross_entropy_with_grad(x, target)
    for be in compiled:
        out = np.empty_like(x)
        c[be] = lambda be=be, out=out: fastdl.cross_entropy_with_grad(x, target, out=out,
                                                                      backend=be)
    if torch is not None:
        tz = torch.from_numpy(x.copy()).requires_grad_(True)
        tt = torch.from_numpy(target)

        def torch_ce_with_grad():
            tz.grad = None
            loss = F.cross_entropy(tz, tt)
            loss.backward()
            return loss.detach().numpy(), tz.grad.numpy()

        c["torch"] = torch_ce_with_grad
    return expected, c, ()


def run_case(op, size, dtype, compiled, torch, repeats, budget, settle, passes):
    """Times, checks and memory of every contender on one (op, size, dtype)."""
    expected, fns, floors = make_case(op, size, dtype, compiled, torch)
    rtol, atol = _tolerances(op, dtype)
    errors = {}
    for name, fn in list(fns.items()):
        if name in floors:
            continue  # the bare GEMMs compute part of the result only
        try:  # check the answer before trusting the time
            check_result(name, fn(), expected, rtol, atol)
        except AssertionError as exc:
            errors[name] = str(exc).strip().splitlines()[0][:200]
            del fns[name]
    times = time_contenders(fns, repeats, budget, settle, passes)
    memory = {name: (None if name == "torch" else peak_extra_bytes(fn))
              for name, fn in fns.items()}
    return {
        "op": op, "size": list(size), "dtype": np.dtype(dtype).name,
        "times": times, "memory": memory, "errors": errors, "floors": list(floors),
        "bytes": _bytes_moved(op, size, np.dtype(dtype).itemsize),
        "flops": _flops(op, size) if op in AFFINE_KERNELS else None,
    }
