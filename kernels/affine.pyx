# The non-GEMM parts of the affine layer: the bias add of the forward pass
# and the bias gradient (column sums of dy) of the backward pass.  The GEMMs
# themselves go through NumPy's BLAS (see fastdl/backends/cython/core.py).
#
# Built as fastdl.backends.cython._affine.  Trusts its arguments: C-contiguous,
# one float dtype, N >= 1 and H >= 1 (cython/core.py handles empties).

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport calloc, free

from _common cimport FASTDL_HAVE_OPENMP

HAVE_OPENMP = bool(FASTDL_HAVE_OPENMP)


def bias_add(floating[:, ::1] out, const floating[::1] b, int num_threads):
    """out[i, :] += b for every row i (the same rounding as NumPy's out += b)."""
    cdef Py_ssize_t i, j, rows = out.shape[0], n = out.shape[1]
    cdef floating* o
    cdef const floating* bp = &b[0]
    with nogil:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            o = &out[i, 0]
            for j in range(n):
                o[j] = o[j] + bp[j]


cdef inline void _column_sums(const floating[:, ::1] dy, Py_ssize_t r0,
                              Py_ssize_t r1, double* acc) noexcept nogil:
    """acc[j] += dy[i, j] for rows r0 <= i < r1 (acc zeroed by the caller)."""
    cdef Py_ssize_t i, j, n = dy.shape[1]
    cdef const floating* row
    for i in range(r0, r1):
        row = &dy[i, 0]
        # Row-major walk: each row is read once, contiguously, and added into
        # a double accumulator row (vectorises; no cross-lane reduction).
        for j in range(n):
            acc[j] += row[j]


def bias_grad(const floating[:, ::1] dy, floating[::1] db, int num_threads):
    """db = dy.sum(axis=0), accumulated in double.

    Parallel over row blocks: thread t sums rows [t*N/T, (t+1)*N/T) into its
    own double row acc[t] (scratch of T*H doubles), and the T partial rows are
    added at the end, so every column sum is in double and the result does
    not depend on scheduling.  Raises MemoryError if the scratch cannot be
    allocated.
    """
    cdef Py_ssize_t rows = dy.shape[0], n = dy.shape[1]
    cdef Py_ssize_t t, j, nt = max(1, min(<Py_ssize_t>num_threads, rows))
    cdef double total
    cdef double* acc = <double*>calloc(nt * n, sizeof(double))
    if acc == NULL:
        raise MemoryError("bias_grad: cannot allocate the scratch rows")
    with nogil:
        for t in prange(nt, schedule='static', num_threads=nt):
            _column_sums(dy, t * rows // nt, (t + 1) * rows // nt,
                         acc + t * n)
        for j in range(n):
            total = 0.0
            for t in range(nt):
                total = total + acc[t * n + j]
            db[j] = <floating>total
    free(acc)
