"""fastdl.compile_step: one compiled call per training step.

The compiled step must do exactly what the layer API does (forward, loss,
backward, optimizer update) on the same arrays: every test runs it next to
the layer-API step on a deep copy and compares losses, parameters,
gradients and optimizer state after several steps.  A wrong gradient, a
missed bias, a wrong Adam bias correction or SGD's first-step rule would
all show up here.  Each configuration compiles once per dtype and loss
(the kernel is shared by depths and optimizers), so the file stays fast.
"""

import copy
import itertools
import tracemalloc

import numpy as np
import pytest

import fastdl
from fastdl import layers, losses, optim

pytest.importorskip("numba")
pytest.importorskip("scipy")

try:
    compile_step = fastdl.compile_step
except AttributeError:  # until fastdl/__init__.py exports it
    from fastdl._compiled_step import compile_step

# float64 agrees to rounding; float32 to a few ulps per element, compounded
# over a few steps (different BLAS builds round GEMMs differently).
TOL = {np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
       np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-13}}

ACT = {"relu": layers.ReLU, "leaky": lambda: layers.LeakyReLU(0.2), "tanh": layers.Tanh,
       "sigmoid": layers.Sigmoid, "elu": lambda: layers.ELU(0.7), "silu": layers.SiLU,
       # threshold 1: beta * x > threshold (the identity branch) is taken
       # for a good share of the pre-activations, as is the other branch.
       "softplus": lambda: layers.Softplus(beta=1.5, threshold=1.0)}


def _model(dtype, widths, acts, *, seed=0, bias=True):
    parts = []
    for i, (d, h) in enumerate(itertools.pairwise(widths)):
        use_bias = bias if isinstance(bias, bool) else bias[i]
        parts.append(layers.Affine(d, h, bias=use_bias, dtype=dtype, rng=seed + i))
        if i < len(acts):
            parts.append(ACT[acts[i]]())
    return layers.Sequential(*parts)


def _python_step(model, crit, opt, x, y):
    loss = crit.forward(model.forward(x), y)
    model.backward(crit.backward(), input_grad=False)
    opt.step()
    return float(loss)


def _assert_same_state(a, b, dtype):
    """Parameters, gradients and optimizer state of two (model, opt) pairs agree."""
    (model_a, opt_a), (model_b, opt_b) = a, b
    tol = TOL[np.dtype(dtype)]
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        np.testing.assert_allclose(p.value, q.value, **tol, err_msg=f"{p!r} value")
        np.testing.assert_allclose(p.grad, q.grad, **tol, err_msg=f"{p!r} grad")
    if isinstance(opt_a, optim.Adam):
        assert opt_a.t == opt_b.t
        for s, r in zip(opt_a._m + opt_a._v, opt_b._m + opt_b._v):
            np.testing.assert_allclose(s, r, **tol)
    else:
        assert opt_a._first == opt_b._first
        for s, r in zip(opt_a._buf, opt_b._buf):
            if s is None:
                assert r is None
            else:
                np.testing.assert_allclose(s, r, **tol)


def _batches(dtype, n_in, n_out, kind, sizes, rng, ignored=0, ignore_index=-100):
    out = []
    for n in sizes:
        x = rng.normal(size=(n, n_in)).astype(dtype)
        if kind == "ce":
            y = rng.integers(0, n_out, n)
            y[rng.permutation(n)[:min(ignored, n)]] = ignore_index
        elif kind == "bce":
            y = rng.random(size=(n, n_out)).astype(dtype)  # probabilities
        else:
            y = rng.normal(size=(n, n_out)).astype(dtype)
        out.append((x, y))
    return out


# (id, dtype, widths, activations, criterion, optimizer, ignored rows per batch, bias)
CASES = [
    ("f32-relu-ce-mean-adam", np.float32, (12, 16, 5), ["relu"],
     lambda: losses.CrossEntropyLoss(), lambda p: optim.Adam(p, lr=0.01), 0, True),
    ("f64-relu-ce-mean-adam-wd", np.float64, (12, 16, 5), ["relu"],
     lambda: losses.CrossEntropyLoss(), lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1,
                                                              betas=(0.8, 0.99), eps=1e-6),
     0, True),
    ("f64-deep-ce-sum-nesterov-wd", np.float64, (12, 16, 9, 7, 5),
     ["relu", "tanh", "sigmoid"], lambda: losses.CrossEntropyLoss(reduction="sum"),
     lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), 0, True),
    ("f64-leaky-ce-mean-ignored-sgd", np.float64, (12, 16, 5), ["leaky"],
     lambda: losses.CrossEntropyLoss(ignore_index=3), lambda p: optim.SGD(p, lr=0.1), 3, True),
    ("f32-deep-ce-sum-ignored-sgd-wd", np.float32, (12, 16, 9, 7, 5),
     ["leaky", "sigmoid", "tanh"], lambda: losses.CrossEntropyLoss(reduction="sum"),
     lambda p: optim.SGD(p, lr=0.05, weight_decay=0.05), 2, True),
    ("f32-deep-mse-mean-momentum", np.float32, (12, 16, 9, 7, 3),
     ["tanh", "leaky", "relu"], lambda: losses.MSELoss(),
     lambda p: optim.SGD(p, lr=0.05, momentum=0.5), 0, True),
    ("f64-mse-sum-adam-nobias", np.float64, (12, 16, 3), ["sigmoid"],
     lambda: losses.MSELoss(reduction="sum"), lambda p: optim.Adam(p, lr=0.01), 0,
     (False, True)),
    ("f64-ce-weight-smoothing-ignored-adam", np.float64, (12, 16, 5), ["relu"],
     lambda: losses.CrossEntropyLoss(weight=np.linspace(0.5, 2.0, 5), label_smoothing=0.1),
     lambda p: optim.Adam(p, lr=0.01), 2, True),
    ("f32-ce-sum-weight-smoothing-momentum", np.float32, (12, 16, 5), ["tanh"],
     lambda: losses.CrossEntropyLoss(weight=np.linspace(2.0, 0.5, 5).astype(np.float32),
                                     label_smoothing=0.2, reduction="sum"),
     lambda p: optim.SGD(p, lr=0.02, momentum=0.9), 0, True),
    ("f64-single-affine-ce-adam", np.float64, (12, 5), [],
     lambda: losses.CrossEntropyLoss(), lambda p: optim.Adam(p, lr=0.01), 0, True),
    ("f32-mse-sigmoid-out-sgd", np.float32, (12, 16, 3), ["relu", "sigmoid"],
     lambda: losses.MSELoss(), lambda p: optim.SGD(p, lr=0.5), 0, True),
    ("f32-elu-silu-softplus-ce-mean-adam", np.float32, (12, 16, 9, 7, 5),
     ["elu", "silu", "softplus"], lambda: losses.CrossEntropyLoss(),
     lambda p: optim.Adam(p, lr=0.01), 0, True),
    ("f64-softplus-elu-silu-ce-sum-momentum", np.float64, (12, 16, 9, 7, 5),
     ["softplus", "elu", "silu"], lambda: losses.CrossEntropyLoss(reduction="sum"),
     lambda p: optim.SGD(p, lr=0.02, momentum=0.9), 0, True),
    ("f32-l1-mean-adam", np.float32, (12, 16, 3), ["elu"],
     lambda: losses.L1Loss(), lambda p: optim.Adam(p, lr=0.01), 0, True),
    ("f64-l1-sum-nesterov", np.float64, (12, 16, 9, 3), ["silu", "relu"],
     lambda: losses.L1Loss(reduction="sum"),
     lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True), 0, True),
    ("f64-huber-mean-adam", np.float64, (12, 16, 3), ["softplus"],
     lambda: losses.HuberLoss(delta=0.5), lambda p: optim.Adam(p, lr=0.01), 0, True),
    ("f32-huber-sum-sgd-wd", np.float32, (12, 16, 9, 3), ["tanh", "elu"],
     lambda: losses.HuberLoss(delta=1.5, reduction="sum"),
     lambda p: optim.SGD(p, lr=0.02, weight_decay=0.01), 0, True),
    ("f32-bce-mean-momentum", np.float32, (12, 16, 4), ["silu"],
     lambda: losses.BCEWithLogitsLoss(), lambda p: optim.SGD(p, lr=0.1, momentum=0.5), 0,
     True),
    ("f64-bce-sum-adam-nobias", np.float64, (12, 16, 9, 4), ["leaky", "softplus"],
     lambda: losses.BCEWithLogitsLoss(reduction="sum"), lambda p: optim.Adam(p, lr=0.01), 0,
     (True, False, True)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_layer_api(case):
    _, dtype, widths, acts, make_crit, make_opt, ignored, bias = case
    rng = np.random.default_rng(7)
    model = _model(dtype, widths, acts, bias=bias)
    crit = make_crit()
    opt = make_opt(model.parameters())
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    kind = ("ce" if isinstance(crit, losses.CrossEntropyLoss)
            else "bce" if isinstance(crit, losses.BCEWithLogitsLoss) else "regression")
    ignore_index = getattr(crit, "ignore_index", -100)
    # Full batches, then a last partial batch (its own buffers), then full again.
    batches = _batches(dtype, widths[0], widths[-1], kind, (8, 8, 8, 5, 8), rng, ignored,
                       ignore_index)
    for x, y in batches:
        loss = step(x, y)
        ref_loss = _python_step(ref_model, ref_crit, ref_opt, x, y)
        assert type(loss) is np.dtype(dtype).type
        np.testing.assert_allclose(loss, ref_loss, **TOL[np.dtype(dtype)])
        _assert_same_state((model, opt), (ref_model, ref_opt), dtype)
    # The step really trained something (the comparison is not vacuous).
    assert not np.array_equal(model.parameters()[0].value,
                              copy.deepcopy(_model(dtype, widths, acts, bias=bias))
                              .parameters()[0].value)


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.Adam(p, lr=0.01, weight_decay=0.01),
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
], ids=["adam", "sgd-momentum"])
def test_mixing_compiled_and_python_steps(make_opt):
    rng = np.random.default_rng(3)
    model = _model(np.float64, (12, 16, 5), ["relu"])
    crit = losses.CrossEntropyLoss()
    opt = make_opt(model.parameters())
    ref = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    batches = _batches(np.float64, 12, 5, "ce", (8,) * 6, rng)
    for i, (x, y) in enumerate(batches):
        # compiled, compiled, python, compiled, python, python
        if i in (0, 1, 3):
            step(x, y)
        else:
            _python_step(model, crit, opt, x, y)
        _python_step(*ref, x, y)
    _assert_same_state((model, opt), (ref[0], ref[2]), np.float64)


def test_learning_rate_schedule_is_read_every_call():
    rng = np.random.default_rng(4)
    model = _model(np.float64, (12, 16, 5), ["tanh"])
    crit = losses.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=0.01)
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    for i, (x, y) in enumerate(_batches(np.float64, 12, 5, "ce", (8,) * 4, rng)):
        opt.lr = ref_opt.lr = 0.01 / (i + 1)
        opt.betas = ref_opt.betas = (0.9, 0.99 if i % 2 else 0.999)
        step(x, y)
        _python_step(ref_model, ref_crit, ref_opt, x, y)
    _assert_same_state((model, opt), (ref_model, ref_opt), np.float64)


def test_all_ignored_batch_matches_layer_api():
    model = _model(np.float64, (12, 16, 5), ["relu"])
    crit = losses.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    x = np.random.default_rng(5).normal(size=(4, 12))
    y = np.full(4, -100)
    loss = step(x, y)
    ref_loss = _python_step(ref_model, ref_crit, ref_opt, x, y)
    assert np.isnan(loss) and np.isnan(ref_loss)
    for p in model.parameters():
        assert not p.grad.any()
    _assert_same_state((model, opt), (ref_model, ref_opt), np.float64)


def test_accepts_lists_fortran_order_other_int_labels_and_read_only():
    rng = np.random.default_rng(6)
    model = _model(np.float64, (12, 16, 5), ["relu"])
    crit = losses.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1)
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    x = rng.normal(size=(8, 12))
    y = rng.integers(0, 5, 8)
    x_ro, y_ro = x.copy(), y.copy()
    x_ro.flags.writeable = y_ro.flags.writeable = False
    inputs = [(np.asfortranarray(x), y.astype(np.int32)), (x.tolist(), y.tolist()),
              (x_ro, y_ro), (x.astype(">f8"), y.astype(np.uint8))]
    for xi, yi in inputs:
        step(xi, yi)
        _python_step(ref_model, ref_crit, ref_opt, x, y)
    _assert_same_state((model, opt), (ref_model, ref_opt), np.float64)


def test_replaced_parameter_array_is_picked_up():
    rng = np.random.default_rng(8)
    model = _model(np.float64, (12, 16, 5), ["relu"])
    crit = losses.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1)
    step = compile_step(model, crit, opt)
    x, y = _batches(np.float64, 12, 5, "ce", (8,), rng)[0]
    step(x, y)
    # A user loading weights assigns new arrays; the step must use them.
    new = np.zeros_like(model[0].W.value)
    model[0].W.value = new
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step(x, y)
    _python_step(ref_model, ref_crit, ref_opt, x, y)
    assert new.any()  # updated in place
    _assert_same_state((model, opt), (ref_model, ref_opt), np.float64)


def test_steady_state_step_allocates_nothing():
    rng = np.random.default_rng(9)
    model = _model(np.float32, (64, 128, 10), ["relu"])
    step = compile_step(model, losses.CrossEntropyLoss(),
                        optim.Adam(model.parameters(), lr=1e-3))
    x, y = _batches(np.float32, 64, 10, "ce", (64,), rng)[0]
    step(x, y)
    step(x, y)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(5):
            step(x, y)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    # One activation buffer is 64 * 128 * 4 = 32 KiB; nothing near that.
    assert grown < 4096


def test_matches_torch_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    model = _model(np.float64, (12, 16, 5), ["relu"])
    opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    step = compile_step(model, losses.CrossEntropyLoss(), opt)
    tmodel = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(),
                                 torch.nn.Linear(16, 5)).double()
    with torch.no_grad():
        for lin, aff in ((tmodel[0], model[0]), (tmodel[2], model[2])):
            lin.weight.copy_(torch.from_numpy(aff.W.value))
            lin.bias.copy_(torch.from_numpy(aff.b.value))
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01, weight_decay=0.01)
    for x, y in _batches(np.float64, 12, 5, "ce", (8, 8, 8), rng):
        loss = step(x, y)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                  torch.from_numpy(y))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss, tloss.item(), rtol=1e-10)
    for lin, aff in ((tmodel[0], model[0]), (tmodel[2], model[2])):
        np.testing.assert_allclose(aff.W.value, lin.weight.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(aff.b.value, lin.bias.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(aff.W.grad, lin.weight.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def _setup(dtype=np.float64, crit=None, opt="sgd"):
    model = _model(dtype, (12, 16, 5), ["relu"])
    crit = crit or losses.CrossEntropyLoss()
    if opt == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = optim.Adam(model.parameters())
    return model, crit, opt


class _MyReLU(layers.ReLU):
    pass


class _MySoftplus(layers.Softplus):
    pass


class _Square(layers.Layer):
    def forward(self, x):
        self._x = x
        return x * x

    def backward(self, dy):
        return 2 * self._x * dy


@pytest.mark.parametrize("layer", [_Square(), _MyReLU(), _MySoftplus()],
                         ids=["custom-layer", "ReLU-subclass", "Softplus-subclass"])
def test_unsupported_layer_raises_type_error(layer):
    model = layers.Sequential(layers.Affine(4, 3, dtype=np.float64), layer,
                              layers.Affine(3, 2, dtype=np.float64))
    with pytest.raises(TypeError, match="layer API") as info:
        compile_step(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    assert type(layer).__name__ in str(info.value)


@pytest.mark.parametrize("layer, exc, match", [
    (layers.LeakyReLU(float("nan")), ValueError, "negative_slope"),
    (layers.ELU(float("inf")), ValueError, "alpha"),
    (layers.ELU("big"), TypeError, "alpha"),
    (layers.Softplus(beta=0.0), ValueError, "beta"),
    (layers.Softplus(threshold=float("nan")), ValueError, "threshold"),
])
def test_bad_activation_options(layer, exc, match):
    model = layers.Sequential(layers.Affine(4, 3, dtype=np.float64), layer,
                              layers.Affine(3, 2, dtype=np.float64))
    with pytest.raises(exc, match=match):
        compile_step(model, losses.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize("crit, exc, match", [
    (losses.LogCoshLoss(), TypeError, "LogCoshLoss"),
    (losses.KLDivLoss(), TypeError, "KLDivLoss"),
    (losses.BCEWithLogitsLoss(weight=np.ones(5)), ValueError, "weight"),
    (losses.BCEWithLogitsLoss(pos_weight=np.ones(5)), ValueError, "pos_weight"),
    (losses.BCEWithLogitsLoss(reduction="none"), ValueError, "reduction"),
    (losses.L1Loss(reduction="none"), ValueError, "reduction"),
    (losses.HuberLoss(reduction="none"), ValueError, "reduction"),
    (losses.HuberLoss(delta=0.0), ValueError, "delta"),
    (losses.HuberLoss(delta=float("nan")), ValueError, "delta"),
    (losses.CrossEntropyLoss(weight=np.ones(7)), ValueError, "weight has shape"),
    (losses.CrossEntropyLoss(weight=np.ones(3, np.int64)), TypeError, "weight has dtype"),
    (losses.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (losses.CrossEntropyLoss(reduction="none"), ValueError, "reduction"),
    (losses.MSELoss(reduction="none"), ValueError, "reduction"),
])
def test_unsupported_criterion(crit, exc, match):
    model, _, opt = _setup()
    with pytest.raises(exc, match=match):
        compile_step(model, crit, opt)


def test_unsupported_optimizer_and_foreign_parameters():
    model, crit, _ = _setup()

    class MySGD(optim.SGD):
        pass

    with pytest.raises(TypeError, match="MySGD"):
        compile_step(model, crit, MySGD(model.parameters(), lr=0.1))
    other = _model(np.float64, (12, 16, 5), ["relu"], seed=5)
    with pytest.raises(ValueError, match="exactly the model's parameters"):
        compile_step(model, crit, optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="exactly the model's parameters"):
        compile_step(model, crit, optim.SGD(model.parameters()[::-1], lr=0.1))
    with pytest.raises(ValueError, match="exactly the model's parameters"):
        compile_step(model, crit, optim.SGD(model.parameters()[:2], lr=0.1))


def test_bad_models():
    crit = losses.CrossEntropyLoss()
    mixed = layers.Sequential(layers.Affine(4, 3, dtype=np.float32), layers.ReLU(),
                              layers.Affine(3, 2, dtype=np.float64))
    with pytest.raises(TypeError, match="dtype"):
        compile_step(mixed, crit, optim.SGD(mixed.parameters(), lr=0.1))
    sizes = layers.Sequential(layers.Affine(4, 3), layers.Affine(5, 2))
    with pytest.raises(ValueError, match="features"):
        compile_step(sizes, crit, optim.SGD(sizes.parameters(), lr=0.1))
    shared = layers.Affine(4, 4)
    twice = layers.Sequential(shared, layers.ReLU(), shared)
    with pytest.raises(ValueError, match="twice"):
        compile_step(twice, crit, optim.SGD(twice.parameters(), lr=0.1))
    with pytest.raises(TypeError, match="Sequential or Affine"):
        compile_step(layers.ReLU(), crit, optim.SGD(shared.parameters(), lr=0.1))


def _snapshot(model, opt):
    state = [p.value.copy() for p in model.parameters()] + [p.grad.copy()
                                                           for p in model.parameters()]
    if isinstance(opt, optim.Adam):
        return state + [m.copy() for m in opt._m + opt._v], opt.t
    return state + [b.copy() for b in opt._buf], opt._first


def _assert_unchanged(model, opt, snap):
    arrays, counter = _snapshot(model, opt)
    for a, b in zip(arrays, snap[0]):
        np.testing.assert_array_equal(a, b)
    assert counter == snap[1]


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_rejected_calls_change_nothing(opt_name):
    model, crit, opt = _setup(opt=opt_name)
    step = compile_step(model, crit, opt)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 12))
    y = rng.integers(0, 5, 8)
    snap = _snapshot(model, opt)
    bad = y.copy()
    bad[6] = 5
    with pytest.raises(IndexError, match=r"target 5 \(row 6\)"):
        step(x, bad)
    bad[6] = -1
    with pytest.raises(IndexError, match=r"target -1 \(row 6\)"):
        step(x, bad)
    with pytest.raises(IndexError, match=r"target 18446744073709551615 \(row 6\)"):
        step(x, bad.astype(np.uint64))
    with pytest.raises(TypeError, match="float32"):
        step(x.astype(np.float32), y)
    with pytest.raises(TypeError, match="dtype"):
        step(x.astype(np.int64), y)
    with pytest.raises(ValueError, match="shape"):
        step(x[:, :11], y)
    with pytest.raises(ValueError, match="shape"):
        step(x[0], y)
    with pytest.raises(ValueError, match="shape"):
        step(x, y[:7])
    with pytest.raises(ValueError, match="shape"):
        step(x, y.reshape(8, 1))
    with pytest.raises(TypeError, match="integer class indices"):
        step(x, y.astype(np.float64))
    with pytest.raises(ValueError, match="empty"):
        step(x[:0], y[:0])
    opt.lr = -1.0
    with pytest.raises(ValueError, match="lr"):
        step(x, y)
    _assert_unchanged(model, opt, snap)
    opt.lr = 0.1
    step(x, y)  # and the step still works afterwards
    assert not np.array_equal(model.parameters()[0].value, snap[0][0])


def test_mse_target_errors():
    model, crit, opt = _setup(crit=losses.MSELoss())
    step = compile_step(model, crit, opt)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(8, 12))
    snap = _snapshot(model, opt)
    with pytest.raises(ValueError, match="shape"):
        step(x, rng.normal(size=(8, 4)))
    with pytest.raises(ValueError, match="shape"):
        step(x, rng.normal(size=8 * 5))
    with pytest.raises(TypeError, match="dtype"):
        step(x, rng.normal(size=(8, 5)).astype(np.float32))
    _assert_unchanged(model, opt, snap)


def test_pointwise_loss_options_are_read_every_call():
    """Huber's delta changed between steps is used; a pos_weight set later is
    rejected before anything is written (the layer API reads both at each forward)."""
    rng = np.random.default_rng(14)
    model = _model(np.float64, (12, 16, 5), ["elu"])
    crit = losses.HuberLoss(delta=1.0)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    for i, (x, y) in enumerate(_batches(np.float64, 12, 5, "regression", (8,) * 3, rng)):
        crit._options["delta"] = ref_crit._options["delta"] = 0.25 * (i + 1)
        np.testing.assert_allclose(step(x, y), _python_step(ref_model, ref_crit, ref_opt, x, y),
                                   rtol=1e-12)
    _assert_same_state((model, opt), (ref_model, ref_opt), np.float64)
    crit._options["delta"] = -1.0
    with pytest.raises(ValueError, match="delta"):
        step(x, y)

    bce = losses.BCEWithLogitsLoss()
    step = compile_step(model, bce, opt)
    snap = _snapshot(model, opt)
    bce._options["pos_weight"] = np.ones(5)
    with pytest.raises(ValueError, match="pos_weight"):
        step(x, rng.random((8, 5)))
    _assert_unchanged(model, opt, snap)


def test_compile_step_docstring_parameters_match_signature():
    import inspect

    from test_docstrings import documented_parameters

    names = list(inspect.signature(compile_step).parameters)
    assert documented_parameters(inspect.getdoc(compile_step)) == names


_FALLBACK_SCRIPT = r"""
import copy, sys
import numpy as np
import fastdl._compiled_step as cs
import fastdl.backends.numba.step as compiled
from fastdl import layers, losses, optim

compiled._find_numpy_cblas = lambda: None    # as where NumPy's BLAS is not reachable
blocked = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "scipy"}
sys.modules["scipy"] = None                  # and SciPy is missing
net = layers.Sequential(layers.Affine(6, 8, dtype=np.float64, rng=0), layers.Tanh(),
                        layers.Affine(8, 3, dtype=np.float64, rng=1))
try:
    cs.compile_step(net, losses.CrossEntropyLoss(), optim.SGD(net.parameters(), lr=0.1))
except ImportError as exc:
    assert "SciPy" in str(exc), exc
else:
    raise AssertionError("no ImportError without SciPy")
del sys.modules["scipy"]
sys.modules.update(blocked)

opt = optim.Adam(net.parameters(), lr=0.01)
crit = losses.CrossEntropyLoss()
ref_net, ref_crit, ref_opt = copy.deepcopy((net, crit, opt))
step = cs.compile_step(net, crit, opt)
assert cs.gemm_blas == "scipy", cs.gemm_blas
rng = np.random.default_rng(0)
for n in (5, 5, 2):
    x = rng.normal(size=(n, 6))
    y = rng.integers(0, 3, n)
    loss = step(x, y)
    ref = ref_crit.forward(ref_net.forward(x), y)
    ref_net.backward(ref_crit.backward(), input_grad=False)
    ref_opt.step()
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
for p, q in zip(net.parameters(), ref_net.parameters()):
    np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, atol=1e-13)
print("ok")
"""


def test_scipy_blas_fallback_and_import_error():
    """Without NumPy's BLAS: ImportError naming SciPy if it is missing, else
    Numba's np.dot (SciPy's BLAS) with the same results.  In a subprocess:
    the BLAS choice is made once per process."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_gemm_blas_is_reported():
    from fastdl import _compiled_step

    model, crit, opt = _setup()
    compile_step(model, crit, opt)
    assert _compiled_step.gemm_blas in ("numpy", "scipy")


def test_aliased_parameter_arrays_are_rejected():
    model, crit, opt = _setup()
    model[0].W.grad = model[0].W.value  # a gradient written over its parameter
    with pytest.raises(ValueError, match="share memory"):
        compile_step(model, crit, opt)


def test_nested_sequential_and_no_bias_first_layer():
    rng = np.random.default_rng(13)
    inner = layers.Sequential(layers.Affine(12, 16, bias=False, dtype=np.float64, rng=0),
                              layers.LeakyReLU(0.05))
    model = layers.Sequential(inner, layers.Affine(16, 5, dtype=np.float64, rng=1))
    crit = losses.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    for x, y in _batches(np.float64, 12, 5, "ce", (8, 8, 3), rng):
        np.testing.assert_allclose(step(x, y), _python_step(ref_model, ref_crit, ref_opt, x, y),
                                   rtol=1e-12)
    _assert_same_state((model, opt), (ref_model, ref_opt), np.float64)


def test_cross_entropy_options_changed_between_steps_are_used():
    """Class weights and label smoothing set after compile_step take effect
    (checked again when they change), matching the layer API."""
    import copy

    model, crit, opt = _setup()
    ref_model, ref_crit, ref_opt = copy.deepcopy((model, crit, opt))
    step = compile_step(model, crit, opt)
    rng = np.random.default_rng(3)
    for k in range(3):
        if k == 1:
            for c in (crit, ref_crit):
                c.weight = np.linspace(0.5, 2.0, 5)
                c.label_smoothing = 0.25
        x = rng.normal(size=(6, 12))
        y = rng.integers(0, 5, 6)
        loss = step(x, y)
        ref = ref_crit.forward(ref_model.forward(x), y)
        ref_model.backward(ref_crit.backward(), input_grad=False)
        ref_opt.step()
        np.testing.assert_allclose(loss, ref, rtol=1e-12)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-11, atol=1e-13)
    crit.weight = np.ones(4)
    with pytest.raises(ValueError, match="weight has shape"):
        step(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_type_is_the_criterions(dtype):
    """compile_step returns what the criterion returns: a NumPy scalar of the model's dtype."""
    for crit, y in ((losses.CrossEntropyLoss(), np.array([0, 4, 1])),
                    (losses.MSELoss(), np.zeros((3, 5), dtype))):
        model, _, opt = _setup(dtype, crit)
        x = np.ones((3, 12), dtype)
        expected = crit.forward(model.forward(x), y)
        loss = compile_step(model, crit, opt)(x, y)
        assert type(loss) is type(expected) is np.dtype(dtype).type
        assert loss == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_cross_entropy_head(dtype):
    """A LinearCrossEntropyLoss head trains in compile_step as in the layer API."""
    import copy

    rng = np.random.default_rng(5)
    body = _model(dtype, (12, 16), ["tanh"])
    head = losses.LinearCrossEntropyLoss(16, 7, dtype=dtype, rng=3,
                                         weight=np.linspace(0.5, 2, 7).astype(dtype),
                                         label_smoothing=0.1, ignore_index=2)
    opt = optim.Adam(body.parameters() + head.parameters(), lr=0.01)
    ref = copy.deepcopy((body, head, opt))
    step = compile_step(body, head, opt)
    tol = 1e-5 if dtype == np.float32 else 1e-11
    for _ in range(3):
        x = rng.normal(size=(9, 12)).astype(dtype)
        y = rng.integers(0, 7, 9)
        loss = step(x, y)
        rb, rh, ro = ref
        expected = rh.forward(rb.forward(x), y)
        rb.backward(rh.backward(), input_grad=False)
        ro.step()
        assert type(loss) is type(expected)
        np.testing.assert_allclose(loss, expected, rtol=tol)
    for p, q in zip(body.parameters() + head.parameters(),
                    ref[0].parameters() + ref[1].parameters()):
        np.testing.assert_allclose(p.value, q.value, rtol=tol, atol=tol)
        np.testing.assert_allclose(p.grad, q.grad, rtol=tol, atol=tol)


def test_linear_cross_entropy_head_limits():
    body = _model(np.float32, (12, 16), ["relu"])
    head = losses.LinearCrossEntropyLoss(16, 5, chunk_size=8)
    opt = optim.SGD(body.parameters() + head.parameters(), lr=0.1)
    step = compile_step(body, head, opt)
    step(np.ones((8, 12), np.float32), np.zeros(8, np.int64))
    with pytest.raises(ValueError, match="budget of 8 rows"):
        step(np.ones((9, 12), np.float32), np.zeros(9, np.int64))
    with pytest.raises(ValueError, match="criterion.parameters"):
        compile_step(body, head, optim.SGD(body.parameters(), lr=0.1))
    for kw in ({"z_loss": 1e-4}, {"softcap": 30.0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            compile_step(body, losses.LinearCrossEntropyLoss(16, 5, **kw), opt)
