# Fused cross-entropy forward + backward, one row at a time.
#
# Built as fastdl.backends.cython._cross_entropy.  Per row: pass 1 the max,
# pass 2 exp(z - max) summed together with every other sum the loss needs
# (the exps are stored into the gradient row when a gradient is wanted),
# then the loss, then pass 3 rescales the stored exps into the gradient.
# No [N, C] temporary; the gradient row may be the logits row itself.
# Short rows go through these passes a block of rows at a time (see
# ROW_BLOCK in _common.pxd); the kernels also sum the row losses exactly
# (math.fsum's value), which the public functions' reductions use.
#
# Notation: z = logits row, m = max(z), s = sum_c exp(z_c - m), so
# log p_c = (z_c - m) - log(s) and lse = m + log(s).  Sums are in double.

from math import fsum as _fsum

import numpy as _np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport fabs, isfinite, log
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from _common cimport (FASTDL_HAVE_OPENMP, LANES, EXP_BLOCK, ROW_BLOCK, row_max,
                      exp_sum, exp_sum_store, exp_shift_sum, scale_row,
                      scale_row_stream,
                      lane_total, next_row, block_rows, float_matrix,
                      same_matrix, dim, data)

HAVE_OPENMP = bool(FASTDL_HAVE_OPENMP)

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    # A NumPy scalar of descr's type from the value at data (numpy's pxd
    # leaves it out): 0.05 us, where np.float32(v) takes 0.23 us.
    object PyArray_Scalar(void* data, cnp.dtype descr, object base)


# ------------------------------------------------------------- exact sums

cdef enum:
    # Shewchuk's partials are non-overlapping doubles, each at least 53
    # exponent steps apart, so a finite sum never needs more than ~40.
    _MAX_PARTIALS = 64


cdef struct _FSum:
    # A running sum(x) correctly rounded (the same value as math.fsum):
    # Shewchuk's exact partials ("Adaptive precision floating-point
    # arithmetic", 1997) with the half-even correction of the final
    # rounding, the method math.fsum documents.  Only for finite terms whose
    # running sums stay finite: otherwise ok goes false and the caller calls
    # math.fsum itself, which returns the special value or raises its
    # OverflowError exactly as the general route does.  Needs setup.py's
    # -ffp-contract=off (no fused multiply-adds inside the two-sums).
    double p[_MAX_PARTIALS]     # the partials, smallest first
    Py_ssize_t m                # how many
    bint ok


cdef inline void _fsum_init(_FSum* f) noexcept nogil:
    f.m = 0
    f.ok = True


cdef void _fsum_add(_FSum* f, const double* x, Py_ssize_t n) noexcept nogil:
    """Add x[0:n] (in order) to the running sum f."""
    cdef double v, y, t, hi, lo
    cdef Py_ssize_t i, j, k, m = f.m
    if not f.ok:
        return
    for i in range(n):
        v = x[i]
        if not isfinite(v):
            f.ok = False
            return
        k = 0
        for j in range(m):
            y = f.p[j]
            if fabs(v) < fabs(y):
                t = v
                v = y
                y = t
            hi = v + y
            lo = y - (hi - v)
            if lo != 0.0:
                f.p[k] = lo
                k += 1
            v = hi
        if not isfinite(v) or k == _MAX_PARTIALS:
            f.ok = False
            return
        f.p[k] = v
        m = k + 1
    f.m = m


cdef double _fsum_result(_FSum* f) noexcept nogil:
    """The correctly rounded value of the running sum f (valid if f.ok)."""
    cdef double v, y, hi = 0.0, lo = 0.0, yr
    cdef Py_ssize_t m = f.m
    if m > 0:
        m -= 1
        hi = f.p[m]
        while m > 0:
            v = hi
            m -= 1
            y = f.p[m]
            hi = v + y
            yr = hi - v
            lo = y - yr
            if lo != 0.0:
                break
        # The partials below p[m] can tip a tie (lo exactly half an ulp of
        # hi) the other way: round half to even as if they were included.
        if m > 0 and ((lo < 0.0 and f.p[m - 1] < 0.0) or
                      (lo > 0.0 and f.p[m - 1] > 0.0)):
            y = lo * 2.0
            v = hi + y
            yr = v - hi
            if y == yr:
                hi = v
    return hi


cdef double _exact_sum(const double* x, Py_ssize_t n, bint* ok) noexcept nogil:
    """sum(x[0:n]) correctly rounded (see _FSum); ok false where math.fsum
    must decide."""
    cdef _FSum f
    _fsum_init(&f)
    _fsum_add(&f, x, n)
    ok[0] = f.ok
    return _fsum_result(&f) if f.ok else 0.0


# ------------------------------------------------------- class-index targets

cdef inline void _wd_sums(const floating* z, floating m, const floating* w,
                          Py_ssize_t n, double* acc_wd) noexcept nogil:
    """acc_wd[j % LANES] += w_j (z_j - m) over z[0:n] (w_j = 1 when w is
    NULL); z_j - m in double: exact for float32 inputs, and the loss gets no
    float32 rounding of the shifted logits."""
    cdef Py_ssize_t j, jb, k, nb = n - n % LANES
    for jb in range(nb // LANES):
        j = jb * LANES
        for k in range(LANES):
            if w != NULL:
                acc_wd[k] += <double>w[j + k] * (<double>z[j + k] - <double>m)
            else:
                acc_wd[k] += <double>z[j + k] - <double>m
    for j in range(nb, n):
        if w != NULL:
            acc_wd[j - nb] += <double>w[j] * (<double>z[j] - <double>m)
        else:
            acc_wd[j - nb] += <double>z[j] - <double>m


cdef inline double _exp_sum_smooth(const floating* z, floating m,
                                   floating lo, const floating* w,
                                   floating* g, Py_ssize_t n, double* sum_wd,
                                   const floating* nxt) noexcept nogil:
    """Pass 2 with label smoothing: return sum_c exp(z_c - m) and set
    sum_wd = sum_c w_c (z_c - m) (w_c = 1 when w is NULL), both with LANES
    partial sums (see _common.pxd); the exps are stored into g when g is
    not NULL; nxt (the next logits row or NULL) is prefetched meanwhile; lo
    is the row minimum (see exp_shift_sum).

    Block by block: first the w (z - m) sums, then the exps through the SIMD
    exp loop, which may overwrite that block of z when g is z.  EXP_BLOCK is
    a multiple of LANES, so element c lands in partial sum c % LANES exactly
    as in one pass over the row.
    """
    cdef double acc_s[LANES]
    cdef double acc_wd[LANES]
    cdef floating buf[EXP_BLOCK]
    cdef Py_ssize_t jb, k, j0, mb
    for k in range(LANES):
        acc_s[k] = 0.0
        acc_wd[k] = 0.0
    for jb in range((n + EXP_BLOCK - 1) // EXP_BLOCK):
        j0 = jb * EXP_BLOCK
        mb = min(<Py_ssize_t>EXP_BLOCK, n - j0)
        _wd_sums(z + j0, m, w + j0 if w != NULL else NULL, mb, acc_wd)
        exp_shift_sum(z + j0, m, g + j0 if g != NULL else buf, mb, acc_s,
                      nxt + j0 if nxt != NULL else NULL, lo, g != NULL)
    sum_wd[0] = lane_total(acc_wd)
    return lane_total(acc_s)


cdef void _ce_index_block(const floating* z, const int64_t* t, Py_ssize_t nb,
                          Py_ssize_t n, const floating* w, double sum_w,
                          int64_t ignore_index, double eps, const double* scale,
                          double scale1, double* loss, floating* g,
                          const floating* pf, floating* scratch) noexcept nogil:
    """Rows z[0:nb] (nb <= ROW_BLOCK, C-contiguous rows of n) with targets
    t[0:nb]: loss[k] of each row, 0 for a row whose target is
    ignore_index; when g is not NULL also g = scale_k * d loss / d z (rows
    of g like those of z; 0 for ignored rows), scale_k = scale[k], or
    scale1 when scale is NULL.  w is NULL for unit weights (then sum_w is
    n).  g may be z: every z row is read (its max and z[t]) before its g
    row is written.  pf: the rows after the block or NULL, prefetched
    during pass 2.  scratch: NULL, or (nb is 1, a gradient of a large
    output) a row of n that holds the exps instead of g, which then gets
    them scaled with non-temporal stores (scale_row_stream: scale_row's
    bits) when there is no smoothing.

    The passes run over the whole block before the next pass starts: the
    rows of one pass are independent, so their latency chains (the max
    folds, the exps, the log) overlap in the CPU instead of one row's
    waiting for the previous row's.  Each row gets the same operations in
    the same order as on its own (nb = 1 is the plain row loop), so the
    block size never changes a result.
    """
    cdef floating m[ROW_BLOCK]
    cdef floating lo[ROW_BLOCK]
    cdef double zt[ROW_BLOCK]
    cdef double s[ROW_BLOCK]
    cdef double sum_wd[ROW_BLOCK]
    cdef double log_s, wt, a, c_w, coef, et, sk, eps_n = eps / n
    cdef Py_ssize_t k, j, tk
    cdef const floating* zk
    cdef floating* gk
    cdef const floating* pk

    # Pass 1: max and min of each row, and z[t] before pass 2 may overwrite
    # it.
    for k in range(nb):
        tk = t[k]
        if tk != ignore_index:
            zk = z + k * n
            m[k] = row_max(zk, n, &lo[k])
            zt[k] = zk[tk]

    # Pass 2.  Max shift: every exp(z_c - m) <= 1 cannot overflow and the
    # max contributes 1, so s >= 1 (when m is finite) and log(s) is safe.
    for k in range(nb):
        if t[k] == ignore_index:
            continue
        zk = z + k * n
        gk = g + k * n if g != NULL else NULL
        if gk != NULL and scratch != NULL and eps == 0.0:
            gk = scratch  # the exps stay in cache; see pass 3
        pk = pf + k * n if pf != NULL else NULL
        sum_wd[k] = 0.0
        if eps == 0.0:
            # No smoothing: the sum_c w_c log p_c term is not even formed,
            # since 0 * (-inf) would turn a -inf logit into a NaN loss.
            s[k] = (exp_sum_store(zk, m[k], gk, n, pk, lo[k]) if gk != NULL
                    else exp_sum(zk, m[k], n, pk, lo[k]))
        else:
            s[k] = _exp_sum_smooth(zk, m[k], lo[k], w, gk, n, &sum_wd[k], pk)

    # The losses: -w_t log p_t, with log p_t = (z_t - m) - log(s) (the
    # exact-offset form, see _log_softmax_row in softmax.pyx).  An all -inf
    # row has m = -inf and z - m = NaN, so its loss is NaN, as in the
    # reference.
    for k in range(nb):
        tk = t[k]
        if tk == ignore_index:
            loss[k] = 0.0
            continue
        log_s = log(s[k])
        wt = w[tk] if w != NULL else 1.0
        loss[k] = wt * (log_s - (zt[k] - m[k]))
        if eps != 0.0:
            # (1-eps) * nll + eps/C * sum_c w_c (log(s) - (z_c - m))
            loss[k] = (1.0 - eps) * loss[k] + eps_n * (log_s * sum_w - sum_wd[k])
    if g == NULL:
        return

    # Pass 3.  d loss / d z_c = a * p_c - (eps/C) w_c - (1-eps) w_t [c == t]
    # with a = (1-eps) w_t + (eps/C) sum_w and p_c = exp(z_c - m) / s, the
    # exps being already in g.
    for k in range(nb):
        tk = t[k]
        gk = g + k * n
        if tk == ignore_index:
            memset(gk, 0, n * sizeof(floating))
            continue
        sk = scale[k] if scale != NULL else scale1
        wt = w[tk] if w != NULL else 1.0
        a = (1.0 - eps) * wt + eps_n * sum_w
        coef = sk * a / s[k]
        c_w = sk * eps_n
        if eps == 0.0 and scratch != NULL:
            et = scratch[tk]
            scale_row_stream(scratch, coef, gk, n)
        elif eps == 0.0:
            et = gk[tk]
            scale_row(gk, coef, n)
        elif w == NULL:
            et = gk[tk]
            for j in range(n):
                gk[j] = <floating>(gk[j] * coef - c_w)
        else:
            et = gk[tk]
            for j in range(n):
                gk[j] = <floating>(gk[j] * coef - c_w * w[j])
        # The target entry is redone from its exp in double rather than by
        # subtracting from the rounded g[t]: when p_t is close to 1 the
        # result is a small difference that a float32 intermediate would
        # wreck.
        gk[tk] = <floating>(sk * ((a * (et / s[k]) - eps_n * wt)
                                  - (1.0 - eps) * wt))


cdef inline void _ce_index_rows_from(const floating* z, const int64_t* t,
                                     Py_ssize_t i, Py_ssize_t bs, Py_ssize_t rows,
                                     Py_ssize_t n, const floating* w, double sum_w,
                                     int64_t ignore_index, double eps,
                                     const double* scale, double scale1,
                                     double* loss, floating* g,
                                     floating* scratch) noexcept nogil:
    """The block of up to bs rows from row i (see _ce_index_block)."""
    cdef Py_ssize_t nb = min(bs, rows - i)
    _ce_index_block(z + i * n, t + i, nb, n, w, sum_w, ignore_index, eps,
                    scale + i if scale != NULL else NULL, scale1, loss + i,
                    g + i * n if g != NULL else NULL,
                    z + (i + nb) * n if i + nb < rows else NULL, scratch)


cdef void _ce_index_rows(const floating* z, const int64_t* t, Py_ssize_t rows,
                         Py_ssize_t n, const floating* w, int64_t ignore_index,
                         double eps, const double* scale, double scale1,
                         double* loss, floating* g, int nt, bint stream,
                         _FSum* total) noexcept nogil:
    """Every row, a block of rows at a time, on nt threads (a plain loop for
    one: no OpenMP region).  stream: a gradient far larger than the caches,
    written with non-temporal stores from a scratch row per thread (rows a
    block of their own only; see _ce_index_block).  total: NULL, or a
    running exact sum (initialised) that gets the row losses in order; on
    one thread each block's are added right after it, so the sum's serial
    chain overlaps the next block's rows (measured at 64x10 float32: 0.33
    us of a 2.65 us call when summed after the rows)."""
    cdef Py_ssize_t b, j
    cdef Py_ssize_t bs = block_rows(n, sizeof(floating))
    cdef Py_ssize_t blocks = (rows + bs - 1) // bs
    cdef double sum_w = 0.0
    cdef floating* scratch = NULL
    if w != NULL:
        for j in range(n):
            sum_w += w[j]
    else:
        sum_w = <double>n
    stream = stream and bs == 1 and g != NULL
    if nt == 1:
        if stream:
            scratch = <floating*>malloc(n * sizeof(floating))
        for b in range(blocks):
            _ce_index_rows_from(z, t, b * bs, bs, rows, n, w, sum_w, ignore_index,
                                eps, scale, scale1, loss, g, scratch)
            if total != NULL:
                _fsum_add(total, loss + b * bs, min(bs, rows - b * bs))
        free(scratch)
    else:
        with parallel(num_threads=nt):
            scratch = <floating*>malloc(n * sizeof(floating)) if stream else NULL
            for b in prange(blocks, schedule='static'):
                _ce_index_rows_from(z, t, b * bs, bs, rows, n, w, sum_w, ignore_index,
                                    eps, scale, scale1, loss, g, scratch)
            free(scratch)
        if total != NULL:
            _fsum_add(total, loss, rows)


cdef inline int _vector(object a, int typenum, Py_ssize_t n, bint write) except -1:
    """Check that a is a C-contiguous (n,) ndarray of type typenum."""
    if not (cnp.PyArray_Check(a) and cnp.PyArray_NDIM(<cnp.ndarray>a) == 1
            and cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_DIM(<cnp.ndarray>a, 0) == n
            and (cnp.PyArray_ISCARRAY(<cnp.ndarray>a) if write
                 else cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a))):
        raise ValueError("kernel contract: expected a C-contiguous 1-D array of "
                         f"{n} elements and the call's dtype")
    return 0


cdef inline const double* _scale_arg(object scale, Py_ssize_t rows,
                                     double* scale1) except? NULL:
    """scale: a float (the multiplier of every row, into scale1; returns
    NULL) or an (N,) float64 array (returns its data)."""
    if isinstance(scale, float):
        scale1[0] = <double>scale
        return NULL
    _vector(scale, cnp.NPY_FLOAT64, rows, False)
    return <const double*>data(scale)


cdef object _total(const double* loss, Py_ssize_t rows, Py_ssize_t exact_max_rows):
    """math.fsum's value of loss[0:rows] when rows < exact_max_rows and the
    compiled sum can give it (every term and partial sum finite), else None
    (the caller sums)."""
    cdef bint ok = False
    cdef double total
    if rows >= exact_max_rows:
        return None
    with nogil:
        total = _exact_sum(loss, rows, &ok)
    return total if ok else None


cdef struct _Args:
    # The arrays of a cross-entropy kernel call, checked (see _ce_arrays).
    int tn                      # NPY_FLOAT32 or NPY_FLOAT64
    Py_ssize_t rows, n
    void* z                     # logits (rows, n)
    void* q                     # target: int64 (rows,) or (rows, n) floats
    void* w                     # weight (n,) or NULL
    void* loss                  # float64 (rows,)
    void* g                     # grad (rows, n) or NULL
    const double* scale         # per-row scale, or NULL for scale1
    double scale1


cdef int _ce_arrays(object logits, object target, object weight, object scale,
                    object loss, object grad, bint index, _Args* a) except -1:
    """Check a kernel call's arrays against the contract; their data into a."""
    a.tn = float_matrix(logits, 2, False)
    a.rows = dim(logits, 0)
    a.n = dim(logits, 1)
    if index:
        _vector(target, cnp.NPY_INT64, a.rows, False)
    else:
        same_matrix(target, logits, a.tn, False)
    _vector(loss, cnp.NPY_FLOAT64, a.rows, True)
    a.w = a.g = NULL
    a.scale = NULL
    a.scale1 = 0.0
    if weight is not None:
        _vector(weight, a.tn, a.n, False)
        a.w = data(weight)
    if grad is not None:
        same_matrix(grad, logits, a.tn, True)
        a.g = data(grad)
        a.scale = _scale_arg(scale, a.rows, &a.scale1)
    a.z, a.q, a.loss = data(logits), data(target), data(loss)
    return 0


def cross_entropy_index(object logits, object target, object weight,
                        int64_t ignore_index, double label_smoothing, object scale,
                        object loss, object grad, Py_ssize_t exact_max_rows,
                        int num_threads, bint stream):
    """Per-row loss (and scaled gradient) for class-index targets; returns
    the loss sum when it is exact and cheap, else None.

    logits (N, C) float32/float64, target int64 (N,), weight (C,) or None,
    scale a float or (N,) float64 (read only with a grad), loss (N,)
    float64, grad (N, C) or None (may be logits).  Needs N >= 1 and C >= 1
    (cython/core.py handles empty inputs).  The return value: math.fsum of
    loss when N < exact_max_rows and every term and partial sum is finite,
    else None.  stream: write the gradient with non-temporal stores (rows
    of ROW_BLOCK_BYTES or more without smoothing only).
    """
    cdef _Args a
    cdef _FSum total
    cdef _FSum* tp
    _ce_arrays(logits, target, weight, scale, loss, grad, True, &a)
    tp = &total if a.rows < exact_max_rows else NULL
    _fsum_init(&total)
    with nogil:
        if a.tn == cnp.NPY_FLOAT32:
            _ce_index_rows(<const float*>a.z, <const int64_t*>a.q, a.rows, a.n,
                           <const float*>a.w, ignore_index, label_smoothing, a.scale,
                           a.scale1, <double*>a.loss, <float*>a.g, num_threads, stream,
                           tp)
        else:
            _ce_index_rows(<const double*>a.z, <const int64_t*>a.q, a.rows, a.n,
                           <const double*>a.w, ignore_index, label_smoothing, a.scale,
                           a.scale1, <double*>a.loss, <double*>a.g, num_threads, stream,
                           tp)
    return _fsum_result(&total) if tp != NULL and total.ok else None


# -------------------------------------------- the common case, one C call

# cross_entropy(_with_grad) on a small batch spends most of its time outside
# the rows: at 64x10 float32 the rows take ~1.5 us, a Python route through
# the full checks, allocations, the kernel and the reduction another 3-4 us.
# This entry (the backend contract's cross_entropy_index_fast) recognises
# the common case, allocates, runs the rows and sums them in one call;
# anything else returns None having written nothing, and the caller takes
# the full checks, which raise the errors.

cdef inline bint _carray(object a, int ndim, int typenum) noexcept:
    """a is an ndarray (exactly) of ndim dimensions and type typenum, in
    native byte order, aligned and C-contiguous."""
    if type(a) is not _np.ndarray:
        return False
    return (cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim
            and cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a))


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b) noexcept:
    """The byte ranges of two contiguous arrays intersect."""
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a)


def cross_entropy_index_fast(object logits, object target, int64_t ignore_index,
                             double label_smoothing, bint mean, object out,
                             bint want_grad, Py_ssize_t exact_max_rows,
                             int num_threads, bint stream):
    """The common case of fastdl.cross_entropy(_with_grad) in one call.

    The case: logits an (N, C) float32/float64 ndarray, C-contiguous,
    aligned, native byte order, N, C >= 1; target an (N,) int64 ndarray
    likewise, every label in [0, C) and none equal to ignore_index; no class
    weights; label_smoothing in [0, 1] (the caller checks); when want_grad,
    out None or a writeable C-contiguous array of the logits' shape and
    dtype sharing no memory with logits or target.  Returns (loss, grad)
    -- loss a NumPy scalar of the logits' dtype, the mean (mean true) or
    sum over rows; grad None unless want_grad -- or None when the call is
    not this case.  Same values as the general route, which sums the row
    losses with math.fsum (np.sum from exact_max_rows rows).  stream: as
    for cross_entropy_index.
    """
    cdef int typenum
    cdef cnp.ndarray z, t, g = None, loss
    cdef Py_ssize_t rows, n, i
    cdef int64_t lo, hi, v
    cdef const int64_t* tp
    cdef double total
    cdef float total32
    cdef _FSum fsum
    cdef _FSum* fp
    cdef void* gp = NULL
    if type(logits) is not _np.ndarray:
        return None
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>logits)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return None
    if not (_carray(logits, 2, typenum) and _carray(target, 1, cnp.NPY_INT64)):
        return None
    z = <cnp.ndarray>logits
    t = <cnp.ndarray>target
    rows = cnp.PyArray_DIM(z, 0)
    n = cnp.PyArray_DIM(z, 1)
    if rows == 0 or n == 0 or cnp.PyArray_DIM(t, 0) != rows:
        return None
    tp = <const int64_t*>cnp.PyArray_DATA(t)
    lo = hi = tp[0]
    for i in range(1, rows):
        v = tp[i]
        if v < lo:
            lo = v
        elif v > hi:
            hi = v
    if lo < 0 or hi >= n or lo <= ignore_index <= hi:
        return None
    if want_grad:
        if out is None:
            g = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(z), typenum, 0)
        else:
            if not (_carray(out, 2, typenum)
                    and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)):
                return None
            g = <cnp.ndarray>out
            if (cnp.PyArray_DIM(g, 0) != rows or cnp.PyArray_DIM(g, 1) != n
                    or _overlap(g, z) or _overlap(g, t)):
                return None
        gp = cnp.PyArray_DATA(g)
    loss = cnp.PyArray_EMPTY(1, cnp.PyArray_DIMS(t), cnp.NPY_FLOAT64, 0)
    fp = &fsum if rows < exact_max_rows else NULL
    _fsum_init(&fsum)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _ce_index_rows(<const float*>cnp.PyArray_DATA(z), tp, rows, n, NULL,
                           -1, label_smoothing, NULL, 1.0 / rows if mean else 1.0,
                           <double*>cnp.PyArray_DATA(loss), <float*>gp, num_threads,
                           stream, fp)
        else:
            _ce_index_rows(<const double*>cnp.PyArray_DATA(z), tp, rows, n, NULL,
                           -1, label_smoothing, NULL, 1.0 / rows if mean else 1.0,
                           <double*>cnp.PyArray_DATA(loss), <double*>gp, num_threads,
                           stream, fp)
    if fp == NULL:
        total = float(_np.sum(loss))
    elif fsum.ok:
        total = _fsum_result(&fsum)
    else:
        total = _fsum(loss)
    if mean:
        total = total / rows
    if typenum == cnp.NPY_FLOAT32:
        total32 = <float>total
        value = PyArray_Scalar(&total32, cnp.PyArray_DescrFromType(typenum), None)
    else:
        value = PyArray_Scalar(&total, cnp.PyArray_DescrFromType(typenum), None)
    return value, g


def exact_sum(const double[::1] x):
    """math.fsum(x) computed by the kernels' summation, or None where
    that defers to math.fsum (a non-finite term or running sum)."""
    cdef bint ok = False
    cdef double total = _exact_sum(&x[0], x.shape[0], &ok) if x.shape[0] else 0.0
    if x.shape[0] == 0:
        return 0.0
    return total if ok else None




# ------------------------------------------------------ probability targets

cdef inline double _q(const floating* q, Py_ssize_t j, double eps,
                      double eps_c) noexcept nogil:
    """Smoothed target (1-eps) q_j + eps/C; q_j itself when eps == 0, as in
    the reference (no rounding when smoothing is off)."""
    if eps == 0.0:
        return q[j]
    return (1.0 - eps) * q[j] + eps_c


cdef inline void _prob_sums(const floating* z, floating m, const floating* q,
                            const floating* w, Py_ssize_t n, double eps,
                            double eps_c, double* acc_wq,
                            double* acc_wqd) noexcept nogil:
    """acc_wq[j % LANES] += w_j q_j and acc_wqd[j % LANES] += w_j q_j (z_j - m)
    over z[0:n], q the smoothed target (see _q); z_j - m in double (exact
    for float32)."""
    cdef double wq
    cdef Py_ssize_t j
    for j in range(n):
        wq = _q(q, j, eps, eps_c)
        if w != NULL:
            wq = wq * w[j]
        acc_wq[j % LANES] += wq
        acc_wqd[j % LANES] += wq * (<double>z[j] - <double>m)


cdef inline double _ce_prob_row(const floating* z, const floating* q,
                                Py_ssize_t n, const floating* w, double eps,
                                double scale, floating* g,
                                const floating* nxt) noexcept nogil:
    """loss = -sum_c w_c q_c log p_c = log(s) sum(w q) - sum(w q (z - m));
    when g is not NULL, g = scale * (p * sum(w q) - w q).  g may be z.
    nxt: the next logits row or NULL, prefetched during pass 2."""
    cdef floating lo
    cdef floating m = row_max(z, n, &lo)
    cdef double acc_s[LANES]
    cdef double acc_wq[LANES]
    cdef double acc_wqd[LANES]
    cdef floating buf[EXP_BLOCK]
    cdef double s, sum_wq, sum_wqd, coef, c_q, wq, eps_c = eps / n
    cdef Py_ssize_t j, jb, k, j0, mb
    for k in range(LANES):
        acc_s[k] = 0.0
        acc_wq[k] = 0.0
        acc_wqd[k] = 0.0
    # Pass 2 (max shift as in the index case; LANES partial sums), block by
    # block as in _exp_sum_smooth: the target sums first, then the exps
    # (which may overwrite that block of z when g is z).
    for jb in range((n + EXP_BLOCK - 1) // EXP_BLOCK):
        j0 = jb * EXP_BLOCK
        mb = min(<Py_ssize_t>EXP_BLOCK, n - j0)
        _prob_sums(z + j0, m, q + j0, w + j0 if w != NULL else NULL, mb, eps,
                   eps_c, acc_wq, acc_wqd)
        exp_shift_sum(z + j0, m, g + j0 if g != NULL else buf, mb, acc_s,
                      nxt + j0 if nxt != NULL else NULL, lo, g != NULL)
    s = lane_total(acc_s)
    sum_wq = lane_total(acc_wq)
    sum_wqd = lane_total(acc_wqd)
    if g == NULL:
        return log(s) * sum_wq - sum_wqd
    # Pass 3: the exps are in g.
    coef = scale * sum_wq / s
    for j in range(n):
        wq = _q(q, j, eps, eps_c)
        if w != NULL:
            wq = wq * w[j]
        g[j] = <floating>(g[j] * coef - scale * wq)
    return log(s) * sum_wq - sum_wqd


cdef void _ce_prob_rows(const floating* z, const floating* q, Py_ssize_t rows,
                        Py_ssize_t n, const floating* w, double eps,
                        const double* scale, double scale1, double* loss,
                        floating* g, int nt) noexcept nogil:
    """Every row, on nt threads (a plain loop for one)."""
    cdef Py_ssize_t i
    if nt == 1:
        for i in range(rows):
            loss[i] = _ce_prob_row(z + i * n, q + i * n, n, w, eps,
                                   scale[i] if scale != NULL else scale1,
                                   g + i * n if g != NULL else NULL,
                                   next_row(z + i * n, i, rows, n))
    else:
        for i in prange(rows, schedule='static', num_threads=nt):
            loss[i] = _ce_prob_row(z + i * n, q + i * n, n, w, eps,
                                   scale[i] if scale != NULL else scale1,
                                   g + i * n if g != NULL else NULL,
                                   next_row(z + i * n, i, rows, n))


def cross_entropy_prob(object logits, object target, object weight,
                       double label_smoothing, object scale, object loss,
                       object grad, Py_ssize_t exact_max_rows, int num_threads):
    """Per-row loss (and scaled gradient) for probability targets; returns
    the loss sum when it is exact and cheap, else None.

    As cross_entropy_index, with target (N, C) of the logits' dtype.  Needs
    N >= 1 and C >= 1.
    """
    cdef _Args a
    _ce_arrays(logits, target, weight, scale, loss, grad, False, &a)
    with nogil:
        if a.tn == cnp.NPY_FLOAT32:
            _ce_prob_rows(<const float*>a.z, <const float*>a.q, a.rows, a.n,
                          <const float*>a.w, label_smoothing, a.scale, a.scale1,
                          <double*>a.loss, <float*>a.g, num_threads)
        else:
            _ce_prob_rows(<const double*>a.z, <const double*>a.q, a.rows, a.n,
                          <const double*>a.w, label_smoothing, a.scale, a.scale1,
                          <double*>a.loss, <double*>a.g, num_threads)
    return _total(<const double*>a.loss, a.rows, exact_max_rows)
