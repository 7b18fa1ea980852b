"""Type stubs for the compiled module ``fastdl.backends.cython._optim`` (kernels/optim.pyx).

Kernels trust their arguments (see the contract in :mod:`fastdl.backends`):
C-contiguous arrays, all float arrays of one dtype (float32 or float64, the
fused type ``floating``), shapes checked by the caller.  Generated from the
``def`` signatures; keep in sync when a kernel's signature changes
(python .ci/gen_stubs.py; tests/test_install.py checks the names).
"""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

#: Whether the module was compiled with OpenMP (else its kernels run serially).
HAVE_OPENMP: bool
#: Whether the module was compiled for AVX2 and FMA (its ``_avx2`` builds).
BUILT_FOR_AVX2: bool
#: Whether this CPU runs AVX2 and FMA code.
CPU_HAS_AVX2_FMA: bool
#: Whether the module was compiled for AVX-512 F/BW/CD/DQ/VL (its ``_avx512`` builds).
BUILT_FOR_AVX512: bool
#: Whether this CPU (and OS) runs that AVX-512 code.
CPU_HAS_AVX512: bool

def sgd_step(w: NDArray[_F], g: NDArray[_F], buf: NDArray[_F], has_buf: bool, lr: float, momentum: float, nesterov: bool, weight_decay: float, first: bool, num_threads: int) -> None: ...

def adam_step(w: NDArray[_F], g: NDArray[_F], m: NDArray[_F], v: NDArray[_F], lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, bc1: float, bc2: float, num_threads: int) -> None: ...
