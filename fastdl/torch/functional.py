"""fastdl's functions with the signatures of ``torch.nn.functional``.

Tensors in, tensors out: CPU tensors of float32 or float64 (class-index
targets of an integer dtype).  Each function checks its tensors (a tensor on
another device raises ``ValueError``, another float dtype ``TypeError``, both
naming it), views them as NumPy arrays without copying, runs fastdl's
function of the same name and wraps its result, again without copying; see
:mod:`fastdl.torch._bridge` for the custom-op registration and the eager fast
path.  Semantics are fastdl's, which follow PyTorch's (see ``docs/API.md``).

Gradients: every op is differentiable with respect to its float input (and
the weight and bias of :func:`linear` and :func:`linear_cross_entropy`)
through fastdl's backward kernels.  When the input requires grad, a loss runs
fastdl's fused ``<loss>_with_grad`` kernel and keeps the gradient for
backward instead of recomputing it (``loss.backward()`` receives it as it is,
another ``grad_output`` scales it).  Gradients with respect to targets are
those of PyTorch for the losses of ``input - target`` (``mse_loss``,
``l1_loss``, ``huber_loss``, ``log_cosh_loss``); for the other targets and
for class ``weight``/``pos_weight`` backward raises ``NotImplementedError``
naming the argument.  First derivatives only (no ``create_graph=True``
double backward).

Differences from ``torch.nn.functional``: the deprecated ``size_average`` and
``reduce`` arguments are absent, so the options after the tensors are
keyword-only for the losses; ``softmax``/``log_softmax`` need ``dim``; the
pointwise losses need ``input`` and ``target`` of one shape (no broadcasting);
``log_cosh_loss`` has no PyTorch twin.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import torch

import fastdl
from fastdl import _ops

from ._bridge import (
    Op,
    check_tensor,
    first_order_only,
    no_gradient,
    to_numpy,
    to_tensor,
)

__all__ = ["cross_entropy", "softmax", "log_softmax", "logsumexp", "linear",
           "linear_cross_entropy"]

_grad_enabled = torch.is_grad_enabled


def _schema_type(default):
    """The schema type of a table option, from its default value."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, str):
        return "str"
    return "float"


def _torch_name(op):
    """The op's name in torch.nn.functional (its own name when PyTorch has none)."""
    return op.torch or op.name


def _generate(source, namespace, *names):
    """The functions ``names`` defined by ``source``, with the globals ``namespace``.

    The generated functions are one call each, spelt out: the public ones
    get the exact signature of their torch.nn.functional twin, the
    implementations pass each argument straight to fastdl, with no argument
    binding or packing at run time (about 1 us a call).
    """
    scope = dict(namespace)
    exec(source, scope)  # noqa: S102  (source built here from the op table)
    for name in names:
        scope[name].__module__ = __name__
    return [scope[name] for name in names]


# ---------------------------------------------------------------------------
# losses: <name>, <name>_backward and <name>_with_grad, described once
# ---------------------------------------------------------------------------

class _LossSpec(NamedTuple):
    """How a fastdl loss maps onto its three custom ops.

    The ops' arguments are, in order: the ``positional`` tensors, the
    ``optional`` tensors (None allowed), the ``scalars``.  The fastdl
    functions ``fastdl.<name>``, ``<name>_backward`` and ``<name>_with_grad``
    are called as ``<name>(*positional, **keywords)``,
    ``<name>_backward(grad_output, *positional, **keywords)`` (grad_output
    last of the positional arguments with ``grad_output_last``) and
    ``<name>_with_grad(*positional, **keywords) -> (loss, *gradients)``,
    looked up in ``fastdl`` at each call.
    """

    name: str
    positional: tuple
    #: (argument name, fastdl keyword) pairs
    optional: tuple
    #: (name, schema type) pairs; the name is also the fastdl keyword
    scalars: tuple
    #: the float tensors fastdl differentiates, in the order its gradients come
    grads: tuple
    #: the cross-entropies: the input's axis a loss of reduction="none" does
    #: not have (PyTorch's class axis 1; for x (N, H) of the fused head, H),
    #: along which a per-sample grad_output broadcasts; a 1-D input gives one
    #: loss.  None: one loss per element.
    class_axis: int | None = None
    #: an input whose gradient is minus the first input's (losses of input - target)
    negated: str | None = None
    #: the fused kernel serves reduction="none" (not when a gradient mixes rows)
    fuse_none: bool = True
    #: ``<name>_backward`` takes grad_output after the positional tensors
    grad_output_last: bool = False


class _LossOps:
    """The three custom ops of one loss and the call that picks between them."""

    def __init__(self, spec):
        self.spec = spec
        optional = tuple(n for n, _ in spec.optional)
        scalars = tuple(n for n, _ in spec.scalars)
        self.names = names = spec.positional + optional + scalars
        index = {n: i for i, n in enumerate(names)}
        n_tensors = len(spec.positional) + len(optional)
        self._n_tensors = n_tensors
        self._reduction_at = index["reduction"]
        self._grad_at = tuple(index[n] for n in spec.grads)
        self._negated_at = None if spec.negated is None else index[spec.negated]
        differentiable = set(self._grad_at) | {self._negated_at}
        self._unsupported = {i: n for i, n in enumerate(names[:n_tensors])
                             if i not in differentiable}
        single = len(spec.grads) == 1
        tensors = tuple((n, i in self._grad_at) for i, n in enumerate(names[:n_tensors]))

        impls = self._implementations(spec, single)
        schema_in = ", ".join([f"Tensor {n}" for n in spec.positional]
                              + [f"Tensor? {n}" for n in optional]
                              + [f"{t} {n}" for n, t in spec.scalars])
        grads_out = "Tensor" if single else f"({', '.join(['Tensor'] * len(spec.grads))})"
        self.backward = Op(
            spec.name + "_backward", impls["backward_impl"], self._fake_backward,
            schema=f"(Tensor grad_output, {schema_in}) -> {grads_out}",
            tensors=(("grad_output", True),) + tensors)
        self.forward = Op(
            spec.name, impls["forward_impl"], self._fake_loss,
            schema=f"({schema_in}) -> Tensor", tensors=tensors,
            setup_context=self._setup_recompute, backward=self._backward_recompute)
        self.with_grad = Op(
            spec.name + "_with_grad", impls["with_grad_impl"], self._fake_with_grad,
            schema=f"({schema_in}) -> ({', '.join(['Tensor'] * (1 + len(spec.grads)))})",
            tensors=tensors, setup_context=self._setup_fused, backward=self._backward_fused)

    # --- implementations (tensors -> fastdl -> tensors) ----------------
    _IMPLEMENTATIONS = """
def forward_impl({params}):
    return _tensor(_fastdl.{name}({arrays}{keywords}))

def backward_impl(grad_output, {params}):
    grads = _fastdl.{name}_backward({backward_arrays}{keywords})
    return {backward_result}

def with_grad_impl({params}):
    {with_grad_body}
"""

    @classmethod
    def _implementations(cls, spec, single):
        """forward_impl, backward_impl, with_grad_impl of ``spec`` (see :func:`_generate`)."""
        arrays = ", ".join(f"_numpy({n})" for n in spec.positional)
        keywords = "".join(f", {key}=_numpy({n})" for n, key in spec.optional) \
            + "".join(f", {n}={n}" for n, _ in spec.scalars)
        params = ", ".join(spec.positional + tuple(n for n, _ in spec.optional)
                           + tuple(n for n, _ in spec.scalars))
        first = spec.positional[0]
        backward_arrays = f"{arrays}, _numpy(grad_output)" if spec.grad_output_last \
            else f"_numpy(grad_output), {arrays}"
        source = cls._IMPLEMENTATIONS.format(
            name=spec.name, params=params, arrays=arrays, keywords=keywords, first=first,
            backward_arrays=backward_arrays,
            backward_result="_tensor(grads)" if single else f"_gradients({first}, grads)",
            with_grad_body=(
                f"loss, grad = _fastdl.{spec.name}_with_grad({arrays}{keywords})\n    "
                "return _tensor(loss), _tensor(grad)" if single else
                f"loss, *grads = _fastdl.{spec.name}_with_grad({arrays}{keywords})\n    "
                f"return (_tensor(loss),) + _gradients({first}, grads)"))
        names = ("forward_impl", "backward_impl", "with_grad_impl")
        scope = {"_numpy": to_numpy, "_tensor": to_tensor, "_gradients": _gradients,
                 "_fastdl": fastdl}
        return dict(zip(names, _generate(source, scope, *names)))

    # --- fake (shape) functions -----------------------------------------
    def _fake_loss(self, *args):
        input = args[0]
        if args[self._reduction_at] != "none":
            return input.new_empty(())
        axis = self.spec.class_axis
        if axis is None:
            return input.new_empty(input.shape)
        if input.ndim == 1:
            return input.new_empty(())
        return input.new_empty(input.shape[:axis] + input.shape[axis + 1:])

    def _fake_grads(self, args):
        return tuple(args[0].new_empty(0) if args[i] is None else args[i].new_empty(args[i].shape)
                     for i in self._grad_at)

    def _fake_backward(self, grad_output, *args):
        grads = self._fake_grads(args)
        return grads[0] if len(grads) == 1 else grads

    def _fake_with_grad(self, *args):
        return (self._fake_loss(*args),) + self._fake_grads(args)

    # --- autograd ------------------------------------------------------
    def _input_grads(self, ctx, grads):
        """The backward's result: ``grads`` (one per ``spec.grads``) where autograd wants them."""
        result = [None] * len(self.names)
        for i, g in zip(self._grad_at, grads):
            if ctx.needs_input_grad[i]:
                result[i] = g
        if self._negated_at is not None and ctx.needs_input_grad[self._negated_at]:
            result[self._negated_at] = -grads[0]
        return tuple(result)

    def _setup_recompute(self, ctx, inputs, output):
        ctx.save_for_backward(*inputs[:self._n_tensors])
        ctx.scalars = inputs[self._n_tensors:]

    def _backward_recompute(self, ctx, grad_output):
        no_gradient(ctx, self.spec.name, self._unsupported)
        grads = self.backward(grad_output, *ctx.saved_tensors, *ctx.scalars)
        return self._input_grads(ctx, (grads,) if isinstance(grads, torch.Tensor) else grads)

    def _setup_fused(self, ctx, inputs, output):
        grads = output[1:]
        ctx.mark_non_differentiable(*grads)
        ctx.save_for_backward(*grads)

    def _backward_fused(self, ctx, grad_output, *_):
        first_order_only(self.spec.name)
        no_gradient(ctx, self.spec.name, self._unsupported)
        grads = ctx.saved_tensors
        # The saved gradients are those of the loss for grad_output = 1.
        # ``loss.backward()`` passes exactly 1: hand them over as they are
        # (for an LM head's dW that saves a pass over V x H floats); else
        # scale them (per sample or per element for reduction="none").  Not
        # while tracing: ``item()`` would need a concrete value.
        if not (type(grad_output) is torch.Tensor and grad_output.ndim == 0
                and not torch.compiler.is_compiling() and grad_output.item() == 1.0):
            if 0 < grad_output.ndim < grads[0].ndim:  # one per sample: broadcast over classes
                grad_output = grad_output.unsqueeze(self.spec.class_axis)
            grads = tuple(g * grad_output for g in grads)
        return self._input_grads(ctx, grads)

    # --- the call --------------------------------------------------------
    def __call__(self, *args):
        """The loss for the op's arguments, fused with its gradient when one is needed.

        A tensor requiring grad that fastdl has no gradient for (a class
        weight) takes the fused path too; either path's backward raises.
        """
        forward = self.forward
        route, grad = forward.check(args)
        if not grad:
            return forward.run(route, grad, args)
        if self.spec.fuse_none or args[self._reduction_at] != "none":
            return self.with_grad.run(route, grad, args)[0]
        return forward.run(route, grad, args)


def _gradients(first, grads):
    """fastdl's gradients as tensors; an empty placeholder for an absent input's (no bias)."""
    return tuple(first.new_empty(0) if g is None else to_tensor(g) for g in grads)


#: Every loss's ops by fastdl name (tests run torch.library.opcheck over them).
LOSS_OPS = {}


def _register_loss(spec):
    LOSS_OPS[spec.name] = ops = _LossOps(spec)
    return ops


# ---------------------------------------------------------------------------
# cross-entropy
# ---------------------------------------------------------------------------

_CROSS_ENTROPY = _register_loss(_LossSpec(
    "cross_entropy", positional=("input", "target"), optional=(("weight", "weight"),),
    scalars=(("ignore_index", "int"), ("reduction", "str"), ("label_smoothing", "float")),
    grads=("input",), class_axis=1, grad_output_last=True))


def cross_entropy(input, target, weight=None, *, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy of softmax(input) against ``target`` (``F.cross_entropy``).

    Parameters
    ----------
    input : Tensor, shape (N, C), (C,) or (N, C, d1, ..., dk)
        Logits, float32 or float64, on the CPU.
    target : Tensor
        Class indices (an integer tensor of shape (N,), () or (N, d1, ..., dk)),
        or class probabilities (a float tensor of the input's shape).
    weight : Tensor, shape (C,), optional
        Per-class weights, of the input's dtype.
    ignore_index : int, default -100
        A class-index target that contributes no loss, gradient or "mean" denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": one loss per sample, shape (N,) or (N, d1, ..., dk).  "sum":
        their sum.  "mean": the sum divided by the summed ``weight[target]``
        of the samples not ignored (their count without ``weight``), by the
        number of samples for probability targets.
    label_smoothing : float in [0, 1], default 0.0
        Mixes the target with the uniform distribution, as PyTorch.

    Returns
    -------
    loss : Tensor
        0-d for "mean"/"sum", else of the shape given above; the input's dtype.

    Raises
    ------
    TypeError
        A non-tensor, an unsupported dtype (named), mixed float dtypes.
    ValueError
        A tensor not on the CPU (its device named), inconsistent shapes, a bad
        ``reduction`` or ``label_smoothing``.
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index``.

    Notes
    -----
    :func:`fastdl.cross_entropy` does the work (stable log-sum-exp per row,
    float64 sums).  With an input that requires grad it runs
    :func:`fastdl.cross_entropy_with_grad` and keeps the gradient, so
    backward costs at most one multiplication.  K-dimensional input goes to
    fastdl as it is (its class axis 1, as PyTorch's), which reads the rows
    of classes through one transposed copy (and returns the gradient in the
    input's layout).

    Examples
    --------
    >>> import torch, fastdl.torch as ft
    >>> logits = torch.tensor([[2., 0., 0.], [0., 0., 0.]], requires_grad=True)
    >>> loss = ft.cross_entropy(logits, torch.tensor([0, 2]))
    >>> round(loss.item(), 6)
    0.669079
    >>> loss.backward()  # the gradient kept from the fused forward
    >>> expected = (torch.softmax(logits, 1) - torch.eye(3)[[0, 2]]) / 2
    >>> bool(torch.allclose(logits.grad, expected))
    True
    """
    return _CROSS_ENTROPY(input, target, weight, operator.index(ignore_index), reduction,
                          float(label_smoothing))


# ---------------------------------------------------------------------------
# the pointwise losses of the op table
# ---------------------------------------------------------------------------

#: Losses of ``input - target``: d loss / d target = -d loss / d input.
_DIFFERENCE_LOSSES = ("mse_loss", "l1_loss", "huber_loss", "log_cosh_loss")

_LOSS_DOC = """fastdl's :func:`fastdl.{name}` with the signature of {twin}.

    Parameters
    ----------
    input : Tensor
        Predictions{input_note}, float32 or float64, on the CPU.
    target : Tensor, shape of input
        Targets, of the input's dtype.{extras_doc}
    reduction : {{{reductions}}}, default "mean"
        "none": the per-element losses (input's shape); "sum": their sum;
        "mean": their mean{batchmean}.{options_doc}

    Returns
    -------
    loss : Tensor
        0-d, or of the input's shape for "none"; the input's dtype.

    Raises
    ------
    TypeError
        A non-tensor or an unsupported dtype (named); mixed float dtypes.
    ValueError
        A tensor not on the CPU (its device named), ``input`` and ``target``
        of different shapes, a bad ``reduction`` or option.

    Notes
    -----
    The formula, its stability and its gradient are :func:`fastdl.{name}`'s.
    With an input that requires grad the fused :func:`fastdl.{name}_with_grad`
    runs and backward reuses its gradient.  {target_grad}

    Examples
    --------
    >>> import torch, fastdl.torch as ft
{example}
"""


def _loss_function(op):
    """The public function of a pointwise loss of the table."""
    name, tname = op.name, _torch_name(op)
    spec = _LossSpec(
        name, positional=("input", "target"), optional=tuple((e, e) for e in op.extras),
        scalars=(("reduction", "str"),) + tuple((o.name, _schema_type(o.default))
                                                for o in op.options),
        grads=("input",), negated="target" if name in _DIFFERENCE_LOSSES else None)
    ops = _register_loss(spec)
    # torch's order: the first extra (weight) may be positional, the rest are
    # keyword-only after reduction (torch's own keyword-only-in-practice
    # arguments sit behind the deprecated size_average/reduce).
    first, rest = op.extras[:1], op.extras[1:]
    params = "".join(f", {e}=None" for e in first) + ', *, reduction="mean"' \
        + "".join(f", {e}=None" for e in rest) \
        + "".join(f", {o.name}={o.default!r}" for o in op.options)
    call = ", ".join(("input", "target") + op.extras + ("reduction",)
                     + tuple(o.name for o in op.options))
    source = f"def {tname}(input, target{params}):\n    return _loss({call})\n"
    if op.torch is None:
        example = ("    >>> import math\n"
                   "    >>> x = torch.tensor([0., 1000.], dtype=torch.float64)\n"
                   f"    >>> loss = ft.{tname}(x, torch.zeros_like(x), reduction='none')\n"
                   "    >>> loss[1].item() == 1000 - math.log(2)  # no overflow\n"
                   "    True")
        twin = "a ``torch.nn.functional`` loss (PyTorch has no twin)"
    else:
        x = "torch.randn(4, 3)"
        t = "torch.rand(4, 3)" if op.sample == "binary" else "torch.randn(4, 3)"
        if op.sample == "logprob":
            x, t = "torch.log_softmax(torch.randn(4, 3), 1)", "torch.softmax(torch.randn(4, 3), 1)"
        kw = ", reduction='batchmean'" if "batchmean" in op.more_reductions else ""
        example = (f"    >>> x, t = {x}, {t}\n"
                   f"    >>> bool(torch.allclose(ft.{tname}(x, t{kw}), "
                   f"torch.nn.functional.{tname}(x, t{kw})))\n"
                   "    True")
        twin = f"``torch.nn.functional.{tname}``"
    extras_doc = "".join(
        f"\n    {e} : Tensor, optional\n        Broadcastable to the input's shape "
        "(see the fastdl function)." for e in op.extras)
    options_doc = "".join(
        f"\n    {o.name} : {type(o.default).__name__}, default {o.default!r}\n"
        f"        As for :func:`fastdl.{name}`." for o in op.options)
    reductions = ", ".join(f'"{r}"' for r in ("mean", "sum", "none") + op.more_reductions)
    target_grad = ("The target's gradient is minus the input's." if spec.negated else
                   "No gradient with respect to target or weights (backward raises "
                   "NotImplementedError if one is wanted).")
    doc = _LOSS_DOC.format(
        name=name, twin=twin, extras_doc=extras_doc, options_doc=options_doc,
        input_note=" (log-probabilities)" if op.sample == "logprob" else
        (" (logits)" if op.input_name == "logits" else ""),
        reductions=reductions, target_grad=target_grad, example=example,
        batchmean=' ("batchmean": the sum over the first dimension\'s size)'
        if "batchmean" in op.more_reductions else "")
    fn, = _generate(source, {"_loss": ops}, tname)
    fn.__doc__ = doc
    return fn


for _op in _ops.of_kind("pointwise_loss"):
    globals()[_torch_name(_op)] = _loss_function(_op)
    __all__.append(_torch_name(_op))


# ---------------------------------------------------------------------------
# fused linear + cross-entropy
# ---------------------------------------------------------------------------

_LINEAR_CROSS_ENTROPY = _register_loss(_LossSpec(
    "linear_cross_entropy", positional=("input", "linear_weight", "target"),
    optional=(("linear_bias", "b"), ("weight", "weight")),
    scalars=(("ignore_index", "int"), ("reduction", "str"), ("label_smoothing", "float"),
             ("z_loss", "float"), ("softcap", "float?"), ("chunk_size", "int?"),
             ("max_memory", "int?")),
    grads=("input", "linear_weight", "linear_bias"), class_axis=1,
    # dW and db of reduction="none" weigh each row by its grad_output: no
    # gradient for grad_output = 1 can be rescaled into them.
    fuse_none=False, grad_output_last=True))


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=-100, label_smoothing=0.0,
                         z_loss=0.0, softcap=None, chunk_size=None, max_memory=None):
    """Cross-entropy of ``linear(input, linear_weight, linear_bias)`` without the logits.

    The signature of ``torch.nn.functional.linear_cross_entropy`` (recent
    PyTorch releases), plus fastdl's ``z_loss``, ``softcap``, ``chunk_size`` and
    ``max_memory``.

    Parameters
    ----------
    input : Tensor, shape (N, H) or (H,)
        Hidden states, float32 or float64, on the CPU.
    linear_weight : Tensor, shape (V, H)
        The projection (``nn.Linear.weight``), of the input's dtype.
    target : Tensor
        Class indices (integer, shape (N,) or ()) or class probabilities
        (float, shape (N, V) or (V,)).
    linear_bias : Tensor, shape (V,), optional
    weight : Tensor, shape (V,), optional
        Per-class weights.
    reduction : {"mean", "sum", "none"}, default "mean"
    ignore_index : int or None, default -100
        None means -100, as in PyTorch.
    label_smoothing : float in [0, 1], default 0.0
    z_loss, softcap, chunk_size, max_memory
        As for :func:`fastdl.linear_cross_entropy`.

    Returns
    -------
    loss : Tensor
        0-d, or (N,) for "none".

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`cross_entropy`; also ``linear_weight`` of the wrong shape.

    Notes
    -----
    :func:`fastdl.linear_cross_entropy` walks the batch in row chunks, so
    the (N, V) logits never exist.  When a gradient is needed (and the
    reduction is "mean" or "sum"), the forward runs
    :func:`fastdl.linear_cross_entropy_with_grad` and keeps dx, dW and db;
    with "none" backward recomputes them with
    :func:`fastdl.linear_cross_entropy_backward`.

    Examples
    --------
    >>> import torch, fastdl.torch as ft
    >>> x, W = torch.randn(6, 4, requires_grad=True), torch.randn(10, 4, requires_grad=True)
    >>> target = torch.tensor([0, 3, 9, 1, 1, 2])
    >>> loss = ft.linear_cross_entropy(x, W, target)
    >>> bool(torch.allclose(loss, torch.nn.functional.cross_entropy(x @ W.T, target)))
    True
    >>> loss.backward(); W.grad.shape
    torch.Size([10, 4])
    """
    return _LINEAR_CROSS_ENTROPY(
        input, linear_weight, target, linear_bias, weight,
        -100 if ignore_index is None else operator.index(ignore_index), reduction,
        float(label_smoothing), float(z_loss), None if softcap is None else float(softcap),
        None if chunk_size is None else operator.index(chunk_size),
        None if max_memory is None else operator.index(max_memory))


# ---------------------------------------------------------------------------
# activations of the op table
# ---------------------------------------------------------------------------

#: Activations whose torch.nn.functional twin takes ``inplace``.
_INPLACE = ("relu", "leaky_relu", "elu", "silu")

#: Every activation's (forward, backward) Op by fastdl name.
ACTIVATION_OPS = {}


def _activation_ops(op):
    """The forward and backward custom ops of an activation of the table."""
    name, names = op.name, tuple(o.name for o in op.options)
    schema = "".join(f", {_schema_type(o.default)} {o.name}" for o in op.options)

    # fastdl's functions are looked up at each call (tests watch them).
    def impl(input, *options):
        return to_tensor(getattr(fastdl, name)(to_numpy(input), **dict(zip(names, options))))

    def backward_impl(grad_output, input, *options):
        return to_tensor(getattr(fastdl, name + "_backward")(
            to_numpy(grad_output), to_numpy(input), **dict(zip(names, options))))

    def fake(input, *options):
        return input.new_empty(input.shape)

    def backward_fake(grad_output, input, *options):
        return input.new_empty(input.shape)

    label = _torch_name(op)
    backward_op = Op(op.name + "_backward", backward_impl, backward_fake,
                     schema=f"(Tensor grad_output, Tensor input{schema}) -> Tensor",
                     tensors=(("grad_output", True), ("input", True)), label=label)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.options = inputs[1:]

    def backward_formula(ctx, grad_output):
        input, = ctx.saved_tensors
        return (backward_op(grad_output, input, *ctx.options),) + (None,) * len(ctx.options)

    forward_op = Op(op.name, impl, fake, schema=f"(Tensor input{schema}) -> Tensor",
                    tensors=(("input", True),), setup_context=setup_context,
                    backward=backward_formula, label=label)
    ACTIVATION_OPS[op.name] = (forward_op, backward_op)
    return forward_op


def _inplace(op, name, input, *options):
    """``op`` with ``inplace=True``."""
    check_tensor(input, "input", name)
    # torch semantics: the result is written into input, which is returned.
    # Autograd needs the forward input for backward, so it gets a copy.
    source = input.clone() if _grad_enabled() and input.requires_grad else input
    return input.copy_(op(source, *options))


_ACTIVATION_DOC = """:func:`fastdl.{name}` with the signature of ``torch.nn.functional.{tname}``.

    Parameters
    ----------
    input : Tensor
        Any shape, float32 or float64, on the CPU.{options_doc}

    Returns
    -------
    Tensor
        The input's shape and dtype{inplace_note}.

    Raises
    ------
    TypeError
        A non-tensor or an unsupported dtype (named).
    ValueError
        A tensor not on the CPU (its device named), a bad option.

    Notes
    -----
    The formula and its overflow-free evaluation are :func:`fastdl.{name}`'s;
    backward runs :func:`fastdl.{name}_backward` on the saved input.

    Examples
    --------
    >>> import torch, fastdl.torch as ft
    >>> x = torch.linspace(-3, 3, 7)
    >>> bool(torch.allclose(ft.{tname}(x), torch.nn.functional.{tname}(x), atol=1e-6))
    True
"""


def _activation_function(op):
    """The public function of an activation of the table."""
    tname = _torch_name(op)
    forward_op = _activation_ops(op)
    inplace = op.name in _INPLACE
    # torch's gelu takes ``approximate`` (a choice) by keyword only.
    numbers = [o for o in op.options if o.codes is None]
    choices = [o for o in op.options if o.codes is not None]
    params = "".join(f", {o.name}={o.default!r}" for o in numbers) \
        + (", inplace=False" if inplace else "") + (", *" if choices else "") \
        + "".join(f", {o.name}={o.default!r}" for o in choices)
    options = "".join(f", {o.name}" for o in op.options)
    source = f"def {tname}(input{params}):\n"
    if inplace:
        source += f"    if inplace:\n        return _inplace(_op, {tname!r}, input{options})\n"
    source += f"    return _op(input{options})\n"
    options_doc = "".join(
        f"\n    {o.name} : {type(o.default).__name__}, default {o.default!r}\n"
        f"        As for :func:`fastdl.{op.name}`." for o in op.options)
    if inplace:
        options_doc += ("\n    inplace : bool, default False\n        Write the result into "
                        "``input`` and return it (computed out of place, then copied).")
    doc = _ACTIVATION_DOC.format(
        name=op.name, tname=tname, options_doc=options_doc,
        inplace_note=" (``input`` itself when ``inplace``)" if inplace else "")
    fn, = _generate(source, {"_op": forward_op, "_inplace": _inplace}, tname)
    fn.__doc__ = doc
    return fn


for _op in _ops.of_kind("activation"):
    globals()[_torch_name(_op)] = _activation_function(_op)
    __all__.append(_torch_name(_op))
del _op


# ---------------------------------------------------------------------------
# softmax, log_softmax, logsumexp
# ---------------------------------------------------------------------------

def _rows_ops(name):
    """The custom op of fastdl's ``name`` (softmax or log_softmax) and its backward."""
    def impl(input, dim):
        return to_tensor(getattr(fastdl, name)(to_numpy(input), dim))

    def backward_impl(grad_output, output, dim):
        return to_tensor(getattr(fastdl, name + "_backward")(
            to_numpy(grad_output), to_numpy(output), dim))

    backward_op = Op(name + "_backward", backward_impl,
                     lambda grad_output, output, dim: output.new_empty(output.shape),
                     schema="(Tensor grad_output, Tensor output, int dim) -> Tensor",
                     tensors=(("grad_output", True), ("output", True)), label=name)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)  # both backward formulas take the output
        ctx.dim = inputs[1]

    def backward_formula(ctx, grad_output):
        output, = ctx.saved_tensors
        return backward_op(grad_output, output, ctx.dim), None

    return Op(name, impl, lambda input, dim: input.new_empty(input.shape),
              schema="(Tensor input, int dim) -> Tensor", tensors=(("input", True),),
              setup_context=setup_context, backward=backward_formula), backward_op


ROWS_OPS = {name: _rows_ops(name) for name in ("softmax", "log_softmax")}
_SOFTMAX = ROWS_OPS["softmax"][0]
_LOG_SOFTMAX = ROWS_OPS["log_softmax"][0]


def _rows(op, name, input, dim, dtype):
    if dtype is not None:
        check_tensor(input, "input", name)
        input = input.to(dtype)  # as torch: the input is cast before the op
    return op(input, operator.index(dim))


_ROWS_DOC = """{summary} (``torch.nn.functional.{name}``), by :func:`fastdl.{name}`.

    Parameters
    ----------
    input : Tensor
        Any shape, float32 or float64, on the CPU.
    dim : int
        The axis the distribution runs along (required).
    dtype : torch.dtype, optional
        Cast the input to it first (float32 or float64), as PyTorch.

    Returns
    -------
    Tensor
        The input's shape{returns}.

    Raises
    ------
    TypeError, ValueError
        Unsupported dtype or device (named), ``dim`` out of range.

    Notes
    -----
    {formula}, with the max ``m`` along ``dim`` and float64 sums; backward is
    :func:`fastdl.{name}_backward` on the saved output.

    Examples
    --------
    >>> import torch, fastdl.torch as ft
{example}
"""


def softmax(input, dim, *, dtype=None):
    return _rows(_SOFTMAX, "softmax", input, dim, dtype)


def log_softmax(input, dim, *, dtype=None):
    return _rows(_LOG_SOFTMAX, "log_softmax", input, dim, dtype)


softmax.__doc__ = _ROWS_DOC.format(
    summary="Softmax along ``dim``", name="softmax",
    returns="; each slice along ``dim`` sums to 1",
    formula="``exp(x - m) / sum(exp(x - m))``",
    example="    >>> ft.softmax(torch.tensor([[0., 0.], [1000., 0.]]), dim=1)\n"
            "    tensor([[0.5000, 0.5000],\n            [1.0000, 0.0000]])")
log_softmax.__doc__ = _ROWS_DOC.format(
    summary="Log-softmax along ``dim``", name="log_softmax", returns="",
    formula="``x - m - log(sum(exp(x - m)))``",
    example="    >>> ft.log_softmax(torch.tensor([1000., 1., 0.], dtype=torch.float64), dim=0)\n"
            "    tensor([    0.,  -999., -1000.], dtype=torch.float64)")


def _reduced_shape(input, dim, keepdim):
    ndim = max(input.ndim, 1)
    axes = {d % ndim for d in dim}
    if keepdim:
        return [1 if i in axes else n for i, n in enumerate(input.shape)]
    return [n for i, n in enumerate(input.shape) if i not in axes]


def _logsumexp_impl(input, dim, keepdim):
    return to_tensor(fastdl.logsumexp(to_numpy(input), tuple(dim), keepdims=keepdim))


def _logsumexp_setup(ctx, inputs, output):
    input, ctx.dim, ctx.keepdim = inputs
    ctx.save_for_backward(input, output)


def _logsumexp_backward(ctx, grad_output):
    # d lse / d x = exp(x - lse), the softmax over the reduced axes; torch
    # ops, so this backward is itself differentiable.
    input, output = ctx.saved_tensors
    shape = _reduced_shape(input, ctx.dim, True)
    return grad_output.reshape(shape) * torch.exp(input - output.reshape(shape)), None, None


_LOGSUMEXP = Op("logsumexp", _logsumexp_impl,
                lambda input, dim, keepdim: input.new_empty(_reduced_shape(input, dim, keepdim)),
                schema="(Tensor input, int[] dim, bool keepdim) -> Tensor",
                tensors=(("input", True),), setup_context=_logsumexp_setup,
                backward=_logsumexp_backward)


def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(input), dim))``, stably (``torch.logsumexp``), by :func:`fastdl.logsumexp`.

    Parameters
    ----------
    input : Tensor
        Any shape, float32 or float64, on the CPU.
    dim : int or tuple of ints
        The axes reduced.
    keepdim : bool, default False
        Keep the reduced axes with size 1.

    Returns
    -------
    Tensor
        The input's shape without (or with size 1 at) ``dim``.

    Raises
    ------
    TypeError, ValueError
        Unsupported dtype or device (named), ``dim`` out of range.

    Notes
    -----
    ``m + log(sum(exp(x - m)))`` with the max ``m``, float64 sums; an all
    -inf slice gives -inf.  The gradient is ``exp(x - lse)``.

    Examples
    --------
    >>> import torch, fastdl.torch as ft
    >>> ft.logsumexp(torch.tensor([[1000., 1000.]], dtype=torch.float64), 1) - 1000
    tensor([0.6931], dtype=torch.float64)
    """
    dims = [operator.index(dim)] if not isinstance(dim, (tuple, list)) else \
        [operator.index(d) for d in dim]
    return _LOGSUMEXP(input, dims, bool(keepdim))


# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------

def _linear_impl(input, weight, bias):
    return to_tensor(fastdl.affine_forward(to_numpy(input), to_numpy(weight), to_numpy(bias)))


def _linear_backward_impl(grad_output, input, weight, bias, input_grad):
    dx, dW, db = fastdl.affine_backward(to_numpy(grad_output), to_numpy(input),
                                        to_numpy(weight), bias=bias, input_grad=input_grad)
    empty = input.new_empty(0)
    return (empty if dx is None else to_tensor(dx), to_tensor(dW),
            empty if db is None else to_tensor(db))


def _linear_backward_fake(grad_output, input, weight, bias, input_grad):
    return (input.new_empty(input.shape if input_grad else 0), weight.new_empty(weight.shape),
            weight.new_empty(weight.shape[0] if bias else 0))


_LINEAR_BACKWARD = Op(
    "linear_backward", _linear_backward_impl, _linear_backward_fake,
    schema="(Tensor grad_output, Tensor input, Tensor weight, bool bias, bool input_grad)"
           " -> (Tensor, Tensor, Tensor)",
    tensors=(("grad_output", True), ("input", True), ("weight", True)), label="linear")


def _linear_setup(ctx, inputs, output):
    input, weight, bias = inputs
    ctx.save_for_backward(input, weight)
    ctx.bias = bias is not None


def _linear_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    want = ctx.needs_input_grad
    dx, dW, db = _LINEAR_BACKWARD(grad_output, input, weight, ctx.bias, want[0])
    return (dx if want[0] else None, dW if want[1] else None,
            db if ctx.bias and want[2] else None)


_LINEAR = Op("linear", _linear_impl,
             lambda input, weight, bias: input.new_empty(input.shape[:-1] + weight.shape[:1]),
             schema="(Tensor input, Tensor weight, Tensor? bias) -> Tensor",
             tensors=(("input", True), ("weight", True), ("bias", True)),
             setup_context=_linear_setup, backward=_linear_backward)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` (``torch.nn.functional.linear``), by fastdl.

    Parameters
    ----------
    input : Tensor, shape (*, in_features)
        float32 or float64, on the CPU; leading axes are flattened (a view
        for a contiguous input) and restored.
    weight : Tensor, shape (out_features, in_features)
    bias : Tensor, shape (out_features,), optional

    Returns
    -------
    Tensor, shape (*, out_features)

    Raises
    ------
    TypeError, ValueError
        Unsupported or mixed dtypes, a device other than the CPU (named),
        inconsistent shapes.

    Notes
    -----
    One GEMM forward; backward is :func:`fastdl.affine_backward` (``dx``
    skipped when the input needs no gradient).

    Examples
    --------
    >>> import torch, fastdl.torch as ft
    >>> x, W, b = torch.randn(5, 3), torch.randn(2, 3), torch.randn(2)
    >>> bool(torch.allclose(ft.linear(x, W, b), torch.nn.functional.linear(x, W, b), atol=1e-6))
    True
    """
    if not (isinstance(input, torch.Tensor) and input.ndim > 2):
        return _LINEAR(input, weight, bias)
    lead = input.shape[:-1]
    y = _LINEAR(input.reshape(-1, input.shape[-1]), weight, bias)
    return y.reshape(lead + y.shape[-1:])


#: Every custom op defined here (for torch.library.opcheck in the tests).
ALL_OPS = tuple(
    [op for ops in LOSS_OPS.values() for op in (ops.forward, ops.with_grad, ops.backward)]
    + [op for pair in ACTIVATION_OPS.values() for op in pair]
    + [op for pair in ROWS_OPS.values() for op in pair]
    + [_LOGSUMEXP, _LINEAR, _LINEAR_BACKWARD])
