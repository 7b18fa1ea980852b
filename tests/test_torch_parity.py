"""Agreement with PyTorch (CPU) in value and gradient; skipped without torch.

CI installs torch so these run there.
"""

import numpy as np
import pytest

import fastdl

from conftest import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _t(a, grad=False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_(True) if grad else t


CE_CASES = [
    dict(),
    dict(weight=True),
    dict(ignore=True),
    dict(weight=True, ignore=True, eps=0.1),
    dict(eps=0.3),
    dict(prob=True),
    dict(prob=True, weight=True, eps=0.2),
    dict(ignore=True, eps=0.05, ignore_index=2),
]


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}" for k in c) or "plain")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(16, 7), (3, 1000), (7,)])
def test_cross_entropy_matches_torch(case, reduction, shape, backend, dtype, rng):
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    C = shape[-1]
    ignore_index = case.get("ignore_index", -100)
    if case.get("prob"):
        target = rng.random(shape).astype(dtype)
        target /= target.sum(-1, keepdims=True)
        t_target = _t(target)
    else:
        target = rng.integers(0, C, shape[:-1]) if len(shape) == 2 else np.int64(rng.integers(C))
        if case.get("ignore") and len(shape) == 2:
            target[::3] = ignore_index
        t_target = torch.as_tensor(target)
    weight = (rng.random(C) + 0.5).astype(dtype) if case.get("weight") else None
    eps = case.get("eps", 0.0)
    kw = dict(weight=weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)

    tz = _t(logits, grad=True)
    t_loss = F.cross_entropy(tz, t_target, weight=None if weight is None else _t(weight),
                             ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=eps)
    g_out = (rng.standard_normal(t_loss.shape).astype(dtype) if reduction == "none"
             else dtype.type(1.0))
    t_loss.backward(torch.as_tensor(np.asarray(g_out, dtype)))

    loss = fastdl.cross_entropy(logits, target, backend=backend, **kw)
    assert_close(loss, t_loss.detach().numpy(), dtype, scale=5)
    grad = fastdl.cross_entropy_backward(logits, target, g_out, backend=backend, **kw)
    assert_close(grad, tz.grad.numpy(), dtype, scale=5)
    if reduction != "none":
        fused_loss, fused_grad = fastdl.cross_entropy_with_grad(logits, target, backend=backend,
                                                                **kw)
        assert_close(fused_loss, t_loss.detach().numpy(), dtype, scale=5)
        assert_close(fused_grad, tz.grad.numpy(), dtype, scale=5)


def test_cross_entropy_empty_and_all_ignored_match_torch(backend):
    for logits, target in [(np.zeros((0, 4)), np.zeros(0, np.int64)),
                           (np.ones((3, 4)), np.full(3, -100))]:
        for reduction in ("mean", "sum"):
            t = F.cross_entropy(_t(logits), torch.as_tensor(target), reduction=reduction)
            got = fastdl.cross_entropy(logits, target, reduction=reduction, backend=backend)
            np.testing.assert_equal(float(got), float(t))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_matches_torch(op, axis, backend, dtype, rng):
    x = (4 * rng.standard_normal((5, 6, 7))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    tx = _t(x, grad=True)
    ty = getattr(torch, op)(tx, dim=axis)
    ty.backward(_t(dy))
    y = getattr(fastdl, op)(x, axis, backend=backend)
    assert_close(y, ty.detach().numpy(), dtype, scale=5)
    dx = getattr(fastdl, f"{op}_backward")(dy, y, axis, backend=backend)
    assert_close(dx, tx.grad.numpy(), dtype, scale=10)


def test_special_values_match_torch(backend, dtype):
    inf, nan = np.inf, np.nan
    x = np.array([[-inf, -inf], [inf, 1.0], [nan, 1.0], [1000.0, 0.0], [-inf, 0.0]], dtype)
    for op in ("softmax", "log_softmax"):
        np.testing.assert_array_equal(getattr(fastdl, op)(x, backend=backend),
                                      getattr(torch, op)(_t(x), dim=-1).numpy())
    np.testing.assert_array_equal(fastdl.logsumexp(x, backend=backend),
                                  torch.logsumexp(_t(x), dim=-1).numpy())


def test_logsumexp_matches_torch(backend, dtype, rng):
    x = (10 * rng.standard_normal((8, 300))).astype(dtype)
    assert_close(fastdl.logsumexp(x, backend=backend), torch.logsumexp(_t(x), -1).numpy(), dtype,
                 scale=5)
    assert_close(fastdl.logsumexp(x, 0, backend=backend), torch.logsumexp(_t(x), 0).numpy(), dtype,
                 scale=5)


@pytest.mark.parametrize("bias", [True, False])
def test_affine_matches_torch_linear(bias, backend, dtype, rng):
    x = rng.standard_normal((32, 20)).astype(dtype)
    W = rng.standard_normal((12, 20)).astype(dtype)
    b = rng.standard_normal(12).astype(dtype) if bias else None
    dy = rng.standard_normal((32, 12)).astype(dtype)
    tx, tW = _t(x, True), _t(W, True)
    tb = _t(b, True) if bias else None
    ty = F.linear(tx, tW, tb)
    ty.backward(_t(dy))
    assert_close(fastdl.affine_forward(x, W, b, backend=backend), ty.detach().numpy(), dtype,
                 scale=20)
    dx, dW, db = fastdl.affine_backward(dy, x, W, bias=bias, backend=backend)
    assert_close(dx, tx.grad.numpy(), dtype, scale=20)
    assert_close(dW, tW.grad.numpy(), dtype, scale=20)
    if bias:
        assert_close(db, tb.grad.numpy(), dtype, scale=20)
