# Fused cross-entropy forward + backward, one row at a time.
#
# Built as fastdl.backends.cython._cross_entropy.  Per row: pass 1 the max,
# pass 2 exp(z - max) summed together with every other sum the loss needs
# (the exps are stored into the gradient row when a gradient is wanted),
# then the loss, then pass 3 rescales the stored exps into the gradient.
# No [N, C] temporary; the gradient row may be the logits row itself.
#
# Notation: z = logits row, m = max(z), s = sum_c exp(z_c - m), so
# log p_c = (z_c - m) - log(s) and lse = m + log(s).  Sums are in double.

from math import fsum as _fsum

import numpy as _np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, isfinite, log
from libc.stdint cimport int64_t
from libc.string cimport memset

from _common cimport (FASTDL_HAVE_OPENMP, LANES, EXP_BLOCK, row_max, exp_sum,
                      exp_sum_store, exp_shift_sum, scale_row, lane_total,
                      next_row)

HAVE_OPENMP = bool(FASTDL_HAVE_OPENMP)

cnp.import_array()


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


cdef inline double _ce_index_row(const floating* z, Py_ssize_t n,
                                 Py_ssize_t t, const floating* w,
                                 double sum_w, double eps, double scale,
                                 floating* g,
                                 const floating* nxt) noexcept nogil:
    """Loss of one non-ignored row with target class t; when g is not NULL
    also g = scale * d loss / d z.  w is NULL for unit weights (then sum_w is
    n).  g may be z: z[t] is read first and every z_c before g_c is written.
    nxt: the next logits row or NULL, prefetched during pass 2."""
    cdef floating lo
    cdef floating m = row_max(z, n, &lo)
    cdef double zt = z[t]
    cdef double wt = w[t] if w != NULL else 1.0
    cdef double s, log_s, loss, sum_wd = 0.0, a, c_w, coef, et
    cdef Py_ssize_t j

    # Pass 2.  Max shift: every exp(z_c - m) <= 1 cannot overflow and the
    # max contributes 1, so s >= 1 (when m is finite) and log(s) is safe.
    if eps == 0.0:
        # No smoothing: the sum_c w_c log p_c term is not even formed, since
        # 0 * (-inf) would turn a -inf logit into a NaN loss.
        s = (exp_sum_store(z, m, g, n, nxt, lo) if g != NULL
             else exp_sum(z, m, n, nxt, lo))
    else:
        s = _exp_sum_smooth(z, m, lo, w, g, n, &sum_wd, nxt)
    log_s = log(s)

    # -w_t log p_t, with log p_t = (z_t - m) - log(s) (the exact-offset form,
    # see _log_softmax_row in softmax.pyx).  An all -inf row has m = -inf and
    # z - m = NaN, so its loss is NaN, as in the reference.
    loss = wt * (log_s - (zt - m))
    if eps != 0.0:
        # (1-eps) * nll + eps/C * sum_c w_c (log(s) - (z_c - m))
        loss = (1.0 - eps) * loss + eps / n * (log_s * sum_w - sum_wd)
    if g == NULL:
        return loss

    # Pass 3.  d loss / d z_c = a * p_c - (eps/C) w_c - (1-eps) w_t [c == t]
    # with a = (1-eps) w_t + (eps/C) sum_w and p_c = exp(z_c - m) / s, the
    # exps being already in g.
    et = g[t]
    a = (1.0 - eps) * wt + eps / n * sum_w
    coef = scale * a / s
    c_w = scale * eps / n
    if eps == 0.0:
        scale_row(g, coef, n)
    elif w == NULL:
        for j in range(n):
            g[j] = <floating>(g[j] * coef - c_w)
    else:
        for j in range(n):
            g[j] = <floating>(g[j] * coef - c_w * w[j])
    # The target entry is redone from its exp in double rather than by
    # subtracting from the rounded g[t]: when p_t is close to 1 the result is
    # a small difference that a float32 intermediate would wreck.
    g[t] = <floating>(scale * ((a * (et / s) - eps / n * wt)
                               - (1.0 - eps) * wt))
    return loss


def cross_entropy_index(const floating[:, ::1] logits,
                        const int64_t[::1] target,
                        const floating[::1] weight, bint has_weight,
                        int64_t ignore_index, double label_smoothing,
                        const double[::1] scale, double[::1] loss,
                        floating[:, ::1] grad, bint has_grad,
                        int num_threads):
    """Per-row loss (and scaled gradient) for class-index targets.

    weight is a dummy when has_weight is false; grad and scale are dummies
    (never read) when has_grad is false.  Needs N >= 1 and C >= 1
    (cython/core.py handles empty inputs).
    """
    cdef Py_ssize_t i, t, rows = logits.shape[0], n = logits.shape[1]
    cdef const floating* w = &weight[0] if has_weight else NULL
    cdef double sum_w = 0.0
    cdef double eps = label_smoothing
    cdef floating* g
    if has_weight:
        for i in range(n):
            sum_w += weight[i]
    else:
        sum_w = <double>n
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            g = &grad[i, 0] if has_grad else NULL
            t = target[i]
            if t == ignore_index:
                loss[i] = 0.0
                if g != NULL:
                    memset(g, 0, n * sizeof(floating))
            else:
                loss[i] = _ce_index_row(
                    &logits[i, 0], n, t, w, sum_w, eps,
                    scale[i] if has_grad else 0.0, g,
                    next_row(&logits[i, 0], i, rows, n))


# -------------------------------------------- the common case, one C call

# cross_entropy(_with_grad) on a small batch spent most of its time in
# Python: checks, three np.empty, a fused-type dispatch and six typed
# buffers to unpack, math.fsum over the row losses (measured at 64x10
# float32: 12.2 us per call, of which the rows' arithmetic is ~2 us).  This
# entry does the common case's checks, allocations, rows and exact sum in
# one call; anything else returns None and the caller takes the general
# path, which raises the errors.

cdef enum:
    # Shewchuk's partials are non-overlapping doubles, each at least 53
    # exponent steps apart, so a finite sum never needs more than ~40.
    _MAX_PARTIALS = 64


cdef double _exact_sum(const double* x, Py_ssize_t n, bint* ok) noexcept nogil:
    """sum(x[0:n]) correctly rounded: the same value as math.fsum.

    Shewchuk's exact partials ("Adaptive precision floating-point
    arithmetic", 1997) with the half-even correction of the final rounding,
    the method math.fsum documents.  Only for finite terms whose running
    sums stay finite: otherwise ok is set false and the caller calls
    math.fsum itself, which returns the special value or raises its
    OverflowError exactly as the general path does.  Needs setup.py's
    -ffp-contract=off (no fused multiply-adds inside the two-sums).
    """
    cdef double p[_MAX_PARTIALS]
    cdef double v, y, t, hi, lo = 0.0, yr
    cdef Py_ssize_t i, j, k, m = 0
    ok[0] = False
    for i in range(n):
        v = x[i]
        if not isfinite(v):
            return 0.0
        k = 0
        for j in range(m):
            y = p[j]
            if fabs(v) < fabs(y):
                t = v
                v = y
                y = t
            hi = v + y
            lo = y - (hi - v)
            if lo != 0.0:
                p[k] = lo
                k += 1
            v = hi
        if not isfinite(v) or k == _MAX_PARTIALS:
            return 0.0
        p[k] = v
        m = k + 1
    hi = 0.0
    if m > 0:
        m -= 1
        hi = p[m]
        lo = 0.0
        while m > 0:
            v = hi
            m -= 1
            y = p[m]
            hi = v + y
            yr = hi - v
            lo = y - yr
            if lo != 0.0:
                break
        # The partials below p[m] can tip a tie (lo exactly half an ulp of
        # hi) the other way: round half to even as if they were included.
        if m > 0 and ((lo < 0.0 and p[m - 1] < 0.0) or
                      (lo > 0.0 and p[m - 1] > 0.0)):
            y = lo * 2.0
            v = hi + y
            yr = v - hi
            if y == yr:
                hi = v
    ok[0] = True
    return hi


def exact_sum(const double[::1] x):
    """math.fsum(x) computed by the compiled entry's summation, or None
    where that defers to math.fsum (a non-finite term or running sum)."""
    cdef bint ok = False
    cdef double total = _exact_sum(&x[0], x.shape[0], &ok) if x.shape[0] else 0.0
    if x.shape[0] == 0:
        return 0.0
    return total if ok else None


cdef void _ce_index_rows(const floating* z, const int64_t* t, Py_ssize_t rows,
                         Py_ssize_t n, double eps, double scale, floating* g,
                         double* loss, int num_threads) noexcept nogil:
    """Every row of the common case: unit weights, no row ignored."""
    cdef Py_ssize_t i
    for i in prange(rows, schedule='static', num_threads=num_threads):
        loss[i] = _ce_index_row(z + i * n, n, t[i], NULL, <double>n, eps, scale,
                                g + i * n if g != NULL else NULL,
                                next_row(z + i * n, i, rows, n))


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
                             bint want_grad, int num_threads):
    """The common case of fastdl.cross_entropy(_with_grad) in one call.

    The case: logits an (N, C) float32/float64 ndarray, C-contiguous,
    aligned, native byte order, N, C >= 1; target an (N,) int64 ndarray
    likewise, every label in [0, C) and none equal to ignore_index; no class
    weights; label_smoothing in [0, 1] (the caller checks); when want_grad,
    out None or a writeable C-contiguous array of the logits' shape and
    dtype sharing no memory with logits or target.  Returns (loss, grad)
    -- loss a NumPy scalar of the logits' dtype, the mean (mean true) or
    sum over rows; grad None unless want_grad -- or None when the call is
    not this case.  Same values as the general path, which sums the row
    losses with math.fsum (np.sum from 65536 rows).
    """
    cdef int typenum
    cdef cnp.ndarray z, t, g = None, loss
    cdef Py_ssize_t rows, n, i
    cdef int64_t lo, hi, v
    cdef const int64_t* tp
    cdef double total, scale
    cdef bint ok = False
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
    scale = 1.0 / rows if mean else 1.0
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            _ce_index_rows(<const float*>cnp.PyArray_DATA(z), tp, rows, n,
                           label_smoothing, scale, <float*>gp,
                           <double*>cnp.PyArray_DATA(loss), num_threads)
        else:
            _ce_index_rows(<const double*>cnp.PyArray_DATA(z), tp, rows, n,
                           label_smoothing, scale, <double*>gp,
                           <double*>cnp.PyArray_DATA(loss), num_threads)
        if rows < 65536:
            total = _exact_sum(<const double*>cnp.PyArray_DATA(loss), rows, &ok)
    if rows >= 65536:
        total = float(_np.sum(loss))
    elif not ok:
        total = _fsum(loss)
    if mean:
        total = total / rows
    value = (_np.float32(total) if typenum == cnp.NPY_FLOAT32
             else _np.float64(total))
    return value, g


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


def cross_entropy_prob(const floating[:, ::1] logits,
                       const floating[:, ::1] target,
                       const floating[::1] weight, bint has_weight,
                       double label_smoothing, const double[::1] scale,
                       double[::1] loss, floating[:, ::1] grad, bint has_grad,
                       int num_threads):
    """Per-row loss (and scaled gradient) for probability targets.

    weight is a dummy when has_weight is false; grad and scale are dummies
    (never read) when has_grad is false.  Needs N >= 1 and C >= 1.
    """
    cdef Py_ssize_t i, rows = logits.shape[0], n = logits.shape[1]
    cdef const floating* w = &weight[0] if has_weight else NULL
    cdef double eps = label_smoothing
    cdef floating* g
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            g = &grad[i, 0] if has_grad else NULL
            loss[i] = _ce_prob_row(&logits[i, 0], &target[i, 0], n, w, eps,
                                   scale[i] if has_grad else 0.0, g,
                                   next_row(&logits[i, 0], i, rows, n))
