"""Build the Cython kernels in ``kernels/`` into ``fastdl.backends``.

OpenMP is used when the compiler accepts it (checked by compiling a small
test program); without it the kernels build and run serially, and
``fastdl.show_config()`` says so.  Set ``FASTDL_NO_OPENMP=1`` to force a
serial build.  No ``-march=native`` (a wheel must run on any x86-64 CPU) and
no ``-ffast-math`` (it breaks inf/NaN handling).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent.resolve()

OPENMP_TEST = b"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _compiler_is_msvc():
    return sys.platform == "win32" and "GCC" not in sys.version


def openmp_flags():
    """(compile flags, link flags) for OpenMP, or ([], []) when unusable."""
    if os.environ.get("FASTDL_NO_OPENMP"):
        return [], []
    if _compiler_is_msvc():
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs -Xpreprocessor and a libomp (e.g. from Homebrew).
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    if not shutil.which(cc[0]):
        return [], []
    for cflags, lflags in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp, "omp_test.c")
            src.write_bytes(OPENMP_TEST)
            cmd = cc + cflags + [str(src), "-o", str(Path(tmp, "omp_test"))] + lflags
            try:
                ok = subprocess.run(cmd, capture_output=True).returncode == 0
            except OSError:
                ok = False
        if ok:
            return cflags, lflags
    return [], []


def extensions():
    omp_c, omp_l = openmp_flags()
    if _compiler_is_msvc():
        opt = ["/O2"]
    else:
        # -O3 vectorises the plain loops; -fno-math-errno lets exp/log be
        # inlined and vectorised without changing any inf/NaN result.
        opt = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
    macros = [
        ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
        ("FASTDL_HAVE_OPENMP", "1" if omp_c else "0"),
    ]
    exts = []
    for pyx in sorted(Path(HERE, "kernels").glob("*.pyx")):
        exts.append(
            Extension(
                f"fastdl.backends._cy_{pyx.stem}",
                [str(pyx.relative_to(HERE))],
                include_dirs=[np.get_include(), "kernels"],
                define_macros=macros,
                extra_compile_args=opt + omp_c,
                extra_link_args=omp_l,
            )
        )
    return cythonize(
        exts,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
    )


setup(ext_modules=extensions())
