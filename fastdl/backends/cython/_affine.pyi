"""Type stubs for the compiled module ``fastdl.backends.cython._affine`` (kernels/affine.pyx).

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

def bias_add(out: object, b: object, num_threads: int) -> None:
    """out[i, :] += b for every row i (the same rounding as NumPy's out += b)."""
    ...

def bias_grad(dy: object, db: object, num_threads: int) -> None:
    """db = dy.sum(axis=0), accumulated in double."""
    ...
