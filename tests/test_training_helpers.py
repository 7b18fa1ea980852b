"""Public optimizer and loss state (state_arrays, first_step, options) and data.batches."""

import types

import numpy as np
import pytest

from fastdl import data, layers, losses, optim


def _params():
    return [layers.Parameter(np.ones((2, 3))), layers.Parameter(np.ones(4, np.float32))]


# -- optimizer state -----------------------------------------------------------

def test_sgd_state_arrays_are_the_live_buffers():
    params = _params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    state = opt.state_arrays()
    assert list(state) == ["momentum_buffer"]
    bufs = state["momentum_buffer"]
    assert [(b.shape, b.dtype) for b in bufs] == [(p.shape, p.dtype) for p in params]
    for p in params:
        p.grad[...] = 2.0
    opt.step()
    # the first step sets the buffer to the gradient, in the arrays returned before
    assert all(np.array_equal(b, np.full(b.shape, 2.0)) for b in bufs)
    assert all(b is c for b, c in zip(bufs, opt.state_arrays()["momentum_buffer"]))
    bufs.clear()                                  # the list is a copy
    assert len(opt.state_arrays()["momentum_buffer"]) == 2
    assert optim.SGD(params, lr=0.1).state_arrays() == {"momentum_buffer": [None, None]}


def test_sgd_first_step_flag():
    p = layers.Parameter(np.zeros(1))
    opt = optim.SGD([p], lr=1.0, momentum=0.5)
    assert opt.first_step is True
    p.grad[...] = 1.0
    opt.step()                                    # buf = g = 1
    assert opt.first_step is False
    opt.step()                                    # buf = 0.5 * 1 + 1
    assert opt.state_arrays()["momentum_buffer"][0][0] == 1.5
    opt.first_step = True                         # restart the momentum
    opt.step()                                    # buf = g again
    assert opt.state_arrays()["momentum_buffer"][0][0] == 1.0 and not opt.first_step
    opt.first_step = 0
    assert opt.first_step is False


def test_adam_state_arrays():
    params = _params()
    opt = optim.Adam(params, lr=0.1)
    state = opt.state_arrays()
    assert list(state) == ["exp_avg", "exp_avg_sq"]
    for name in state:
        assert [(a.shape, a.dtype) for a in state[name]] == [(p.shape, p.dtype) for p in params]
    for p in params:
        p.grad[...] = 3.0
    opt.step()
    assert opt.t == 1
    m, v = state["exp_avg"][0], state["exp_avg_sq"][0]
    np.testing.assert_allclose(m, 0.1 * 3.0)
    np.testing.assert_allclose(v, 0.001 * 9.0)
    assert optim.Optimizer(params).state_arrays() == {}


# -- loss options ----------------------------------------------------------------

def test_loss_options_are_read_only_views():
    huber = losses.HuberLoss(0.5, reduction="sum")
    opts = huber.options
    assert isinstance(opts, types.MappingProxyType) and dict(opts) == {"delta": 0.5}
    with pytest.raises(TypeError):
        opts["delta"] = 2.0
    assert dict(losses.MSELoss().options) == {}
    assert dict(losses.KLDivLoss(log_target=True).options) == {"log_target": True}
    w = np.ones(3)
    assert losses.BCEWithLogitsLoss(weight=w).options["weight"] is w


# -- data.batches ------------------------------------------------------------------

def test_batches_default_is_reproducible():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    runs = [[yb.tolist() for _, yb in data.batches(X, y, 4)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0] == [yb.tolist() for _, yb in data.batches(X, y, 4, rng=data.DEFAULT_SEED)]
    assert sorted(sum(runs[0], [])) == list(range(10))
    assert sum(runs[0], []) != list(range(10))    # still shuffled
    # one generator across epochs: a new order per epoch, the same run each time
    def epochs():
        gen = np.random.default_rng(1)
        return [[yb.tolist() for _, yb in data.batches(X, y, 4, rng=gen)] for _ in range(3)]
    first = epochs()
    assert first == epochs() and first[0] != first[1]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n,batch_size", [(10, 3), (9, 3), (2, 3), (0, 3)])
def test_batches_drop_last(shuffle, n, batch_size):
    X = np.arange(2 * n).reshape(n, 2)
    y = np.arange(n)
    got = list(data.batches(X, y, batch_size, shuffle=shuffle, drop_last=True))
    assert len(got) == n // batch_size
    assert all(len(xb) == len(yb) == batch_size for xb, yb in got)
    for xb, yb in got:
        np.testing.assert_array_equal(xb, X[yb])   # rows stay paired
    kept = list(data.batches(X, y, batch_size, shuffle=shuffle))
    assert sum(len(yb) for _, yb in kept) == n
    # drop_last leaves out exactly the last, short batch of the same order
    assert [yb.tolist() for _, yb in got] == [yb.tolist() for _, yb in kept
                                             if len(yb) == batch_size]


def test_batches_draw_the_permutation_at_the_call():
    gen = np.random.default_rng(0)
    it = data.batches(np.arange(5), np.arange(5), 2, rng=gen)
    after = gen.random()
    assert after == (lambda g: (g.permutation(5), g.random())[1])(np.random.default_rng(0))
    assert len(list(it)) == 3
