# Inline helpers shared by the Cython kernels (softmax.pyx, cross_entropy.pyx,
# affine.pyx).  Every helper works on one contiguous row through raw
# pointers, so a kernel is "prange over rows, call a row helper", and gcc sees
# plain C loops it can vectorise.
#
# Precision: per-row sums are accumulated in double whatever the input dtype,
# so a float32 row of 100000 elements loses no more than a few float32 ulps.

from cython cimport floating
from libc.math cimport exp, INFINITY

cdef extern from *:
    """
    /* setup.py defines FASTDL_HAVE_OPENMP (1/0); default to 0 for a build
       that did not go through it. */
    #ifndef FASTDL_HAVE_OPENMP
    #define FASTDL_HAVE_OPENMP 0
    #endif
    """
    int FASTDL_HAVE_OPENMP

# Number of independent partial sums a row reduction keeps.  Without
# -ffast-math, gcc may not reorder `s += a[j]` (FP addition is not
# associative), so a single accumulator is a serial chain of dependent adds.
# Keeping LANES separate partial sums (lane k sums elements j = k mod LANES)
# and adding them at the end is a fixed, deterministic summation order that
# gcc can keep in vector registers; it is no less accurate than the serial
# order (the error bound is the same O(n eps) with smaller per-lane n).
cdef enum:
    LANES = 8

# float32 exps are computed EXP_BLOCK at a time into a stack/L1 buffer
# (1 KiB) by the SIMD exp loop, then summed in double.
cdef enum:
    EXP_BLOCK = 256


cdef extern from "_fastexp.h" nogil:
    # Branch-free float32 exp that gcc vectorises; max error 1.16 ulp,
    # exact inf/NaN/overflow/underflow behaviour.  See the header.
    float fastdl_expf(float x)
    # y[j] = fastdl_expf(x[j] - shift), dispatched to the widest SIMD the CPU
    # has (AVX2 / SSE2); y may be x.
    void fastdl_expf_shift(const float* x, float shift, float* y, Py_ssize_t n)


cdef inline floating fexp(floating x) noexcept nogil:
    """exp in the precision of the data.

    float32: fastdl_expf (SIMD-friendly, <= 1.16 ulp, see _fastexp.h) instead
    of glibc's scalar expf; the sums it feeds are in double.  float64: libm
    exp (correctly rounded in practice), since a polynomial exp good to
    ~1e-16 would need a longer polynomial for a smaller gain.
    """
    if floating is float:
        return fastdl_expf(x)
    else:
        return exp(x)


cdef inline floating row_max(const floating* x, Py_ssize_t n) noexcept nogil:
    """Largest element of x[0:n]; -inf for an empty or all -inf/NaN row.

    NaN never compares greater, so it is skipped here.  That is harmless: the
    callers feed every element through exp(x - max), so a NaN still reaches
    the row's sum and makes the result NaN, as the reference requires.
    """
    cdef floating acc[LANES]
    cdef floating m = -INFINITY
    cdef Py_ssize_t j, jb, k, nb = n - n % LANES
    # LANES independent running maxima, like the sums below: one serial
    # chain of compare-selects cannot be vectorised (without -ffast-math gcc
    # will not reorder it), while LANES independent ones map onto one
    # vector max per step.  `v > m ? v : m` is exactly the x86 maxps/maxpd
    # operand order, so NaN handling is unchanged.
    for k in range(LANES):
        acc[k] = -INFINITY
    for jb in range(nb // LANES):
        j = jb * LANES
        for k in range(LANES):
            acc[k] = x[j + k] if x[j + k] > acc[k] else acc[k]
    for j in range(nb, n):
        m = x[j] if x[j] > m else m
    for k in range(LANES):
        m = acc[k] if acc[k] > m else m
    return m


cdef inline double lane_total(double* acc) noexcept nogil:
    """Add the LANES partial sums pairwise."""
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + \
           ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline double _lane_add_f32(const float* b, Py_ssize_t n,
                                 double* acc) noexcept nogil:
    """acc[j % LANES] += b[j] for j < n (float32 terms, double sums)."""
    cdef Py_ssize_t j, jb, k, nb = n - n % LANES
    for jb in range(nb // LANES):
        j = jb * LANES
        for k in range(LANES):
            acc[k] += b[j + k]
    for j in range(nb, n):
        acc[j - nb] += b[j]


cdef inline double exp_sum(const floating* x, floating shift,
                           Py_ssize_t n) noexcept nogil:
    """sum_j exp(x[j] - shift) over x[0:n], accumulated in double."""
    cdef double acc[LANES]
    cdef float buf[EXP_BLOCK]
    cdef Py_ssize_t j, jb, k, nb = n - n % LANES, j0, m
    for k in range(LANES):
        acc[k] = 0.0
    if floating is float:
        # float32: exps of a block go to a small stack buffer through the
        # SIMD loop, then are added in double; the buffer stays in L1.
        for jb in range((n + EXP_BLOCK - 1) // EXP_BLOCK):
            j0 = jb * EXP_BLOCK
            m = min(<Py_ssize_t>EXP_BLOCK, n - j0)
            fastdl_expf_shift(x + j0, shift, buf, m)
            _lane_add_f32(buf, m, acc)
    else:
        for jb in range(nb // LANES):
            j = jb * LANES
            for k in range(LANES):
                acc[k] += fexp(x[j + k] - shift)
        for j in range(nb, n):
            acc[j - nb] += fexp(x[j] - shift)
    return lane_total(acc)


cdef inline double exp_sum_store(const floating* x, floating shift,
                                 floating* e, Py_ssize_t n) noexcept nogil:
    """e[j] = exp(x[j] - shift) and return their sum in double.

    e may be x itself: each element is read before it is overwritten.
    """
    cdef double acc[LANES]
    cdef floating v
    cdef Py_ssize_t j, jb, k, nb = n - n % LANES, j0, m
    for k in range(LANES):
        acc[k] = 0.0
    if floating is float:
        # float32: the SIMD exp loop writes a block of e, which is then summed
        # while it is still in L1.
        for jb in range((n + EXP_BLOCK - 1) // EXP_BLOCK):
            j0 = jb * EXP_BLOCK
            m = min(<Py_ssize_t>EXP_BLOCK, n - j0)
            fastdl_expf_shift(x + j0, shift, e + j0, m)
            _lane_add_f32(e + j0, m, acc)
    else:
        for jb in range(nb // LANES):
            j = jb * LANES
            for k in range(LANES):
                v = fexp(x[j + k] - shift)
                e[j + k] = v
                acc[k] += v
        for j in range(nb, n):
            v = fexp(x[j] - shift)
            e[j] = v
            acc[j - nb] += v
    return lane_total(acc)


cdef inline double row_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum_j x[j] in double."""
    cdef double acc[LANES]
    cdef Py_ssize_t j, jb, k, nb = n - n % LANES
    for k in range(LANES):
        acc[k] = 0.0
    for jb in range(nb // LANES):
        j = jb * LANES
        for k in range(LANES):
            acc[k] += x[j + k]
    for j in range(nb, n):
        acc[j - nb] += x[j]
    return lane_total(acc)


cdef inline double row_dot(const floating* a, const floating* b,
                           Py_ssize_t n) noexcept nogil:
    """sum_j a[j] * b[j], products and sum in double."""
    cdef double acc[LANES]
    cdef Py_ssize_t j, jb, k, nb = n - n % LANES
    for k in range(LANES):
        acc[k] = 0.0
    for jb in range(nb // LANES):
        j = jb * LANES
        for k in range(LANES):
            acc[k] += <double>a[j + k] * <double>b[j + k]
    for j in range(nb, n):
        acc[j - nb] += <double>a[j] * <double>b[j]
    return lane_total(acc)
