"""The compiled Cython kernels, picked per call by dtype and thread count.

setup.py builds every ``kernels/<stem>.pyx`` twice: ``_<stem>`` with
OpenMP and ``_<stem>_serial`` without it, where ``prange`` is a plain
loop.  Entering an OpenMP region costs about 1 us even on one thread, and a
call to a fused-type (``floating``) function spends another 0.25 us choosing
its specialisation from the arguments.  A :class:`Kernel` does both choices
with two dict lookups: the serial build when the call runs on one thread
(:func:`fastdl._config.threads_for`), and the float32 or float64
specialisation by the dtype the caller passes.  Measured on a 4-element
two-array kernel: 1.61 us through the fused OpenMP function, 0.52 us
through the serial float32 specialisation.

The pointwise and optimizer modules also come built for AVX2 + FMA
(``_<stem>_avx2``, ``_<stem>_serial_avx2``) and for AVX-512
(``_<stem>_avx512``, ...: setup.py's ``ISA_STEMS``), with the same bits;
:class:`Module` loads the best of those the CPU runs (``FASTDL_CYTHON_ISA``
overrides, see :func:`isa_choice`).

Importing a module whose builds are missing raises ImportError, which the
backend registry reports as "backend unavailable".
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from ... import _config

_SPECIALISATIONS = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}


def _by_dtype(fn):
    """{dtype: callable} for a compiled function, fused over ``floating`` or not."""
    if getattr(fn, "__signatures__", None):
        return {dt: fn[name] for name, dt in _SPECIALISATIONS.items()}
    return dict.fromkeys(_SPECIALISATIONS.values(), fn)


class Kernel:
    """One compiled kernel in both builds: ``kernel(dtype, n_elements, *args)``.

    Calls the build and specialisation for ``dtype`` and ``n_elements`` of
    work, with the thread count appended as the last argument (the
    signature every kernel in ``kernels/`` ends with).
    """

    __slots__ = ("name", "_parallel", "_serial")

    def __init__(self, name, parallel_fn, serial_fn):
        self.name = name
        self._parallel = _by_dtype(parallel_fn)
        self._serial = _by_dtype(serial_fn)

    def __call__(self, dtype, n_elements, *args):
        if n_elements < _config.PARALLEL_MIN_ELEMENTS:  # threads_for's first test, inline
            return self._serial[dtype](*args, 1)
        threads = _config.threads_for(n_elements)
        table = self._serial if threads == 1 else self._parallel
        return table[dtype](*args, threads)

    def __repr__(self):
        return f"Kernel({self.name!r})"


#: The instruction sets a module may be built for beyond the portable
#: baseline (setup.py's ISA_FLAGS), best first, with the attribute of the
#: portable build that says whether this CPU (and OS) runs that build.
ISAS = ("avx512", "avx2")
_CPU_RUNS = {"avx512": "CPU_HAS_AVX512", "avx2": "CPU_HAS_AVX2_FMA"}
_ISA_NAMES = {"avx512": "AVX-512 (F, BW, CD, DQ, VL)", "avx2": "AVX2 and FMA"}


def isa_choice():
    """``FASTDL_CYTHON_ISA``: "auto" (default: the best build this CPU runs),
    "baseline" (the portable builds) or an entry of :data:`ISAS` (that build,
    or ImportError when it is missing or this CPU cannot run it)."""
    choice = os.environ.get("FASTDL_CYTHON_ISA", "auto").strip().lower() or "auto"
    if choice not in ("auto", "baseline") + ISAS:
        raise ImportError(f"FASTDL_CYTHON_ISA={choice!r}: expected auto, baseline or "
                          f"one of {', '.join(ISAS)}")
    return choice


class Module:
    """Both builds of ``kernels/<stem>.pyx``; attributes are :class:`Kernel` objects.

    Where setup.py also built the module for an instruction set of
    :data:`ISAS` (``_<stem>_<isa>`` and ``_<stem>_serial_<isa>``, the same
    source and the same bits) and the CPU runs it, the best such builds are
    loaded instead, unless ``FASTDL_CYTHON_ISA`` says otherwise (see
    :func:`isa_choice`).  ``ISA`` says which: "avx512", "avx2" or "baseline".
    """

    def __init__(self, stem):
        base = f"fastdl.backends.cython._{stem}"
        self.parallel = importlib.import_module(base)
        self.serial = importlib.import_module(f"{base}_serial")
        self.ISA = "baseline"
        choice = isa_choice()
        # Only the modules of setup.py's ISA_STEMS say which builds the CPU runs.
        if choice != "baseline" and hasattr(self.parallel, "CPU_HAS_AVX2_FMA"):
            for isa in ISAS:
                if choice not in ("auto", isa):
                    continue
                if not getattr(self.parallel, _CPU_RUNS[isa], False):
                    if choice == isa:
                        raise ImportError(f"FASTDL_CYTHON_ISA={isa}, but this CPU does not "
                                          f"run {_ISA_NAMES[isa]} code ({base})")
                    continue
                try:
                    parallel = importlib.import_module(f"{base}_{isa}")
                    serial = importlib.import_module(f"{base}_serial_{isa}")
                except ImportError:
                    if choice == isa:
                        raise
                    continue
                self.parallel, self.serial, self.ISA = parallel, serial, isa
                break
        #: Whether the parallel build has OpenMP (else both run serially).
        self.HAVE_OPENMP = bool(self.parallel.HAVE_OPENMP)

    def __getattr__(self, name):
        kernel = Kernel(name, getattr(self.parallel, name), getattr(self.serial, name))
        setattr(self, name, kernel)  # built once; later lookups find the attribute
        return kernel
