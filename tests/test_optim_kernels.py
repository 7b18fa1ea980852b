"""The fused optimizer kernels (sgd_step, adam_step): every backend × dtype
against the NumPy reference, a hand-written float64 update and PyTorch."""

import numpy as np
import pytest

import fastdl

from conftest import assert_close


def _state(rng, dtype, shape=(37, 5)):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(3)]


def _adam_by_hand(w, g, m, v, t, lr, b1, b2, eps, wd):
    d = g + wd * w
    m = b1 * m + (1 - b1) * d
    v = b2 * v + (1 - b2) * d * d
    mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return w - lr * mhat / (np.sqrt(vhat) + eps), m, v


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_step_matches_reference_and_hand(wd, backend, dtype, rng):
    w, g, m = _state(rng, dtype)
    v = np.abs(rng.standard_normal(w.shape)).astype(dtype)
    ref = [a.copy() for a in (w, g, m, v)]
    fastdl.adam_step(ref[0], ref[1], ref[2], ref[3], step=3, lr=0.01, weight_decay=wd,
                     backend="numpy")
    got = [a.copy() for a in (w, g, m, v)]
    res = fastdl.adam_step(got[0], got[1], got[2], got[3], step=3, lr=0.01, weight_decay=wd,
                           backend=backend)
    assert res is got[0]
    for a, b in zip(got, ref):
        assert_close(a, b, dtype, scale=4)
    hw, hm, hv = _adam_by_hand(*(a.astype(np.float64) for a in (w, g, m, v)), 3, 0.01, 0.9,
                               0.999, 1e-8, wd)
    assert_close(ref[0], hw, dtype, scale=10)
    assert_close(ref[2], hm, dtype, scale=10)
    assert_close(ref[3], hv, dtype, scale=10)


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("first", [True, False])
def test_sgd_step_matches_reference_and_hand(momentum, nesterov, first, backend, dtype, rng):
    w, g, buf = _state(rng, dtype)
    wd = 0.05
    kw = dict(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd, first_step=first)
    ref = [w.copy(), buf.copy()]
    fastdl.sgd_step(ref[0], g, ref[1] if momentum else None, backend="numpy", **kw)
    got = [w.copy(), buf.copy()]
    fastdl.sgd_step(got[0], g, got[1] if momentum else None, backend=backend, **kw)
    assert_close(got[0], ref[0], dtype, scale=4)
    assert_close(got[1], ref[1], dtype, scale=4)
    w64, g64, b64 = (a.astype(np.float64) for a in (w, g, buf))
    d = g64 + wd * w64
    if momentum:
        b64 = d if first else momentum * b64 + d
        d = d + momentum * b64 if nesterov else b64
    assert_close(ref[0], w64 - 0.1 * d, dtype, scale=10)


def test_non_contiguous_state_is_updated_in_place(backend, dtype, rng):
    w, g, m = _state(rng, dtype, (6, 8))
    v = np.abs(m)
    expected = [a.copy() for a in (w, g, m, v)]
    fastdl.adam_step(*expected, step=1, backend="numpy")
    wf, mf, vf = np.asfortranarray(w), np.asfortranarray(m), np.asfortranarray(v)
    fastdl.adam_step(wf, g[:, ::-1][:, ::-1], mf, vf, step=1, backend=backend)
    assert_close(wf, expected[0], dtype)
    assert_close(mf, expected[2], dtype)
    assert_close(vf, expected[3], dtype)


def test_optimizer_kernels_match_torch(backend, dtype, rng):
    torch = pytest.importorskip("torch")
    w0 = rng.standard_normal((20, 3)).astype(dtype)
    grads = [rng.standard_normal(w0.shape).astype(dtype) for _ in range(5)]
    for make, ours in [
        (lambda p: torch.optim.Adam([p], lr=0.05, weight_decay=0.01), "adam"),
        (lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.9, nesterov=True,
                                   weight_decay=0.01), "sgd"),
    ]:
        tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
        opt = make(tp)
        w, m, v, buf = w0.copy(), np.zeros_like(w0), np.zeros_like(w0), np.zeros_like(w0)
        for t, g in enumerate(grads, 1):
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
            if ours == "adam":
                fastdl.adam_step(w, g, m, v, step=t, lr=0.05, weight_decay=0.01, backend=backend)
            else:
                fastdl.sgd_step(w, g, buf, lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=0.01, first_step=t == 1, backend=backend)
        assert_close(w, tp.detach().numpy(), dtype, scale=20)


def test_bad_optimizer_arguments(backend):
    w, g = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match="momentum_buffer"):
        fastdl.sgd_step(w, g, lr=0.1, momentum=0.9, backend=backend)
    with pytest.raises(ValueError, match="Nesterov"):
        fastdl.sgd_step(w, g, lr=0.1, nesterov=True, backend=backend)
    with pytest.raises(ValueError, match="lr"):
        fastdl.sgd_step(w, g, lr=-1.0, backend=backend)
    with pytest.raises(ValueError, match="shape"):
        fastdl.sgd_step(w, np.zeros(4), lr=0.1, backend=backend)
    with pytest.raises(TypeError, match="float32"):
        fastdl.sgd_step(w, np.zeros(3, np.float32), lr=0.1, backend=backend)
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.sgd_step(np.zeros(3, np.int64), np.zeros(3, np.int64), lr=0.1, backend=backend)
    with pytest.raises(ValueError, match="step"):
        fastdl.adam_step(w, g, w.copy(), w.copy(), step=0, backend=backend)
    with pytest.raises(TypeError, match="step"):
        fastdl.adam_step(w, g, w.copy(), w.copy(), step=1.5, backend=backend)
    with pytest.raises(ValueError, match="betas"):
        fastdl.adam_step(w, g, w.copy(), w.copy(), step=1, betas=(1.0, 0.9), backend=backend)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastdl.adam_step(ro, g, w.copy(), w.copy(), step=1, backend=backend)


def test_large_arrays_use_the_parallel_path(backend, rng):
    w, g, m = _state(rng, np.float32, (300, 400))
    v = np.abs(m)
    ref = [a.copy() for a in (w, g, m, v)]
    fastdl.adam_step(*ref, step=2, backend="numpy")
    got = [a.copy() for a in (w, g, m, v)]
    fastdl.adam_step(*got, step=2, backend=backend)
    assert_close(got[0], ref[0], np.float32, scale=4)
