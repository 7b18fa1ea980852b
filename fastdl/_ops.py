"""The op table: every operation fastdl has, described once.

Each :class:`Op` row names an operation, the kernel family that runs it, its
*kind* (which fixes the kernel contract, the public functions it yields and
how tests, benchmarks, the warm-up and the fuzzer call it), its array
arguments and its keyword options.  Everything that needs a list of ops
iterates this table: the backend registry (which kernels a family's module
must define), :func:`fastdl.warmup`, the test and benchmark parameters, the
hostile-input fuzzer and the Cython template expansion in ``setup.py``.

This module imports nothing from fastdl (``setup.py`` loads it by path,
before the package is built), only the standard library.

Kinds and the functions they yield
----------------------------------
``activation``
    ``name(x, *, <options>, out=None, backend=None)`` and
    ``name_backward(dy, x, *, <options>, out=None, backend=None)``; kernels
    ``name(x, options, out)`` and ``name_backward(dy, x, options, out)``.
``pointwise_loss``
    ``name(input, target, *, ...)``, ``name_backward(grad_output, input,
    target, ...)`` and ``name_with_grad(input, target, ...)``; kernels
    ``name(input, target, weight, aux, options, out) -> float``,
    ``name_backward(dy, input, target, weight, aux, options, scale, out)``
    and ``name_with_grad(input, target, weight, aux, options, scale,
    loss_out, grad) -> float``.
``entropy``
    ``name(p, axis=-1, *, backend=None)``; kernel ``name(p, out)``.
``rows``, ``rows_backward``, ``reduce_rows``, ``affine_forward``,
``affine_backward``, ``cross_entropy``
    The core kernels (contract in :mod:`fastdl.backends`).
``optim``
    In-place optimizer updates (contract in
    :mod:`fastdl.backends.numpy.optim`).

Kernel options travel as a tuple of floats in the order of ``Op.options``
(booleans and choices encoded by the public wrapper, see ``Option.codes``).
"""

from __future__ import annotations

from typing import NamedTuple


class Option(NamedTuple):
    """A keyword option of an op.

    ``sample`` is a non-default value that tests and benchmarks use;
    ``codes`` maps a choice's accepted values to the float the kernels get
    (None: the value is a real number, passed as float).
    """

    name: str
    default: object
    sample: object
    codes: dict | None = None


class Op(NamedTuple):
    """One operation: see the module docstring for the kinds."""

    name: str
    family: str
    kind: str
    options: tuple = ()
    #: pointwise losses: optional arrays broadcast to the input's shape;
    #: the first is the kernels' ``weight``, the second their ``aux``.
    extras: tuple = ()
    #: the name of the first array argument, where it is not the kind's default
    input_name: str = ""
    #: pointwise losses: reductions beyond "none", "mean" and "sum"
    more_reductions: tuple = ()
    #: what test and benchmark inputs look like: "real", or for losses
    #: "binary" (targets in [0, 1]) and "logprob" (log-probability input,
    #: probability target)
    sample: str = "real"
    #: other public names of the same functions (``swish`` is ``silu``)
    aliases: tuple = ()
    #: core and optim kinds: the contract kernels this op calls
    kernels: tuple = ()
    #: the ``torch.nn.functional`` twin, for parity tests and benchmarks:
    #: "" means the same name, None that PyTorch has none
    torch: str | None = ""


_REDUCTION = Option("reduction", "mean", "sum")

OPS = (
    # --- core ------------------------------------------------------------
    Op("affine_forward", "core", "affine_forward", kernels=("affine_forward",)),
    Op("affine_backward", "core", "affine_backward", kernels=("affine_backward",)),
    Op("logsumexp", "core", "reduce_rows", kernels=("logsumexp",)),
    Op("softmax", "core", "rows", kernels=("softmax",)),
    Op("log_softmax", "core", "rows", kernels=("log_softmax",)),
    Op("softmax_backward", "core", "rows_backward", kernels=("softmax_backward",)),
    Op("log_softmax_backward", "core", "rows_backward", kernels=("log_softmax_backward",)),
    Op("cross_entropy", "core", "cross_entropy",
       kernels=("cross_entropy_index", "cross_entropy_prob", "cross_entropy_index_fast")),
    # --- activations ----------------------------------------------------
    Op("sigmoid", "elementwise", "activation"),
    Op("log_sigmoid", "elementwise", "activation", torch="logsigmoid"),
    Op("softplus", "elementwise", "activation",
       options=(Option("beta", 1.0, 1.5), Option("threshold", 20.0, 10.0))),
    Op("tanh", "elementwise", "activation"),
    Op("relu", "elementwise", "activation"),
    Op("leaky_relu", "elementwise", "activation",
       options=(Option("negative_slope", 0.01, 0.2),)),
    Op("elu", "elementwise", "activation", options=(Option("alpha", 1.0, 0.7),)),
    Op("silu", "elementwise", "activation", aliases=("swish",)),
    Op("gelu", "elementwise", "activation",
       options=(Option("approximate", "none", "tanh", {"none": 0.0, "tanh": 1.0}),)),
    # --- pointwise losses -----------------------------------------------
    Op("mse_loss", "elementwise", "pointwise_loss"),
    Op("l1_loss", "elementwise", "pointwise_loss"),
    Op("huber_loss", "elementwise", "pointwise_loss", options=(Option("delta", 1.0, 0.8),)),
    Op("log_cosh_loss", "elementwise", "pointwise_loss", torch=None),
    Op("kl_div", "elementwise", "pointwise_loss",
       options=(Option("log_target", False, True),),
       more_reductions=("batchmean",), sample="logprob"),
    Op("binary_cross_entropy_with_logits", "elementwise", "pointwise_loss",
       extras=("weight", "pos_weight"), input_name="logits", sample="binary"),
    Op("entropy", "elementwise", "entropy"),
    # --- composite: public functions built on other ops' kernels -------
    Op("linear_cross_entropy", "composite", "linear_cross_entropy"),
    # --- optimizers -------------------------------------------------------
    Op("sgd_step", "optim", "optim", kernels=("sgd_step",)),
    Op("adam_step", "optim", "optim", kernels=("adam_step",)),
)

BY_NAME = {op.name: op for op in OPS}

#: Families: the module of each backend's package (``fastdl.backends.<backend>.<module>``).
FAMILY_MODULES = {"core": "core", "elementwise": "elementwise", "optim": "optim"}

#: Kinds whose public functions and kernels follow the pattern of the kind.
_DERIVED = {
    "activation": ("", "_backward"),
    "pointwise_loss": ("", "_backward", "_with_grad"),
    "cross_entropy": ("", "_backward", "_with_grad"),
    "linear_cross_entropy": ("", "_backward", "_with_grad"),
}


#: The module of fastdl that defines each kind's public functions ("_core" otherwise).
_PUBLIC_MODULES = {"activation": "_activations", "pointwise_loss": "_loss_functions",
                   "entropy": "_loss_functions", "optim": "_optim_functional",
                   "linear_cross_entropy": "_linear_ce"}


def public_module(op):
    """Name of the fastdl module defining ``op``'s public functions, e.g. "fastdl._core"."""
    return "fastdl." + _PUBLIC_MODULES.get(op.kind, "_core")


def of_kind(kind):
    """The ops of one kind, in table order."""
    return tuple(op for op in OPS if op.kind == kind)


def public_names(op):
    """The public functions an op yields (aliases included), in order."""
    suffixes = _DERIVED.get(op.kind, ("",))
    return tuple(base + s for base in (op.name,) + op.aliases for s in suffixes)


def kernel_names(op):
    """The contract kernels an op needs from its family's backend modules."""
    if op.kernels:
        return op.kernels
    return tuple(op.name + s for s in _DERIVED.get(op.kind, ("",)))


def family_kernels(family):
    """Every kernel a backend's module for ``family`` must define."""
    return tuple(k for op in OPS if op.family == family for k in kernel_names(op))


def torch_function(op, torch):
    """The op's ``torch.nn.functional`` twin from the module ``torch``, or None."""
    if torch is None or op.torch is None:
        return None
    return getattr(torch.nn.functional, op.torch or op.name)


def sample_options(op):
    """Keyword options with the sample (non-default) values, for tests and benchmarks."""
    return {o.name: o.sample for o in op.options}


def encode_option(option, value):
    """The float the kernels get for ``value`` of a choice option (ValueError if invalid)."""
    try:
        return option.codes[value]
    except (KeyError, TypeError):
        choices = ", ".join(repr(c) for c in option.codes)
        raise ValueError(f"{option.name} must be one of {choices}, got {value!r}") from None
