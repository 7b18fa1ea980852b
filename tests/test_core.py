"""Every core function × backend × dtype against the NumPy reference backend."""

import numpy as np
import pytest

import fastdl

from conftest import assert_close

ROW_OPS = ["softmax", "log_softmax"]
BACKWARD_OPS = ["softmax_backward", "log_softmax_backward"]
SHAPES = [(1, 1), (1, 3), (5, 1), (7, 13), (64, 10), (33, 1000), (3, 4, 5)]


def _ref(name, *args, **kw):
    return getattr(fastdl, name)(*args, backend="numpy", **kw)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", ROW_OPS)
def test_row_ops_match_reference(op, shape, backend, dtype, rng):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    got = getattr(fastdl, op)(x, backend=backend)
    assert got.dtype == dtype and got.shape == x.shape
    assert_close(got, _ref(op, x), dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_logsumexp_matches_reference(shape, backend, dtype, rng):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    got = fastdl.logsumexp(x, backend=backend)
    assert got.dtype == dtype
    assert_close(got, _ref("logsumexp", x), dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", BACKWARD_OPS)
def test_backward_ops_match_reference(op, shape, backend, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y = fastdl.softmax(x) if op == "softmax_backward" else fastdl.log_softmax(x)
    dy = rng.standard_normal(shape).astype(dtype)
    got = getattr(fastdl, op)(dy, y, backend=backend)
    assert got.dtype == dtype
    assert_close(got, _ref(op, dy, y), dtype)


@pytest.mark.parametrize("op", ROW_OPS + ["logsumexp"])
@pytest.mark.parametrize("axis", [0, 1, 2, -2])
def test_any_axis(op, axis, backend, dtype, rng):
    x = rng.standard_normal((4, 5, 6)).astype(dtype)
    got = getattr(fastdl, op)(x, axis, backend=backend)
    # Independent route: move the axis last by hand, compute, move back.
    moved = np.moveaxis(x, axis, -1)
    expected = getattr(fastdl, op)(np.ascontiguousarray(moved), backend="numpy")
    if op != "logsumexp":
        expected = np.moveaxis(expected, -1, axis)
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("axis", [None, (0, 2), (1,), (-1, 0)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_axes_and_keepdims(axis, keepdims, backend, dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    got = fastdl.logsumexp(x, axis, keepdims=keepdims, backend=backend)
    expected = np.log(np.sum(np.exp(x.astype(np.float64)), axis=axis, keepdims=keepdims))
    assert np.shape(got) == expected.shape
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("op", BACKWARD_OPS)
@pytest.mark.parametrize("axis", [0, 1])
def test_backward_any_axis(op, axis, backend, dtype, rng):
    x = rng.standard_normal((6, 7)).astype(dtype)
    fwd = fastdl.softmax if op == "softmax_backward" else fastdl.log_softmax
    y = fwd(x, axis)
    dy = rng.standard_normal(x.shape).astype(dtype)
    got = getattr(fastdl, op)(dy, y, axis, backend=backend)
    expected = getattr(fastdl, op)(dy.T.copy(), y.T.copy(), -1 if axis == 0 else 0,
                                   backend="numpy").T
    assert_close(got, expected, dtype)


def _layouts(a):
    """The same values as C, Fortran, strided, read-only and sliced arrays."""
    f = np.asfortranarray(a)
    big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
    strided = big[::2, ::3]
    strided[...] = a
    ro = a.copy()
    ro.flags.writeable = False
    padded = np.zeros((a.shape[0] + 2, a.shape[1] + 1), a.dtype)
    padded[1:-1, 1:] = a
    return {"fortran": f, "strided": strided, "readonly": ro, "sliced": padded[1:-1, 1:]}


@pytest.mark.parametrize("op", ROW_OPS + ["logsumexp"])
def test_layouts_give_same_results(op, backend, dtype, rng):
    x = rng.standard_normal((9, 11)).astype(dtype)
    expected = getattr(fastdl, op)(x, backend=backend)
    for name, variant in _layouts(x).items():
        np.testing.assert_array_equal(getattr(fastdl, op)(variant, backend=backend), expected,
                                      err_msg=name)


@pytest.mark.parametrize("op", ROW_OPS)
def test_out_in_place(op, backend, dtype, rng):
    x = rng.standard_normal((8, 50)).astype(dtype)
    expected = getattr(fastdl, op)(x, backend=backend)
    buf = x.copy()
    res = getattr(fastdl, op)(buf, out=buf, backend=backend)
    assert res is buf
    # In place, a compiler may not vectorise a sum it could vectorise with a
    # separate output (the buffers alias), so the last bit may differ.
    assert_close(buf, expected, dtype)
    # Separate buffer, and a non-contiguous in-place case.
    out = np.empty_like(x)
    res = getattr(fastdl, op)(x, out=out, backend=backend)
    assert res is out and np.shares_memory(res, out)
    np.testing.assert_array_equal(out, expected)
    f = np.asfortranarray(x)
    res = getattr(fastdl, op)(f, out=f, backend=backend)
    assert res is f
    assert_close(f, expected, dtype)


@pytest.mark.parametrize("op", ROW_OPS)
def test_out_with_axis_zero(op, backend, dtype, rng):
    x = rng.standard_normal((5, 4)).astype(dtype)
    out = np.empty_like(x)
    res = getattr(fastdl, op)(x, 0, out=out, backend=backend)
    assert res is out
    assert_close(out, getattr(fastdl, op)(x, 0, backend="numpy"), dtype)


@pytest.mark.parametrize("op", BACKWARD_OPS)
@pytest.mark.parametrize("alias", ["dy", "y"])
def test_backward_out_may_alias_inputs(op, alias, backend, dtype, rng):
    x = rng.standard_normal((6, 9)).astype(dtype)
    y = fastdl.softmax(x) if op == "softmax_backward" else fastdl.log_softmax(x)
    dy = rng.standard_normal(x.shape).astype(dtype)
    expected = getattr(fastdl, op)(dy, y, backend=backend)
    dy2, y2 = dy.copy(), y.copy()
    out = dy2 if alias == "dy" else y2
    res = getattr(fastdl, op)(dy2, y2, out=out, backend=backend)
    assert res is out
    assert_close(res, expected, dtype)


def test_overlapping_out_is_not_corrupted(backend, dtype, rng):
    """An ``out`` that overlaps the input without being it must not race."""
    base = rng.standard_normal((10, 8)).astype(dtype)
    expected = fastdl.softmax(base[1:].copy(), backend="numpy")
    buf = base.copy()
    res = fastdl.softmax(buf[1:], out=buf[:-1], backend=backend)
    assert_close(res, expected, dtype)


# ----------------------------------------------------------------- affine

@pytest.mark.parametrize("N,D,H", [(1, 1, 1), (4, 3, 2), (64, 784, 128), (0, 5, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_affine_forward_matches_reference(N, D, H, bias, backend, dtype, rng):
    x = rng.standard_normal((N, D)).astype(dtype)
    W = rng.standard_normal((H, D)).astype(dtype)
    b = rng.standard_normal(H).astype(dtype) if bias else None
    got = fastdl.affine_forward(x, W, b, backend=backend)
    expected = x.astype(np.float64) @ W.T.astype(np.float64)
    if bias:
        expected += b
    assert got.dtype == dtype and got.shape == (N, H)
    assert_close(got, expected, dtype, scale=10 * np.sqrt(D))


def test_affine_forward_vector_and_out(backend, dtype, rng):
    x = rng.standard_normal(5).astype(dtype)
    W = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    got = fastdl.affine_forward(x, W, b, backend=backend)
    assert got.shape == (3,)
    assert_close(got, W.astype(np.float64) @ x + b, dtype, scale=10)
    out = np.empty(3, dtype)
    assert fastdl.affine_forward(x, W, b, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, got)
    outf = np.empty((3, 4), dtype)[:, 1]  # non-contiguous out
    res = fastdl.affine_forward(x, W, b, out=outf, backend=backend)
    assert res is outf
    np.testing.assert_array_equal(outf, got)


@pytest.mark.parametrize("N,D,H", [(1, 1, 1), (4, 3, 2), (64, 784, 128), (0, 5, 3)])
def test_affine_backward_matches_reference(N, D, H, backend, dtype, rng):
    x = rng.standard_normal((N, D)).astype(dtype)
    W = rng.standard_normal((H, D)).astype(dtype)
    dy = rng.standard_normal((N, H)).astype(dtype)
    dx, dW, db = fastdl.affine_backward(dy, x, W, backend=backend)
    d64 = dy.astype(np.float64)
    assert_close(dx, d64 @ W, dtype, scale=10 * np.sqrt(H))
    assert_close(dW, d64.T @ x, dtype, scale=10 * np.sqrt(max(N, 1)))
    assert_close(db, d64.sum(0), dtype, scale=10 * np.sqrt(max(N, 1)))
    assert dx.dtype == dW.dtype == db.dtype == dtype
    assert fastdl.affine_backward(dy, x, W, bias=False, backend=backend)[2] is None


def test_affine_layouts(backend, dtype, rng):
    x = rng.standard_normal((6, 5)).astype(dtype)
    W = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    expected = fastdl.affine_forward(x, W, b, backend=backend)
    for name, xv in _layouts(x).items():
        for wname, Wv in _layouts(W).items():
            assert_close(fastdl.affine_forward(xv, Wv, b, backend=backend), expected, dtype,
                         scale=4)
    dy = rng.standard_normal((6, 4)).astype(dtype)
    ref = fastdl.affine_backward(dy, x, W, backend=backend)
    for name, dyv in _layouts(dy).items():
        got = fastdl.affine_backward(dyv, _layouts(x)[name], _layouts(W)[name], backend=backend)
        for g, r in zip(got, ref):
            assert_close(g, r, dtype, scale=4)


def test_affine_backward_out_buffers(backend, dtype, rng):
    x = rng.standard_normal((6, 5)).astype(dtype)
    W = rng.standard_normal((4, 5)).astype(dtype)
    dy = rng.standard_normal((6, 4)).astype(dtype)
    expected = fastdl.affine_backward(dy, x, W, backend=backend)
    out = (np.empty_like(x), np.empty((5, 4), dtype).T, np.empty(4, dtype))  # dW non-contiguous
    got = fastdl.affine_backward(dy, x, W, out=out, backend=backend)
    for g, o, e in zip(got, out, expected):
        assert g is o
        np.testing.assert_array_equal(g, e)
    got = fastdl.affine_backward(dy, x, W, bias=False, out=(None, out[1], None), backend=backend)
    assert got[1] is out[1] and got[2] is None
    np.testing.assert_array_equal(got[0], expected[0])
    with pytest.raises(ValueError, match="db"):
        fastdl.affine_backward(dy, x, W, bias=False, out=out, backend=backend)
    with pytest.raises(ValueError, match="db"):
        fastdl.affine_backward(dy, x, W, out=(None, None, None), backend=backend)
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        fastdl.affine_backward(dy, x, W, out=(None, np.empty((5, 4), dtype), out[2]),
                               backend=backend)
    with pytest.raises(TypeError):
        fastdl.affine_backward(dy, x, W, out=[None, None, out[2]], backend=backend)
