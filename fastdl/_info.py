"""``show_config``: what this fastdl installation is and how it will run."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

from . import _backend, _config
from ._version import __version__


def _cpu_simd():
    """SIMD extensions the CPU offers, as NumPy's runtime detection sees them."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # pragma: no cover - older NumPy layouts
        return "unknown"
    wanted = ("SSE42", "AVX2", "FMA3", "AVX512F", "AVX512_SKX", "ASIMD", "SVE")
    found = [name for name in wanted if feats.get(name)]
    return ", ".join(found) or "none detected"


def _numba_info():
    mod = _backend._loaded.get("numba")
    try:
        import numba
    except ImportError as exc:
        return {"numba": f"not importable ({exc})"}
    info = {"numba": numba.__version__}
    layer = numba.config.THREADING_LAYER
    if mod is not None:
        try:
            layer = f"{numba.threading_layer()} (in use)"
        except ValueError:  # no parallel kernel has run yet
            layer = f"{layer} (configured; none launched yet)"
    info["numba threading layer"] = layer
    cache = os.environ.get(_config.NUMBA_CACHE_ENV) or numba.config.CACHE_DIR
    info["numba cache dir"] = cache or "beside the package sources (__pycache__)"
    return info


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"blas": "install threadpoolctl to see BLAS libraries and threads"}
    rows = [
        f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return {"blas": "; ".join(rows) or "none found"}


def config_info():
    """The facts :func:`show_config` prints, as a dict of str to str."""
    info = {
        "fastdl": __version__,
        "python": f"{sys.version.split()[0]} ({platform.machine()}, {platform.system()})",
        "numpy": np.__version__,
        "backend in force": _backend.get_backend(),
        "available backends": ", ".join(_backend.available_backends()),
    }
    for name, why in _backend._unavailable.items():
        info[f"unavailable: {name}"] = why
    cy = _backend._loaded.get("cython")
    if cy is not None:
        info["cython build"] = (
            f"OpenMP {'on' if cy.HAVE_OPENMP else 'off (serial kernels)'}; "
            "-O3, no -march=native, no -ffast-math"
        )
    info["cpu simd"] = _cpu_simd()
    info["fastdl threads"] = str(_backend.get_num_threads())
    info["parallel threshold"] = f"{_config.PARALLEL_MIN_ELEMENTS} elements"
    info["openmp wait"] = (
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}"
    )
    info.update(_numba_info())
    info.update(_blas_info())
    return info


def show_config(file=None):
    """Print versions, backends, build flags, threading and cache settings.

    Parameters
    ----------
    file : file-like, optional
        Where to print; defaults to ``sys.stdout``.

    Examples
    --------
    >>> import fastdl
    >>> fastdl.show_config()  # doctest: +ELLIPSIS
    fastdl...
    """
    info = config_info()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}} : {value}", file=file or sys.stdout)
