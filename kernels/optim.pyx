# cython: language_level=3
"""Optimizer updates in one fused pass per parameter array.

See fastdl/backends/numpy/optim.py for the kernel contract.  The arithmetic
runs in the parameter's own dtype, as PyTorch's optimizers do: an update is
a small correction to the parameter, so float32 rounding of the update
(relative error ~1e-7 of the step) is far below what matters, and float32
sqrt/divide vectorise twice as wide as double.
"""

from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport sqrt, sqrtf

from _common cimport (FASTDL_BUILT_FOR_AVX2, FASTDL_BUILT_FOR_AVX512, FASTDL_HAVE_OPENMP,
                      fastdl_cpu_has_avx2_fma, fastdl_cpu_has_avx512)

HAVE_OPENMP = bool(FASTDL_HAVE_OPENMP)
# See fastdl/backends/cython/_select.py: which build of this module to load.
BUILT_FOR_AVX2 = bool(FASTDL_BUILT_FOR_AVX2)
CPU_HAS_AVX2_FMA = bool(fastdl_cpu_has_avx2_fma())
BUILT_FOR_AVX512 = bool(FASTDL_BUILT_FOR_AVX512)
CPU_HAS_AVX512 = bool(fastdl_cpu_has_avx512())


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


def sgd_step(floating[::1] w, const floating[::1] g, floating[::1] buf, bint has_buf,
             double lr, double momentum, bint nesterov, double weight_decay, bint first,
             int num_threads):
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating wi, d, b
    cdef floating lr_ = <floating>lr, mom = <floating>momentum, wd = <floating>weight_decay
    with nogil:
        for i in prange(n, schedule='static', num_threads=num_threads):
            wi = w[i]
            d = g[i] + wd * wi
            if has_buf:
                if first:
                    b = d
                else:
                    b = mom * buf[i] + d
                buf[i] = b
                if nesterov:
                    d = d + mom * b
                else:
                    d = b
            w[i] = wi - lr_ * d


def adam_step(floating[::1] w, const floating[::1] g, floating[::1] m, floating[::1] v,
              double lr, double beta1, double beta2, double eps, double weight_decay,
              double bc1, double bc2, int num_threads):
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating d, mi, vi
    cdef floating step_size = <floating>(lr / bc1)
    cdef floating inv_sqrt_bc2 = <floating>(1.0 / sqrt(bc2))
    cdef floating one_m_b1 = <floating>(1.0 - beta1), b2 = <floating>beta2
    cdef floating one_m_b2 = <floating>(1.0 - beta2), eps_ = <floating>eps
    cdef floating wd = <floating>weight_decay
    with nogil:
        for i in prange(n, schedule='static', num_threads=num_threads):
            d = g[i] + wd * w[i]
            mi = m[i] + one_m_b1 * (d - m[i])
            vi = b2 * v[i] + one_m_b2 * d * d
            m[i] = mi
            v[i] = vi
            w[i] = w[i] - step_size * mi / (_sqrt(vi) * inv_sqrt_bc2 + eps_)
