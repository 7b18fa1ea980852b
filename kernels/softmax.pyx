# Row-wise logsumexp, softmax, log_softmax and their backward passes.
#
# Built as fastdl.backends.cython._softmax.  These kernels trust their arguments
# (see the contract in fastdl/backends/__init__.py): C-contiguous 2-D rows,
# one float dtype, shapes checked and outputs allocated by the caller, no
# empty arrays (cython/core.py returns early for those); _common.pxd's
# argument checks only guard the contract.  Each kernel runs one fused-type
# block body over blocks of rows, in a plain loop on one thread (no OpenMP
# region: entering one costs about 1 us) or a prange; all row sums are in
# double.

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, log, isfinite
from libc.stdlib cimport free, malloc

from _common cimport (FASTDL_HAVE_OPENMP, EXP_BLOCK, exp_shift, row_max,
                      exp_sum, exp_sum_store, scale_row, sub2_row,
                      sub2_row_stream, scale_row_stream, row_sum, row_dot,
                      msub_row, dscale_row,
                      ROW_BLOCK, block_rows, float_matrix, same_matrix, dim,
                      data)

HAVE_OPENMP = bool(FASTDL_HAVE_OPENMP)

cnp.import_array()


# ---------------------------------------------------------------- row bodies
#
# Each body takes a block of nb <= ROW_BLOCK rows (see _common.pxd) and runs
# each of its passes over the whole block before the next; nb = 1 is the
# plain row loop, and each row gets the same operations either way.  pf: the
# rows after the block (the same columns of the next nb rows) or NULL,
# prefetched during the exp pass (see exp_shift_sum in _common.pxd).

cdef inline const floating* _at(const floating* p, Py_ssize_t k,
                                Py_ssize_t n) noexcept nogil:
    """Row k of the rows of n at p, or NULL when p is NULL."""
    return p + k * n if p != NULL else NULL


cdef inline void _exp_sums(const floating* x, Py_ssize_t nb, Py_ssize_t n,
                           const floating* pf, bint finite_shift, floating* m,
                           double* s) noexcept nogil:
    """Passes 1 and 2 of logsumexp and log_softmax over a block: m[k] the
    shift of row k (its max; 0 where that is not finite if finite_shift)
    and s[k] = sum_j exp(x[k, j] - m[k])."""
    cdef floating lo[ROW_BLOCK]
    cdef Py_ssize_t k
    for k in range(nb):
        m[k] = row_max(x + k * n, n, &lo[k])
        if finite_shift and not isfinite(m[k]):
            m[k] = 0
            lo[k] = -INFINITY  # the shift is no longer the max
    for k in range(nb):
        s[k] = exp_sum(x + k * n, m[k], n, _at(pf, k, n), lo[k])


cdef inline void _logsumexp_block(const floating* x, floating* out, Py_ssize_t nb,
                                  Py_ssize_t n, const floating* pf) noexcept nogil:
    cdef floating m[ROW_BLOCK]
    cdef double s[ROW_BLOCK]
    cdef Py_ssize_t k
    # Max shift: exp(x - m) <= 1 cannot overflow and the largest term is 1,
    # so the sum cannot underflow to 0.  When the max is not finite the
    # shift is 0 instead (scipy.special.logsumexp's rule): an all -inf row
    # then sums exp(-inf) = 0 and gives log(0) = -inf, a +inf gives
    # exp(inf) = inf and log(inf) = inf, where shifting by m would give
    # inf - inf = NaN.  NaN (skipped by row_max) reaches the sum through
    # exp(NaN) = NaN.
    _exp_sums(x, nb, n, pf, True, m, s)
    for k in range(nb):
        out[k] = <floating>(log(s[k]) + m[k])


cdef inline void _softmax_block(const floating* x, floating* out, Py_ssize_t nb,
                                Py_ssize_t n, const floating* pf,
                                floating* scratch) noexcept nogil:
    cdef floating m[ROW_BLOCK]
    cdef floating lo[ROW_BLOCK]
    cdef double s[ROW_BLOCK]
    cdef Py_ssize_t k
    for k in range(nb):
        m[k] = row_max(x + k * n, n, &lo[k])
    if scratch != NULL:
        # A row of a large output (nb is 1): the exps go to the scratch row,
        # which stays in cache, and the scaled ones to out with
        # non-temporal stores (scale_row_stream: scale_row's bits).  out may
        # be x: x is read into the scratch row before out is written.
        s[0] = exp_sum_store(x, m[0], scratch, n, pf, lo[0])
        scale_row_stream(scratch, 1.0 / s[0], out, n)
        return
    # Max shift (see _logsumexp_block).  No finite-max exception here: an all
    # -inf row gives -inf - (-inf) = NaN everywhere, as the contract wants,
    # and a +inf gives NaN through inf - inf.  The exps go straight into out
    # (pass 2) so pass 3 only rescales them: no second exp.  out may be x:
    # each row is read by pass 1 before pass 2 writes it.
    for k in range(nb):
        s[k] = exp_sum_store(x + k * n, m[k], out + k * n, n, _at(pf, k, n), lo[k])
    # s >= 1 when m is finite (the max contributes exp(0) = 1), so 1/s is
    # finite.  float64: out[j] * r rounded once; float32: a float32 product
    # with r rounded to float32, within 1 ulp of the exact out[j] / s (see
    # scale_row), like PyTorch's float32 softmax.
    for k in range(nb):
        scale_row(out + k * n, 1.0 / s[k], n)


cdef inline void _log_softmax_block(const floating* x, floating* out,
                                    Py_ssize_t nb, Py_ssize_t n,
                                    const floating* pf, bint stream) noexcept nogil:
    cdef floating m[ROW_BLOCK]
    cdef double log_s[ROW_BLOCK]
    cdef Py_ssize_t k
    _exp_sums(x, nb, n, pf, False, m, log_s)  # max shift as in softmax
    for k in range(nb):
        log_s[k] = log(log_s[k])
    # (x - m) - log(s), not x - (m + log(s)): when m dominates, log(s) is
    # tiny and m + log(s) would round it away, while x - m is exact for the
    # large entries.  This is what makes log_softmax([1000, 1, 0]) exactly
    # [0, -999, -1000].  float32 in float32 (see sub2_row): within 2 ulp.
    # stream: the output goes past the caches (non-temporal stores, see
    # sub2_row_stream), for outputs far larger than them.
    for k in range(nb):
        if stream:
            sub2_row_stream(x + k * n, m[k], log_s[k], out + k * n, n)
        else:
            sub2_row(x + k * n, m[k], log_s[k], out + k * n, n)


cdef inline void _softmax_backward_block(const floating* dy, const floating* y,
                                         floating* out, Py_ssize_t nb,
                                         Py_ssize_t n) noexcept nogil:
    # out may alias dy or y: element j of both is read before out[j] is set.
    # The dot is formed in double; the output pass, for float32, in float32,
    # as PyTorch's (where dy - dot cancels, the error is an ulp of dy times
    # y, the same order as the rounding of the inputs themselves).
    cdef double d[ROW_BLOCK]
    cdef Py_ssize_t k
    for k in range(nb):
        d[k] = row_dot(dy + k * n, y + k * n, n)
    for k in range(nb):
        dscale_row(y + k * n, dy + k * n, d[k], out + k * n, n)


cdef inline void _log_softmax_backward_block(const floating* dy,
                                             const floating* y, floating* out,
                                             Py_ssize_t nb,
                                             Py_ssize_t n) noexcept nogil:
    cdef double total[ROW_BLOCK]
    cdef Py_ssize_t j0, jb, m, k
    cdef floating buf[EXP_BLOCK]
    for k in range(nb):
        total[k] = row_sum(dy + k * n, n)
    # exp(y) a block of columns at a time through the SIMD exp loop.  out may
    # alias dy or y: a block of y is exponentiated into buf before that block
    # of out is written, and dy[j] is read before out[j].
    for k in range(nb):
        for jb in range((n + EXP_BLOCK - 1) // EXP_BLOCK):
            j0 = jb * EXP_BLOCK
            m = min(<Py_ssize_t>EXP_BLOCK, n - j0)
            exp_shift(y + k * n + j0, 0.0, buf, m)
            msub_row(dy + k * n + j0, buf, total[k], out + k * n + j0, m)


# ------------------------------------------------------------------ kernels
#
# Each kernel: the block loop over C-contiguous (rows, n) data (a cdef
# function, fused over float/double; a plain loop on one thread, a prange
# over blocks on more), and the def entry the backend calls with the arrays
# and the thread count, which checks the arguments and picks the float32 or
# float64 loop by the array's type.

ctypedef enum _Op:
    _LOGSUMEXP, _SOFTMAX, _LOG_SOFTMAX, _SOFTMAX_BACKWARD, _LOG_SOFTMAX_BACKWARD


cdef inline void _block(_Op op, const floating* a, const floating* b,
                        floating* out, Py_ssize_t i, Py_ssize_t nb, Py_ssize_t rows,
                        Py_ssize_t n, floating* scratch) noexcept nogil:
    """Rows i..i+nb of op; a is x (forward) or dy, b is y (backward).
    scratch: a row of n for this thread when the output is written past
    the caches (see _rows), else NULL."""
    cdef const floating* pf = a + (i + nb) * n if i + nb < rows else NULL
    if op == _LOGSUMEXP:
        _logsumexp_block(a + i * n, out + i, nb, n, pf)
    elif op == _SOFTMAX:
        _softmax_block(a + i * n, out + i * n, nb, n, pf, scratch)
    elif op == _LOG_SOFTMAX:
        _log_softmax_block(a + i * n, out + i * n, nb, n, pf, scratch != NULL)
    elif op == _SOFTMAX_BACKWARD:
        _softmax_backward_block(a + i * n, b + i * n, out + i * n, nb, n)
    else:
        _log_softmax_backward_block(a + i * n, b + i * n, out + i * n, nb, n)


cdef void _rows(_Op op, const floating* a, const floating* b, floating* out,
                Py_ssize_t rows, Py_ssize_t n, int nt, bint stream) noexcept nogil:
    """Every block of op's rows on nt threads (a plain loop for one).

    stream (softmax and log_softmax): write the output with non-temporal
    stores, for rows a block of their own (whole lines); each thread gets a
    scratch row, which also says so to the block bodies.  A scratch row that
    cannot be allocated leaves that thread's stores plain.
    """
    cdef Py_ssize_t blk, bs = block_rows(n, sizeof(floating))
    cdef Py_ssize_t blocks = (rows + bs - 1) // bs
    cdef floating* scratch = NULL
    stream = stream and bs == 1
    if nt == 1:
        if stream:
            scratch = <floating*>malloc(n * sizeof(floating))
        for blk in range(blocks):
            _block(op, a, b, out, blk * bs, min(bs, rows - blk * bs), rows, n, scratch)
        free(scratch)
    else:
        with parallel(num_threads=nt):
            scratch = <floating*>malloc(n * sizeof(floating)) if stream else NULL
            for blk in prange(blocks, schedule='static'):
                _block(op, a, b, out, blk * bs, min(bs, rows - blk * bs), rows, n,
                       scratch)
            free(scratch)


cdef int _run(_Op op, object a, object b, object out, int num_threads,
              bint stream=False) except -1:
    """Check the arguments (b is None for the forward ops) and run op."""
    cdef int tn = float_matrix(a, 2, False)
    cdef Py_ssize_t rows = dim(a, 0), n = dim(a, 1)
    cdef void* pa = data(a)
    cdef void* pb = NULL
    cdef void* po
    if b is not None:
        same_matrix(b, a, tn, False)
        pb = data(b)
    if op == _LOGSUMEXP:
        if not (float_matrix(out, 1, True) == tn and dim(out, 0) == rows):
            raise ValueError("kernel contract: out must be (M,) of x's dtype")
    else:
        same_matrix(out, a, tn, True)
    po = data(out)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            _rows(op, <const float*>pa, <const float*>pb, <float*>po, rows, n,
                  num_threads, stream)
        else:
            _rows(op, <const double*>pa, <const double*>pb, <double*>po, rows, n,
                  num_threads, stream)
    return 0


def logsumexp(object x, object out, int num_threads):
    """out[i] = log(sum(exp(x[i]))) for every row i of x (M, C) (stable)."""
    _run(_LOGSUMEXP, x, None, out, num_threads)


def softmax(object x, object out, int num_threads, bint stream):
    """out[i] = softmax(x[i]); out may be x.  stream: write out with
    non-temporal stores (rows of ROW_BLOCK_BYTES or more only)."""
    _run(_SOFTMAX, x, None, out, num_threads, stream)


def log_softmax(object x, object out, int num_threads, bint stream):
    """out[i] = log_softmax(x[i]); out may be x.  stream: write out with
    non-temporal stores (rows of ROW_BLOCK_BYTES or more only)."""
    _run(_LOG_SOFTMAX, x, None, out, num_threads, stream)


def softmax_backward(object dy, object y, object out, int num_threads):
    """out = y * (dy - sum(dy * y, axis=1, keepdims=True)); out may be dy or y."""
    _run(_SOFTMAX_BACKWARD, dy, y, out, num_threads)


def log_softmax_backward(object dy, object y, object out, int num_threads):
    """out = dy - exp(y) * sum(dy, axis=1, keepdims=True); out may be dy or y."""
    _run(_LOG_SOFTMAX_BACKWARD, dy, y, out, num_threads)
