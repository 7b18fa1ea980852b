"""Backends: modules that implement fastdl's private kernel interface.

The public functions in :mod:`fastdl` validate and convert everything, then
call a backend kernel that trusts its arguments.  Every backend module
(``numpy.core``, ``numba.core``, ``cython.core`` in one package per backend)
defines the same functions with the same signatures; ``numpy.core`` is the
reference.

Kernel contract
---------------
Unless a line says otherwise: every array is C-contiguous, float arrays share
one dtype (float32 or float64), shapes are consistent, outputs are
preallocated by the caller and kernels return ``None``.  Inputs may be
read-only.  Kernels never allocate arrays the size of their inputs.

``affine_forward(x, W, b, out)``
    x (N, D), W (H, D), b (H,) or None, out (N, H): ``out = x @ W.T + b``.
``affine_backward(dy, x, W, dx, dW, db)``
    dy (N, H), x (N, D), W (H, D); writes, unless dx is None, dx (N, D) =
    dy @ W, dW (H, D) = dy.T @ x and, unless db is None, db (H,) = dy.sum(0).
``logsumexp(x, out)``
    x (M, C), out (M,): ``log(sum(exp(x), axis=1))``, stable; a row whose max
    is -inf gives -inf, a row with +inf gives +inf, NaN propagates.
``softmax(x, out)`` / ``log_softmax(x, out)``
    x, out (M, C); ``out`` may be the same array as ``x``.
``softmax_backward(dy, y, out)``
    ``out = y * (dy - sum(dy * y, axis=1, keepdims=True))``; out may alias dy or y.
``log_softmax_backward(dy, y, out)``
    ``out = dy - exp(y) * sum(dy, axis=1, keepdims=True)``; out may alias dy or y.
``cross_entropy_index(logits, target, weight, ignore_index, label_smoothing, scale, loss, grad)``
    logits (N, C); target int64 (N,), every entry in [0, C) or equal to
    ``ignore_index`` (int); weight (C,) or None; label_smoothing float in
    [0, 1].  Writes loss (N,) float64: the unreduced loss of each row,
    ``(1-eps) * w[t] * (lse - z[t]) + eps/C * sum_c w[c] * (lse - z[c])``,
    0 for ignored rows.  When grad (N, C) is not None, also writes
    ``grad[i] = scale_i * d loss[i] / d logits[i]``, 0 for ignored rows;
    grad may be the same array as logits.  scale (read only with a grad) is
    a float, the multiplier of every row, or a float64 (N,) array of them.
    Returns ``math.fsum(loss)`` (the correctly rounded sum of the row
    losses) or None; None leaves the sum to the caller, and a kernel may
    always return it (the NumPy reference does).  A compiled kernel sums
    while the rows are at hand, for fewer than ``_config.EXACT_SUM_MAX_ROWS``
    rows whose losses and partial sums are finite: the caller's math.fsum
    costs more than a small batch's rows.
``cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss, grad)``
    As above with probability targets: target (N, C) of the logits' dtype,
    ``q = (1-eps) * target + eps/C`` and
    ``loss[i] = sum_c w[c] * q[i, c] * (lse_i - z[i, c])``; the same return.

``cross_entropy_index_fast(logits, target, ignore_index, label_smoothing, mean, out, want_grad)``
    The common case of ``cross_entropy`` / ``cross_entropy_with_grad`` in one
    call, for small batches, where the route through the full checks and
    the kernels above costs more than the rows (at 64x10 float32: 1.5 us of
    rows, 3-4 us around them).  logits and target are ndarrays, ignore_index
    an int in int64's range, label_smoothing a float in [0, 1] (the caller
    checks these); everything else is this kernel's to recognise.  The case:
    logits an (N, C) float32/float64 array, C-contiguous, aligned, native
    byte order, N, C >= 1; target an (N,) int64 array likewise with every
    label in [0, C) and none equal to ignore_index; when want_grad, out None
    or a writeable array laid out as logits, of its shape and dtype, sharing
    no memory with logits or target.  Returns ``(loss, grad)``: loss a NumPy
    scalar of the logits' dtype, the mean (mean true) or the sum of the row
    losses (unit weights), summed as the general route sums them (math.fsum
    below ``_config.EXACT_SUM_MAX_ROWS`` rows, np.sum from there); grad the
    gradient of that loss (written into out when given), or None unless
    want_grad.  Anything else returns None having written nothing, and the
    caller runs its full checks and the kernels above.  Every backend takes
    and refuses the same calls, and gives the general route's results bit
    for bit (tests/test_small_calls.py); :func:`cross_entropy_index_fast`
    below is the implementation on top of a backend's
    ``cross_entropy_index`` (the NumPy backend uses it; Numba's checks the
    labels, runs the rows and sums them in one kernel call, after the same
    array checks, :func:`fast_case_gradient`; Cython's is compiled, checks
    included).

Reductions, ``grad_output`` and denominators are the caller's job: the
kernels see per-row quantities and give at most the exact sum of a row
quantity, which every backend gives with the same bits, so every backend
shares one reduction.  The public functions' checks live in one place (the
common-case recognition of ``cross_entropy_index_fast`` never raises: every
error comes from the full checks).
"""

import math

import numpy as np

from .. import _config
from .._ops import family_kernels

#: Names of the backends fastdl knows, fastest-first by default.
BACKEND_NAMES = ("cython", "numba", "numpy")

#: Names of the kernels every backend's core module must define (from the op table).
KERNEL_NAMES = family_kernels("core")


_F32, _F64, _I64 = (np.dtype(t).num for t in (np.float32, np.float64, np.int64))


def _laid_out(a, ndim, typenum):
    """``a`` is exactly an ndarray of ``ndim`` dimensions and NumPy type number
    ``typenum``, C-contiguous, aligned and in native byte order (the
    compiled entry's test, NumPy's PyArray_ISCARRAY_RO)."""
    if type(a) is not np.ndarray or a.ndim != ndim or a.dtype.num != typenum:
        return False
    flags = a.flags
    return flags.c_contiguous and flags.aligned and a.dtype.isnative


def fast_case_gradient(logits, target, out, want_grad):
    """The array half of ``cross_entropy_index_fast``'s case recognition:
    ``(True, grad)`` when logits and target are laid out for it (grad: the
    gradient buffer, a new array or ``out``; None unless want_grad), else
    ``(False, None)``.  The labels' range is the caller's to check."""
    typenum = logits.dtype.num
    if (typenum != _F32 and typenum != _F64) or not _laid_out(logits, 2, typenum) \
            or not _laid_out(target, 1, _I64):
        return False, None
    rows, n = logits.shape
    if rows == 0 or n == 0 or target.shape[0] != rows:
        return False, None
    if not want_grad:
        return True, None
    if out is None:
        return True, np.empty(logits.shape, logits.dtype)
    if (_laid_out(out, 2, typenum) and out.flags.writeable and out.shape == logits.shape
            and not np.may_share_memory(out, logits) and not np.may_share_memory(out, target)):
        return True, out
    return False, None


def fast_case_loss(logits, loss, total, mean):
    """``cross_entropy_index_fast``'s loss value: ``total``, the exact sum of
    the row losses ``loss`` or None (then summed as the general route sums
    them), divided by the rows when ``mean``, as a NumPy scalar of the
    logits' dtype."""
    rows = loss.shape[0]
    if total is None:
        total = (math.fsum(loss.data) if rows < _config.EXACT_SUM_MAX_ROWS
                 else float(np.sum(loss)))
    if mean:
        total = total / rows
    return logits.dtype.type(total)


def cross_entropy_index_fast(index_kernel, logits, target, ignore_index, label_smoothing,
                             mean, out, want_grad):
    """The contract's ``cross_entropy_index_fast`` on top of ``index_kernel``
    (a backend's ``cross_entropy_index``): the same case recognition as the
    compiled entry (kernels/cross_entropy.pyx), the rows through the
    backend's kernel, the sum as the general route's."""
    ok, grad = fast_case_gradient(logits, target, out, want_grad)
    if not ok:
        return None
    rows, n = logits.shape
    lo = int(target[target.argmin()])
    hi = int(target[target.argmax()])
    if lo < 0 or hi >= n or lo <= ignore_index <= hi:
        return None
    loss = np.empty(rows, np.float64)
    # No label equals ignore_index and none is negative: -1 serves the kernel.
    total = index_kernel(logits, target, None, -1, label_smoothing,
                         1.0 / rows if mean else 1.0, loss, grad)
    return fast_case_loss(logits, loss, total, mean), grad
