# Inline helpers shared by the Cython kernels (softmax.pyx, cross_entropy.pyx,
# affine.pyx).  Every helper works on one contiguous row through raw
# pointers, so a kernel is "prange over rows, call a row helper", and gcc sees
# plain C loops it can vectorise.
#
# Precision: per-row sums are accumulated in double whatever the input dtype,
# so a float32 row of 100000 elements loses no more than a few float32 ulps.

cimport numpy as cnp
from cython cimport floating
from libc.math cimport INFINITY

cdef extern from *:
    """
    /* setup.py defines FASTDL_HAVE_OPENMP (1/0); default to 0 for a build
       that did not go through it. */
    #ifndef FASTDL_HAVE_OPENMP
    #define FASTDL_HAVE_OPENMP 0
    #endif
    """
    int FASTDL_HAVE_OPENMP

cdef extern from *:
    """
    /* Whether this CPU (and the OS, which must save the wider registers)
       runs AVX2 and FMA code: GCC's and clang's CPUID check, 0 elsewhere.
       And whether this module was compiled for them (setup.py's ISA_FLAGS,
       or -march flags in CFLAGS). */
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTDL_MAYBE_UNUSED __attribute__((unused))
    #else
    #define FASTDL_MAYBE_UNUSED
    #endif
    static FASTDL_MAYBE_UNUSED int fastdl_cpu_has_avx2_fma(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    /* And whether it runs x86-64-v4's AVX-512 (F, BW, CD, DQ, VL): the
       subsets setup.py's "avx512" build is compiled for.  GCC's check
       includes the OS's saving of the zmm and mask registers (XCR0). */
    static FASTDL_MAYBE_UNUSED int fastdl_cpu_has_avx512(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return fastdl_cpu_has_avx2_fma()
            && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl");
    #else
        return 0;
    #endif
    }
    #if defined(__AVX2__) && defined(__FMA__)
    #define FASTDL_BUILT_FOR_AVX2 1
    #else
    #define FASTDL_BUILT_FOR_AVX2 0
    #endif
    #if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512CD__) \
        && defined(__AVX512DQ__) && defined(__AVX512VL__)
    #define FASTDL_BUILT_FOR_AVX512 1
    #else
    #define FASTDL_BUILT_FOR_AVX512 0
    #endif
    """
    int fastdl_cpu_has_avx2_fma() noexcept nogil
    int fastdl_cpu_has_avx512() noexcept nogil
    int FASTDL_BUILT_FOR_AVX2
    int FASTDL_BUILT_FOR_AVX512

# Number of independent partial sums a row reduction keeps.  Without
# -ffast-math, gcc may not reorder `s += a[j]` (FP addition is not
# associative), so a single accumulator is a serial chain of dependent adds.
# Keeping LANES separate partial sums (lane k sums elements j = k mod LANES)
# and adding them at the end is a fixed, deterministic summation order that
# gcc can keep in vector registers; it is no less accurate than the serial
# order (the error bound is the same O(n eps) with smaller per-lane n).
# The block loops of _fastexp.h keep the same 8 partial sums (acc[j % 8]):
# change both together.
cdef enum:
    LANES = 8

# exps that are only summed (not stored) are computed EXP_BLOCK at a time
# into a stack buffer (1 KiB float32, 2 KiB float64) that stays in L1.
cdef enum:
    EXP_BLOCK = 256

# Short rows go through a row kernel's passes (max, exps, output) a block of
# up to ROW_BLOCK rows at a time: the rows of one pass are independent, so
# the CPU overlaps their latency chains (max folds, exp polynomials, log,
# division), where one row at a time left it waiting on each row's chain.
# Measured (one thread, float32 softmax rows of 10, 64 rows, AVX-512F
# copy): 23.9 -> 17.0 ns per row; logsumexp 31.7 -> 21.3.  A block holds at
# most ROW_BLOCK_BYTES of input, so its rows are still in L1 for the later
# passes; longer rows go one at a time (a block of 1).  Every row gets the
# same operations either way: the block size never changes a result.
cdef enum:
    ROW_BLOCK = 16
    ROW_BLOCK_BYTES = 16384


cdef inline Py_ssize_t block_rows(Py_ssize_t n, size_t itemsize) noexcept nogil:
    """Rows per block for rows of n elements of itemsize bytes (1 to
    ROW_BLOCK)."""
    cdef Py_ssize_t b = ROW_BLOCK_BYTES // max(<Py_ssize_t>1, n * <Py_ssize_t>itemsize)
    return max(<Py_ssize_t>1, min(<Py_ssize_t>ROW_BLOCK, b))


cdef extern from "_fastexp.h" nogil:
    # Branch-free exps that gcc vectorises, exact inf/NaN/overflow/underflow
    # behaviour; max error 1.16 ulp (float32) and 1.21 ulp (float64) in
    # these inline baseline-ISA versions.  See the header.
    float fastdl_expf(float x)
    double fastdl_exp(double x)
    # y[j] = exp(x[j] - shift), dispatched to AVX2+FMA / AVX-512F / the
    # baseline copy by CPU (0.98 and 0.92 ulp in the AVX2+FMA copy); y may
    # be x.
    void fastdl_expf_shift(const float* x, float shift, float* y, Py_ssize_t n)
    void fastdl_exp_shift(const double* x, double shift, double* y,
                          Py_ssize_t n)
    # The same, also adding y[j] in double into acc[j % LANES], and
    # prefetching pf[0:n] (NULL: nothing; the kernels pass the next row).
    # lo: the row minimum when shift is the row maximum, else -inf (picks a
    # shorter exp with the same bits when the row's spread allows).
    void fastdl_expf_shift_sum(const float* x, float shift, float* y,
                               Py_ssize_t n, double* acc, const float* pf,
                               float lo)
    void fastdl_expf_shift_sum_r(const float* x, float shift, float* y,
                                 Py_ssize_t n, double* acc, const float* pf,
                                 float lo)
    void fastdl_exp_shift_sum(const double* x, double shift, double* y,
                              Py_ssize_t n, double* acc, const double* pf,
                              double lo)
    # The other row passes, dispatched the same way (see the header).
    float fastdl_maxf(const float* x, Py_ssize_t n, float* lo)
    double fastdl_max(const double* x, Py_ssize_t n, double* lo)
    void fastdl_scalef(float* y, double r, Py_ssize_t n)
    void fastdl_scale(double* y, double r, Py_ssize_t n)
    void fastdl_sub2f(const float* x, double a, double b, float* y,
                      Py_ssize_t n)
    void fastdl_sub2(const double* x, double a, double b, double* y,
                     Py_ssize_t n)
    # sub2 with non-temporal stores (outputs larger than the caches).
    void fastdl_sub2f_stream(const float* x, double a, double b, float* y,
                             Py_ssize_t n)
    void fastdl_sub2_stream(const double* x, double a, double b, double* y,
                            Py_ssize_t n)
    # y = e * r with non-temporal stores (from a scratch row of exps).
    void fastdl_scalef_stream(const float* e, double r, float* y, Py_ssize_t n)
    void fastdl_scale_stream(const double* e, double r, double* y, Py_ssize_t n)
    double fastdl_sumf(const float* x, Py_ssize_t n)
    double fastdl_sum(const double* x, Py_ssize_t n)
    double fastdl_dotf(const float* x, const float* y, Py_ssize_t n)
    double fastdl_dot(const double* x, const double* y, Py_ssize_t n)
    void fastdl_msubf(const float* dy, const float* e, double t, float* out,
                      Py_ssize_t n)
    void fastdl_msub(const double* dy, const double* e, double t,
                     double* out, Py_ssize_t n)
    void fastdl_dscalef(const float* y, const float* dy, double d,
                        float* out, Py_ssize_t n)
    void fastdl_dscale(const double* y, const double* dy, double d,
                       double* out, Py_ssize_t n)


cdef inline floating fexp(floating x) noexcept nogil:
    """exp in the precision of the data, inline, for scalar use.

    The kernels' row loops call exp_shift / exp_shift_sum instead (measured:
    the inline exp in a loop that also forms other sums stays scalar, and
    the float64 one was then slower than libm's exp).  fastdl_expf /
    fastdl_exp (_fastexp.h): <= 1.16 ulp (float32) and <= 1.21 ulp (float64).
    """
    if floating is float:
        return fastdl_expf(x)
    else:
        return fastdl_exp(x)


cdef inline void exp_shift(const floating* x, floating shift, floating* y,
                           Py_ssize_t n) noexcept nogil:
    """y[j] = exp(x[j] - shift) for j < n through the SIMD block loop; y may
    be x."""
    if floating is float:
        fastdl_expf_shift(x, shift, y, n)
    else:
        fastdl_exp_shift(x, shift, y, n)


cdef inline void exp_shift_sum(const floating* x, floating shift, floating* y,
                               Py_ssize_t n, double* acc, const floating* pf,
                               floating lo, bint exact) noexcept nogil:
    """exp_shift, also adding y[j] in double into acc[j % LANES].

    exact (float32): exponentiate the exact difference x - shift, for exps
    that are results (softmax, the cross-entropy gradient); else x - shift
    rounded to float32 first, cheaper and as good for exps that are only
    summed (see _fastexp.h: the sum moves by at most 2^-24 / e relative).

    pf[0:n] is prefetched meanwhile (NULL: nothing).  The row kernels pass
    the same columns of their next input row, so that row is on its way to
    the cache while this one computes (see _fastexp.h; 47-51% -> 58-60% of
    copy bandwidth for a float32 softmax).  lo: the row's minimum (from
    row_max) when shift is the row's maximum, else -inf; a row whose spread
    is at most 86 (float32) / 707 (float64) then gets a shorter exp with
    the same bits (0.54 -> 0.46 ns per float32 element, 1.21 -> 0.94 ns per
    float64 one, with the sum).
    """
    if floating is float:
        if exact:
            fastdl_expf_shift_sum(x, shift, y, n, acc, pf, lo)
        else:
            fastdl_expf_shift_sum_r(x, shift, y, n, acc, pf, lo)
    else:
        fastdl_exp_shift_sum(x, shift, y, n, acc, pf, lo)


cdef inline const floating* next_row(const floating* x, Py_ssize_t i,
                                     Py_ssize_t rows,
                                     Py_ssize_t n) noexcept nogil:
    """Row i + 1 of a C-contiguous (rows, n) array whose row i is at x, or
    NULL for the last row: what a kernel passes as exp_shift_sum's pf."""
    return x + n if i + 1 < rows else NULL


cdef inline floating row_max(const floating* x, Py_ssize_t n,
                             floating* lo) noexcept nogil:
    """Largest element of x[0:n]; -inf for an empty or all -inf/NaN row.
    The smallest goes to lo (+inf for an empty or all-NaN row).

    NaN never compares greater, so it is skipped here.  That is harmless: the
    callers feed every element through exp(x - max), so a NaN still reaches
    the row's sum and makes the result NaN, as the reference requires.
    32 running maxima folded pairwise, every step `v > m ? v : m` (the x86
    maxps/maxpd operand order), in the dispatched SIMD loop of _fastexp.h
    (as Cython code, gcc left this loop scalar); every copy of the loop
    returns the same bits, signed zeros included (tests/test_simd_copies.py).
    """
    if floating is float:
        return fastdl_maxf(x, n, lo)
    else:
        return fastdl_max(x, n, lo)


cdef inline void scale_row(floating* y, double r, Py_ssize_t n) noexcept nogil:
    """y[j] = y[j] * r (SIMD loop): in double for float64; for float32 a
    float32 product with r rounded to float32 (at most 1 ulp added instead
    of 0.5, for a 2.5x cheaper pass; see _fastexp.h)."""
    if floating is float:
        fastdl_scalef(y, r, n)
    else:
        fastdl_scale(y, r, n)


cdef inline void sub2_row(const floating* x, double a, double b, floating* y,
                          Py_ssize_t n) noexcept nogil:
    """y[j] = (x[j] - a) - b (SIMD loop); y may be x.  float64 in double;
    float32 in float32 with a, b rounded to float32 (within 2 ulp of exact:
    nothing cancels, since x - a <= 0 <= b for a row max a; see _fastexp.h)."""
    if floating is float:
        fastdl_sub2f(x, a, b, y, n)
    else:
        fastdl_sub2(x, a, b, y, n)


cdef inline void sub2_row_stream(const floating* x, double a, double b,
                                 floating* y, Py_ssize_t n) noexcept nogil:
    """sub2_row with non-temporal stores: the same bits, written past the
    caches (for outputs far larger than them; see _fastexp.h)."""
    if floating is float:
        fastdl_sub2f_stream(x, a, b, y, n)
    else:
        fastdl_sub2_stream(x, a, b, y, n)


cdef inline void scale_row_stream(const floating* e, double r, floating* y,
                                  Py_ssize_t n) noexcept nogil:
    """y[j] = e[j] * r with non-temporal stores: scale_row's products (the
    same bits), from a scratch row of exps into an output far larger than
    the caches (see _fastexp.h)."""
    if floating is float:
        fastdl_scalef_stream(e, r, y, n)
    else:
        fastdl_scale_stream(e, r, y, n)


cdef inline double lane_total(double* acc) noexcept nogil:
    """Add the LANES partial sums pairwise."""
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + \
           ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline double exp_sum(const floating* x, floating shift, Py_ssize_t n,
                           const floating* pf, floating lo) noexcept nogil:
    """sum_j exp(x[j] - shift) over x[0:n], accumulated in double; pf[0:n]
    prefetched meanwhile, lo the row minimum or -inf (see exp_shift_sum;
    the exps are only summed, so x - shift is rounded first).

    The exps of a block go to a small stack buffer through the SIMD loop,
    which also adds them into the LANES partial sums.
    """
    cdef double acc[LANES]
    cdef floating buf[EXP_BLOCK]
    cdef Py_ssize_t jb, k, j0
    for k in range(LANES):
        acc[k] = 0.0
    # EXP_BLOCK is a multiple of LANES, so element j0 + j of the row lands in
    # acc[j % LANES] as in one pass over the whole row.
    for jb in range((n + EXP_BLOCK - 1) // EXP_BLOCK):
        j0 = jb * EXP_BLOCK
        exp_shift_sum(x + j0, shift, buf, min(<Py_ssize_t>EXP_BLOCK, n - j0),
                      acc, pf + j0 if pf != NULL else NULL, lo, False)
    return lane_total(acc)


cdef inline double exp_sum_store(const floating* x, floating shift,
                                 floating* e, Py_ssize_t n, const floating* pf,
                                 floating lo) noexcept nogil:
    """e[j] = exp(x[j] - shift) and return their sum in double; pf[0:n]
    prefetched meanwhile, lo the row minimum or -inf (see exp_shift_sum;
    the exps are results, so of the exact difference).

    e may be x itself: each element is read before it is overwritten.
    """
    cdef double acc[LANES]
    cdef Py_ssize_t k
    for k in range(LANES):
        acc[k] = 0.0
    exp_shift_sum(x, shift, e, n, acc, pf, lo, True)
    return lane_total(acc)


cdef inline double row_sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum_j x[j] in double (SIMD loop, LANES partial sums folded as
    lane_total does)."""
    if floating is float:
        return fastdl_sumf(x, n)
    else:
        return fastdl_sum(x, n)


cdef inline double row_dot(const floating* a, const floating* b,
                           Py_ssize_t n) noexcept nogil:
    """sum_j a[j] * b[j], products and sum in double (SIMD loop, as row_sum)."""
    if floating is float:
        return fastdl_dotf(a, b, n)
    else:
        return fastdl_dot(a, b, n)


cdef inline void msub_row(const floating* dy, const floating* e, double t,
                          floating* out, Py_ssize_t n) noexcept nogil:
    """out[j] = dy[j] - e[j] * t (SIMD loop; float32 in float32 with t
    rounded to float32); out may be dy."""
    if floating is float:
        fastdl_msubf(dy, e, t, out, n)
    else:
        fastdl_msub(dy, e, t, out, n)


cdef inline void dscale_row(const floating* y, const floating* dy, double d,
                            floating* out, Py_ssize_t n) noexcept nogil:
    """out[j] = y[j] * (dy[j] - d) (SIMD loop; float32 in float32 with d
    rounded to float32); out may be y or dy."""
    if floating is float:
        fastdl_dscalef(y, dy, d, out, n)
    else:
        fastdl_dscale(y, dy, d, out, n)


# ------------------------------------------------------- kernel arguments
#
# The kernels take their arrays as ndarray objects and read shape, type and
# data pointer through NumPy's C API: a typed memoryview costs about 0.3 us
# to acquire (buffer protocol, format-string check), and a fused-type def
# function another 0.25 us to pick its specialisation from the arguments,
# which was most of a 64x10 softmax call.  The public wrappers have checked
# everything (see fastdl/backends/__init__.py); these checks are a few
# compares each, so that a broken contract raises instead of reading
# memory it should not.

cdef inline int float_matrix(object a, int ndim, bint write) except -1:
    """The NumPy type number (NPY_FLOAT32 or NPY_FLOAT64) of a, which must
    be an ndim-dimensional float32/float64 ndarray, C-contiguous, aligned,
    in native byte order, and writeable when write is true."""
    cdef int typenum
    if cnp.PyArray_Check(a) and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim:
        typenum = cnp.PyArray_TYPE(<cnp.ndarray>a)
        if ((typenum == cnp.NPY_FLOAT32 or typenum == cnp.NPY_FLOAT64)
                and contiguous(<cnp.ndarray>a, write)):
            return typenum
    raise ValueError(f"kernel contract: expected a C-contiguous {ndim}-D float32 or "
                     f"float64 ndarray, got {type(a).__name__}")


cdef inline bint contiguous(cnp.ndarray a, bint write) noexcept:
    """a is C-contiguous, aligned, native (and writeable if write)."""
    return cnp.PyArray_ISCARRAY(a) if write else cnp.PyArray_ISCARRAY_RO(a)


cdef inline int same_matrix(object a, object like, int typenum, bint write) except -1:
    """Check that a is an ndarray of like's shape, of type typenum and laid
    out as float_matrix requires (writeable when write is true)."""
    cdef int k
    if (cnp.PyArray_Check(a) and cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>a) == cnp.PyArray_NDIM(<cnp.ndarray>like)
            and contiguous(<cnp.ndarray>a, write)):
        for k in range(cnp.PyArray_NDIM(<cnp.ndarray>a)):
            if cnp.PyArray_DIM(<cnp.ndarray>a, k) != cnp.PyArray_DIM(<cnp.ndarray>like, k):
                break
        else:
            return 0
    raise ValueError("kernel contract: arrays of one call must share shape, dtype "
                     "and a C-contiguous layout")


cdef inline Py_ssize_t dim(object a, int k) noexcept:
    return cnp.PyArray_DIM(<cnp.ndarray>a, k)


cdef inline void* data(object a) noexcept:
    return cnp.PyArray_DATA(<cnp.ndarray>a)
