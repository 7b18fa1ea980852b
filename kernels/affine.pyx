# The non-GEMM parts of the affine layer: the bias add of the forward pass
# and the bias gradient (column sums of dy) of the backward pass.  The GEMMs
# themselves go through NumPy's BLAS (see fastdl/backends/cython/core.py).
#
# Built as fastdl.backends.cython._affine.  Trusts its arguments: C-contiguous,
# one float dtype, N >= 1 and H >= 1 (cython/core.py handles empties); the
# arrays come as ndarrays (see "kernel arguments" in _common.pxd).

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport calloc, free

from _common cimport FASTDL_HAVE_OPENMP, float_matrix, dim, data

HAVE_OPENMP = bool(FASTDL_HAVE_OPENMP)

cnp.import_array()


cdef void _bias_add(floating* out, const floating* bp, Py_ssize_t rows,
                    Py_ssize_t n, int nt) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating* o
    if nt == 1:
        for i in range(rows):
            o = out + i * n
            for j in range(n):
                o[j] = o[j] + bp[j]
    else:
        for i in prange(rows, schedule='static', num_threads=nt):
            o = out + i * n
            for j in range(n):
                o[j] = o[j] + bp[j]


cdef int _check_bias(object out, object b) except -1:
    """The type number of out (N, H); b must be (H,) of its type."""
    cdef int tn = float_matrix(out, 2, True)
    if not (float_matrix(b, 1, False) == tn and dim(b, 0) == dim(out, 1)):
        raise ValueError("kernel contract: the bias must be (H,) of the output's dtype")
    return tn


def bias_add(object out, object b, int num_threads):
    """out[i, :] += b for every row i (the same rounding as NumPy's out += b)."""
    cdef int tn = _check_bias(out, b)
    cdef Py_ssize_t rows = dim(out, 0), n = dim(out, 1)
    cdef void* po = data(out)
    cdef void* pb = data(b)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            _bias_add(<float*>po, <const float*>pb, rows, n, num_threads)
        else:
            _bias_add(<double*>po, <const double*>pb, rows, n, num_threads)


cdef inline void _column_sums(const floating* dy, Py_ssize_t n, Py_ssize_t r0,
                              Py_ssize_t r1, double* acc) noexcept nogil:
    """acc[j] += dy[i, j] for rows r0 <= i < r1 of the (., n) rows at dy
    (acc zeroed by the caller)."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    for i in range(r0, r1):
        row = dy + i * n
        # Row-major walk: each row is read once, contiguously, and added into
        # a double accumulator row (vectorises; no cross-lane reduction).
        for j in range(n):
            acc[j] += row[j]


cdef void _bias_grad(const floating* dy, floating* db, Py_ssize_t rows,
                     Py_ssize_t n, Py_ssize_t nt, double* acc) noexcept nogil:
    cdef Py_ssize_t t, j
    cdef double total
    if nt == 1:
        _column_sums(dy, n, 0, rows, acc)
    else:
        for t in prange(nt, schedule='static', num_threads=nt):
            _column_sums(dy, n, t * rows // nt, (t + 1) * rows // nt, acc + t * n)
    for j in range(n):
        total = 0.0
        for t in range(nt):
            total = total + acc[t * n + j]
        db[j] = <floating>total


def bias_grad(object dy, object db, int num_threads):
    """db = dy.sum(axis=0), accumulated in double.

    Parallel over row blocks: thread t sums rows [t*N/T, (t+1)*N/T) into its
    own double row acc[t] (scratch of T*H doubles), and the T partial rows are
    added at the end, so every column sum is in double and the result does
    not depend on scheduling.  Raises MemoryError if the scratch cannot be
    allocated.
    """
    cdef int tn = float_matrix(dy, 2, False)
    cdef Py_ssize_t rows = dim(dy, 0), n = dim(dy, 1)
    cdef Py_ssize_t nt = max(1, min(<Py_ssize_t>num_threads, rows))
    cdef void* pdy = data(dy)
    cdef void* pdb
    cdef double* acc
    if not (float_matrix(db, 1, True) == tn and dim(db, 0) == n):
        raise ValueError("kernel contract: db must be (H,) of dy's dtype")
    pdb = data(db)
    acc = <double*>calloc(nt * n, sizeof(double))
    if acc == NULL:
        raise MemoryError("bias_grad: cannot allocate the scratch rows")
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            _bias_grad(<const float*>pdy, <float*>pdb, rows, n, nt, acc)
        else:
            _bias_grad(<const double*>pdy, <double*>pdb, rows, n, nt, acc)
    free(acc)
