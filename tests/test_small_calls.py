"""Small calls: the kernels' cheap argument passing, blocks of short rows, and
cross-entropy's one-call common case in every backend.

- The row kernels run short rows a block at a time (``ROW_BLOCK`` in
  kernels/_common.pxd); a row must come out with the same bits whatever
  block it sits in, so every result is compared with the same rows computed
  one at a time.
- The compiled kernels take ndarrays and check them with NumPy's C API; a
  call that breaks the kernel contract raises instead of reading memory it
  should not.
- ``cross_entropy_index_fast`` is part of every backend's contract: each
  takes and refuses the same calls, and its results equal the general
  route's bit for bit.
- The cross-entropy kernels return the exact sum of the row losses
  (math.fsum's value) or None; float and per-row ``scale`` agree.
"""

import math

import numpy as np
import pytest

import fastdl
from fastdl import _backend, _core, _validate
from fastdl.backends import cross_entropy_index_fast as shared_whole_call

from conftest import BACKENDS, DTYPES, assert_close

# The block loops are the Cython kernels'; Numba's serial and parallel
# dispatchers (one row, many rows) are compiled separately and may
# vectorise a sum differently ("reassoc"), so only the reference joins in.
BLOCKED = [b for b in BACKENDS if b in ("cython", "numpy")]

ROW_FUNCS = {
    "softmax": lambda x, dy, be: fastdl.softmax(x, backend=be),
    "log_softmax": lambda x, dy, be: fastdl.log_softmax(x, backend=be),
    "logsumexp": lambda x, dy, be: fastdl.logsumexp(x, backend=be),
    "softmax_backward": lambda x, dy, be: fastdl.softmax_backward(dy, x, backend=be),
    "log_softmax_backward": lambda x, dy, be: fastdl.log_softmax_backward(dy, x, backend=be),
}


def _rows_one_at_a_time(f, x, dy, be):
    return np.concatenate([np.atleast_1d(f(x[i:i + 1], dy[i:i + 1], be)) for i in range(len(x))])


def _hostile_rows(rng, n_rows, n, dtype):
    """Rows of ordinary values with special rows and entries mixed in."""
    x = (4 * rng.standard_normal((n_rows, n))).astype(dtype)
    x[1, :] = -np.inf                    # all -inf
    x[2, 0] = np.inf
    x[3, n // 2] = np.nan
    x[4, :] = 0.0
    x[4, ::2] = -0.0                     # signed zeros: the max's sign matters
    x[5, 0] = 1000.0                     # one huge offset
    x[6, :] = -90.0 + np.arange(n)       # spread beyond the in-range exp
    return x


@pytest.mark.parametrize("backend", BLOCKED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 10, 17, 64, 300, 1500])
@pytest.mark.parametrize("name", sorted(ROW_FUNCS))
def test_a_row_has_the_same_bits_in_any_block(name, n, dtype, backend, rng):
    # 37 rows: full blocks of ROW_BLOCK short rows, then a partial one.
    x = _hostile_rows(rng, 37, n, dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    f = ROW_FUNCS[name]
    with np.errstate(all="ignore"):
        together = f(x, dy, backend)
        alone = _rows_one_at_a_time(f, x, dy, backend)
    np.testing.assert_array_equal(together.view(np.uint8), alone.view(np.uint8),
                                  err_msg=name)


@pytest.mark.parametrize("backend", BLOCKED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 10, 64, 1500])
@pytest.mark.parametrize("kw", [{}, dict(label_smoothing=0.2), dict(ignore_index=3),
                                dict(weight="w"), dict(reduction="none")])
def test_cross_entropy_row_has_the_same_bits_in_any_block(kw, n, dtype, backend, rng):
    x = _hostile_rows(rng, 37, max(n, 7), dtype)[:, :n]
    target = rng.integers(0, n, len(x))
    target[::5] = 3 % n                  # ignored rows in the middle of blocks
    kw = dict(kw)
    if kw.get("weight") == "w":
        kw["weight"] = rng.random(n).astype(dtype)
    kw.setdefault("reduction", "none")
    with np.errstate(all="ignore"):
        loss, grad = fastdl.cross_entropy_with_grad(x, target, backend=backend, **kw)
        for i in range(len(x)):
            li, gi = fastdl.cross_entropy_with_grad(x[i:i + 1], target[i:i + 1],
                                                    backend=backend, **kw)
            np.testing.assert_array_equal(gi[0].view(np.uint8), grad[i].view(np.uint8))
            np.testing.assert_array_equal(np.asarray(li).view(np.uint8),
                                          np.asarray(loss[i:i + 1]).view(np.uint8))


# ------------------------------------------------ compiled kernel arguments

def _cython_kernels():
    pytest.importorskip("fastdl.backends.cython.core")
    from fastdl.backends.cython import core
    return core


def test_compiled_kernels_check_their_contract():
    core = _cython_kernels()
    x = np.ones((4, 3), np.float32)
    bad_calls = [
        lambda: core._softmax.softmax(x, np.empty((4, 3), np.float64), 1, False),     # dtype
        lambda: core._softmax.softmax(x, np.empty((3, 4), np.float32), 1, False),     # shape
        lambda: core._softmax.softmax(np.asfortranarray(np.ones((4, 3), np.float32)),
                                      np.empty((4, 3), np.float32), 1, False),  # layout
        lambda: core._softmax.softmax(x.astype(np.int32), np.empty((4, 3), np.int32), 1, False),
        lambda: core._softmax.softmax(x, x[:, :1], 1, False),
        lambda: core._softmax.logsumexp(x, np.empty(3, np.float32), 1),
        lambda: core._softmax.softmax([[1.0]], np.empty((1, 1)), 1, False),           # not an array
        lambda: core._softmax.softmax_backward(x, x[:2], np.empty_like(x), 1),
        lambda: core._affine.bias_add(x, np.ones(4, np.float32), 1),
        lambda: core._affine.bias_grad(x, np.ones(4, np.float32), 1),
        lambda: core._cross_entropy.cross_entropy_index(
            x, np.zeros(4, np.int32), None, -100, 0.0, None, np.empty(4), None, 10, 1,
            False),
        lambda: core._cross_entropy.cross_entropy_index(
            x, np.zeros(4, np.int64), np.ones(2, np.float32), -100, 0.0, None,
            np.empty(4), None, 10, 1, False),
        lambda: core._cross_entropy.cross_entropy_index(
            x, np.zeros(4, np.int64), None, -100, 0.0, np.ones(3), np.empty(4),
            np.empty_like(x), 10, 1, False),
        lambda: core._cross_entropy.cross_entropy_prob(
            x, np.ones((4, 3)), None, 0.0, None, np.empty(4), None, 10, 1),
    ]
    read_only = np.empty((4, 3), np.float32)
    read_only.flags.writeable = False
    bad_calls.append(lambda: core._softmax.softmax(x, read_only, 1, False))
    for i, call in enumerate(bad_calls):
        with pytest.raises(ValueError, match="kernel contract"):
            call()
        assert i >= 0


def test_unaligned_and_read_only_inputs_take_the_general_path(backend, rng):
    x = rng.standard_normal((6, 5))
    raw = np.zeros(x.nbytes + 1, np.uint8)
    unaligned = np.frombuffer(raw[1:].data, np.float64).reshape(6, 5)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    ro = x.copy()
    ro.flags.writeable = False
    expected = fastdl.softmax(x, backend=backend)
    for a in (unaligned, ro):
        np.testing.assert_array_equal(fastdl.softmax(a, backend=backend), expected)
    out = np.frombuffer(np.zeros(x.nbytes + 1, np.uint8)[1:].data, np.float64).reshape(6, 5)
    assert fastdl.softmax(x, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, expected)


def test_fast_out_sees_overlap_through_views(rng):
    # Arrays that own their memory are disjoint; views are checked.
    x = rng.standard_normal((4, 4))
    dt = x.dtype
    assert _validate.fast_out(np.empty((4, 4)), (4, 4), dt, (x,)) is not None
    base = np.zeros((8, 4))
    assert _validate.fast_out(base[:4], (4, 4), dt, (base[2:6],)) is None
    assert _validate.fast_out(base[:4], (4, 4), dt, (base[4:],)) is not None
    assert _validate.fast_out(x, (4, 4), dt, (x,)) is None         # in place: general path
    assert _validate.fast_out(base, (4, 4), dt, (x,)) is None      # shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_overlapping_the_input_still_gives_the_right_result(backend, rng):
    base = rng.standard_normal((8, 5))
    x = base[:6].copy()
    expected = fastdl.softmax(x, backend=backend)
    # out is rows 2..7 of base and x rows 0..5: they overlap.
    got = fastdl.softmax(base[:6], out=base[2:], backend=backend)
    np.testing.assert_array_equal(got, expected)


# ------------------------------------------- cross-entropy's one-call case

def _ce_calls(rng):
    """(description, kwargs of cross_entropy_index_fast): taken and refused ones."""
    logits = rng.standard_normal((6, 4))
    t = np.array([0, 1, 2, 3, 2, 1])
    swapped = logits.astype(logits.dtype.newbyteorder())
    unaligned = np.frombuffer(np.zeros(6 * 4 * 8 + 1, np.uint8)[1:].data, np.float64)
    unaligned = unaligned.reshape(6, 4)
    unaligned[...] = logits
    out = np.empty_like(logits)
    f32 = logits.astype(np.float32)
    ro = logits.copy()
    ro.flags.writeable = False
    ro_out = np.empty_like(logits)
    ro_out.flags.writeable = False
    base = dict(logits=logits, target=t, ignore_index=-100, label_smoothing=0.0,
                mean=True, out=None, want_grad=True)
    cases = {
        "plain": {},
        "float32": dict(logits=f32),
        "sum": dict(mean=False),
        "smoothing": dict(label_smoothing=0.3),
        "out": dict(out=out),
        "no grad": dict(want_grad=False),
        "no grad, any out": dict(want_grad=False, out=logits),
        "read-only logits": dict(logits=ro),
        "ignore_index above the labels": dict(ignore_index=4),
        "one row": dict(logits=logits[:1], target=t[:1]),
        # refused
        "int32 target": dict(target=t.astype(np.int32)),
        "rows ignored": dict(ignore_index=2),
        "label out of range": dict(target=np.array([0, 1, 2, 4, 0, 0])),
        "negative label": dict(target=np.array([0, 1, -1, 3, 0, 0])),
        "byte-swapped": dict(logits=swapped),
        "unaligned": dict(logits=unaligned),
        "in place": dict(out=logits),
        "out overlapping the target": dict(out=t.view(np.float64)[:6].reshape(6, 1)),
        "out not C-contiguous": dict(out=out.T.copy().T),
        "out of another dtype": dict(out=np.empty((6, 4), np.float32)),
        "read-only out": dict(out=ro_out),
        "3-D logits": dict(logits=logits[:, None]),
        "N mismatch": dict(target=t[:5]),
        "no classes": dict(logits=np.empty((6, 0)), target=np.zeros(6, np.int64)),
        "no rows": dict(logits=np.empty((0, 4)), target=np.zeros(0, np.int64)),
        "2-D target": dict(target=t[:, None]),
    }
    return {name: {**base, **kw} for name, kw in cases.items()}


def test_whole_call_takes_and_refuses_the_same_calls_in_every_backend(rng):
    taken = {}
    for name, kw in _ce_calls(rng).items():
        verdicts = {}
        for be in BACKENDS:
            kernels = _backend.resolve("cross_entropy", be)
            before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
            result = kernels.cross_entropy_index_fast(**kw)
            verdicts[be] = result is not None
            if result is None:  # refused: nothing written
                for k, v in before.items():
                    np.testing.assert_array_equal(kw[k], v, err_msg=f"{name}: {k} written")
            else:
                taken.setdefault(name, []).append(result)
        assert len(set(verdicts.values())) == 1, (name, verdicts)
    assert set(taken) == {"plain", "float32", "sum", "smoothing", "out", "no grad",
                          "no grad, any out", "read-only logits",
                          "ignore_index above the labels", "one row"}
    for name, results in taken.items():  # every backend: the same values
        loss0, grad0 = results[0]
        for loss, grad in results[1:]:
            assert type(loss) is type(loss0), name
            assert_close(loss, loss0, loss0.dtype)
            assert (grad is None) == (grad0 is None), name
            if grad is not None:
                assert_close(grad, grad0, grad0.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_call_equals_the_general_route(backend, dtype, rng):
    sizes = [(1, 1), (3, 2), (5, 4), (7, 3), (11, 6), (13, 9), (37, 10), (101, 5),
             (300, 257)]
    for n_rows, n, hostile in [(r, c, False) for r, c in sizes] + [(37, 10, True),
                                                                   (300, 257, True)]:
        if hostile:  # NaN and inf rows: the losses are NaN or inf
            x = _hostile_rows(rng, n_rows, n, dtype)
        else:
            x = (3 * rng.standard_normal((n_rows, n))).astype(dtype)
        t = rng.integers(0, n, n_rows)
        for kw in ({}, dict(reduction="sum"), dict(label_smoothing=0.25)):
            with np.errstate(all="ignore"):
                fast = fastdl.cross_entropy_with_grad(x, t, backend=backend, **kw)
                fast_loss = fastdl.cross_entropy(x, t, backend=backend, **kw)
                # Fortran order: the full checks and cross_entropy_index
                general = fastdl.cross_entropy_with_grad(np.asfortranarray(x), t,
                                                         backend=backend, **kw)
                general_loss = fastdl.cross_entropy(np.asfortranarray(x), t,
                                                    backend=backend, **kw)
            assert type(fast[0]) is type(general[0]) is type(fast_loss) is dtype
            if backend == "numba":
                # Numba's exp-sum loop stores each term into the gradient:
                # LLVM vectorises it only when a run-time check finds the
                # gradient far enough from the logits, so a tiny row's sum
                # order (and its last bit) can follow where the heap put
                # the two buffers.  The same values to a few ulps.
                ulps = 4 * np.finfo(dtype).eps
                np.testing.assert_allclose(fast[0], general[0], rtol=ulps, atol=0)
                np.testing.assert_allclose(fast_loss, general_loss, rtol=ulps, atol=0)
                np.testing.assert_allclose(fast[1], general[1], rtol=ulps, atol=ulps,
                                           equal_nan=True)
                continue
            np.testing.assert_array_equal(fast[0], general[0])
            np.testing.assert_array_equal(fast_loss, general_loss)
            np.testing.assert_array_equal(fast[1], general[1])


def test_whole_call_is_the_one_kernel_call(rng, monkeypatch):
    # The common case makes exactly one kernel call and no full checks;
    # anything else makes the full checks and one cross_entropy_index call.
    kernels = _backend.resolve("cross_entropy", None)
    calls = []
    for name in ("cross_entropy_index_fast", "cross_entropy_index", "cross_entropy_prob"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name,
                            lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))
    real_args = _core._ce_args
    monkeypatch.setattr(_core, "_ce_args", lambda *a: calls.append("_ce_args") or real_args(*a))
    x = rng.standard_normal((5, 4))
    t = np.array([0, 1, 2, 3, 0])
    fastdl.cross_entropy_with_grad(x, t)
    assert calls == ["cross_entropy_index_fast"]
    calls.clear()
    fastdl.cross_entropy_with_grad(x, t, ignore_index=0)
    assert calls == ["cross_entropy_index_fast", "_ce_args", "cross_entropy_index"]
    calls.clear()
    fastdl.cross_entropy_with_grad(x, t, weight=np.ones(4))
    assert calls == ["_ce_args", "cross_entropy_index"]


def test_shared_whole_call_refuses_without_calling_its_kernel(rng):
    def kernel(*args):
        raise AssertionError("kernel called")
    for name, kw in _ce_calls(rng).items():
        try:
            shared_whole_call(kernel, **kw)
        except AssertionError:
            continue  # taken: it calls the kernel
        # refused
        assert name not in ("plain", "sum", "out"), name


# ----------------------------------------------- exact sums and scale forms

def _cases_for_sum(rng):
    cases = [np.array([1.0, 1e100, 1.0, -1e100]), np.array([1e16, 1.0, 1e-16]),
             np.array([2.0 ** 53, 1.0, 2.0 ** -60]), np.array([0.1] * 10), np.array([])]
    for _ in range(200):
        n = int(rng.integers(1, 300))
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n)
        cases.append(np.abs(x) if rng.random() < 0.5 else x)
    return cases


def test_numba_exact_sum_is_math_fsum(rng):
    if "numba" not in BACKENDS:
        pytest.skip("Numba backend unavailable")
    from fastdl.backends.numba import _jit
    for x in _cases_for_sum(rng):
        assert _jit.exact_sum(x) == math.fsum(x), x
    for x in (np.array([1.0, np.inf]), np.array([np.nan]), np.array([1e308, 1e308])):
        assert math.isnan(_jit.exact_sum(x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_kernels_return_the_exact_loss_sum(backend, dtype, rng):
    kernels = _backend.resolve("cross_entropy", backend)
    for n_rows, n in ((1, 3), (50, 7), (700, 31)):
        x = (5 * rng.standard_normal((n_rows, n))).astype(dtype)
        t = rng.integers(0, n, n_rows)
        q = rng.random((n_rows, n)).astype(dtype)
        loss = np.empty(n_rows)
        for call in (lambda: kernels.cross_entropy_index(x, t, None, -100, 0.1, None, loss, None),
                     lambda: kernels.cross_entropy_prob(x, q, None, 0.0, None, loss, None)):
            total = call()
            assert total is None or total == math.fsum(loss)
            if backend != "numpy":
                assert total is not None
    x = np.ones((3, 2), dtype)
    x[0, 0] = np.inf
    total = kernels.cross_entropy_index(x, np.array([1, 0, 0]), None, -100, 0.0, None,
                                        np.empty(3), None)
    assert total is None  # a non-finite loss: the caller's math.fsum decides


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_float_scale_equals_the_same_scale_per_row(backend, dtype, rng):
    kernels = _backend.resolve("cross_entropy", backend)
    x = (3 * rng.standard_normal((9, 5))).astype(dtype)
    t = rng.integers(0, 5, 9)
    q = rng.random((9, 5)).astype(dtype)
    w = rng.random(5).astype(dtype)
    for kernel, args in ((kernels.cross_entropy_index, (x, t, w, -100, 0.2)),
                         (kernels.cross_entropy_prob, (x, q, w, 0.2))):
        grads = []
        for scale in (0.37, np.full(9, 0.37)):
            g = np.empty_like(x)
            kernel(*args, scale, np.empty(9), g)
            grads.append(g)
        np.testing.assert_array_equal(grads[0], grads[1])


# ---------------------------------------- outputs written past the caches

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_outputs_have_the_plain_stores_bits(dtype, threads, rng, monkeypatch):
    # From _config.STREAM_MIN_BYTES of output, softmax, log_softmax and the
    # cross-entropy gradient write with non-temporal stores (rows of a block
    # of their own); the values must not change.  The threshold is moved so
    # that small arrays take that path.
    _cython_kernels()
    old = fastdl.get_num_threads()
    results = {}
    try:
        fastdl.set_num_threads(min(threads, fastdl._config.default_num_threads()))
        for limit in (1 << 62, 0):
            monkeypatch.setattr(fastdl._config, "STREAM_MIN_BYTES", limit)
            for shape in ((37, 5000), (3, 20011), (9, 10)):
                x = (4 * rng.standard_normal(shape)).astype(dtype) if limit else \
                    results[shape, "x"]
                results.setdefault((shape, "x"), x)
                t = np.arange(shape[0]) % shape[1]
                with np.errstate(all="ignore"):
                    x[1, 3] = np.inf
                    got = [fastdl.softmax(x, backend="cython"),
                           fastdl.log_softmax(x, backend="cython"),
                           *fastdl.cross_entropy_with_grad(x, t, backend="cython"),
                           fastdl.cross_entropy_with_grad(x, t, ignore_index=0,
                                                          backend="cython")[1],
                           fastdl.cross_entropy_with_grad(x, t, label_smoothing=0.1,
                                                          backend="cython")[1]]
                    for f in (fastdl.softmax, fastdl.log_softmax):  # in place
                        z = x.copy()
                        got.append(f(z, out=z, backend="cython"))
                    z = x.copy()
                    got.append(fastdl.cross_entropy_with_grad(z, t, out=z,
                                                              backend="cython")[1])
                results[shape, limit] = got
    finally:
        fastdl.set_num_threads(old)
    for shape in ((37, 5000), (3, 20011), (9, 10)):
        for plain, streamed in zip(results[shape, 1 << 62], results[shape, 0]):
            np.testing.assert_array_equal(np.atleast_1d(plain).view(np.uint8),
                                          np.atleast_1d(streamed).view(np.uint8))
