"""Type stubs for the compiled module ``fastdl.backends.cython._softmax`` (kernels/softmax.pyx).

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

def logsumexp(x: object, out: object, num_threads: int) -> None:
    """out[i] = log(sum(exp(x[i]))) for every row i of x (M, C) (stable)."""
    ...

def softmax(x: object, out: object, num_threads: int, stream: bool) -> None:
    """out[i] = softmax(x[i]); out may be x. stream: write out with non-temporal stores (rows of ROW_BLOCK_BYTES or more only)."""
    ...

def log_softmax(x: object, out: object, num_threads: int, stream: bool) -> None:
    """out[i] = log_softmax(x[i]); out may be x. stream: write out with non-temporal stores (rows of ROW_BLOCK_BYTES or more only)."""
    ...

def softmax_backward(dy: object, y: object, out: object, num_threads: int) -> None:
    """out = y * (dy - sum(dy * y, axis=1, keepdims=True)); out may be dy or y."""
    ...

def log_softmax_backward(dy: object, y: object, out: object, num_threads: int) -> None:
    """out = dy - exp(y) * sum(dy, axis=1, keepdims=True); out may be dy or y."""
    ...
