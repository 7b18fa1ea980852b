"""The cheap-call machinery: fast paths, cached backend resolution, serial builds.

The public wrappers test for the common case (C-contiguous float arrays of
one dtype, separate ``out``) and skip the general validation there; these
tests pin that the fast path is really taken, that it gives bit-for-bit the
general path's results, and that everything else still goes the general way.
"""

import numpy as np
import pytest

import fastdl
from fastdl import _backend, _core, _optim_functional, layers
from fastdl.backends.cython import _select as _cython_select

from conftest import BACKENDS, DTYPES


def _general_only(monkeypatch, module, name):
    """Make ``module.name`` (a general-path helper) fail if it is called."""
    def boom(*args, **kwargs):
        raise AssertionError(f"general path taken ({name})")
    monkeypatch.setattr(module, name, boom)


def _fortran(a):
    """The same values in a non-C-contiguous layout (forces the general path)."""
    return np.asfortranarray(a) if a.ndim == 2 else a.repeat(2)[::2]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_fast_path_taken_and_equal_to_general(backend, dtype, rng, monkeypatch):
    x = rng.standard_normal((7, 5)).astype(dtype)
    W = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    dy = rng.standard_normal((7, 3)).astype(dtype)
    general_y = fastdl.affine_forward(_fortran(x), W, b, backend=backend)
    general_grads = fastdl.affine_backward(_fortran(dy), x, W, backend=backend)
    with monkeypatch.context() as m:
        _general_only(m, _core, "float_array")
        y = fastdl.affine_forward(x, W, b, backend=backend)
        out = np.empty_like(y)
        assert fastdl.affine_forward(x, W, b, out=out, backend=backend) is out
        grads = fastdl.affine_backward(dy, x, W, backend=backend)
        bufs = (np.empty_like(x), np.empty_like(W), np.empty_like(b))
        got = fastdl.affine_backward(dy, x, W, out=bufs, backend=backend)
        assert all(g is o for g, o in zip(got, bufs))
    np.testing.assert_array_equal(y, general_y)
    np.testing.assert_array_equal(out, general_y)
    for fast, slow, buf in zip(grads, general_grads, bufs):
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(buf, slow)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_path_refuses_aliased_out(backend, rng):
    # out overlapping an input is not the fast path's case: the general
    # path writes through a temporary and the result is still right.
    x = rng.standard_normal((4, 4))
    W = rng.standard_normal((4, 4))
    expected = x @ W.T
    fastdl.affine_forward(x, W, out=x, backend=backend)
    np.testing.assert_allclose(x, expected, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "softplus", "leaky_relu", "tanh"])
def test_activation_fast_path_taken_and_equal_to_general(name, backend, dtype, rng,
                                                         monkeypatch):
    x = rng.standard_normal((6, 5)).astype(dtype)
    dy = rng.standard_normal((6, 5)).astype(dtype)
    fwd = getattr(fastdl, name)
    bwd = getattr(fastdl, name + "_backward")
    general = (fwd(_fortran(x), backend=backend), bwd(_fortran(dy), x, backend=backend))
    from fastdl import _activations
    with monkeypatch.context() as m:
        _general_only(m, _activations, "float_arrays_alike")
        fast = (fwd(x, backend=backend), bwd(dy, x, backend=backend))
        out = np.empty_like(x)
        assert bwd(dy, x, out=out, backend=backend) is out
    for f, g in zip(fast, general):
        np.testing.assert_array_equal(f, g)
    np.testing.assert_array_equal(out, general[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_fast_path_taken_and_equal_to_general(backend, dtype, reduction,
                                                            smoothing, rng, monkeypatch):
    logits = (3 * rng.standard_normal((9, 5))).astype(dtype)
    target = rng.integers(0, 5, 9)
    general = fastdl.cross_entropy_with_grad(_fortran(logits), target, reduction=reduction,
                                             label_smoothing=smoothing, backend=backend)
    general_loss = fastdl.cross_entropy(_fortran(logits), target, reduction=reduction,
                                        label_smoothing=smoothing, backend=backend)
    with monkeypatch.context() as m:
        _general_only(m, _core, "_ce_args")
        fast = fastdl.cross_entropy_with_grad(logits, target, reduction=reduction,
                                              label_smoothing=smoothing, backend=backend)
        fast_loss = fastdl.cross_entropy(logits, target, reduction=reduction,
                                         label_smoothing=smoothing, backend=backend)
    assert type(fast[0]) is type(general[0]) is type(fast_loss) is type(general_loss)
    assert fast[0] == general[0]
    assert fast_loss == general_loss
    np.testing.assert_array_equal(fast[1], general[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_fast_path_leaves_special_cases_to_the_general_path(backend, rng,
                                                                         monkeypatch):
    logits = rng.standard_normal((6, 4))
    calls = []
    real = _core._ce_args

    def spy(*args):
        calls.append(args)
        return real(*args)
    monkeypatch.setattr(_core, "_ce_args", spy)
    cases = [
        dict(target=np.array([0, 1, 2, 3, 2, 1])),                    # the fast case
        dict(target=np.array([0, 1, 2, 3, 2, 1]), ignore_index=2),    # rows ignored
        dict(target=np.array([0, 1, 2, 3, 2, 1], np.int32)),          # not int64
        dict(target=np.array([0, 1, 2, 3, 2, 1]), weight=np.ones(4)),
        dict(target=np.array([0, 1, 2, 3, 2, 1]), reduction="none"),
    ]
    for case in cases:
        fastdl.cross_entropy_with_grad(logits, backend=backend, **case)
    assert len(calls) == len(cases) - 1
    # An out-of-range label still raises the general path's IndexError.
    with pytest.raises(IndexError, match="out of bounds"):
        fastdl.cross_entropy_with_grad(logits, np.array([0, 1, 2, 4, 0, 0]), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_fast_path_taken_and_equal_to_general(backend, dtype, rng, monkeypatch):
    w0 = rng.standard_normal(11).astype(dtype)
    g = rng.standard_normal(11).astype(dtype)
    state = [np.zeros(11, dtype), np.zeros(11, dtype)]

    def run(w, fortran):
        m, v = (s.copy() for s in state)
        w = w.copy()
        view = w.reshape(11, 1) if not fortran else w
        for t in (1, 2):
            fastdl.adam_step(view if fortran else w, g, m, v, step=t, lr=0.1,
                             weight_decay=0.01, backend=backend)
        buf = np.zeros_like(w)
        for first in (True, False):
            fastdl.sgd_step(w, g, buf, lr=0.1, momentum=0.9, first_step=first, backend=backend)
        return w

    general = run(w0, fortran=True)
    with monkeypatch.context() as m:
        _general_only(m, _optim_functional, "float_arrays_alike")
        fast = run(w0, fortran=False)
    np.testing.assert_array_equal(fast, general)


@pytest.mark.parametrize("backend", BACKENDS)
def test_affine_backward_without_input_grad(backend, rng):
    dy, x, W = rng.standard_normal((5, 3)), rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    full = fastdl.affine_backward(dy, x, W, backend=backend)
    for xx in (x, np.asfortranarray(x)):  # fast and general path
        dx, dW, db = fastdl.affine_backward(dy, xx, W, input_grad=False, backend=backend)
        assert dx is None
        np.testing.assert_array_equal(dW, full[1])
        np.testing.assert_array_equal(db, full[2])
    bufs = (np.full_like(x, 7.0), np.empty_like(W), np.empty_like(full[2]))
    dx, _, _ = fastdl.affine_backward(dy, x, W, input_grad=False, out=bufs, backend=backend)
    assert dx is None and (bufs[0] == 7.0).all()  # dx's buffer untouched


def test_sequential_backward_without_input_grad(rng):
    net = layers.Sequential(layers.Affine(4, 6, rng=0), layers.ReLU(), layers.Affine(6, 2, rng=1))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    dy = rng.standard_normal((5, 2)).astype(np.float32)
    net.forward(x)
    assert net.backward(dy).shape == x.shape
    grads = [p.grad.copy() for p in net.parameters()]
    for p in net.parameters():
        p.grad[...] = np.nan
    assert net.backward(dy, input_grad=False) is None
    for p, g in zip(net.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    # A first layer that cannot skip its input gradient still works.
    act_first = layers.Sequential(layers.ReLU(), layers.Affine(4, 2, rng=0))
    act_first.forward(x)
    assert act_first.backward(dy, input_grad=False) is None


def test_resolve_cache_follows_the_backend_in_force():
    from fastdl.backends.numpy import core as numpy_backend
    auto = _backend.resolve("softmax")
    with fastdl.use_backend("numpy"):
        assert _backend.resolve("softmax") is numpy_backend
    assert _backend.resolve("softmax") is auto
    with pytest.raises(ValueError, match="unknown backend"):
        _backend.resolve("softmax", "nope")
    with pytest.raises(ValueError, match="unknown backend"):
        _backend.resolve("softmax", ["unhashable"])


def test_cython_kernel_picks_serial_build_by_size(monkeypatch):
    calls = []

    def fake(build):
        def fn(*args):
            calls.append((build, args[-1]))
        return fn

    kernel = _cython_select.Kernel("k", fake("parallel"), fake("serial"))
    monkeypatch.setattr(fastdl._config.state, "num_threads", 2)
    small, large = 10, fastdl._config.PARALLEL_MIN_ELEMENTS
    kernel(np.dtype(np.float32), small, "x")
    kernel(np.dtype(np.float64), large, "x")
    assert calls == [("serial", 1), ("parallel", 2)]


@pytest.mark.skipif("cython" not in fastdl.available_backends(), reason="Cython backend unavailable")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cython_serial_and_openmp_builds_agree(dtype, rng):
    # Large enough for the OpenMP build with 2 threads; the serial build
    # computes the same rows the same way, so the bits match.
    x = (4 * rng.standard_normal((400, 300))).astype(dtype)
    target = rng.integers(0, 300, 400)
    old = fastdl.get_num_threads()
    results = []
    try:
        for threads in (1, fastdl._config.default_num_threads()):
            fastdl.set_num_threads(threads)
            results.append((fastdl.softmax(x, backend="cython"),
                            fastdl.cross_entropy_with_grad(x, target, backend="cython")[1],
                            fastdl.relu_backward(x, x, backend="cython")))
    finally:
        fastdl.set_num_threads(old)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_kernels_fast_path_taken_and_equal_to_general(backend, dtype, rng, monkeypatch):
    x = (3 * rng.standard_normal((5, 7))).astype(dtype)
    dy = rng.standard_normal((5, 7)).astype(dtype)
    y = fastdl.softmax(x, backend=backend)
    ly = fastdl.log_softmax(x, backend=backend)
    calls = {
        "softmax": lambda a, **k: fastdl.softmax(a, backend=backend, **k),
        "log_softmax": lambda a, **k: fastdl.log_softmax(a, backend=backend, **k),
        "softmax_backward": lambda a, **k: fastdl.softmax_backward(a, y, backend=backend, **k),
        "log_softmax_backward": lambda a, **k: fastdl.log_softmax_backward(
            a, ly, backend=backend, **k),
        "logsumexp": lambda a, **k: fastdl.logsumexp(a, backend=backend, **k),
    }
    for name, f in calls.items():
        src = dy if "backward" in name else x
        general = f(_fortran(src))
        with monkeypatch.context() as m:
            _general_only(m, _core, "float_arrays_alike")
            _general_only(m, _core, "float_array")
            fast = f(src)
            fast_axis1 = f(src, axis=1)
            if name != "logsumexp":
                out = np.empty_like(src)
                assert f(src, out=out) is out
                np.testing.assert_array_equal(out, general)
        np.testing.assert_array_equal(fast, general)
        np.testing.assert_array_equal(fast_axis1, general)
    # Other axes, keepdims and in-place calls still take the general path.
    np.testing.assert_array_equal(fastdl.softmax(x, axis=0, backend=backend),
                                  fastdl.softmax(np.ascontiguousarray(x.T), backend=backend).T)
    assert fastdl.logsumexp(x, keepdims=True, backend=backend).shape == (5, 1)
    z = x.copy()
    assert fastdl.softmax(z, out=z, backend=backend) is z
    # In place the last bit may differ (see test_core.test_out_in_place):
    # with AVX-512, LLVM vectorises Numba's out-of-place sum but not the
    # aliased one.
    np.testing.assert_array_max_ulp(z, y, maxulp=2)


# ------------------------------------------- cross-entropy in one compiled call

def _ce_both(logits, target, **kw):
    """(fast, general) results of cross_entropy_with_grad on the cython backend."""
    fast = fastdl.cross_entropy_with_grad(logits, target, backend="cython", **kw)
    general = fastdl.cross_entropy_with_grad(_fortran(logits), target, backend="cython", **kw)
    return fast, general


def _cython_exact_sum():
    pytest.importorskip("fastdl.backends.cython.core")
    from fastdl.backends.cython import _cross_entropy_serial
    return _cross_entropy_serial.exact_sum


def test_compiled_exact_sum_is_math_fsum(rng):
    import math
    exact_sum = _cython_exact_sum()
    cases = [
        np.array([1.0, 1e100, 1.0, -1e100]),                # cancellation
        np.array([1e16, 1.0, 1e-16]),                       # ties broken by a far term
        np.array([2.0 ** 53, 1.0, 2.0 ** -60]),
        np.array([2.0 ** 53, -1.0, -2.0 ** -60]),
        np.array([0.1] * 10),
        np.array([1e308, 1e308, -1e308]),                   # running sum overflows
        np.array([1.0, np.inf]), np.array([np.nan, 1.0]), np.array([]),
    ]
    for _ in range(300):
        n = int(rng.integers(1, 200))
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)
        cases.append(x if rng.random() < 0.5 else np.abs(x))
    for x in cases:
        got = exact_sum(np.ascontiguousarray(x, np.float64))
        if got is None:  # deferred to math.fsum: only for these
            with np.errstate(over="ignore"):
                assert not np.all(np.isfinite(x)) or not np.isfinite(np.sum(np.abs(x)))
            continue
        assert got == math.fsum(x), x


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_whole_call_matches_general_path_on_edge_rows(dtype, rng):
    base = (3 * rng.standard_normal((70, 7))).astype(dtype)
    target = rng.integers(0, 7, 70)
    inf_row = base.copy()
    inf_row[3, target[3]] = -np.inf                        # that row's loss is +inf
    nan_row = base.copy()
    nan_row[5, 0] = np.nan
    for logits in (base, inf_row, nan_row, base[:1], base[:, :1] + 0):
        t = target[:len(logits)] % logits.shape[1]
        for kw in ({}, dict(reduction="sum"), dict(label_smoothing=0.3),
                   dict(ignore_index=1 << 70)):
            fast, general = _ce_both(np.ascontiguousarray(logits), t, **kw)
            assert type(fast[0]) is type(general[0])
            np.testing.assert_array_equal(fast[0], general[0])
            np.testing.assert_array_equal(fast[1], general[1])


def test_ce_whole_call_large_batch_sums_like_the_general_path(rng):
    logits = rng.standard_normal((70000, 3)).astype(np.float32)  # np.sum from 65536 rows
    target = rng.integers(0, 3, 70000)
    fast, general = _ce_both(logits, target)
    assert fast[0] == general[0]
    np.testing.assert_array_equal(fast[1], general[1])


def test_ce_whole_call_refuses_what_it_does_not_handle(rng, monkeypatch):
    pytest.importorskip("fastdl.backends.cython.core")
    from fastdl.backends.cython import core as cython_backend
    calls = []
    real = cython_backend.cross_entropy_index_fast

    def spy(*args):
        result = real(*args)
        calls.append(result is not None)
        return result
    monkeypatch.setattr(cython_backend, "cross_entropy_index_fast", spy)
    logits = rng.standard_normal((6, 4))
    t = np.array([0, 1, 2, 3, 2, 1])
    out = np.empty_like(logits)
    swapped = logits.astype(logits.dtype.newbyteorder())
    unaligned = np.frombuffer(np.zeros(6 * 4 * 8 + 1, np.uint8)[1:].data, np.float64)
    unaligned = unaligned.reshape(6, 4)
    unaligned[...] = logits
    refused = [
        dict(logits=logits, target=t.astype(np.int32)),            # target not int64
        dict(logits=logits, target=t, ignore_index=2),             # rows ignored
        dict(logits=logits, target=np.array([0, 1, 2, 4, 0, 0])),  # label out of range
        dict(logits=swapped, target=t),                            # byte-swapped
        dict(logits=unaligned, target=t),                          # unaligned
        dict(logits=logits, target=t, out=logits),                 # in place
        dict(logits=logits, target=t, out=out.T.copy().T),         # out not C-contiguous
        dict(logits=logits, target=t, out=np.empty((6, 4), np.float32)),
        dict(logits=logits[:, None], target=t),                    # 3-D
        dict(logits=logits, target=t[:5]),                         # N mismatch
    ]
    for case in refused:
        calls.clear()
        try:
            fastdl.cross_entropy_with_grad(backend="cython", **case)
        except (IndexError, ValueError, TypeError):
            pass
        assert calls == [False], case
    calls.clear()
    loss, grad = fastdl.cross_entropy_with_grad(logits, t, out=out, backend="cython")
    assert calls == [True] and grad is out
    general = fastdl.cross_entropy_with_grad(_fortran(logits), t, backend="cython")
    assert loss == general[0]
    np.testing.assert_array_equal(out, general[1])
    # The general path still raises its errors for what the entry refused.
    with pytest.raises(IndexError, match="out of bounds"):
        fastdl.cross_entropy_with_grad(logits, np.array([0, 1, 2, 4, 0, 0]), backend="cython")
