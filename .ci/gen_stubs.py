"""Regenerate the stubs fastdl/backends/cython/_*.pyi from the ``def`` signatures in kernels/*.pyx.

Usage (from the repository root): python .ci/gen_stubs.py
tests/test_install.py::test_stub_matches_compiled_module fails when a stub
and its compiled module disagree; rerun this then.  Maps Cython argument
types to NumPy typing (fused ``floating`` -> one TypeVar, so all float arrays
of a call share a dtype); a ``def`` whose body returns a value at top level
is typed ``-> float`` (the loss sums), others ``-> None``, unless RETURNS
names its type.

A ``kernels/<stem>.pyx`` expanded from a template (``<stem>.pyx.tp``, see
setup.py) is read as generated: build first so that it exists and is current.
"""
import pathlib
import re
import sys
TYPES = {
    "const floating[:, ::1]": "NDArray[_F]", "floating[:, ::1]": "NDArray[_F]",
    "const floating[::1]": "NDArray[_F]", "floating[::1]": "NDArray[_F]",
    "double[::1]": "NDArray[np.float64]", "const double[::1]": "NDArray[np.float64]",
    "const int64_t[::1]": "NDArray[np.int64]", "int64_t": "int", "int": "int",
    "double": "float", "bint": "bool", "Py_ssize_t": "int", "object": "object",
}
# Entry points whose return is not a loss sum or None.
RETURNS = {
    "cross_entropy_index_fast":
        "tuple[np.float32 | np.float64, NDArray[np.float32] | NDArray[np.float64] | None] | None",
    "exact_sum": "float | None",
}
for tp in sorted(pathlib.Path("kernels").glob("*.pyx.tp")):
    if not tp.with_suffix("").exists():
        sys.exit(f"{tp.with_suffix('')} is generated from {tp.name} by setup.py: "
                 "build first (python setup.py build_ext --inplace)")
for pyx in sorted(pathlib.Path("kernels").glob("*.pyx")):
    src = pyx.read_text()
    tp = pyx.with_name(pyx.name + ".tp")
    origin = f"\n\nkernels/{pyx.name} is expanded from kernels/{tp.name} by setup.py." if tp.exists() else ""
    header = src.split("\n\n")[0]
    lines = []
    for m in re.finditer(r"^def\s+(\w+)\((.*?)\)\s*:\n(.*?)(?=^\S|\Z)", src, re.S | re.M):
        name, args, body = m.groups()
        joined = " ".join(args.split())
        parts = re.findall(r"((?:const\s+)?[\w ]+?(?:\[[^\]]*\])?)\s+(\w+)(?:,|$)", joined)
        params = ", ".join(f"{n}: {TYPES[t.strip()]}" for t, n in parts)
        ret = RETURNS.get(name) or (
            "float" if re.search(r"^    return \w", body, re.M) else "None")
        doc = re.match(r'\s*"""(.*?)"""', body, re.S)
        lines.append(f"def {name}({params}) -> {ret}: ...")
        if doc:
            first = " ".join(doc.group(1).split("\n\n")[0].split())
            lines[-1] = f"def {name}({params}) -> {ret}:\n    \"\"\"{first}\"\"\"\n    ..."
    mod = f"_{pyx.stem}"
    out = f'''"""Type stubs for the compiled module ``fastdl.backends.cython.{mod}`` (kernels/{pyx.name}).{origin}

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

''' + ("#: Whether the module was compiled with OpenMP (else its kernels run serially).\nHAVE_OPENMP: bool\n\n" if "HAVE_OPENMP =" in src else "") + "\n\n".join(lines) + "\n"
    pathlib.Path(f"fastdl/backends/cython/{mod}.pyi").write_text(out)
    print(mod, len(lines))
