# Row-wise logsumexp, softmax, log_softmax and their backward passes.
#
# Built as fastdl.backends.cython._softmax.  These kernels trust their arguments
# (see the contract in fastdl/backends/__init__.py): C-contiguous 2-D rows,
# one float dtype, shapes checked and outputs allocated by the caller, no
# empty arrays (cython/core.py returns early for those).  Each kernel is a
# prange over rows calling one fused-type row body; all row sums are in double.

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY, log, isfinite

from _common cimport (FASTDL_HAVE_OPENMP, EXP_BLOCK, exp_shift, row_max,
                      exp_sum, exp_sum_store, scale_row, sub2_row, row_sum,
                      row_dot, msub_row, dscale_row, next_row)

HAVE_OPENMP = bool(FASTDL_HAVE_OPENMP)


# ---------------------------------------------------------------- row bodies

# nxt: the next row of the input or NULL, prefetched during the exp pass
# (see exp_shift_sum in _common.pxd).

cdef inline floating _logsumexp_row(const floating* x, Py_ssize_t n,
                                    const floating* nxt) noexcept nogil:
    cdef floating lo
    cdef floating m = row_max(x, n, &lo)
    # Max shift: exp(x - m) <= 1 cannot overflow and the largest term is 1,
    # so the sum cannot underflow to 0.  When the max is not finite the shift
    # is 0 instead (scipy.special.logsumexp's rule): an all -inf row then sums
    # exp(-inf) = 0 and gives log(0) = -inf, a +inf gives exp(inf) = inf and
    # log(inf) = inf, where shifting by m would give inf - inf = NaN.  NaN
    # (skipped by row_max) reaches the sum through exp(NaN) = NaN.
    if not isfinite(m):
        m = 0
        lo = -INFINITY  # the shift is no longer the max
    return <floating>(log(exp_sum(x, m, n, nxt, lo)) + m)


cdef inline void _softmax_row(const floating* x, floating* out, Py_ssize_t n,
                              const floating* nxt) noexcept nogil:
    cdef floating lo
    cdef floating m = row_max(x, n, &lo)
    # Max shift (see _logsumexp_row).  No finite-max exception here: an all
    # -inf row gives -inf - (-inf) = NaN everywhere, as the contract wants,
    # and a +inf gives NaN through inf - inf.  The exps go straight into out
    # (pass 2) so pass 3 only rescales them: no second exp.
    cdef double s = exp_sum_store(x, m, out, n, nxt, lo)
    # s >= 1 when m is finite (the max contributes exp(0) = 1), so 1/s is
    # finite.  float64: out[j] * r rounded once; float32: a float32 product
    # with r rounded to float32, within 1 ulp of the exact out[j] / s (see
    # scale_row), like PyTorch's float32 softmax.
    scale_row(out, 1.0 / s, n)


cdef inline void _log_softmax_row(const floating* x, floating* out,
                                  Py_ssize_t n,
                                  const floating* nxt) noexcept nogil:
    cdef floating lo
    cdef floating m = row_max(x, n, &lo)
    cdef double log_s = log(exp_sum(x, m, n, nxt, lo))
    # (x - m) - log(s), not x - (m + log(s)): when m dominates, log(s) is
    # tiny and m + log(s) would round it away, while x - m is exact for the
    # large entries.  This is what makes log_softmax([1000, 1, 0]) exactly
    # [0, -999, -1000].  float32 in float32 (see sub2_row): within 2 ulp.
    sub2_row(x, m, log_s, out, n)


cdef inline void _softmax_backward_row(const floating* dy, const floating* y,
                                       floating* out,
                                       Py_ssize_t n) noexcept nogil:
    # out may alias dy or y: element j of both is read before out[j] is set.
    # The dot is formed in double; the output pass, for float32, in float32,
    # as PyTorch's (where dy - dot cancels, the error is an ulp of dy times
    # y, the same order as the rounding of the inputs themselves).
    dscale_row(y, dy, row_dot(dy, y, n), out, n)


cdef inline void _log_softmax_backward_row(const floating* dy,
                                           const floating* y, floating* out,
                                           Py_ssize_t n) noexcept nogil:
    cdef double total = row_sum(dy, n)
    cdef Py_ssize_t j0, jb, m
    cdef floating buf[EXP_BLOCK]
    # exp(y) a block at a time through the SIMD exp loop.  out may alias dy
    # or y: a block of y is exponentiated into buf before that block of out
    # is written, and dy[j] is read before out[j].
    for jb in range((n + EXP_BLOCK - 1) // EXP_BLOCK):
        j0 = jb * EXP_BLOCK
        m = min(<Py_ssize_t>EXP_BLOCK, n - j0)
        exp_shift(y + j0, 0.0, buf, m)
        msub_row(dy + j0, buf, total, out + j0, m)


# ------------------------------------------------------------------ kernels

def logsumexp(const floating[:, ::1] x, floating[::1] out, int num_threads):
    """out[i] = log(sum(exp(x[i]))) for every row i (stable)."""
    cdef Py_ssize_t i, rows = x.shape[0], n = x.shape[1]
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            out[i] = _logsumexp_row(&x[i, 0], n,
                                    next_row(&x[i, 0], i, rows, n))


def softmax(const floating[:, ::1] x, floating[:, ::1] out, int num_threads):
    """out[i] = softmax(x[i]); out may be x."""
    cdef Py_ssize_t i, rows = x.shape[0], n = x.shape[1]
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _softmax_row(&x[i, 0], &out[i, 0], n,
                         next_row(&x[i, 0], i, rows, n))


def log_softmax(const floating[:, ::1] x, floating[:, ::1] out,
                int num_threads):
    """out[i] = log_softmax(x[i]); out may be x."""
    cdef Py_ssize_t i, rows = x.shape[0], n = x.shape[1]
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _log_softmax_row(&x[i, 0], &out[i, 0], n,
                             next_row(&x[i, 0], i, rows, n))


def softmax_backward(const floating[:, ::1] dy, const floating[:, ::1] y,
                     floating[:, ::1] out, int num_threads):
    """out = y * (dy - sum(dy * y, axis=1, keepdims=True))."""
    cdef Py_ssize_t i, rows = y.shape[0], n = y.shape[1]
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _softmax_backward_row(&dy[i, 0], &y[i, 0], &out[i, 0], n)


def log_softmax_backward(const floating[:, ::1] dy, const floating[:, ::1] y,
                         floating[:, ::1] out, int num_threads):
    """out = dy - exp(y) * sum(dy, axis=1, keepdims=True)."""
    cdef Py_ssize_t i, rows = y.shape[0], n = y.shape[1]
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            _log_softmax_backward_row(&dy[i, 0], &y[i, 0], &out[i, 0], n)
