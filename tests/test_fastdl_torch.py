"""fastdl.torch: values and gradients against torch.nn.functional, autograd,
opcheck, errors and zero-copy.  Skipped without torch (CI installs it and sets
FASTDL_REQUIRE_ORACLES=torch, so a missing torch fails there).

Compile, training and DDP runs are in test_fastdl_torch_training.py.
"""

import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import _ops

torch = pytest.importorskip("torch")

import fastdl.torch as ft  # noqa: E402
from fastdl.torch import _bridge  # noqa: E402
from fastdl.torch import functional as FT  # noqa: E402
from fastdl.torch import nn as fnn  # noqa: E402

F = torch.nn.functional
DTYPES = (torch.float32, torch.float64)
TOL = {torch.float32: dict(rtol=3e-5, atol=3e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}

ACTIVATIONS = _ops.of_kind("activation")
LOSSES = _ops.of_kind("pointwise_loss")
REDUCTIONS = ("mean", "sum", "none")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(20261122)


def _close(actual, expected, dtype, scale=1.0):
    tol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=tol["rtol"] * scale,
                               atol=tol["atol"] * scale, equal_nan=True)


def _leaves(tensors, grad):
    """Fresh leaf copies; ``grad[i]``: whether the i-th requires grad."""
    return [None if t is None else t.detach().clone().requires_grad_(bool(g))
            for t, g in zip(tensors, grad)]


def _compare(ours, theirs, tensors, grad, gen, scale=1.0):
    """Same value and same gradients (for a random grad_output) as the reference."""
    a, b = _leaves(tensors, grad), _leaves(tensors, grad)
    ya, yb = ours(*a), theirs(*b)
    dtype = ya.dtype
    assert ya.dtype == yb.dtype and ya.shape == yb.shape
    _close(ya, yb, dtype, scale)
    if not any(grad):
        return
    g = torch.randn(yb.shape, dtype=dtype, generator=gen)
    ya.backward(g)
    yb.backward(g)
    for ta, tb, want in zip(a, b, grad):
        if want:
            _close(ta.grad, tb.grad, dtype, scale)


def test_import_fastdl_does_not_import_torch():
    code = "import sys, fastdl; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_every_table_op_has_a_function():
    for op in ACTIVATIONS + LOSSES:
        name = op.torch or op.name
        assert name in ft.__all__ and callable(getattr(ft, name)), name
        twin = _ops.torch_function(op, torch)
        if twin is not None:
            assert twin.__name__ == name or getattr(F, name) is twin


# ---------------------------------------------------------------------------
# cross-entropy
# ---------------------------------------------------------------------------

# The cases of the NumPy-level parity tests ("eps": label smoothing).
from test_torch_parity import CE_CASES  # noqa: E402


def _ce_inputs(case, shape, dtype, gen):
    C = shape[1] if len(shape) > 1 else shape[0]
    x = 3 * torch.randn(shape, dtype=dtype, generator=gen)
    if case.get("prob"):
        target = torch.softmax(torch.randn(shape, dtype=dtype, generator=gen),
                               1 if len(shape) > 1 else 0)
    else:
        tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
        target = torch.randint(0, C, tshape, generator=gen)
        if case.get("ignore") and target.ndim:
            target.view(-1)[::3] = case.get("ignore_index", -100)
    weight = torch.rand(C, dtype=dtype, generator=gen) + 0.5 if case.get("weight") else None
    kw = dict(ignore_index=case.get("ignore_index", -100), label_smoothing=case.get("eps", 0.0))
    return x, target, weight, kw


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(c) or "plain")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(16, 7), (7,), (4, 5, 3, 2)], ids=["2d", "1d", "kdim"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cross_entropy_matches_torch(case, reduction, shape, dtype, gen):
    x, target, weight, kw = _ce_inputs(case, shape, dtype, gen)
    kw["reduction"] = reduction
    _compare(lambda x: ft.cross_entropy(x, target, weight, **kw),
             lambda x: F.cross_entropy(x, target, weight, **kw), [x], [True], gen)
    with torch.no_grad():  # the forward-only path
        _close(ft.cross_entropy(x, target, weight, **kw),
               F.cross_entropy(x, target, weight, **kw), dtype)


@pytest.mark.parametrize("case", [dict(), dict(weight=True, ignore=True, eps=0.1),
                                  dict(prob=True, weight=True)], ids=["plain", "options", "prob"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_entry_points_agree(case, reduction, gen):
    """Fused (with_grad), recomputing (forward + backward op) and dispatcher paths."""
    dtype = torch.float64
    x, target, weight, kw = _ce_inputs(case, (9, 6), dtype, gen)
    ops = FT.LOSS_OPS["cross_entropy"]
    args = (target, weight, kw["ignore_index"], reduction, kw["label_smoothing"])
    ref = lambda x: F.cross_entropy(x, target, weight, reduction=reduction, **kw)  # noqa: E731
    for path in (lambda x: ft.cross_entropy(x, *args[:2], ignore_index=args[2],
                                            reduction=reduction, label_smoothing=args[4]),
                 lambda x: ops.forward(x, *args),
                 lambda x: ops.forward.custom_op(x, *args),
                 lambda x: ops.with_grad.custom_op(x, *args)[0],
                 lambda x: torch.ops.fastdl.cross_entropy(x, *args)):
        _compare(path, ref, [x], [True], gen)


@pytest.mark.parametrize("loss_of", [
    lambda x, t: ft.cross_entropy(x, t),
    lambda x, t: ft.linear_cross_entropy(x, torch.eye(5, dtype=x.dtype), t)])
def test_saved_gradient_survives_repeated_backward(loss_of, gen):
    """``loss.backward()`` hands the kept gradient over unscaled: accumulating
    it several times (retain_graph) must not alter it."""
    x = torch.randn(8, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    t = torch.randint(0, 5, (8,), generator=gen)
    loss = loss_of(x, t)
    (once,) = torch.autograd.grad(loss, x, retain_graph=True)
    for _ in range(3):
        loss.backward(retain_graph=True)
    _close(x.grad, 3 * once, torch.float64)
    h = x * 1.0  # a non-leaf: the gradient flows on into mul's backward
    loss = loss_of(h, t)
    x.grad = None
    loss.backward(retain_graph=True)
    loss.backward(torch.tensor(2.0, dtype=torch.float64))
    _close(x.grad, 3 * once, torch.float64)


def test_cross_entropy_fused_path_keeps_the_gradient(gen):
    x = torch.randn(8, 5, requires_grad=True, generator=gen)
    t = torch.randint(0, 5, (8,), generator=gen)
    loss = ft.cross_entropy(x, t)
    assert "with_grad" in type(loss.grad_fn).__name__
    with torch.no_grad():
        assert ft.cross_entropy(x, t).grad_fn is None
    assert "with_grad" not in type(ft.cross_entropy(x.detach(), t).grad_fn).__name__


# ---------------------------------------------------------------------------
# pointwise losses and activations of the op table
# ---------------------------------------------------------------------------

def _loss_inputs(op, shape, dtype, gen):
    x = torch.randn(shape, dtype=dtype, generator=gen)
    t = torch.randn(shape, dtype=dtype, generator=gen)
    if op.sample == "binary":
        t = torch.rand(shape, dtype=dtype, generator=gen)
    elif op.sample == "logprob":
        x = torch.log_softmax(x, -1)
        t = torch.softmax(t, -1)
    if op.name in ("l1_loss", "huber_loss"):  # keep |x - t| off the kinks
        x = x + torch.where(x > t, 0.3, -0.3).to(dtype)
    return x, t


def _reference(op):
    if op.torch is None:  # log_cosh_loss: log(cosh(d)), accurate for the small d used here
        def log_cosh(x, t, reduction="mean"):
            v = torch.log(torch.cosh(x - t))
            return {"none": v, "sum": v.sum(), "mean": v.mean()}[reduction]
        return log_cosh
    return _ops.torch_function(op, torch)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("op, reduction", [(op, r) for op in LOSSES
                                           for r in REDUCTIONS + op.more_reductions],
                         ids=lambda v: getattr(v, "name", v))
@pytest.mark.parametrize("options", ["default", "sample"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_pointwise_losses_match_torch(op, reduction, options, dtype, gen):
    kw = dict(_ops.sample_options(op) if options == "sample" else {}, reduction=reduction)
    x, t = _loss_inputs(op, (6, 5), dtype, gen)
    tensors, grad = [x, t], [True, op.name in FT._DIFFERENCE_LOSSES]
    if op.extras and options == "sample":  # BCE's weight (N, C) and pos_weight (C,)
        tensors += [torch.rand(6, 5, dtype=dtype, generator=gen) + 0.5,
                    torch.rand(5, dtype=dtype, generator=gen) + 0.5]
        grad += [False, False]
        names = op.extras
    else:
        names = ()

    def call(f):
        return lambda x, t, *extras: f(x, t, reduction=reduction,
                                       **dict(zip(names, extras)),
                                       **{k: v for k, v in kw.items() if k != "reduction"})

    _compare(call(getattr(ft, op.torch or op.name)), call(_reference(op)), tensors, grad, gen)


@pytest.mark.parametrize("op", ACTIVATIONS, ids=lambda op: op.name)
@pytest.mark.parametrize("options", ["default", "sample"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_activations_match_torch(op, options, dtype, gen):
    kw = _ops.sample_options(op) if options == "sample" else {}
    x = 3 * torch.randn(5, 4, 3, dtype=dtype, generator=gen)
    x = x + torch.where(x > 0, 0.1, -0.1).to(dtype)  # off relu's kink
    ours, theirs = getattr(ft, op.torch or op.name), _ops.torch_function(op, torch)
    _compare(lambda x: ours(x, **kw), lambda x: theirs(x, **kw), [x], [True], gen)
    # and positionally, as torch code calls them (F.leaky_relu(x, 0.2))
    numbers = [v for o, v in zip(op.options, kw.values()) if o.codes is None]
    _close(ours(x, *numbers), theirs(x, *numbers), dtype)


@pytest.mark.parametrize("name", FT._INPLACE)
def test_inplace_activations(name, gen):
    x = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    expected = getattr(F, name)(x)
    y = x.clone()
    assert getattr(ft, name)(y, inplace=True) is y
    _close(y, expected, torch.float64)
    # under autograd: the result is written into a non-leaf, gradients still right
    leaf_a, leaf_b = x.clone().requires_grad_(), x.clone().requires_grad_()
    h_a, h_b = leaf_a * 2, leaf_b * 2
    getattr(ft, name)(h_a, inplace=True).sum().backward()
    getattr(F, name)(h_b, inplace=True).sum().backward()
    _close(leaf_a.grad, leaf_b.grad, torch.float64)


def test_extreme_values_are_fastdls(gen):
    x = torch.tensor([-1000.0, 0.0, 1000.0], dtype=torch.float64)
    assert ft.logsigmoid(x)[0].item() == -1000.0
    assert ft.softplus(x)[2].item() == 1000.0
    big = torch.tensor([1000.0, 1.0, 0.0], dtype=torch.float64)
    assert ft.log_softmax(big, 0).tolist() == [0.0, -999.0, -1000.0]


# ---------------------------------------------------------------------------
# softmax, log_softmax, logsumexp, linear
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_softmax_family_matches_torch(name, dim, dtype, gen):
    x = 3 * torch.randn(5, 4, 3, dtype=dtype, generator=gen)
    ours, theirs = getattr(ft, name), getattr(F, name)
    _compare(lambda x: ours(x, dim), lambda x: theirs(x, dim), [x], [True], gen)
    _close(ours(x, dim=dim, dtype=torch.float64), theirs(x, dim=dim, dtype=torch.float64),
           torch.float64)


@pytest.mark.parametrize("dim", [1, -1, (0, 2), [1]])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_logsumexp_matches_torch(dim, keepdim, dtype, gen):
    x = 3 * torch.randn(5, 4, 3, dtype=dtype, generator=gen)
    _compare(lambda x: ft.logsumexp(x, dim, keepdim), lambda x: torch.logsumexp(x, dim, keepdim),
             [x], [True], gen)


@pytest.mark.parametrize("shape", [(6, 5), (5,), (2, 3, 5)], ids=["2d", "1d", "3d"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_linear_matches_torch(shape, bias, dtype, gen):
    x = torch.randn(shape, dtype=dtype, generator=gen)
    W = torch.randn(4, 5, dtype=dtype, generator=gen)
    b = torch.randn(4, dtype=dtype, generator=gen) if bias else None
    for grad in ([True, True, bias], [False, True, bias]):
        _compare(ft.linear, F.linear, [x, W, b], grad, gen, scale=10)


# ---------------------------------------------------------------------------
# fused linear + cross-entropy
# ---------------------------------------------------------------------------

LCE_CASES = [dict(), dict(bias=True), dict(bias=True, weight=True, ignore=True),
             dict(label_smoothing=0.1, ignore=True), dict(prob=True, bias=True)]


@pytest.mark.parametrize("case", LCE_CASES, ids=lambda c: "-".join(c) or "plain")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_linear_cross_entropy_matches_torch(case, reduction, dtype, gen):
    N, H, V = 11, 6, 9
    x = torch.randn(N, H, dtype=dtype, generator=gen)
    W = torch.randn(V, H, dtype=dtype, generator=gen)
    b = torch.randn(V, dtype=dtype, generator=gen) if case.get("bias") else None
    if case.get("prob"):
        target = torch.softmax(torch.randn(N, V, dtype=dtype, generator=gen), 1)
    else:
        target = torch.randint(0, V, (N,), generator=gen)
        if case.get("ignore"):
            target[::4] = -100
    weight = torch.rand(V, dtype=dtype, generator=gen) + 0.5 if case.get("weight") else None
    kw = dict(weight=weight, reduction=reduction,
              label_smoothing=case.get("label_smoothing", 0.0))

    def ours(x, W, b):
        return ft.linear_cross_entropy(x, W, target, linear_bias=b, chunk_size=4, **kw)

    def theirs(x, W, b):
        return F.cross_entropy(F.linear(x, W, b), target, **kw)

    _compare(ours, theirs, [x, W, b], [True, True, b is not None], gen, scale=10)
    if hasattr(F, "linear_cross_entropy"):  # PyTorch >= 2.10 has the twin
        with torch.no_grad():
            _close(ours(x, W, b), F.linear_cross_entropy(x, W, target, linear_bias=b, **kw),
                   dtype, scale=10)


def test_linear_cross_entropy_ignore_index_none_is_default(gen):
    x, W = torch.randn(5, 3, generator=gen), torch.randn(4, 3, generator=gen)
    t = torch.tensor([0, -100, 3, 1, -100])
    assert torch.equal(ft.linear_cross_entropy(x, W, t, ignore_index=None),
                       ft.linear_cross_entropy(x, W, t))


# ---------------------------------------------------------------------------
# gradcheck (float64, central differences)
# ---------------------------------------------------------------------------

def _gradcheck_cases():
    g = torch.Generator().manual_seed(7)
    d = dict(dtype=torch.float64)

    def r(*shape):
        return torch.randn(*shape, generator=g, **d)

    t = torch.tensor([0, 2, 1, 2])
    p = torch.softmax(r(4, 3), 1)
    w = torch.rand(3, generator=g, **d) + 0.5
    cases = {
        "cross_entropy": (lambda x: ft.cross_entropy(x, t, w, label_smoothing=0.1), [r(4, 3)]),
        "cross_entropy-none": (lambda x: ft.cross_entropy(x, t, reduction="none"), [r(4, 3)]),
        "cross_entropy-prob": (lambda x: ft.cross_entropy(x, p, w), [r(4, 3)]),
        "cross_entropy-kdim": (lambda x: ft.cross_entropy(x, t.view(2, 2) % 2), [r(2, 2, 2)]),
        "softmax": (lambda x: ft.softmax(x, 0), [r(4, 3)]),
        "log_softmax": (lambda x: ft.log_softmax(x, 1), [r(4, 3)]),
        "logsumexp": (lambda x: ft.logsumexp(x, (0, 1)), [r(4, 3)]),
        "linear": (ft.linear, [r(4, 3), r(2, 3), r(2)]),
        "linear_cross_entropy": (
            lambda x, W, b: ft.linear_cross_entropy(x, W, t, linear_bias=b, label_smoothing=0.1),
            [r(4, 5), r(3, 5), r(3)]),
        "linear_cross_entropy-none": (
            lambda x, W: ft.linear_cross_entropy(x, W, t, reduction="none"), [r(4, 5), r(3, 5)]),
    }
    for op in ACTIVATIONS:
        fn = getattr(ft, op.torch or op.name)
        x = r(3, 4)
        x = x + torch.where(x > 0, 0.1, -0.1).to(torch.float64)  # off the kinks
        opts = _ops.sample_options(op)
        cases[op.name] = (lambda x, fn=fn, opts=opts: fn(x, **opts), [x])
    for op in LOSSES:
        fn = getattr(ft, op.torch or op.name)
        x, y = _loss_inputs(op, (3, 4), torch.float64, g)
        extras = {e: torch.rand(4, generator=g, **d) + 0.5 for e in op.extras}
        opts = _ops.sample_options(op)
        both = op.name in FT._DIFFERENCE_LOSSES
        if both:
            cases[op.name] = (lambda x, y, fn=fn, opts=opts: fn(x, y, **opts), [x, y])
        else:
            cases[op.name] = (lambda x, fn=fn, y=y, opts=opts, extras=extras:
                              fn(x, y, **extras, **opts), [x])
    return cases


GRADCHECK = _gradcheck_cases()


@pytest.mark.parametrize("name", list(GRADCHECK))
def test_gradcheck(name):
    fn, inputs = GRADCHECK[name]
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------------------
# torch.library.opcheck, every custom op
# ---------------------------------------------------------------------------

def _opcheck_args(op):
    """Sample arguments of a custom op, float64, tensors that can require grad doing so."""
    g = torch.Generator().manual_seed(3)
    d = dict(dtype=torch.float64)

    def r(*shape, grad=True):
        return torch.randn(*shape, generator=g, **d).requires_grad_(grad)

    name = op.name
    for base, ops in FT.LOSS_OPS.items():
        if name in (base, base + "_with_grad", base + "_backward"):
            if base == "cross_entropy":
                args = (r(5, 4), torch.tensor([0, 3, 1, -100, 2]), torch.rand(4, **d) + 0.5,
                        -100, "mean", 0.1)
            elif base == "linear_cross_entropy":
                args = (r(5, 4), r(6, 4), torch.tensor([0, 5, 1, -100, 2]), r(6), None,
                        -100, "sum", 0.1, 1e-3, None, 2, None)
            else:
                table_op = _ops.BY_NAME[base]
                x, t = _loss_inputs(table_op, (4, 3), torch.float64, g)
                extras = tuple(torch.rand(3, **d) + 0.5 for _ in table_op.extras)
                args = (x.requires_grad_(), t) + extras + ("mean",) + tuple(
                    _ops.sample_options(table_op).values())
            if name.endswith("_backward"):
                return (torch.tensor(1.5, **d),) + tuple(
                    a.detach() if isinstance(a, torch.Tensor) else a for a in args)
            return args
    if name.endswith("_backward"):
        base = name[: -len("_backward")]
        if base in FT.ROWS_OPS:
            return (r(4, 3, grad=False), torch.softmax(r(4, 3, grad=False), 1), 1)
        if base == "linear":
            return (r(4, 2, grad=False), r(4, 3, grad=False), r(2, 3, grad=False), True, True)
        table_op = _ops.BY_NAME[base]
        return (r(4, 3, grad=False), r(4, 3, grad=False)) + tuple(
            _ops.sample_options(table_op).values())
    if name in FT.ROWS_OPS:
        return (r(4, 3), 1)
    if name == "logsumexp":
        return (r(4, 3), [1], False)
    if name == "linear":
        return (r(4, 3), r(2, 3), r(2))
    return (r(4, 3),) + tuple(_ops.sample_options(_ops.BY_NAME[name]).values())


@pytest.mark.parametrize("op", FT.ALL_OPS, ids=lambda op: op.name)
def test_opcheck(op):
    torch.library.opcheck(op.overload, _opcheck_args(op))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_opcheck_kdim_cross_entropy(reduction):
    """K-dimensional logits go to fastdl as they are: the fakes' shapes and the
    per-sample scaling of the kept gradient (along the class axis 1)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 2, 5, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randint(0, 4, (3, 2, 5), generator=g)
    t[0, 1, ::2] = -100
    w = torch.rand(4, dtype=torch.float64, generator=g) + 0.5
    ops = FT.LOSS_OPS["cross_entropy"]
    for op in (ops.forward, ops.with_grad):
        torch.library.opcheck(op.overload, (x, t, w, -100, reduction, 0.1))
    shape = (3, 2, 5) if reduction == "none" else ()
    grad_output = torch.randn(shape, dtype=torch.float64, generator=g)
    torch.library.opcheck(ops.backward.overload,
                          (grad_output, x.detach(), t, w, -100, reduction, 0.1))


def test_all_custom_ops_are_listed():
    listed = {op.name for op in FT.ALL_OPS}
    assert len(listed) == len(FT.ALL_OPS)
    for name in listed:
        assert hasattr(torch.ops.fastdl, name)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_other_device_named():
    x = torch.empty(4, 3, device="meta")
    for call in (lambda: ft.cross_entropy(x, torch.zeros(4, dtype=torch.long)),
                 lambda: ft.relu(x), lambda: ft.softmax(x, 1), lambda: ft.linear(x, x),
                 lambda: ft.mse_loss(x, x), lambda: ft.logsumexp(x, 1)):
        with pytest.raises(ValueError, match="device 'meta'.*CPU"):
            call()
    with pytest.raises(ValueError, match="target is on device 'meta'"):
        ft.cross_entropy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long, device="meta"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_unsupported_dtype_named(dtype):
    x = torch.zeros(4, 3, dtype=dtype)
    for call in (lambda: ft.cross_entropy(x, torch.zeros(4, dtype=torch.long)),
                 lambda: ft.gelu(x), lambda: ft.log_softmax(x, 1),
                 lambda: ft.linear(x, torch.zeros(2, 3)), lambda: ft.l1_loss(x, x)):
        with pytest.raises(TypeError, match=f"{dtype}.*float32 and torch.float64"):
            call()


def test_argument_errors():
    x = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="must be a torch.Tensor, got ndarray"):
        ft.relu(np.zeros(3))
    with pytest.raises(TypeError, match="float64"):  # mixed float dtypes: fastdl names both
        ft.mse_loss(x, x.double())
    with pytest.raises(IndexError, match="out of bounds"):
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="shape"):
        ft.mse_loss(x, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="reduction"):
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(ValueError, match=r"class-index target has shape \(2, 5\)"):
        ft.cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(TypeError):
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 0]), ignore_index=1.5)


def test_unsupported_gradients_raise_at_backward():
    x = torch.randn(4, 3, requires_grad=True)
    p = torch.softmax(torch.randn(4, 3), 1).requires_grad_()
    with pytest.raises(NotImplementedError, match="target"):
        ft.kl_div(torch.log_softmax(x, 1), p, reduction="batchmean").backward()
    w = torch.rand(3, requires_grad=True)
    with pytest.raises(NotImplementedError, match="weight"):
        ft.cross_entropy(x, torch.tensor([0, 1, 2, 0]), w).backward()
    with pytest.raises(NotImplementedError, match="target"):
        ft.cross_entropy(x, p).backward()


def test_double_backward_is_refused():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 0])
    loss = ft.cross_entropy(x, t)
    with pytest.raises(NotImplementedError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)
    (gx,) = torch.autograd.grad(ft.relu(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="autograd"):  # no formula for relu_backward
        gx.sum().backward()


# ---------------------------------------------------------------------------
# zero copy, paths, modes
# ---------------------------------------------------------------------------

def test_tensors_and_arrays_share_memory():
    x = torch.randn(6, 4)
    a = _bridge.to_numpy(x)
    assert np.shares_memory(a, x.numpy()) and a.ctypes.data == x.data_ptr()
    strided = x.t()
    b = _bridge.to_numpy(strided)  # one contiguous copy
    assert b.flags.c_contiguous and not np.shares_memory(b, x.numpy())
    np.testing.assert_array_equal(b, strided.numpy())
    y = np.arange(5.0)
    assert _bridge.to_tensor(y).data_ptr() == y.ctypes.data


def test_ops_pass_views_and_wrap_results_without_copies(monkeypatch):
    x = torch.randn(8, 5)
    t = torch.randint(0, 5, (8,))
    seen = {}

    def spy(name):
        real = getattr(fastdl, name)

        def wrapper(*args, **kwargs):
            seen["args"] = args
            seen["result"] = result = real(*args, **kwargs)
            return result
        monkeypatch.setattr(fastdl, name, wrapper)

    spy("relu")
    y = ft.relu(x)
    assert np.shares_memory(seen["args"][0], x.numpy())
    assert y.data_ptr() == seen["result"].ctypes.data
    spy("cross_entropy")
    loss = ft.cross_entropy(x, t, reduction="none")
    assert np.shares_memory(seen["args"][0], x.numpy())
    assert np.shares_memory(seen["args"][1], t.numpy())
    assert loss.data_ptr() == seen["result"].ctypes.data
    spy("cross_entropy_with_grad")
    xg = x.clone().requires_grad_()
    ft.cross_entropy(xg, t).backward()
    assert np.shares_memory(seen["args"][0], xg.detach().numpy())


def test_non_contiguous_inputs(gen):
    x = torch.randn(5, 8, dtype=torch.float64, generator=gen)[:, ::2]
    t = torch.randint(0, 4, (5,), generator=gen)
    assert not x.is_contiguous()
    _compare(lambda x: ft.cross_entropy(x, t), lambda x: F.cross_entropy(x, t), [x], [True], gen)
    _compare(lambda x: ft.softmax(x.t(), 1), lambda x: F.softmax(x.t(), 1), [x], [True], gen)
    _compare(lambda x: ft.elu(x[::2]), lambda x: F.elu(x[::2]), [x], [True], gen)


def test_grad_modes_and_parameters(gen):
    w = torch.nn.Parameter(torch.randn(3, 4, generator=gen))
    x = torch.randn(2, 4, generator=gen)
    with torch.inference_mode():
        y = ft.linear(x, w)
    assert y.is_inference()
    with torch.no_grad():
        assert not ft.linear(x, w).requires_grad
    ft.linear(x, w).sum().backward()
    _close(w.grad, x.sum(0).expand(3, 4), torch.float32)


def test_fake_tensor_mode_uses_the_registered_fake():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(4, 3)
        loss = ft.cross_entropy(x, torch.zeros(4, dtype=torch.long), reduction="none")
        assert loss.shape == (4,)
        assert ft.linear(torch.empty(2, 5, 3), torch.empty(6, 3)).shape == (2, 5, 6)
        kdim = ft.cross_entropy(torch.empty(2, 5, 3, 4), torch.zeros(2, 3, 4, dtype=torch.long),
                                reduction="none")
        assert kdim.shape == (2, 3, 4)


# ---------------------------------------------------------------------------
# nn modules
# ---------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("name", [n for n in fnn.__all__ if n != "LinearCrossEntropyLoss"])
def test_modules_match_torch(name, gen):
    ours = getattr(fnn, name)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    if name in fnn._ACTIVATIONS:
        kw = {"dim": 1} if "Softmax" in name else {}
        _compare(ours(**kw), getattr(torch.nn, name)(**kw), [x], [True], gen)
        return
    t = {"CrossEntropyLoss": torch.randint(0, 5, (6,), generator=gen),
         "BCEWithLogitsLoss": torch.rand(6, 5, dtype=torch.float64, generator=gen),
         "KLDivLoss": torch.softmax(x, 1)}.get(name, torch.randn(6, 5, dtype=torch.float64,
                                                                 generator=gen))
    theirs = getattr(torch.nn, name, None)
    if theirs is None:  # LogCoshLoss
        theirs = lambda: lambda x, t: _reference(_ops.BY_NAME["log_cosh_loss"])(x, t)  # noqa
    _compare(lambda x: ours()(x, t), lambda x: theirs()(x, t), [x], [True], gen)


def test_module_options_and_buffers(gen):
    assert fnn.LeakyReLU(0.2).negative_slope == 0.2
    assert repr(fnn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2, inplace=False)"
    w = torch.rand(5) + 0.5
    crit = fnn.CrossEntropyLoss(w, label_smoothing=0.1, reduction="sum")
    assert set(crit.state_dict()) == set(torch.nn.CrossEntropyLoss(w).state_dict()) == {"weight"}
    crit = crit.to(torch.float64)
    assert crit.weight.dtype == torch.float64
    x = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    t = torch.tensor([0, 1, 4, 2])
    _close(crit(x, t), torch.nn.CrossEntropyLoss(w.double(), label_smoothing=0.1,
                                                 reduction="sum")(x, t), torch.float64)
    crit.reduction = "mean"
    _close(crit(x, t), F.cross_entropy(x, t, w.double(), label_smoothing=0.1), torch.float64)
    bce = fnn.BCEWithLogitsLoss(pos_weight=torch.ones(5))
    assert bce.weight is None and "pos_weight" in dict(bce.named_buffers())
    with pytest.raises(TypeError):
        fnn.HuberLoss(0.5)  # options after the tensors are keyword-only, as documented


@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy_module(bias, gen):
    torch.manual_seed(0)
    head = fnn.LinearCrossEntropyLoss(6, 9, bias=bias, dtype=torch.float64, label_smoothing=0.1)
    assert {n for n, _ in head.named_parameters()} == {"linear.weight"} | (
        {"linear.bias"} if bias else set())
    x = torch.randn(10, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    t = torch.randint(0, 9, (10,), generator=gen)
    loss = head(x, t)
    ref = F.cross_entropy(head.linear(x), t, label_smoothing=0.1)
    _close(loss, ref, torch.float64)
    grads = torch.autograd.grad(loss, [x, *head.parameters()])
    ref_grads = torch.autograd.grad(ref, [x, *head.parameters()])
    for a, b in zip(grads, ref_grads):
        _close(a, b, torch.float64, scale=10)
    if hasattr(torch.nn, "LinearCrossEntropyLoss"):  # same state-dict keys as PyTorch's
        twin = torch.nn.LinearCrossEntropyLoss(6, 9, bias=bias, dtype=torch.float64,
                                               label_smoothing=0.1)
        twin.load_state_dict(head.state_dict())
        with torch.no_grad():
            _close(twin(x, t), loss.detach(), torch.float64, scale=10)


# ---------------------------------------------------------------------------
# the per-call overhead script (timings are reported, not asserted)
# ---------------------------------------------------------------------------

def test_overhead_script_runs():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("_torch_overhead.py")
    spec = importlib.util.spec_from_file_location("_torch_overhead", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.measure(number=20, repeat=3, names=["cross_entropy", "relu"])
    assert set(res) == {"cross_entropy", "relu"}
    assert all(v > 0 for row in res.values() for v in row)
