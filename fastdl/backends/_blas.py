"""NumPy's own BLAS, found for code that calls it without going through NumPy.

Numba's ``np.dot`` calls SciPy's BLAS, a second library with its own thread
pool; the compiled training step and the fused linear + cross-entropy head
call the OpenBLAS that NumPy's wheels bundle instead, through its CBLAS entry
points.  Nothing here imports Numba.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

def find_numpy_cblas():
    """Addresses of NumPy's own ``cblas_sgemm``/``cblas_dgemm``, or None.

    NumPy >= 2 wheels bundle OpenBLAS as scipy-openblas64 (64-bit integers,
    symbols ``scipy_cblas_?gemm64_``) in ``numpy.libs``; loading that file
    again returns the instance NumPy already uses, so its thread settings
    (threadpoolctl) are NumPy's.  Anything else (another BLAS, another
    layout of the install) returns None and the step uses Numba's np.dot.
    """
    import ctypes

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # noqa: BLE001 - an older NumPy or an unusual build
        return None
    if blas.get("name") != "scipy-openblas" or \
            "USE64BITINT" not in str(blas.get("openblas configuration", "")):
        return None
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    found = sorted(libdir.glob("libscipy_openblas64_*"))
    if len(found) != 1:
        return None
    try:
        lib = ctypes.CDLL(str(found[0]))
        sgemm = lib.scipy_cblas_sgemm64_
        dgemm = lib.scipy_cblas_dgemm64_
    except (OSError, AttributeError):
        return None
    return (ctypes.cast(sgemm, ctypes.c_void_p).value,
            ctypes.cast(dgemm, ctypes.c_void_p).value)

