"""K-dimensional cross-entropy: logits (N, C, d1, ..., dk), PyTorch semantics.

PyTorch's ``F.cross_entropy`` is the oracle for the default class axis (1);
other class axes are checked against the same data with the axis moved to 1,
and against a float64 formula written here from the definition.
"""

import numpy as np
import pytest

import fastdl
from conftest import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPES = [(3, 4, 5), (2, 5, 3, 4), (2, 3, 2, 2, 3), (1, 6, 1)]
REDUCTIONS = ["mean", "sum", "none"]


def _index_case(rng, shape, dtype, axis=1, ignored=True):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    rows_shape = shape[:axis] + shape[axis + 1:]
    t = rng.integers(0, shape[axis], rows_shape)
    if ignored:
        t.flat[::4] = -100
    return x, t


def _torch_loss_and_grad(x, t, reduction, **kw):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    opts = {k: (torch.tensor(v, dtype=torch.float64) if isinstance(v, np.ndarray) else v)
            for k, v in kw.items()}
    target = torch.tensor(t) if t.dtype.kind in "iu" else torch.tensor(t, dtype=torch.float64)
    loss = F.cross_entropy(xt, target, reduction=reduction, **opts)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def _reference(x, t, weight, eps, reduction, axis=1):
    """Float64 cross-entropy from the definition, the class axis anywhere."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    C = x.shape[-1]
    m = x.max(-1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    valid = t != -100
    tc = np.where(valid, t, 0)
    nll = -np.take_along_axis(logp, tc[..., None], -1)[..., 0] * w[tc]
    smooth = -(logp * w).sum(-1) / C
    loss = np.where(valid, (1 - eps) * nll + eps * smooth, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / np.where(valid, w[tc], 0.0).sum()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch_with_every_option(backend, dtype, rng, shape, reduction):
    x, t = _index_case(rng, shape, dtype)
    w = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    for kw in ({}, {"weight": w}, {"label_smoothing": 0.2}, {"weight": w, "label_smoothing": 0.1}):
        expected_loss, expected_grad = _torch_loss_and_grad(x, t, reduction, **kw)
        loss, grad = fastdl.cross_entropy_with_grad(x, t, reduction=reduction, backend=backend, **kw)
        assert np.shape(loss) == expected_loss.shape
        assert grad.shape == x.shape and grad.dtype == dtype and grad.flags.c_contiguous
        assert_close(loss, expected_loss, dtype, scale=10)
        assert_close(grad, expected_grad, dtype)
        assert_close(fastdl.cross_entropy(x, t, reduction=reduction, backend=backend, **kw),
                     expected_loss, dtype, scale=10)
        g = np.ones(t.shape, dtype) if reduction == "none" else np.dtype(dtype).type(1.0)
        assert_close(fastdl.cross_entropy_backward(x, t, g, reduction=reduction,
                                                   backend=backend, **kw),
                     expected_grad, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_probability_targets_match_torch(backend, dtype, rng, reduction):
    shape = (3, 4, 2, 5)
    x = rng.standard_normal(shape).astype(dtype)
    q = rng.random(shape).astype(dtype)
    q /= q.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2.0, 4).astype(dtype)
    expected_loss, expected_grad = _torch_loss_and_grad(x, q, reduction, weight=w,
                                                        label_smoothing=0.1)
    loss, grad = fastdl.cross_entropy_with_grad(x, q, weight=w, label_smoothing=0.1,
                                                reduction=reduction, backend=backend)
    assert_close(loss, expected_loss, dtype, scale=10)
    assert_close(grad, expected_grad, dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_any_class_axis_matches_the_definition(backend, rng, axis):
    shape = (4, 3, 5)
    ax = axis % 3
    x, t = _index_case(rng, shape, np.float64, axis=ax)
    w = rng.uniform(0.5, 2.0, shape[ax])
    for reduction in REDUCTIONS:
        expected = _reference(x, t, w, 0.1, reduction, axis=ax)
        got = fastdl.cross_entropy(x, t, weight=w, label_smoothing=0.1,
                                   reduction=reduction, axis=axis, backend=backend)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)
    # The gradient: central differences of the loss at one element.
    loss, grad = fastdl.cross_entropy_with_grad(x, t, weight=w, axis=axis, backend=backend)
    step = 1e-6
    i = (1, 2, 3)
    xp, xm = x.copy(), x.copy()
    xp[i] += step
    xm[i] -= step
    numeric = (fastdl.cross_entropy(xp, t, weight=w, axis=axis, backend=backend)
               - fastdl.cross_entropy(xm, t, weight=w, axis=axis, backend=backend)) / (2 * step)
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad[i], numeric, rtol=1e-6, atol=1e-9)


def test_last_axis_equals_rows_and_two_d_is_unchanged(backend, dtype, rng):
    # (N, L, C) with axis=-1 is the (N*L, C) problem; (N, C) keeps its old meaning.
    x = rng.standard_normal((3, 4, 6)).astype(dtype)
    t = rng.integers(0, 6, (3, 4))
    loss, grad = fastdl.cross_entropy_with_grad(x, t, axis=-1, reduction="none", backend=backend)
    flat_loss, flat_grad = fastdl.cross_entropy_with_grad(
        x.reshape(12, 6), t.reshape(12), reduction="none", backend=backend)
    np.testing.assert_array_equal(loss, flat_loss.reshape(3, 4))
    np.testing.assert_array_equal(grad, flat_grad.reshape(3, 4, 6))
    x2, t2 = x[0], t[0]
    assert fastdl.cross_entropy(x2, t2, axis=1, backend=backend) == \
        fastdl.cross_entropy(x2, t2, backend=backend)


def test_out_buffer_and_grad_output_shape(backend, rng):
    x, t = _index_case(rng, (2, 3, 4), np.float64)
    expected = fastdl.cross_entropy_backward(x, t, backend=backend)
    out = np.full_like(x, np.nan)
    got = fastdl.cross_entropy_backward(x, t, out=out, backend=backend)
    assert got is out
    np.testing.assert_array_equal(out, expected)
    g = rng.random((2, 4))
    got = fastdl.cross_entropy_backward(x, t, g, reduction="none", backend=backend)
    assert got.shape == x.shape
    np.testing.assert_allclose(
        got, fastdl.cross_entropy_backward(x, t, reduction="none", backend=backend) * g[:, None, :],
        rtol=1e-14)
    with pytest.raises(ValueError, match=r"grad_output has shape \(8,\)"):
        fastdl.cross_entropy_backward(x, t, np.ones(8), reduction="none", backend=backend)


def test_errors_name_the_shapes_and_axis(rng):
    x = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"need \(2, 4\)"):
        fastdl.cross_entropy(x, np.zeros((2, 3), np.int64))
    with pytest.raises(IndexError, match="out of bounds for 3 classes"):
        fastdl.cross_entropy(x, np.full((2, 4), 3))
    with pytest.raises(np.exceptions.AxisError):
        fastdl.cross_entropy(x, np.zeros((2, 4), np.int64), axis=3)
    with pytest.raises(TypeError, match="axis must be an integer"):
        fastdl.cross_entropy(x, np.zeros((2, 4), np.int64), axis=1.0)
    with pytest.raises(ValueError, match="class axis"):
        fastdl.cross_entropy(np.float64(1.0), np.int64(0))


def test_empty_spatial_dims_follow_torch(backend):
    x = np.zeros((2, 3, 0))
    t = np.zeros((2, 0), np.int64)
    assert np.isnan(fastdl.cross_entropy(x, t, backend=backend))
    assert fastdl.cross_entropy(x, t, reduction="sum", backend=backend) == 0
    assert fastdl.cross_entropy(x, t, reduction="none", backend=backend).shape == (2, 0)
    assert fastdl.cross_entropy_backward(x, t, backend=backend).shape == (2, 3, 0)
    expected = F.cross_entropy(torch.zeros(2, 3, 0), torch.zeros(2, 0, dtype=torch.long))
    assert torch.isnan(expected)
    # Zero classes is legal only when every position is ignored.
    z0 = np.zeros((2, 0, 3))
    loss, grad = fastdl.cross_entropy_with_grad(z0, np.full((2, 3), -100), backend=backend)
    assert np.isnan(loss) and grad.shape == (2, 0, 3)
    with pytest.raises(IndexError):
        fastdl.cross_entropy(z0, np.zeros((2, 3), np.int64), backend=backend)
