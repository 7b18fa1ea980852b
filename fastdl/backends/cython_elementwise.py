"""The "elementwise" kernel family on Cython (``kernels/elementwise.pyx``).

A thin layer over the compiled module ``_cy_elementwise`` (an OpenMP and a
serial build, chosen per call by :mod:`fastdl.backends._cython_select`): it turns the
contract's ``None`` arrays into a flag plus a stand-in buffer (the compiled
kernels take typed buffers), and returns early on empty arrays.

Importing this module raises ImportError when the extension is not built;
the backend registry then reports ``cython/elementwise`` as unavailable.

See :mod:`fastdl.backends.numpy_elementwise` for the kernel contract.
"""

from __future__ import annotations

import numpy as np

from fastdl.backends._cython_select import Module

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


def _activation(name, compiled):
    def kernel(*args):
        n = args[0].shape[0]
        if n:
            compiled(args[0].dtype, n, *args)
    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"``{name}`` of the elementwise contract (Cython)."
    return kernel


for _name in ("sigmoid", "log_sigmoid", "softplus", "relu", "leaky_relu", "elu", "silu"):
    globals()[_name] = _activation(_name, getattr(_cy, _name))
    globals()[_name + "_backward"] = _activation(_name + "_backward",
                                                 getattr(_cy, _name + "_backward"))
tanh = _activation("tanh", _cy.tanh_)  # tanh_: the .pyx cimports libc's tanh
tanh_backward = _activation("tanh_backward", _cy.tanh_backward)
del _name


def _loss_forward(name, compiled):
    """``name(input, target, *options, out) -> float`` over the compiled kernel."""
    def kernel(input, target, *rest):
        *options, out = rest
        n = input.shape[0]
        if n == 0:
            return 0.0
        buf, has_out = _opt(out, input.dtype)
        return float(compiled(input.dtype, n, input, target, *options, buf, has_out))
    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"``{name}`` of the elementwise contract (Cython)."
    return kernel


def _loss_backward(name, compiled):
    """``name(dy, input, target, *options, scale, out)`` over the compiled kernel."""
    def kernel(dy, input, target, *rest):
        n = input.shape[0]
        if n == 0:
            return
        d, has_dy = _opt(dy, input.dtype)
        compiled(input.dtype, n, d, has_dy, input, target, *rest)
    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"``{name}`` of the elementwise contract (Cython)."
    return kernel


for _name in ("mse_loss", "l1_loss", "huber_loss", "log_cosh_loss", "kl_div"):
    globals()[_name] = _loss_forward(_name, getattr(_cy, _name))
    globals()[_name + "_backward"] = _loss_backward(_name + "_backward",
                                                    getattr(_cy, _name + "_backward"))
del _name


def binary_cross_entropy_with_logits(input, target, weight, pos_weight, out):
    n = input.shape[0]
    if n == 0:
        return 0.0
    dt = input.dtype
    w, has_w = _opt(weight, dt)
    pw, has_pw = _opt(pos_weight, dt)
    o, has_out = _opt(out, dt)
    return float(_cy.binary_cross_entropy_with_logits(
        dt, n, input, target, w, has_w, pw, has_pw, o, has_out))


def binary_cross_entropy_with_logits_backward(dy, input, target, weight, pos_weight,
                                              scale, out):
    n = input.shape[0]
    if n == 0:
        return
    dt = input.dtype
    d, has_dy = _opt(dy, dt)
    w, has_w = _opt(weight, dt)
    pw, has_pw = _opt(pos_weight, dt)
    _cy.binary_cross_entropy_with_logits_backward(
        dt, n, d, has_dy, input, target, w, has_w, pw, has_pw, float(scale), out)


def entropy(p, out):
    if p.shape[0] == 0:
        return
    _cy.entropy(p.dtype, p.size, p, out)
