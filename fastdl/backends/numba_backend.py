"""The Numba backend: the kernel contract on Numba-compiled loops.

A thin dispatch layer over :mod:`fastdl.backends._numba_kernels`.  For each
call it handles empty arrays, chooses the serial or the parallel compiled
kernel from the element count (``_config.threads_for``) and, before a
parallel call, sets Numba's thread count to fastdl's.  The GEMMs of the
affine kernels go to NumPy's BLAS (Numba's own ``np.dot`` needs SciPy);
the bias add and bias gradient are Numba kernels.

Importing this module compiles nothing: every kernel is a lazy dispatcher
compiled (or loaded from Numba's cache) on its first call for a dtype.

See :mod:`fastdl.backends` for the kernel contract.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _config as config
from . import _numba_kernels as _k

NAME = "numba"


def _pick(kernel, n_elements):
    """The serial or the parallel dispatcher of ``kernel`` for this size.

    Numba's thread count is per calling thread and fastdl's may change at
    any time, so it is compared (cheap) and set before each parallel call.
    It cannot exceed the pool Numba started with (NUMBA_NUM_THREADS).
    """
    serial, parallel = kernel
    threads = config.threads_for(n_elements)
    if threads <= 1:
        return serial
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    if threads <= 1:
        return serial
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    return parallel


def affine_forward(x, W, b, out):
    np.matmul(x, W.T, out=out)
    if b is not None and out.size:
        _pick(_k.bias_add, out.size)(out, b)


def affine_backward(dy, x, W, dx, dW, db):
    np.matmul(dy, W, out=dx)
    np.matmul(dy.T, x, out=dW)
    if db is None or db.shape[0] == 0:
        return
    kernel = _pick(_k.column_sums, dy.size)
    # One block of rows per thread, each summed into its own float64 row.
    n_blocks = 1 if kernel is _k.column_sums[0] else numba.get_num_threads()
    n_blocks = max(1, min(n_blocks, dy.shape[0]))
    kernel(dy, db, np.zeros((n_blocks, db.shape[0])))


def logsumexp(x, out):
    if x.shape[0] == 0:
        return
    if x.shape[1] == 0:  # log(sum of nothing) = log(0)
        out[...] = -np.inf
        return
    _pick(_k.logsumexp, x.size)(x, out)


def softmax(x, out):
    if x.size == 0:
        return
    _pick(_k.softmax, x.size)(x, out)


def log_softmax(x, out):
    if x.size == 0:
        return
    _pick(_k.log_softmax, x.size)(x, out)


def softmax_backward(dy, y, out):
    if y.size == 0:
        return
    _pick(_k.softmax_backward, y.size)(dy, y, out)


def log_softmax_backward(dy, y, out):
    if y.size == 0:
        return
    _pick(_k.log_softmax_backward, y.size)(dy, y, out)


def cross_entropy_index(logits, target, weight, ignore_index, label_smoothing,
                        scale, loss, grad):
    if logits.shape[0] == 0:
        return
    if logits.shape[1] == 0:  # then every row is ignored (caller validated)
        loss[...] = 0.0
        return
    _pick(_k.cross_entropy_index, logits.size)(
        logits, target, weight, int(ignore_index), float(label_smoothing),
        scale, loss, grad)


def cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss,
                       grad):
    if logits.shape[0] == 0:
        return
    if logits.shape[1] == 0:  # an empty sum
        loss[...] = 0.0
        return
    _pick(_k.cross_entropy_prob, logits.size)(
        logits, target, weight, float(label_smoothing), scale, loss, grad)
