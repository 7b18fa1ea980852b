"""The Cython backend: compiled OpenMP kernels built from ``kernels/*.pyx``.

A thin layer over the compiled modules ``_softmax``, ``_cross_entropy``
and ``_affine`` (each in an OpenMP and a serial build, chosen per call by
:mod:`fastdl.backends.cython._select`), which turns ``None`` options into the flags the
kernels take, and handles empty arrays (which the compiled kernels do not
accept) here.  The affine GEMMs go through ``np.matmul`` (BLAS); only the
bias add and the bias gradient are Cython kernels.

Importing this module raises ImportError when the extensions are not built;
the backend registry reports that as "backend unavailable".

See :mod:`fastdl.backends` for the kernel contract.
"""

from __future__ import annotations

import numpy as np

from ... import _config
from fastdl.backends.cython._select import Module

_cy_affine = Module("affine")
_cy_cross_entropy = Module("cross_entropy")
_cy_softmax = Module("softmax")

NAME = "cython"

#: Whether the extensions were compiled with OpenMP (else they run serially).
HAVE_OPENMP = _cy_softmax.HAVE_OPENMP

# Stand-ins for the optional arrays (weight=None; grad=None, when scale may
# be None too): the kernels take a typed buffer plus a flag and never touch
# the stand-in.  The input stand-ins are read-only; the grad stand-in must be
# writable only because the kernel's grad buffer type is.
_DUMMY_WEIGHT = {}
_DUMMY_GRAD = {}
for _dt in (np.float32, np.float64):
    _DUMMY_WEIGHT[np.dtype(_dt)] = np.zeros(1, _dt)
    _DUMMY_WEIGHT[np.dtype(_dt)].flags.writeable = False
    _DUMMY_GRAD[np.dtype(_dt)] = np.zeros((1, 1), _dt)
del _dt
_DUMMY_SCALE = np.zeros(1, np.float64)
_DUMMY_SCALE.flags.writeable = False


# The bias add and the bias gradient run on the calling thread whatever the
# size.  Right after a multi-threaded GEMM, BLAS's worker threads are still
# spinning, and an OpenMP region of our own on the same cores fights them:
# measured here (2 cores, 2 threads, 256x1024x1024 float32, interleaved
# medians), affine_forward took 1.23x the bare GEMM with a parallel bias add
# and 1.00x with a serial one; affine_backward 1.10x against 0.98x; at
# 2048x1024x1024 the two were within 1%.

def affine_forward(x, W, b, out):
    np.matmul(x, W.T, out=out)
    if b is not None and out.size:
        _cy_affine.bias_add(out.dtype, 1, out, b)  # 1 element's worth: serial


def affine_backward(dy, x, W, dx, dW, db):
    if dx is not None:
        np.matmul(dy, W, out=dx)
    np.matmul(dy.T, x, out=dW)
    if db is None or db.size == 0:
        return
    if dy.shape[0] == 0:
        db[...] = 0
        return
    _cy_affine.bias_grad(dy.dtype, 1, dy, db)  # serial, see above


def logsumexp(x, out):
    if x.shape[0] == 0:
        return
    if x.shape[1] == 0:
        out[...] = -np.inf  # log(sum of nothing) = log(0)
        return
    _cy_softmax.logsumexp(x.dtype, x.size, x, out)


def softmax(x, out):
    if x.size:
        _cy_softmax.softmax(x.dtype, x.size, x, out)


def log_softmax(x, out):
    if x.size:
        _cy_softmax.log_softmax(x.dtype, x.size, x, out)


def softmax_backward(dy, y, out):
    if y.size:
        _cy_softmax.softmax_backward(y.dtype, y.size, dy, y, out)


def log_softmax_backward(dy, y, out):
    if y.size:
        _cy_softmax.log_softmax_backward(y.dtype, y.size, dy, y, out)


def _weight_arg(weight, dtype):
    if weight is None:
        return _DUMMY_WEIGHT[dtype], False
    return weight, True


def _grad_args(grad, scale, dtype):
    """(grad, scale, has_grad); scale is only read when there is a grad."""
    if grad is None:
        return _DUMMY_GRAD[dtype], _DUMMY_SCALE, False
    return grad, scale, True


def cross_entropy_index(logits, target, weight, ignore_index, label_smoothing,
                        scale, loss, grad):
    n, n_classes = logits.shape
    if n == 0:
        return
    if n_classes == 0:  # then every row is ignored (validated by the caller)
        loss[...] = 0.0
        return
    w, has_w = _weight_arg(weight, logits.dtype)
    g, sc, has_g = _grad_args(grad, scale, logits.dtype)
    _cy_cross_entropy.cross_entropy_index(
        logits.dtype, logits.size, logits, target, w, has_w, int(ignore_index),
        float(label_smoothing), sc, loss, g, has_g)


def cross_entropy_index_fast(logits, target, ignore_index, label_smoothing, mean, out,
                             want_grad):
    """The common case of ``cross_entropy(_with_grad)`` in one compiled call.

    Optional backend entry (see ``kernels/cross_entropy.pyx``): returns
    ``(loss, grad)`` or None when the arguments are not that case.  Built
    into both module builds; the thread count is chosen from the logits'
    size as for every kernel (a non-array gets None from the compiled
    checks whichever build runs).
    """
    threads = _config.threads_for(getattr(logits, "size", 0))
    module = _cy_cross_entropy.serial if threads == 1 else _cy_cross_entropy.parallel
    return module.cross_entropy_index_fast(logits, target, ignore_index, label_smoothing,
                                           mean, out, want_grad, threads)


def cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss,
                       grad):
    n, n_classes = logits.shape
    if n == 0:
        return
    if n_classes == 0:  # sum over no classes
        loss[...] = 0.0
        return
    w, has_w = _weight_arg(weight, logits.dtype)
    g, sc, has_g = _grad_args(grad, scale, logits.dtype)
    _cy_cross_entropy.cross_entropy_prob(
        logits.dtype, logits.size, logits, target, w, has_w, float(label_smoothing),
        sc, loss, g, has_g)
