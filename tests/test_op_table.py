"""The op table (fastdl._ops) is the one list of ops: every op it names is
exported, warmable and implemented with one signature by every backend, and
every public function it derives has the signature its kind promises."""

import importlib
import inspect

import numpy as np
import pytest

import fastdl
from conftest import BACKENDS
from fastdl import _ops, _warmup
from fastdl._backend import FAMILIES

PUBLIC = [name for op in _ops.OPS for name in _ops.public_names(op)]


def test_every_public_name_is_exported():
    for name in PUBLIC:
        assert callable(getattr(fastdl, name, None)), name
        assert name in fastdl.__all__, name


def test_every_public_function_has_a_warmup_recipe():
    assert set(_warmup._RECIPES) == set(PUBLIC)
    for name in PUBLIC:  # and the warm-up finds it where the table says it lives
        assert _warmup._public_function(name) is getattr(fastdl, name), name


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_implements_every_kernel_with_one_signature(family, backend):
    suffix, kernels = FAMILIES[family]
    assert kernels == _ops.family_kernels(family) and kernels
    ref = importlib.import_module(f"fastdl.backends.numpy.{suffix}")
    mod = importlib.import_module(f"fastdl.backends.{backend}.{suffix}")
    for kernel in kernels:
        sig = inspect.signature(getattr(mod, kernel))
        assert sig == inspect.signature(getattr(ref, kernel)), (backend, kernel)
        kinds = {p.kind for p in sig.parameters.values()}
        assert inspect.Parameter.VAR_POSITIONAL not in kinds, (backend, kernel)


def _keyword_defaults(fn):
    sig = inspect.signature(fn)
    return {name: p.default for name, p in sig.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _positional(fn):
    return [name for name, p in inspect.signature(fn).parameters.items()
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]


@pytest.mark.parametrize("op", _ops.of_kind("activation"), ids=lambda op: op.name)
def test_activation_signatures(op):
    options = {o.name: o.default for o in op.options}
    for name in (op.name,) + op.aliases:
        f, b = getattr(fastdl, name), getattr(fastdl, name + "_backward")
        assert _positional(f) == ["x"] and _positional(b) == ["dy", "x"]
        for fn in (f, b):
            assert _keyword_defaults(fn) == {**options, "out": None, "backend": None}
            assert fn.__doc__ and "Parameters" in fn.__doc__


@pytest.mark.parametrize("op", _ops.of_kind("pointwise_loss"), ids=lambda op: op.name)
def test_pointwise_loss_signatures(op):
    first = op.input_name or "input"
    common = {"reduction": "mean", **{o.name: o.default for o in op.options},
              **{e: None for e in op.extras}, "backend": None}
    f = getattr(fastdl, op.name)
    b = getattr(fastdl, op.name + "_backward")
    w = getattr(fastdl, op.name + "_with_grad")
    assert _positional(f) == [first, "target"] == _positional(w)
    assert _positional(b) == ["grad_output", first, "target"]
    assert _keyword_defaults(f) == common
    assert _keyword_defaults(b) == _keyword_defaults(w) == {**common, "out": None}
    for fn in (f, b, w):
        assert fn.__doc__ and "Parameters" in fn.__doc__


def test_choice_options_are_checked():
    op = _ops.BY_NAME["gelu"]
    assert _ops.encode_option(op.options[0], "tanh") == 1.0
    with pytest.raises(ValueError, match="approximate must be one of 'none', 'tanh'"):
        fastdl.gelu(np.zeros(2), approximate="erf")


def test_backward_argument_order_follows_one_rule():
    """Every public <op>_backward takes its output gradient first (dy or
    grad_output), except the two cross-entropy heads, whose optional
    grad_output=1.0 follows their inputs (docs/API.md, "Argument order")."""
    import inspect

    exceptions = {"cross_entropy_backward": ("logits", "target", "grad_output"),
                  "linear_cross_entropy_backward": ("x", "W", "target", "grad_output")}
    names = [n for n in fastdl.__all__ if n.endswith("_backward")]
    assert len(names) > 20
    for name in names:
        params = list(inspect.signature(getattr(fastdl, name)).parameters)
        if name in exceptions:
            assert tuple(params[:len(exceptions[name])]) == exceptions[name], name
            assert inspect.signature(getattr(fastdl, name)).parameters["grad_output"].default == 1.0
        else:
            assert params[0] in ("dy", "grad_output"), (name, params)
