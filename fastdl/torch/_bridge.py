"""Tensors in, fastdl's NumPy functions, tensors out: the machinery of every op.

Each fastdl.torch op is a fastdl function registered as a torch custom
operator (:func:`torch.library.custom_op`, namespace ``fastdl``, CPU only)
with a fake function (output shapes for tracing) and, when it is
differentiable, an autograd formula (``register_autograd``).  :class:`Op`
does the registration once per op.

One implementation, three ways in
---------------------------------
The dispatcher's round trip into a Python custom op costs about 7 us per call
in eager mode, more than fastdl's kernel for a 64 x 10 batch.  So an
:class:`Op` call picks its way in (:meth:`Op.check`):

* plain eager mode (plain ``Tensor``/``Parameter`` arguments, no
  torch.compile, dispatch or torch-function mode, functorch transform) with
  nothing for autograd to record: the implementation itself, directly;
* the same, with an input that requires grad: a ``torch.autograd.Function``
  whose forward runs the implementation and the very ``setup_context`` given
  to ``register_autograd``, and whose backward is the registered one;
* anything else (torch.compile tracing, FakeTensor, ``make_fx``, vmap,
  tensor subclasses): the registered custom op, ``torch.ops.fastdl.<name>``.

The first two give the custom op's results, because they run its code.

Zero copy
---------
:func:`to_numpy` views a CPU tensor as an ndarray (``Tensor.numpy``, no
copy) after one ``.contiguous()``, which copies only a strided tensor;
:func:`to_tensor` wraps fastdl's result with ``torch.from_numpy`` (no copy).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float32, torch.float64)

_Parameter = torch.nn.Parameter
_is_compiling = torch.compiler.is_compiling
_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled
_functorch_level = torch._C._functorch.peek_interpreter_stack
_grad_enabled = torch.is_grad_enabled
_from_numpy = torch.from_numpy
_asarray = np.asarray

# How an Op call runs (see the module docstring).
_DISPATCH, _DIRECT = 0, 1


def to_numpy(t):
    """The ndarray view of a CPU tensor (None stays None).

    ``Tensor.numpy`` refuses a tensor that requires grad only while grad
    mode is on; implementations run with it off or on tensors that need no
    grad (:meth:`Op.check` sends every call autograd records through
    ``torch.autograd.Function`` or the custom op).
    """
    if t is None:
        return None
    return t.contiguous().numpy()


def to_tensor(a):
    """fastdl's result (an ndarray or a NumPy scalar) as a tensor, sharing its memory."""
    return _from_numpy(_asarray(a))


def _autograd_function(name, impl, setup_context, backward):
    """``impl`` as a torch.autograd.Function with the custom op's autograd formula.

    The forward takes ``ctx`` and calls ``setup_context`` itself rather than
    declaring it: ``Function.apply`` binds the arguments of a forward with a
    separate ``setup_context`` through ``inspect.signature`` on every call
    (about 20 us).  ``apply`` is the C entry point under the Python wrapper,
    which only adds handling for functorch transforms, and those take the
    dispatcher route anyway.
    """
    def forward(ctx, *args):
        output = impl(*args)
        setup_context(ctx, args, output)
        return output

    function = type(f"{name}_function", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})
    return super(torch.autograd.Function, function).apply


class Op:
    """One fastdl function as the custom op ``fastdl::<name>`` (CPU).

    Parameters
    ----------
    name : str
        The op's name in the ``fastdl`` namespace.
    impl : callable
        Tensors in, tensors out, through fastdl's NumPy functions; it takes
        the op's arguments positionally, in schema order.
    fake : callable
        Same arguments; returns empty tensors of the result's shapes and
        dtypes (``register_fake``).
    schema : str
        The op's schema, e.g. ``"(Tensor input, int dim) -> Tensor"``.
    tensors : tuple of (str, bool)
        The leading tensor arguments (None allowed): name, and whether it
        must be float32/float64.  Calls check them.
    setup_context, backward : callable, optional
        The autograd formula (``register_autograd``); None for an op that
        is not differentiable (the backward ops).
    label : str, optional
        The public function named in error messages (default ``name``).

    Calling the Op checks the tensors and runs it (see the module docstring).
    """

    def __init__(self, name, impl, fake, *, schema, tensors, setup_context=None,
                 backward=None, label=None):
        self.name = name
        self.label = label or name
        self.impl = impl
        self.tensors = tuple(tensors)
        self.custom_op = torch.library.custom_op(
            f"fastdl::{name}", impl, mutates_args=(), device_types="cpu", schema=schema)
        self.custom_op.register_fake(fake)
        self._function = None
        if backward is not None:
            self.custom_op.register_autograd(backward, setup_context=setup_context)
            self._function = _autograd_function(name, impl, setup_context, backward)

    @property
    def overload(self):
        """``torch.ops.fastdl.<name>.default``, for ``torch.library.opcheck``."""
        return getattr(torch.ops.fastdl, self.name).default

    def check(self, args):
        """Check the tensor arguments; return (route, whether autograd records the call)."""
        grad = False
        plain = True
        for (name, floating), a in zip(self.tensors, args):
            if a is None:
                continue
            kind = type(a)
            if (kind is Tensor or kind is _Parameter) and a.is_cpu \
                    and (not floating or a.dtype in FLOAT_DTYPES):
                grad = grad or a.requires_grad
            else:  # raise for a bad argument; a valid subclass takes the dispatcher
                check_tensor(a, name, self.label, floating=floating)
                grad = grad or a.requires_grad
                plain = False
        grad = grad and _grad_enabled()
        # is_compiling first: torch.compile must not trace the C queries.
        if _is_compiling() or not plain or _dispatch_modes() or _function_modes() \
                or _functorch_level() is not None:
            return _DISPATCH, grad
        return _DIRECT, grad

    def run(self, route, grad, args):
        """Run the op by ``route`` (from :meth:`check`)."""
        if route == _DIRECT:
            if not grad:
                return self.impl(*args)
            if self._function is not None:
                return self._function(*args)
        # Traced, transformed, a subclass, or gradients through an op with
        # no formula (torch raises its own error at backward).
        return self.custom_op(*args)

    def __call__(self, *args):
        route, grad = self.check(args)
        return self.run(route, grad, args)

    def __repr__(self):
        return f"<fastdl.torch op fastdl::{self.name}>"


def check_tensor(t, name, op, *, floating=True):
    """Raise unless ``t`` is a CPU tensor (of float32/float64 when ``floating``)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"fastdl.torch.{op}: {name} must be a torch.Tensor, "
                        f"got {type(t).__name__}")
    if not t.is_cpu:
        raise ValueError(f"fastdl.torch.{op}: {name} is on device '{t.device}'; "
                         "fastdl runs on CPU tensors only (move it with .cpu())")
    if floating and t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"fastdl.torch.{op}: {name} has dtype {t.dtype}; "
                        "fastdl supports torch.float32 and torch.float64")


def no_gradient(ctx, op, names):
    """Raise at backward if autograd wants a gradient fastdl does not compute.

    ``names`` maps an input's position in the op's arguments to its name.
    """
    for i, name in names.items():
        if ctx.needs_input_grad[i]:
            raise NotImplementedError(
                f"fastdl.torch.{op}: the gradient with respect to {name} is not "
                f"implemented; pass {name} detached (.detach())")


def first_order_only(op):
    """Raise in a backward that is not itself differentiable, under create_graph=True."""
    if _grad_enabled():
        raise NotImplementedError(
            f"fastdl.torch.{op}: double backward (create_graph=True) is not supported; "
            "fastdl.torch ops have first derivatives only")
