"""Fused linear + cross-entropy (fastdl._linear_ce) and LinearCrossEntropyLoss.

Checked against a float64 NumPy reference that materialises the logits, the
unfused fastdl path (affine_forward then the cross-entropy kernels), PyTorch's
``F.linear_cross_entropy`` (value and autograd gradients), and central
differences; plus the memory bound (tracemalloc), accumulation, ``out=``
buffers, every documented error, and training with the layer API.
"""

from __future__ import annotations

import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import fastdl
from fastdl import _linear_ce as L
from fastdl import layers, losses, optim

linear_cross_entropy = L.linear_cross_entropy
linear_cross_entropy_with_grad = L.linear_cross_entropy_with_grad
linear_cross_entropy_backward = L.linear_cross_entropy_backward

MiB = 1 << 20
N, H, V = 37, 16, 50          # N prime: chunk sizes 8 and 36 leave a remainder
IGNORE = -100


# ---------------------------------------------------------------------------
# the float64 NumPy reference (materialises the (N, V) logits)
# ---------------------------------------------------------------------------

def reference(x, W, target, *, b=None, weight=None, ignore_index=IGNORE, reduction="mean",
              label_smoothing=0.0, z_loss=0.0, softcap=None, grad_output=1.0):
    """(loss, dx, dW, db) in float64, written out from the definitions."""
    squeeze = np.ndim(x) == 1
    x = np.atleast_2d(np.asarray(x, np.float64))
    W = np.asarray(W, np.float64)
    n, v = x.shape[0], W.shape[0]
    raw = x @ W.T + (0.0 if b is None else np.asarray(b, np.float64))
    t = np.tanh(raw / softcap) if softcap else None
    z = softcap * t if softcap else raw
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    logp = z - lse[:, None]
    p = np.exp(logp)
    w = np.ones(v) if weight is None else np.asarray(weight, np.float64)
    eps = label_smoothing
    target = np.asarray(target)
    if target.dtype.kind == "f":
        q = np.atleast_2d(target).astype(np.float64)
        q = (1 - eps) * q + eps / v
        rows = -(w * q * logp).sum(1)
        dz = p * (w * q).sum(1, keepdims=True) - w * q
        counted = np.ones(n, bool)
        denom = float(n)
    else:
        tt = np.atleast_1d(target).astype(np.int64)
        counted = tt != ignore_index
        ts = np.where(counted, tt, 0)
        wt = w[ts]
        rows = (1 - eps) * wt * -logp[np.arange(n), ts] + eps / v * -(w * logp).sum(1)
        onehot = np.zeros((n, v))
        onehot[np.arange(n), ts] = 1.0
        dz = ((1 - eps) * wt + eps / v * w.sum())[:, None] * p - eps / v * w \
            - ((1 - eps) * wt)[:, None] * onehot
        denom = float(wt[counted].sum())
    rows = np.where(counted, rows, 0.0)
    zrows = np.where(counted, z_loss * lse ** 2, 0.0)
    dz = np.where(counted[:, None], dz, 0.0)
    dzz = np.where(counted[:, None], 2 * z_loss * lse[:, None] * p, 0.0)
    count = int(counted.sum())
    go = np.asarray(grad_output, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            loss = rows + zrows
            scale = zscale = np.broadcast_to(go, (n,))[:, None]
            if squeeze:
                loss = loss[0]
        elif reduction == "sum":
            loss = rows.sum() + zrows.sum()
            scale = zscale = go
        else:
            loss = rows.sum() / denom + (zrows.sum() / count if z_loss else 0.0)
            scale, zscale = go / denom, go / count if count else 0.0
        g = dz * scale + dzz * zscale
    if softcap:
        g = g * (1 - t ** 2)
    dx = g @ W
    return loss, dx[0] if squeeze else dx, g.T @ x, g.sum(0) if b is not None else None


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

TOL = {np.dtype(np.float32): 3e-4, np.dtype(np.float64): 1e-9}


def close(got, expected, dtype):
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    tol = TOL[np.dtype(dtype)]
    scale = max(1.0, float(np.nanmax(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale, equal_nan=True)


def make(dtype, *, n=N, h=H, v=V, seed=0, bias=True, ignored=0.3, prob=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h)).astype(dtype)
    W = (rng.standard_normal((v, h)) / np.sqrt(h)).astype(dtype) * 3
    b = rng.standard_normal(v).astype(dtype) if bias else None
    if prob:
        q = rng.random((n, v)) ** 4
        target = (q / q.sum(1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, v, n)
        target[rng.random(n) < ignored] = IGNORE
    weight = (rng.random(v) + 0.5).astype(dtype)
    return x, W, b, target, weight


CASES = {
    "plain": dict(),
    "bias": dict(bias=True),
    "weight": dict(weight=True),
    "ignore": dict(ignored=0.3),
    "ignore-weight-bias": dict(ignored=0.3, weight=True, bias=True),
    "smoothing": dict(label_smoothing=0.1),
    "smoothing-weight-ignore": dict(label_smoothing=0.2, weight=True, ignored=0.3),
    "prob": dict(prob=True),
    "prob-weight-smoothing-bias": dict(prob=True, weight=True, label_smoothing=0.15, bias=True),
    "z_loss": dict(z_loss=1e-2, ignored=0.2),
    "softcap": dict(softcap=3.0, bias=True),
    "z-softcap-all": dict(z_loss=5e-3, softcap=4.0, weight=True, ignored=0.25,
                          label_smoothing=0.1, bias=True),
    "z-softcap-prob": dict(z_loss=5e-3, softcap=2.5, prob=True),
    # every third class weighs 0: rows of those targets get the z-loss gradient alone
    "z-zero-weights-smoothing": dict(z_loss=1e-2, weight="some zero", label_smoothing=0.1),
}


def case_arrays(case, dtype, **make_kw):
    spec = dict(CASES[case])
    x, W, b, target, weight = make(dtype, bias=spec.pop("bias", False),
                                   ignored=spec.pop("ignored", 0.0),
                                   prob=spec.pop("prob", False), **make_kw)
    kw = {k: v for k, v in spec.items() if k != "weight"}
    if spec.get("weight"):
        kw["weight"] = weight
        if spec["weight"] == "some zero":
            weight[::3] = 0
    return x, W, b, target, kw


def unfused(x, W, target, b=None, **kw):
    """The same loss and gradients through fastdl's unfused kernels."""
    logits = fastdl.affine_forward(x, W, b)
    loss, g = fastdl.cross_entropy_with_grad(logits, target, **kw)
    dx, dW, db = fastdl.affine_backward(g, x, W, bias=b is not None)
    return loss, dx, dW, db


# ---------------------------------------------------------------------------
# against the reference and the unfused path
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, reduction, backend, dtype):
    x, W, b, target, kw = case_arrays(case, dtype)
    opts = dict(b=b, reduction=reduction, chunk_size=8, backend=backend, **kw)
    ref_kw = {k: v for k, v in opts.items() if k not in ("chunk_size", "backend")}
    exp_loss, exp_dx, exp_dW, exp_db = reference(x, W, target, **ref_kw)

    loss = linear_cross_entropy(x, W, target, **opts)
    assert np.asarray(loss).dtype == dtype
    close(loss, exp_loss, dtype)
    got = linear_cross_entropy_with_grad(x, W, target, **opts)
    assert all(g.dtype == dtype for g in got[1:] if g is not None)
    for g, e in zip(got, (exp_loss, exp_dx, exp_dW, exp_db)):
        if e is None:
            assert g is None
        else:
            close(g, e, dtype)
    # backward with a grad_output: a vector for "none", a scalar otherwise
    go = (np.random.default_rng(1).standard_normal(N).astype(dtype)
          if reduction == "none" else dtype.type(-1.7))
    _, exp_dx, exp_dW, exp_db = reference(x, W, target, grad_output=go, **ref_kw)
    dx, dW, db = linear_cross_entropy_backward(x, W, target, go, **opts)
    close(dx, exp_dx, dtype)
    close(dW, exp_dW, dtype)
    if b is not None:
        close(db, exp_db, dtype)
    else:
        assert db is None

    if "z_loss" not in kw and "softcap" not in kw:  # the unfused kernels have neither
        ce_kw = {k: v for k, v in kw.items()}
        u_loss, u_dx, u_dW, u_db = unfused(x, W, target, b, reduction=reduction, **ce_kw)
        close(loss, u_loss, dtype)
        close(got[1], u_dx, dtype)
        close(got[2], u_dW, dtype)
        if b is not None:
            close(got[3], u_db, dtype)


@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_one_dimensional_x(prob, reduction, backend, dtype):
    x, W, b, target, weight = make(dtype, n=1, prob=prob, ignored=0.0)
    x1 = x[0]
    t1 = target[0] if prob else int(target[0])
    opts = dict(b=b, weight=weight, reduction=reduction, z_loss=1e-2, softcap=5.0)
    exp = reference(x1, W, t1, **opts)
    close(linear_cross_entropy(x1, W, t1, backend=backend, **opts), exp[0], dtype)
    loss, dx, dW, db = linear_cross_entropy_with_grad(x1, W, t1, backend=backend, **opts)
    assert np.ndim(loss) == 0 and dx.shape == (H,)
    for g, e in zip((loss, dx, dW, db), exp):
        close(g, e, dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_and_empty(reduction, backend, dtype):
    x, W, b, target, _ = make(dtype)
    for xs, ts in ((x, np.full(N, IGNORE)), (x[:0], target[:0])):
        loss, dx, dW, db = linear_cross_entropy_with_grad(xs, W, ts, b=b, reduction=reduction,
                                                          z_loss=1e-3, backend=backend)
        if reduction == "mean":
            assert np.isnan(loss)
        elif reduction == "sum":
            assert loss == 0 and loss.dtype == dtype
        else:
            assert loss.shape == (xs.shape[0],) and not loss.any()
        assert not dx.any() and not dW.any() and not db.any()
        assert dx.shape == xs.shape
        assert linear_cross_entropy(xs, W, ts, b=b, reduction=reduction,
                                    backend=backend).dtype == dtype


def test_zero_class_weights_mean_is_nan_as_torch(dtype):
    x, W, b, target, _ = make(dtype, ignored=0.0)
    loss, dx, dW, _ = linear_cross_entropy_with_grad(x, W, target, weight=np.zeros(V, dtype))
    assert np.isnan(loss) and np.isnan(dW).all()


@pytest.mark.parametrize("chunk", [dict(chunk_size=1), dict(chunk_size=8), dict(chunk_size=36),
                                   dict(chunk_size=37), dict(chunk_size=1000),
                                   dict(max_memory=3 * V * 8), dict(max_memory=1), dict()],
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()) or "default")
def test_chunkings_agree(chunk, backend):
    dtype = np.dtype(np.float64)
    x, W, b, target, kw = case_arrays("z-softcap-all", dtype)
    exp = reference(x, W, target, b=b, **kw)
    got = linear_cross_entropy_with_grad(x, W, target, b=b, backend=backend, **chunk, **kw)
    for g, e in zip(got, exp):
        close(g, e, dtype)
    close(linear_cross_entropy(x, W, target, b=b, backend=backend, **chunk, **kw), exp[0], dtype)


@pytest.fixture
def small_blocks(monkeypatch):
    """The loss-only path in blocks of 7 classes (float64; 14 for float32) of
    the 50, and the gradient path's softcap / z-loss row work in sub-blocks
    of 3 rows (6), so that both split with remainders at chunk_size=8."""
    monkeypatch.setattr(L, "FORWARD_BLOCK_BYTES", 8 * 7 * 8)
    monkeypatch.setattr(L, "FORWARD_MIN_COLUMNS", 1)
    monkeypatch.setattr(L, "ROW_BLOCK_BYTES", 3 * V * 8)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(CASES))
def test_blocks_and_sub_blocks_match_reference(case, reduction, backend, dtype, small_blocks):
    x, W, b, target, kw = case_arrays(case, dtype)
    opts = dict(b=b, reduction=reduction, chunk_size=8, backend=backend, **kw)
    ref_kw = {k: v for k, v in opts.items() if k not in ("chunk_size", "backend")}
    exp = reference(x, W, target, **ref_kw)
    close(linear_cross_entropy(x, W, target, **opts), exp[0], dtype)
    for g, e in zip(linear_cross_entropy_with_grad(x, W, target, **opts), exp):
        if e is None:
            assert g is None
        else:
            close(g, e, dtype)
    go = (np.random.default_rng(1).standard_normal(N).astype(dtype)
          if reduction == "none" else dtype.type(0.3))
    exp = reference(x, W, target, grad_output=go, **ref_kw)
    for g, e in zip(linear_cross_entropy_backward(x, W, target, go, **opts), exp[1:]):
        if e is not None:
            close(g, e, dtype)


@pytest.mark.parametrize("case", ["plain", "smoothing-weight-ignore", "z-softcap-all",
                                  "z-zero-weights-smoothing", "prob"])
def test_loss_only_path_equals_with_grad_loss(case, backend, monkeypatch):
    """linear_cross_entropy (vocabulary blocks, no gradient) gives
    linear_cross_entropy_with_grad's loss to float32 rounding: per row, a few
    ulps of the row's logsumexp, from which both subtract the target's logit."""
    dtype = np.dtype(np.float32)
    x, W, b, target, kw = case_arrays(case, dtype, n=300, h=24, v=5000)
    opts = dict(b=b, backend=backend, **kw)
    # the loss-only path in 4 row blocks of 75 rows x 5 blocks of 1000 classes
    monkeypatch.setattr(L, "FORWARD_ROWS", 75)
    monkeypatch.setattr(L, "FORWARD_BLOCK_BYTES", 75 * 1000 * 4)
    rows = linear_cross_entropy(x, W, target, reduction="none", **opts).astype(np.float64)
    grad_rows = linear_cross_entropy_with_grad(x, W, target, reduction="none", **opts)[0]
    logits = x.astype(np.float64) @ W.T.astype(np.float64) + (0 if b is None else b)
    if kw.get("softcap"):
        logits = kw["softcap"] * np.tanh(logits / kw["softcap"])
    lse_bound = np.abs(logits).max(1) + np.log(5000)
    ulps = np.spacing(lse_bound.astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(rows - grad_rows) <= 4 * ulps), np.max(np.abs(rows - grad_rows) / ulps)
    for reduction in ("mean", "sum"):
        loss = linear_cross_entropy(x, W, target, reduction=reduction, **opts)
        g = linear_cross_entropy_with_grad(x, W, target, reduction=reduction, **opts)[0]
        np.testing.assert_allclose(float(loss), float(g), rtol=1e-6)


def _counting_logits(monkeypatch):
    """Record (rows, first class, end class) of every logits GEMM."""
    calls = []
    real = L._logits

    def spy(a, xc, out, team, v0=0, v1=None):
        calls.append((xc.shape[0], v0, a.n_classes if v1 is None else v1))
        return real(a, xc, out, team, v0, v1)

    monkeypatch.setattr(L, "_logits", spy)
    return calls


def test_chunks_and_ignored_rows_cost_no_gemm(monkeypatch):
    x, W, b, target, _ = make(np.float64, ignored=0.0)
    target[::3] = IGNORE  # 13 of 37 rows ignored
    calls = _counting_logits(monkeypatch)
    linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=8)
    kept = int((target != IGNORE).sum())
    rows = [r for r, _, _ in calls]
    assert sum(rows) == kept and max(rows) <= 8 and len(rows) == -(-kept // 8)
    assert all((v0, v1) == (0, V) for _, v0, v1 in calls)
    # the loss alone: every kept row once per vocabulary block, blocks tiling V
    calls.clear()
    monkeypatch.setattr(L, "FORWARD_BLOCK_BYTES", 8 * 13 * 8)  # blocks of 8 rows x 13 classes
    monkeypatch.setattr(L, "FORWARD_MIN_COLUMNS", 1)
    linear_cross_entropy(x, W, target, b=b, chunk_size=8)
    assert sum(r for r, _, _ in calls) == kept * -(-V // 13)
    assert sorted({(v0, v1) for _, v0, v1 in calls}) == [(v, min(V, v + 13))
                                                          for v in range(0, V, 13)]
    calls.clear()
    linear_cross_entropy(x, W, np.full(N, IGNORE))
    assert calls == []


def test_default_chunk_rows():
    a = L._lce_args(np.zeros((5000, 8), np.float32), np.zeros((32000, 8), np.float32),
                    np.zeros(5000, np.int64), None, None, IGNORE, "mean", 0.0, 0.0, None,
                    None, None)
    rows = L._chunk_rows(a, 1, 0)
    assert L.MIN_CHUNK_ROWS <= rows and rows * 32000 * 4 <= L.DEFAULT_MAX_MEMORY
    # a huge vocabulary still gets MIN_CHUNK_ROWS rows under the default budget
    # (5120 rows: 20 equal chunks) ...
    a.n_classes = 1 << 20
    a.count = 20 * L.MIN_CHUNK_ROWS
    assert L._chunk_rows(a, 1, 0) == L.MIN_CHUNK_ROWS
    # ... and an explicit budget is obeyed (at least one row)
    a.max_memory = 10 * (1 << 22)
    assert L._chunk_rows(a, 1, 0) < 10
    a.count = 3
    a.max_memory = None
    assert L._chunk_rows(a, 1, 0) == 3


def test_layouts_agree(backend):
    """Fortran, sliced, transposed and read-only inputs give the contiguous result."""
    dtype = np.dtype(np.float32)
    x, W, b, target, weight = make(dtype, ignored=0.2)
    exp = linear_cross_entropy_with_grad(x, W, target, b=b, weight=weight, chunk_size=8)
    big = np.zeros((N, 2 * H), dtype)
    big[:, ::2] = x
    xf = np.asfortranarray(x)
    Wt = np.ascontiguousarray(W.T).T
    ro = x.copy()
    ro.flags.writeable = False
    for xv, Wv in ((xf, W), (big[:, ::2], Wt), (ro, W)):
        got = linear_cross_entropy_with_grad(xv, Wv, target, b=b, weight=weight, chunk_size=8,
                                             backend=backend)
        for g, e in zip(got, exp):
            close(g, e, dtype)


# ---------------------------------------------------------------------------
# against PyTorch
# ---------------------------------------------------------------------------

TORCH_CASES = {
    "plain": dict(),
    "bias": dict(bias=True),
    "weight-bias": dict(weight=True, bias=True),
    "ignore": dict(ignored=0.3),
    "ignore-weight": dict(ignored=0.3, weight=True),
    "smoothing": dict(label_smoothing=0.1),
    "smoothing-weight-ignore-bias": dict(label_smoothing=0.2, weight=True, ignored=0.3,
                                         bias=True),
    "prob": dict(prob=True),
    "prob-weight-smoothing": dict(prob=True, weight=True, label_smoothing=0.1),
}


def _torch_paths(case):
    """torch's reference path always; its chunked path (options=...) where it
    supports the case (class indices, no label smoothing; else it falls back)."""
    spec = TORCH_CASES[case]
    chunkable = not spec.get("prob") and not spec.get("label_smoothing")
    return [False, True] if chunkable else [False]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case,chunked", [(c, k) for c in TORCH_CASES for k in _torch_paths(c)],
                         ids=[f"{c}-{'chunked' if k else 'reference'}" for c in TORCH_CASES
                              for k in _torch_paths(c)])
def test_matches_torch(case, chunked, reduction, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    spec = dict(TORCH_CASES[case])
    x, W, b, target, weight = make(dtype, n=64, h=32, v=300, bias=spec.pop("bias", False),
                                   ignored=spec.pop("ignored", 0.0), prob=spec.pop("prob", False))
    use_w = spec.pop("weight", False)
    eps = spec.pop("label_smoothing", 0.0)
    tx = torch.from_numpy(x).requires_grad_(True)
    tW = torch.from_numpy(W).requires_grad_(True)
    tb = None if b is None else torch.from_numpy(b).requires_grad_(True)
    options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=16) if chunked else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a silent fallback of the chunked path would hide here
        t_loss = F.linear_cross_entropy(
            tx, tW, torch.from_numpy(target), linear_bias=tb,
            weight=torch.from_numpy(weight) if use_w else None, reduction=reduction,
            ignore_index=None if target.dtype.kind == "f" else IGNORE,
            label_smoothing=eps, options=options)
    t_loss.sum().backward()
    loss, dx, dW, db = linear_cross_entropy_with_grad(
        x, W, target, b=b, weight=weight if use_w else None, reduction=reduction,
        label_smoothing=eps, chunk_size=24)
    close(loss, t_loss.detach().numpy(), dtype)
    close(dx, tx.grad.numpy(), dtype)
    close(dW, tW.grad.numpy(), dtype)
    if b is not None:
        close(db, tb.grad.numpy(), dtype)


def test_matches_torch_default_chunking_large_vocab():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, W, b, target, _ = make(np.float32, n=300, h=32, v=5000, ignored=0.1)
    tx = torch.from_numpy(x).requires_grad_(True)
    tW = torch.from_numpy(W).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    t_loss = F.linear_cross_entropy(tx, tW, torch.from_numpy(target), linear_bias=tb,
                                    options=torch.nn.LinearCrossEntropyOptions())
    t_loss.backward()
    loss, dx, dW, db = linear_cross_entropy_with_grad(x, W, target, b=b, max_memory=1 << 20)
    for g, e in ((loss, t_loss.detach()), (dx, tx.grad), (dW, tW.grad), (db, tb.grad)):
        close(g, e.numpy(), np.float32)


# ---------------------------------------------------------------------------
# central differences
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", ["z-softcap-all", "z-softcap-prob", "softcap", "z_loss"])
def test_gradcheck(case, reduction, backend):
    dtype = np.dtype(np.float64)
    x, W, b, target, kw = case_arrays(case, dtype, n=7, h=4, v=6)
    if b is None:
        b = np.random.default_rng(3).standard_normal(6)
    opts = dict(reduction=reduction, chunk_size=3, backend=backend, **kw)

    def f(x, W, b):
        return linear_cross_entropy(x, W, target, b=b, **opts)

    def backward(dy, x, W, b):
        return linear_cross_entropy_backward(x, W, target, dy, b=b, **opts)

    assert fastdl.gradcheck(f, x, W, b, backward=backward)


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------

def _peak_extra(fn):
    """tracemalloc's peak during fn() beyond what fn returns, and the result."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    returned = after - before  # the gradients the call returns
    return peak - before - returned, result


def test_peak_memory_bounded_independent_of_n():
    # logits would be 2048 x 32000 float32 = 250 MiB (and as much again for their gradient)
    n, h, v = 2048, 32, 32000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h), np.float32)
    W = rng.standard_normal((v, h), np.float32) * np.float32(0.1)
    b = np.zeros(v, np.float32)
    target = rng.integers(0, v, n)
    target[::7] = IGNORE  # the compacted path: gathered rows, scattered dx
    slack = 1 * MiB
    extra, _ = _peak_extra(lambda: linear_cross_entropy_with_grad(x, W, target, b=b))
    assert extra <= L.DEFAULT_MAX_MEMORY + slack, extra / MiB
    assert extra >= 0.5 * L.DEFAULT_MAX_MEMORY  # the budget is used (chunks of ~450 rows)
    # The bound does not depend on N: fewer rows (for time) under smaller budgets.
    m = 512
    extra, _ = _peak_extra(lambda: linear_cross_entropy_with_grad(
        x[:m], W, target[:m], b=b, chunk_size=128))
    assert extra <= 128 * v * 4 + slack, extra / MiB
    extra, _ = _peak_extra(lambda: linear_cross_entropy_with_grad(
        x[:m], W, target[:m], b=b, max_memory=16 * MiB, z_loss=1e-4, softcap=30.0))
    assert extra <= 16 * MiB + slack, extra / MiB
    extra, _ = _peak_extra(lambda: linear_cross_entropy(x[:m], W, target[:m], b=b,
                                                        max_memory=8 * MiB))
    assert extra <= 8 * MiB + slack, extra / MiB


# ---------------------------------------------------------------------------
# out= and accumulate=
# ---------------------------------------------------------------------------

def test_accumulate_equals_sum_of_halves(backend, dtype):
    x, W, b, target, weight = make(dtype, ignored=0.2)
    opts = dict(b=b, weight=weight, reduction="sum", chunk_size=8, z_loss=1e-3, backend=backend)
    full = linear_cross_entropy_with_grad(x, W, target, **opts)
    h = N // 2
    dx = np.zeros_like(x)
    bufs = (dx[:h], np.empty_like(W), np.empty_like(b))
    l1, *g1 = linear_cross_entropy_with_grad(x[:h], W, target[:h], out=bufs, **opts)
    assert all(g is o for g, o in zip(g1, bufs))
    bufs2 = (dx[h:], bufs[1], bufs[2])
    l2, *g2 = linear_cross_entropy_with_grad(x[h:], W, target[h:], out=bufs2, accumulate=True,
                                             **opts)
    assert all(np.shares_memory(g, o) for g, o in zip(g2, bufs2))
    close(float(l1) + float(l2), full[0], dtype)
    close(dx, full[1], dtype)
    close(bufs[1], full[2], dtype)
    close(bufs[2], full[3], dtype)
    # accumulating twice more into the whole-batch buffers triples them
    out = tuple(np.array(g) for g in full[1:])
    linear_cross_entropy_backward(x, W, target, 2.0, out=out, accumulate=True, **opts)
    for o, g in zip(out, full[1:]):
        close(o, 3 * g, dtype)


def test_out_buffers_used_and_strided_out(backend):
    dtype = np.dtype(np.float64)
    x, W, b, target, _ = make(dtype, ignored=0.2)
    exp = linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=8)
    out = (np.empty_like(x), np.empty_like(W), np.empty_like(b))
    got = linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=8, out=out,
                                         backend=backend)
    assert all(np.shares_memory(g, o) for g, o in zip(got[1:], out))
    for g, e in zip(got, exp):
        close(g, e, dtype)
    # strided (Fortran, sliced) buffers, overwritten then accumulated into
    strided = (np.asfortranarray(np.full_like(x, 7.0)), np.full((V, 2 * H), 7.0)[:, ::2],
               np.full(2 * V, 7.0)[::2])
    got = linear_cross_entropy_backward(x, W, target, b=b, chunk_size=8, out=strided)
    assert all(g is o for g, o in zip(got, strided))
    for g, e in zip(got, exp[1:]):
        close(g, e, dtype)
    linear_cross_entropy_backward(x, W, target, b=b, out=strided, accumulate=True)
    for g, e in zip(strided, exp[1:]):
        close(g, 2 * e, dtype)
    # a None entry is allocated
    dx, dW, db = linear_cross_entropy_backward(x, W, target, b=b, out=(None, out[1], out[2]))
    close(dx, exp[1], dtype)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def _no_gemm(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a GEMM ran before validation finished")

    monkeypatch.setattr(L, "affine_forward", fail)
    monkeypatch.setattr(L, "_gemm", fail)


@pytest.mark.parametrize("fn", ["loss", "with_grad", "backward"])
def test_errors(fn, monkeypatch):
    _no_gemm(monkeypatch)
    f32, f64 = np.float32, np.float64
    x, W, b, target, weight = make(f32, ignored=0.1)
    call = {"loss": linear_cross_entropy, "with_grad": linear_cross_entropy_with_grad,
            "backward": linear_cross_entropy_backward}[fn]

    def check(exc, match, *args, **kw):
        args = args or (x, W, target)
        with pytest.raises(exc, match=match):
            call(*args, **kw)

    check(TypeError, "x is float32 but W is float64", x, W.astype(f64), target)
    check(TypeError, "x is float32 but b is float64", b=b.astype(f64))
    check(TypeError, "x is float32 but weight is float64", weight=weight.astype(f64))
    check(TypeError, "float32 but target is float64", x, W, np.full((N, V), 1.0 / V))
    check(TypeError, "int64; fastdl supports float32 and float64", x.astype(np.int64), W, target)
    check(TypeError, "float16", x.astype(np.float16), W.astype(np.float16), target)
    check(TypeError, "target has dtype bool", x, W, target > 0)
    check(TypeError, "ignore_index must be an integer", ignore_index=1.5)
    check(TypeError, "chunk_size must be an integer", chunk_size=2.5)
    check(ValueError, r"\(37, 16\).*\(50, 8\)", x, W[:, :8], target)
    check(ValueError, r"W must be .*\(50,\)", x, W[:, 0], target)
    check(ValueError, r"x must be .*\(37, 16, 1\)", x[..., None], W, target)
    check(ValueError, r"b has shape \(49,\)", b=b[:-1])
    check(ValueError, r"weight has shape \(3,\)", weight=weight[:3])
    check(ValueError, r"target has shape \(36,\)", x, W, target[:-1])
    check(ValueError, "class probabilities", x, W, np.ones((N, V - 1), f32))
    check(ValueError, "reduction must be one of", reduction="avg")
    check(ValueError, "label_smoothing must be in", label_smoothing=1.5)
    check(ValueError, "z_loss must be", z_loss=-1.0)
    check(ValueError, "softcap must be", softcap=0.0)
    check(ValueError, "chunk_size must be >= 1", chunk_size=0)
    check(ValueError, "max_memory must be >= 1", max_memory=0)
    check(ValueError, "not both", chunk_size=4, max_memory=1 << 20)
    bad = target.copy()
    bad[5] = V
    check(IndexError, f"target {V} \\(row 5\\) is out of bounds for {V} classes", x, W, bad)
    bad[5] = -3
    check(IndexError, "target -3", x, W, bad)
    if fn == "loss":
        return
    out = (np.zeros_like(x), np.zeros_like(W), None)
    check(ValueError, "accumulate=True", accumulate=True)
    check(TypeError, "out must be a tuple", out=np.empty_like(x))
    check(ValueError, "db must be None exactly when b is None", b=b, out=out)
    check(ValueError, r"out dW has shape \(50, 15\)", out=(out[0], W[:, 1:].copy(), None))
    check(TypeError, "out dx has dtype float64", out=(out[0].astype(f64), out[1], None))
    check(ValueError, "out dW shares memory with an input", out=(out[0], W, None))
    if fn == "backward":
        check(ValueError, r"grad_output has shape \(37,\); reduction='mean'", x, W, target,
              np.ones(N, f32))
        check(ValueError, r"grad_output has shape \(3,\); reduction='none'", x, W, target,
              np.ones(3, f32), reduction="none")
        check(TypeError, "x is float32 but grad_output is float64", x, W, target,
              np.ones(N), reduction="none")


def test_out_aliasing_between_buffers():
    x, W, b, target, _ = make(np.float64, ignored=0.1)
    dW = np.empty_like(W)
    with pytest.raises(ValueError, match="db shares memory with another out buffer"):
        linear_cross_entropy_with_grad(x, W, target, b=b,
                                       out=(np.empty_like(x), dW, dW.reshape(-1)[:V]))


def test_unknown_backend():
    x, W, b, target, _ = make(np.float64)
    with pytest.raises(ValueError, match="nope"):
        linear_cross_entropy(x, W, target, backend="nope")


# ---------------------------------------------------------------------------
# the GEMM team: single-threaded BLAS on the team's threads, restored after
# ---------------------------------------------------------------------------

def _blas_threads():
    fns = L._load_blas_threads()
    if not fns:
        pytest.skip("NumPy's OpenBLAS thread count is not reachable here")
    return fns


def test_gemm_team_sets_blas_to_one_thread_and_restores_it(monkeypatch):
    get, set_ = _blas_threads()
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x, W, b, target, kw = case_arrays("z-softcap-all", np.dtype(np.float32))
    seen = []
    real = L._gemm

    def spy(*args):
        seen.append((get(), threading.current_thread().name))
        return real(*args)

    monkeypatch.setattr(L, "_gemm", spy)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = get()
        exp = reference(x, W, target, b=b, **kw)
        for fn in (linear_cross_entropy, linear_cross_entropy_with_grad):
            seen.clear()
            got = fn(x, W, target, b=b, chunk_size=8, **kw)
            for g, e in zip(got if isinstance(got, tuple) else (got,), exp):
                close(g, e, np.float32)
            assert get() == before == 2
            assert {n for _, n in seen} >= {threading.current_thread().name}
            assert any(n.startswith("fastdl-gemm") for _, n in seen)  # the team's thread
            assert {t for t, _ in seen} == {1}  # every GEMM on single-threaded BLAS
        # GEMM_TEAM = False leaves the GEMMs to BLAS's threads
        seen.clear()
        monkeypatch.setattr(L, "GEMM_TEAM", False)
        linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=8, **kw)
        assert {t for t, _ in seen} == {2}
        assert {n for _, n in seen} == {threading.current_thread().name}
        monkeypatch.setattr(L, "GEMM_TEAM", True)
        # an error inside a call restores the thread count too
        with pytest.raises(ValueError):
            linear_cross_entropy_with_grad(x, W, target, b=b, out=(np.empty(3), None, None))
        monkeypatch.setattr(L, "_gemm", lambda *args: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=8)
        assert get() == 2
    seen.clear()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        monkeypatch.setattr(L, "_gemm", spy)
        linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=8)
        assert {n for _, n in seen} == {threading.current_thread().name}  # a team of one
        assert get() == 1


@pytest.mark.parametrize("case", ["plain", "ignore-weight-bias", "z-softcap-all", "prob"])
def test_without_gemm_team_agrees(case, monkeypatch):
    x, W, b, target, kw = case_arrays(case, np.dtype(np.float64))
    opts = dict(b=b, chunk_size=8, **kw)
    team = (linear_cross_entropy(x, W, target, **opts),
            *linear_cross_entropy_with_grad(x, W, target, **opts))
    monkeypatch.setattr(L, "GEMM_TEAM", False)
    alone = (linear_cross_entropy(x, W, target, **opts),
             *linear_cross_entropy_with_grad(x, W, target, **opts))
    for t, s in zip(team, alone):
        if t is not None:
            close(t, s, np.float64)


def test_concurrent_calls_agree_and_restore_blas_threads():
    get, _ = _blas_threads()
    before = get()
    x, W, b, target, kw = case_arrays("ignore-weight-bias", np.dtype(np.float32), n=300,
                                      v=2000)
    exp = linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=64, **kw)
    results = [None] * 4

    def work(i):
        results[i] = linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=64, **kw)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        for g, e in zip(got, exp):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    assert get() == before


# ---------------------------------------------------------------------------
# LinearCrossEntropyLoss
# ---------------------------------------------------------------------------

def test_head_grads_equal_functional(dtype):
    head = losses.LinearCrossEntropyLoss(H, V, dtype=dtype, rng=0, label_smoothing=0.1,
                                         z_loss=1e-3, softcap=10.0, chunk_size=8)
    affine = layers.Affine(H, V, dtype=dtype, rng=0)
    np.testing.assert_array_equal(head.W.value, affine.W.value)  # Affine's initialisation
    assert [p.name for p in head.parameters()] == ["W", "b"]
    x, _, _, target, _ = make(dtype, ignored=0.2)
    with pytest.raises(RuntimeError):
        head.backward()
    loss = head.forward(x, target)
    exp = linear_cross_entropy_with_grad(x, head.W.value, target, b=head.b.value,
                                         label_smoothing=0.1, z_loss=1e-3, softcap=10.0)
    close(loss, exp[0], dtype)
    close(head.backward(), exp[1], dtype)
    close(head.W.grad, exp[2], dtype)
    close(head.b.grad, exp[3], dtype)
    # a second forward overwrites the gradients (it does not accumulate)
    head.forward(x, target)
    close(head.W.grad, exp[2], dtype)
    head.W = np.zeros((V, H), dtype)
    assert isinstance(head.W, layers.Parameter)
    with pytest.raises(ValueError):
        head.W = np.zeros((V, H + 1), dtype)
    nobias = losses.LinearCrossEntropyLoss(H, V, bias=False, dtype=dtype)
    nobias.forward(x, target)
    assert nobias.b is None and len(nobias.parameters()) == 1
    assert "LinearCrossEntropyLoss(16, 50" in repr(nobias)


@pytest.mark.parametrize("opt_cls", [optim.SGD, optim.Adam])
def test_head_trains_after_sequential_body(opt_cls):
    rng = np.random.default_rng(0)
    n, d, v = 256, 12, 40
    centers = rng.standard_normal((v, d)) * 2
    y = rng.integers(0, v, n)
    X = (centers[y] + rng.standard_normal((n, d)) * 0.5).astype(np.float32)
    y[::10] = IGNORE
    body = layers.Sequential(layers.Affine(d, 32, rng=1), layers.Tanh())
    head = losses.LinearCrossEntropyLoss(32, v, rng=2, z_loss=1e-4, chunk_size=64)
    opt = opt_cls(body.parameters() + head.parameters(),
                  lr=0.05 if opt_cls is optim.Adam else 0.5)
    history = []
    for _ in range(60):
        loss = head.forward(body.forward(X), y)
        body.backward(head.backward())
        opt.step()
        history.append(float(loss))
    assert history[-1] < 0.3 * history[0], history[::10]
