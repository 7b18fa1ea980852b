"""``show_config``: what this fastdl installation is and how it will run."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

from . import _backend, _config
from ._version import __version__


def _cpu_simd() -> str:
    """SIMD extensions the CPU offers, as NumPy's runtime detection sees them."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # pragma: no cover - older NumPy layouts
        return "unknown"
    wanted = ("SSE42", "AVX2", "FMA3", "AVX512F", "AVX512_SKX", "ASIMD", "SVE")
    found = [name for name in wanted if feats.get(name)]
    return ", ".join(found) or "none detected"


def _numba_info() -> dict[str, str]:
    try:
        import numba
    except ImportError as exc:
        return {"numba": f"not importable ({exc})"}
    import llvmlite

    info = {"numba": f"{numba.__version__} (llvmlite {llvmlite.__version__})"}
    mod = _backend._loaded.get("numba")
    layer = numba.config.THREADING_LAYER
    if mod is not None:
        try:
            layer = f"{numba.threading_layer()} (in use)"
        except ValueError:  # no parallel kernel has run yet
            layer = f"{layer} (configured; none launched yet)"
        status = getattr(mod, "layer_status", None)
        if status and status.get("layer") is not None:
            layer += f"; {status['note']}"
    info["numba threading layer"] = layer
    info["numba threads"] = f"{numba.config.NUMBA_NUM_THREADS} in the pool"
    status = _config.numba_cache_status
    if mod is None:
        info["numba cache"] = "not set up (Numba backend not loaded)"
    elif status.get("dir"):
        info["numba cache"] = f"{status['dir']} ({status['source']})"
    else:
        info["numba cache"] = status.get("source", "unknown")
    for why in status.get("skipped", ()):
        info["numba cache"] += f"; skipped {why}"
    from . import _compiled_step

    info["compile_step GEMMs"] = {
        None: "not used yet",
        "numpy": "NumPy's own BLAS, called directly",
        "scipy": "Numba's np.dot (SciPy's BLAS)",
    }.get(_compiled_step.gemm_blas, str(_compiled_step.gemm_blas))
    return info


def _cython_info(cy) -> dict[str, str]:
    """Build flags of the compiled modules, from the record setup.py writes."""
    try:
        from . import _build_info as b
    except ImportError:  # built without setup.py's build_ext (or an old build)
        return {
            "cython build": f"OpenMP {'on' if cy.HAVE_OPENMP else 'off (serial kernels)'}"
            " (no build record)"
        }
    openmp = f"on ({b.OPENMP_FLAGS})" if cy.HAVE_OPENMP else f"off, serial kernels ({b.OPENMP_FLAGS})"
    flags = " ".join(b.COMPILE_ARGS) + (f"; CFLAGS={b.CFLAGS}" if b.CFLAGS else "")
    return {
        "cython build": f"Cython {b.CYTHON}, NumPy {b.NUMPY} headers, {b.PLATFORM}",
        "cython openmp": openmp,
        "cython flags": flags,
        "exp simd copy": _simd_in_use(b.SIMD_CLONES),
        "cython loops isa": _loops_isa(),
    }


def _loops_isa() -> str:
    """Which build of the elementwise and optimizer modules is loaded."""
    try:
        from .backends.cython import _select, elementwise, optim
    except ImportError as exc:
        return f"not loaded ({exc})"
    isas = {elementwise._cy.ISA, optim._cy.ISA}
    note = " (FASTDL_CYTHON_ISA=baseline)" if _select.isa_choice() == "baseline" else ""
    return ", ".join(sorted(isas)) + note


def _simd_in_use(clones) -> str:
    """Which copy of the exp block loops this CPU runs, and what was built.

    The ifunc resolver in ``kernels/_fastexp.h`` picks, once at load time,
    the AVX-512F copy when the CPU has AVX-512F, else the AVX2+FMA copy when
    it has both, else the baseline; ``__builtin_cpu_supports`` and NumPy's
    ``__cpu_features__`` both check the CPUID bits and that the OS saves the
    wider registers (XGETBV), so NumPy's view predicts the resolver's choice.
    """
    if not clones:
        return "default only (built without SIMD copies; compiler's baseline ISA)"
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # pragma: no cover - older NumPy layouts
        feats = {}
    needs = {"avx512f": ("AVX512F",), "avx2+fma": ("AVX2", "FMA3"), "avx2": ("AVX2",)}
    chosen = next(
        (c for c in clones
         if c == "default" or all(feats.get(f) for f in needs.get(c, (c.upper(),)))),
        "default",
    )
    return f"{chosen} (copies built: {', '.join(clones)})"


def _blas_info() -> dict[str, str]:
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


def config_info() -> dict[str, str]:
    """The facts :func:`show_config` prints, as a dict of str to str.

    Loads every backend (so Numba is imported) but compiles nothing.
    """
    info = {
        "fastdl": f"{__version__} ({os.path.dirname(os.path.abspath(__file__))})",
        "python": f"{sys.version.split()[0]} ({platform.machine()}, {platform.system()})",
        "numpy": np.__version__,
        "backend in force": _backend.get_backend(),
        "available backends": ", ".join(_backend.available_backends()),
    }
    for name, why in _backend._unavailable.items():
        info[f"unavailable: {name}"] = why
    cy = _backend._loaded.get("cython")
    if cy is not None:
        info.update(_cython_info(cy))
    info["cpu simd"] = _cpu_simd()
    info["fastdl threads"] = str(_backend.get_num_threads()) + (
        " (forked child: kernels run on one thread)" if _backend.forked_child() else "")
    info["parallel threshold"] = f"{_config.PARALLEL_MIN_ELEMENTS} elements"
    info["adaptive threads"] = _adaptive_threads_info()
    info["openmp wait"] = (
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}"
    )
    info.update(_numba_info())
    info.update(_blas_info())
    return info


def _adaptive_threads_info():
    from . import _load

    if not _load.ENABLED:
        return "off (FASTDL_ADAPTIVE_THREADS=0, or no /proc)"
    others = _load.other_running()
    free = max(1, _config._USABLE_CORES - others)
    return (f"on: {others} runnable thread(s) of other processes now, so parallel "
            f"kernels take at most {free} of {_config._USABLE_CORES} cores")


def show_config(file=None) -> None:
    """Print versions, backends, build flags, threading and cache settings.

    Reports: fastdl, Python and NumPy versions; the backend in force, the
    available backends and why any is unavailable; how the Cython kernels
    were built (Cython version, compile flags, OpenMP or serial) and which
    SIMD copy of the exp loops this CPU runs (``avx512f``/``avx2+fma``/
    ``default``) and which build of the pointwise and optimizer loops
    (``avx512``, ``avx2`` or ``baseline``, see ``FASTDL_CYTHON_ISA``); threads and the
    parallel threshold; Numba's version, threading layer and where it
    caches fastdl's kernels; BLAS libraries and their threads (with
    threadpoolctl).  ``python -m fastdl info`` prints
    the same.

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
