"""Type stubs for the compiled module ``fastdl.backends.cython._cross_entropy`` (kernels/cross_entropy.pyx).

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

def cross_entropy_index(logits: object, target: object, weight: object, ignore_index: int, label_smoothing: float, scale: object, loss: object, grad: object, exact_max_rows: int, num_threads: int, stream: bool) -> float | None:
    """Per-row loss (and scaled gradient) for class-index targets; returns the loss sum when it is exact and cheap, else None."""
    ...

def cross_entropy_index_fast(logits: object, target: object, ignore_index: int, label_smoothing: float, mean: bool, out: object, want_grad: bool, exact_max_rows: int, num_threads: int, stream: bool) -> tuple[np.float32 | np.float64, NDArray[np.float32] | NDArray[np.float64] | None] | None:
    """The common case of fastdl.cross_entropy(_with_grad) in one call."""
    ...

def exact_sum(x: NDArray[np.float64]) -> float | None:
    """math.fsum(x) computed by the kernels' summation, or None where that defers to math.fsum (a non-finite term or running sum)."""
    ...

def cross_entropy_prob(logits: object, target: object, weight: object, label_smoothing: float, scale: object, loss: object, grad: object, exact_max_rows: int, num_threads: int) -> float | None:
    """Per-row loss (and scaled gradient) for probability targets; returns the loss sum when it is exact and cheap, else None."""
    ...
