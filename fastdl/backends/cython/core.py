"""The Cython backend: compiled OpenMP kernels built from ``kernels/*.pyx``.

A thin layer over the compiled modules ``_softmax``, ``_cross_entropy``
and ``_affine``, which handles empty arrays (which the compiled kernels do
not accept) and passes the thread count for the call's size
(:func:`fastdl._config.threads_for`).  The compiled kernels take the arrays
themselves (no typed memoryviews, no fused-type dispatch: see "kernel
arguments" in ``kernels/_common.pxd``) and run a plain loop on one thread,
so only the OpenMP build of each module is called.  The affine GEMMs go
through ``np.matmul`` (BLAS); only the bias add and the bias gradient are
Cython kernels.

Importing this module raises ImportError when the extensions are not built;
the backend registry reports that as "backend unavailable".

See :mod:`fastdl.backends` for the kernel contract.
"""

from __future__ import annotations

import numpy as np

from ... import _config
from fastdl.backends.cython._select import Module

_affine = Module("affine").parallel
_cross_entropy = Module("cross_entropy").parallel
_softmax = Module("softmax").parallel

NAME = "cython"

#: Whether the extensions were compiled with OpenMP (else they run serially).
HAVE_OPENMP = bool(_softmax.HAVE_OPENMP)

_threads_for = _config.threads_for


# The bias add and the bias gradient run on the calling thread whatever the
# size (_config.BIAS_SERIAL): right after a multi-threaded GEMM, BLAS's
# worker threads are still spinning, and an OpenMP region of our own on the
# same cores fights them.

def affine_forward(x, W, b, out):
    np.matmul(x, W.T, out=out)
    if b is not None and out.size:
        _affine.bias_add(out, b, 1)


def affine_backward(dy, x, W, dx, dW, db):
    if dx is not None:
        np.matmul(dy, W, out=dx)
    np.matmul(dy.T, x, out=dW)
    if db is None or db.size == 0:
        return
    if dy.shape[0] == 0:
        db[...] = 0
        return
    _affine.bias_grad(dy, db, 1)


def logsumexp(x, out):
    if x.shape[0] == 0:
        return
    if x.shape[1] == 0:
        out[...] = -np.inf  # log(sum of nothing) = log(0)
        return
    _softmax.logsumexp(x, out, _threads_for(x.size))


# Outputs of STREAM_MIN_BYTES or more are written past the caches (the
# kernels' stream argument; see _config.STREAM_MIN_BYTES).

def softmax(x, out):
    if x.size:
        _softmax.softmax(x, out, _threads_for(x.size),
                         x.nbytes >= _config.STREAM_MIN_BYTES)


def log_softmax(x, out):
    if x.size:
        _softmax.log_softmax(x, out, _threads_for(x.size),
                             x.nbytes >= _config.STREAM_MIN_BYTES)


def softmax_backward(dy, y, out):
    if y.size:
        _softmax.softmax_backward(dy, y, out, _threads_for(y.size))


def log_softmax_backward(dy, y, out):
    if y.size:
        _softmax.log_softmax_backward(dy, y, out, _threads_for(y.size))


def cross_entropy_index(logits, target, weight, ignore_index, label_smoothing,
                        scale, loss, grad):
    n, n_classes = logits.shape
    if n == 0:
        return 0.0
    if n_classes == 0:  # then every row is ignored (validated by the caller)
        loss[...] = 0.0
        return 0.0
    return _cross_entropy.cross_entropy_index(
        logits, target, weight, ignore_index, label_smoothing, scale, loss, grad,
        _config.EXACT_SUM_MAX_ROWS, _threads_for(logits.size),
        grad is not None and grad.nbytes >= _config.STREAM_MIN_BYTES)


def cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss,
                       grad):
    n, n_classes = logits.shape
    if n == 0:
        return 0.0
    if n_classes == 0:  # sum over no classes
        loss[...] = 0.0
        return 0.0
    return _cross_entropy.cross_entropy_prob(
        logits, target, weight, label_smoothing, scale, loss, grad,
        _config.EXACT_SUM_MAX_ROWS, _threads_for(logits.size))


def cross_entropy_index_fast(logits, target, ignore_index, label_smoothing, mean, out,
                             want_grad):
    return _cross_entropy.cross_entropy_index_fast(
        logits, target, ignore_index, label_smoothing, mean, out, want_grad,
        _config.EXACT_SUM_MAX_ROWS, _threads_for(logits.size),
        want_grad and logits.nbytes >= _config.STREAM_MIN_BYTES)
