"""The "elementwise" kernel family on Cython (``kernels/elementwise.pyx.tp``).

A thin layer over the compiled module ``_elementwise`` (an OpenMP and a
serial build, chosen per call by :mod:`fastdl.backends.cython._select`): it
turns the contract's options tuple into the compiled kernels' float
arguments and its ``None`` arrays into a flag plus a stand-in buffer (the
compiled kernels take typed buffers), and returns early on empty arrays.
The wrappers are made per kind for every op of the table
(:mod:`fastdl._ops`), as the template makes the compiled kernels, so a new
op needs no edit here.

Importing this module raises ImportError when the extension is not built;
the backend registry then reports ``cython/elementwise`` as unavailable.

See :mod:`fastdl.backends.numpy.elementwise` for the kernel contract.
"""

from __future__ import annotations

import numpy as np

from ... import _ops
from fastdl.backends.cython._select import Module

_cy = Module("elementwise")

NAME = "cython"

#: Whether the extension was compiled with OpenMP (else it runs serially).
HAVE_OPENMP = _cy.HAVE_OPENMP

# Stand-ins for absent optional arrays, one per dtype (fused-type arguments of
# one call must share a dtype).  Length 1 and never read or written: the
# kernels test the matching flag first.  Writable because the output views
# are not const; nothing ever writes to them.
_STANDIN = {np.dtype(dt): np.zeros(1, dt) for dt in (np.float32, np.float64)}


def _opt(a, dtype):
    """(buffer, flag) for an optional array."""
    return (_STANDIN[dtype], False) if a is None else (a, True)


def _two(options):
    """The options as the compiled kernels' two float arguments (unused ones 0)."""
    if not options:  # most ops: no tuple to build
        return 0.0, 0.0
    o = tuple(options) + (0.0, 0.0)
    return float(o[0]), float(o[1])


def _activation_kernels(name):
    fwd, bwd = getattr(_cy, name), getattr(_cy, name + "_backward")

    def forward(x, options, out):
        n = x.shape[0]
        if n:
            o0, o1 = _two(options)
            fwd(x.dtype, n, x, o0, o1, out)

    def backward(dy, x, options, out):
        n = x.shape[0]
        if n:
            o0, o1 = _two(options)
            bwd(x.dtype, n, dy, x, o0, o1, out)

    return forward, backward


def _weight_aux(dtype, weight, aux):
    """w, has_w, a, has_a: the compiled loss kernels' form of weight and aux."""
    return (*_opt(weight, dtype), *_opt(aux, dtype))


def _loss_kernels(name):
    fwd, bwd = getattr(_cy, name), getattr(_cy, name + "_backward")
    both = getattr(_cy, name + "_with_grad")

    def forward(input, target, weight, aux, options, out):
        n = input.shape[0]
        if n == 0:
            return 0.0
        dt = input.dtype
        return float(fwd(dt, n, input, target, *_weight_aux(dt, weight, aux),
                         _two(options)[0], *_opt(out, dt)))

    def backward(dy, input, target, weight, aux, options, scale, out):
        n = input.shape[0]
        if n:
            dt = input.dtype
            bwd(dt, n, *_opt(dy, dt), input, target, *_weight_aux(dt, weight, aux),
                _two(options)[0], float(scale), out)

    def with_grad(input, target, weight, aux, options, scale, loss_out, grad):
        n = input.shape[0]
        if n == 0:
            return 0.0
        dt = input.dtype
        return float(both(dt, n, input, target, *_weight_aux(dt, weight, aux),
                          _two(options)[0], float(scale), *_opt(loss_out, dt), grad))

    return forward, backward, with_grad


#: The wrapper factory of each kind, returning the kernels in the order of
#: ``_ops.kernel_names``.
_FACTORIES = {"activation": _activation_kernels, "pointwise_loss": _loss_kernels}

for _kind, _make in _FACTORIES.items():
    for _op in _ops.of_kind(_kind):
        for _name, _fn in zip(_ops.kernel_names(_op), _make(_op.name)):
            _fn.__name__ = _fn.__qualname__ = _name
            _fn.__doc__ = (f"``{_name}`` of the elementwise contract "
                           f"({_kind.replace('_', ' ')}, Cython).")
            globals()[_name] = _fn
del _kind, _make, _op, _name, _fn


def entropy(p, out):
    """``entropy`` of the elementwise contract (Cython), rows of p."""
    if p.shape[0] == 0:
        return
    _cy.entropy(p.dtype, p.size, p, out)
