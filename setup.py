"""Build the Cython kernels in ``kernels/`` into ``fastdl.backends.cython``.

OpenMP is used when the compiler accepts it (checked by compiling a small
test program); without it the kernels build and run serially, and
``fastdl.show_config()`` says so.  Set ``FASTDL_NO_OPENMP=1`` to force a
serial build.  No ``-march=native`` (a wheel must run on any x86-64 CPU) and
no ``-ffast-math`` (it breaks inf/NaN handling).

Build switches (environment variables, read at build time):

``FASTDL_NO_OPENMP=1``
    Serial kernels, no OpenMP runtime linked.
``FASTDL_NO_SIMD_CLONES=1``
    Compile only the baseline ("default") copy of the exp block loops
    instead of the baseline, AVX2+FMA and AVX-512F copies chosen at load time
    by an ifunc resolver (see ``kernels/_fastexp.h``): used by
    ``.ci/test_wheel.sh`` to test the baseline path on a CPU whose dynamic
    dispatch would otherwise always pick the AVX2 copy.  It also skips the
    AVX2 builds of the pointwise and optimizer modules (``ISA_STEMS``).
``FASTDL_DEBUG=1``
    Keep the debug information in every build.  By default only in-place
    builds keep it (``pip install -e .``, ``setup.py build_ext --inplace``:
    the development builds, where gdb and perf should see the kernels'
    source lines); every other build (``pip install .``, ``python -m
    build``, cibuildwheel) is a release build, compiled with ``-g0`` (about
    30% less compile time) and linked with ``-Wl,--strip-debug`` on Linux,
    which takes the ten compiled modules from 22 MB to 4 MB.  The symbol
    table stays, so profilers and backtraces still name the functions.
``CFLAGS``
    Appended by the compiler driver before our flags (e.g.
    ``CFLAGS=-march=native`` for a local, non-portable build; a ``-g`` here
    is overridden by a release build's ``-g0``: use ``FASTDL_DEBUG=1``).

Rebuilds are incremental, also under pip, whose isolated build environment
is new each time (fresh Cython and NumPy installs, whose files all look
newer than our outputs, and temporary build directories for an editable
install):

* a C file is regenerated only when an in-tree source it depends on (its
  .pyx, the .pxd files it cimports, the .pyx it includes) is newer than it,
  or when Cython's version, NumPy's version or the compiler directives
  differ from those recorded in ``build/cython_config.txt`` by the run that
  made it (see :func:`cythonize_outdated`); the timestamps of Cython's and
  NumPy's own .pxd files are not compared, their versions stand for them;
* an extension is compiled and linked only when its C file, a header or
  .pxd of its ``depends``, or the build configuration (compiler, flags,
  Python, NumPy, debug policy: ``build_config.txt`` in the build's temporary
  folder) is newer than the module built before (setuptools' own check);
  in-place builds keep their build folders in ``build/inplace.<platform>``
  instead of pip's temporary ones (see :class:`BuildExtWithInfo`).

A second ``pip install -e .`` with nothing changed therefore compiles
nothing, and touching one .pyx rebuilds its two modules.  ``python -m
build`` always compiles everything: it builds the wheel from the sdist,
unpacked in a new temporary folder, which is what shows the sdist to be
complete.  ``rm -rf build`` forces a full rebuild.

Templates: ``kernels/<stem>.pyx.tp`` is expanded into ``kernels/<stem>.pyx``
(Cython's Tempita) with the op names of the op table ``fastdl/_ops.py``,
loaded by path (the package is not built yet), before cythonizing; see
:func:`expand_templates`.

The build also writes ``fastdl/_build_info.py`` (next to the compiled
modules: into the wheel, or into the source tree for an in-place/editable
build) recording the compiler, flags, OpenMP and the SIMD clone list, which
``fastdl.show_config()`` reports.
"""

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython import Tempita
from Cython import __version__ as cython_version
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

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

#: Where Homebrew puts its keg-only libomp (Apple Silicon, then Intel Macs).
MACOS_LIBOMP_PREFIXES = ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp")


def _flag(name):
    return os.environ.get(name, "").strip() not in ("", "0")


def _compiler_is_msvc():
    return sys.platform == "win32" and "GCC" not in sys.version


def _macos_openmp_candidates():
    """OpenMP flag sets to try on macOS, most specific first.

    Apple's clang has no OpenMP runtime of its own: it accepts
    ``-Xpreprocessor -fopenmp`` but needs ``omp.h`` and ``libomp`` from
    elsewhere, typically Homebrew's keg-only ``libomp`` (not on the default
    search paths, hence the explicit -I/-L).  ``LIBOMP_PREFIX`` names another
    install.  A GCC or LLVM clang from Homebrew (``CC=gcc-14``) takes plain
    ``-fopenmp``, tried last.
    """
    prefixes = [os.environ["LIBOMP_PREFIX"]] if os.environ.get("LIBOMP_PREFIX") else []
    prefixes += [p for p in MACOS_LIBOMP_PREFIXES if Path(p, "include", "omp.h").exists()]
    candidates = [
        (["-Xpreprocessor", "-fopenmp", f"-I{p}/include"], [f"-L{p}/lib", "-lomp"])
        for p in prefixes
    ]
    candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    candidates.append((["-fopenmp"], ["-fopenmp"]))
    return candidates


def openmp_flags():
    """(compile flags, link flags, why) for OpenMP; flags are [] when unusable."""
    if _flag("FASTDL_NO_OPENMP"):
        return [], [], "off: FASTDL_NO_OPENMP set at build time"
    if _compiler_is_msvc():
        # MSVC's OpenMP 2.0 (vcomp140.dll) is enough for Cython's prange.
        return ["/openmp"], [], "MSVC /openmp"
    if sys.platform == "darwin":
        candidates = _macos_openmp_candidates()
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    if not shutil.which(cc[0]):
        return [], [], f"off: compiler {cc[0]!r} not found for the OpenMP check"
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
            return cflags, lflags, " ".join(dict.fromkeys(cflags + lflags))
    return [], [], f"off: {cc[0]} accepts none of the OpenMP flag sets tried"


def _simd_clones():
    """The SIMD copies _fastexp.h compiles, or () for the baseline only.

    Mirrors the header's own condition (GCC, x86-64, Linux) so the build
    record says what was compiled; FASTDL_NO_SIMD_CLONES turns it off.  The
    names are the copies of the exp block loops in ``kernels/_fastexp.h``,
    in the order its resolver tries them.
    """
    if _flag("FASTDL_NO_SIMD_CLONES"):
        return ()
    if not sys.platform.startswith("linux"):
        return ()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ()
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    try:
        version = subprocess.run(
            [cc, "--version"], capture_output=True, text=True
        ).stdout
    except OSError:
        return ()
    if "clang" in version.lower():
        return ()
    return ("avx512f", "avx2+fma", "default")


OMP_C, OMP_L, OMP_WHY = openmp_flags()
SIMD_CLONES = _simd_clones()

if _compiler_is_msvc():
    # /fp:precise (the default) does not contract a*b+c into an FMA on
    # VS 2022, so the exp polynomial is evaluated exactly as written.
    OPT = ["/O2"]
else:
    # -O3 vectorises the plain loops; -fno-math-errno lets exp/log be
    # inlined and vectorised without changing any inf/NaN result.
    # -ffp-contract=off: never fuse a*b+c into an FMA behind our back.  The
    # exps in _fastexp.h were swept with separately rounded multiplies and
    # adds for the baseline copy and with explicit fma() calls for the
    # AVX2+FMA and AVX-512F copies; GCC's default (-ffp-contract=fast) would
    # fuse wherever FMA exists (aarch64 always, -march=native), and clang's
    # default fuses within an expression, giving bits nobody swept.  With
    # contraction off every platform and copy computes the swept arithmetic.
    OPT = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]


BUILD_INFO = '''"""How the compiled kernels were built (written by setup.py; do not edit)."""

OPENMP = {openmp!r}
OPENMP_FLAGS = {omp_why!r}
SIMD_CLONES = {clones!r}
COMPILE_ARGS = {args!r}
LINK_ARGS = {link_args!r}
DEBUG_INFO = {debug_info!r}
CFLAGS = {cflags!r}
CC = {cc!r}
CYTHON = {cython!r}
NUMPY = {numpy!r}
PLATFORM = {plat!r}
'''


def _in_tree(path):
    """Whether ``path`` (relative to the project, or absolute) lies in it."""
    try:
        (HERE / path).resolve().relative_to(HERE)
    except ValueError:
        return False
    return True


def debug_flags(keep):
    """(compile, link) flags that drop the debug information, or ([], []).

    MSVC writes none without /Zi, so there is nothing to drop.  ``-g0``
    comes after Python's own ``-g`` on the command line and wins; the linker
    flag also drops whatever debug sections other objects bring.
    """
    if keep or _compiler_is_msvc():
        return [], []
    link = ["-Wl,--strip-debug"] if sys.platform.startswith("linux") else []
    return ["-g0"], link


class BuildExtWithInfo(build_ext):
    """build_ext with incremental in-place builds, stripped release builds
    and a build record.

    * In-place builds (an editable install, ``--inplace``) build in
      ``build/inplace.<platform>-<python>/{lib,temp}`` instead of the new
      temporary folders pip's editable install gives them, so setuptools'
      up-to-date check has the previous outputs to compare against (then
      they are copied into the source tree, as always).
    * Release builds drop the debug information, in-place builds keep it;
      ``FASTDL_DEBUG=1`` keeps it everywhere (see :func:`debug_flags`).
    * Every extension also depends on ``build_config.txt`` in the build's
      temporary folder, rewritten only when the configuration changes (see
      :meth:`_config_stamp`), so no module built with other flags, another
      compiler, Python or NumPy, or the other debug policy survives.
    * ``fastdl/_build_info.py`` is written beside the package: the path is
      derived from where the extensions go, so it lands in the wheel for a
      normal build and in the source tree for in-place / editable builds.
    """

    def finalize_options(self):
        super().finalize_options()
        self.in_place_build = bool(self.inplace or self.editable_mode)
        if self.in_place_build:
            # distutils' own naming: build/lib.linux-x86_64-cpython-311.
            tag = f"{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
            base = Path("build", f"inplace.{tag}")
            self.build_lib = str(base / "lib")
            self.build_temp = str(base / "temp")

    def run(self):
        super().run()
        ext_path = Path(self.get_ext_fullpath(self.extensions[0].name))
        package = next(p for p in ext_path.parents if p.name == "fastdl")
        target = package / "_build_info.py"  # fastdl/backends/cython/x -> fastdl/
        cc = self.compiler.compiler_so if hasattr(self.compiler, "compiler_so") else []
        keep = self._keep_debug_info()
        compile_debug, link_debug = debug_flags(keep)
        target.write_text(
            BUILD_INFO.format(
                openmp=bool(OMP_C),
                omp_why=OMP_WHY,
                clones=tuple(SIMD_CLONES),
                args=tuple(OPT + OMP_C + compile_debug),
                link_args=tuple(OMP_L + link_debug),
                debug_info="kept" if keep else "stripped",
                cflags=os.environ.get("CFLAGS", ""),
                cc=" ".join(cc) if isinstance(cc, list) else str(cc),
                cython=cython_version,
                numpy=np.__version__,
                plat=sysconfig.get_platform(),
            )
        )

    def _keep_debug_info(self):
        return self.in_place_build or _flag("FASTDL_DEBUG")

    def build_extensions(self):
        compile_debug, link_debug = debug_flags(self._keep_debug_info())
        for ext in self.extensions:
            if not hasattr(ext, "fastdl_args"):  # once, should build_ext run twice
                ext.fastdl_args = (list(ext.extra_compile_args), list(ext.extra_link_args))
            ext.extra_compile_args = ext.fastdl_args[0] + compile_debug
            ext.extra_link_args = ext.fastdl_args[1] + link_debug
        stamp = self._config_stamp()
        for ext in self.extensions:
            ext.depends = [d for d in ext.depends if _in_tree(d) and d != stamp] + [stamp]
        super().build_extensions()

    def _config_stamp(self):
        """``build_config.txt`` in ``build_temp``: every input of the compile
        and link steps besides the files, rewritten only when one changes.

        NumPy's headers are named by NumPy's version: their paths (and
        timestamps) are new in every isolated build environment.
        """
        numpy_inc = np.get_include()
        lines = [
            f"python {sys.version.split()[0]} {sysconfig.get_config_var('EXT_SUFFIX')}",
            f"numpy {np.__version__}",
            f"cython {cython_version}",
        ]
        for attr in ("compiler_so", "linker_so", "include_dirs", "library_dirs"):
            lines.append(f"{attr} {getattr(self.compiler, attr, None)!r}")
        for ext in self.extensions:
            incs = ["<numpy headers>" if i == numpy_inc else i for i in ext.include_dirs]
            lines.append(f"{ext.name} {ext.extra_compile_args!r} {ext.extra_link_args!r} "
                         f"{ext.define_macros!r} {incs!r} {ext.libraries!r}")
        text = "\n".join(lines) + "\n"
        stamp = Path(self.build_temp, "build_config.txt")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        if not stamp.exists() or stamp.read_text() != text:
            stamp.write_text(text)
        return str(stamp)


class BuildPyWithoutRecord(build_py):
    """build_py that leaves out ``fastdl/_build_info.py``.

    build_ext writes the record for each build (into the wheel, or into the
    source tree for an in-place build), so one left in the tree by an
    in-place build is neither copied into a wheel nor shipped in an sdist
    (sdist lists the package's modules through build_py).  Leaving it out
    here rather than with an ``exclude`` in MANIFEST.in: that one warns on
    every build from a clean tree, where there is nothing to exclude.
    """

    def find_package_modules(self, package, package_dir):
        return [m for m in super().find_package_modules(package, package_dir)
                if (m[0], m[1]) != ("fastdl", "_build_info")]


#: The op table the templates are expanded with.
OPS_PY = HERE / "fastdl" / "_ops.py"


def _load_ops():
    """fastdl/_ops.py as a module of its own, loaded by path.

    Importing ``fastdl._ops`` would run the package's ``__init__``, which
    imports the whole library (NumPy, the backend registry) before it is
    built; the op table itself imports only the standard library.
    """
    spec = importlib.util.spec_from_file_location("_fastdl_build_ops", OPS_PY)
    ops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ops)
    return ops


def _template_namespace(ops):
    """What a kernel template sees: the op names of the kinds it expands."""
    acts = ops.of_kind("activation")
    return {
        "activations": [op.name for op in acts],
        "pointwise_losses": [op.name for op in ops.of_kind("pointwise_loss")],
        # An activation or pointwise loss whose first option is a choice
        # (gelu's approximate) or a flag (kl_div's log_target): the floats
        # its codes give the kernels, one loop each.
        "choice_codes": {op.name: _option_codes(op.options[0])
                         for op in acts + ops.of_kind("pointwise_loss")
                         if op.options and _option_codes(op.options[0])},
    }


def _option_codes(option):
    """The floats the kernels get for a choice or flag option, else None."""
    if option.codes:
        return sorted(set(option.codes.values()))
    if isinstance(option.default, bool):
        return [0.0, 1.0]
    return None


def expand_templates():
    """Write ``kernels/<stem>.pyx`` from each ``kernels/<stem>.pyx.tp``.

    Only when the template or the op table is newer than the .pyx (or the
    .pyx is missing), and the file is rewritten only if its text changes:
    an unchanged .pyx keeps its mtime, so cythonize and build_ext skip the
    module and rebuilds stay incremental.
    """
    namespace = None
    for tp in sorted(Path(HERE, "kernels").glob("*.pyx.tp")):
        pyx = tp.with_suffix("")
        if pyx.exists() and pyx.stat().st_mtime >= max(
                tp.stat().st_mtime, OPS_PY.stat().st_mtime):
            continue
        if namespace is None:
            namespace = _template_namespace(_load_ops())
        text = (f"# Generated by setup.py from {tp.name} and fastdl/_ops.py: "
                f"edit those, not this file.\n#\n")
        text += Tempita.sub(tp.read_text(), **namespace)
        if not pyx.exists() or pyx.read_text() != text:
            pyx.write_text(text)


#: Where the twins' one-line sources are generated (see extensions()).
SERIAL_SRC = Path("build", "serial_src")


def _twin_source(pyx, suffix, how):
    """A generated ``<stem><suffix>.pyx`` that textually includes ``pyx``
    (built ``how``), so that Cython gives it its own module name."""
    folder = HERE / SERIAL_SRC
    folder.mkdir(parents=True, exist_ok=True)
    twin = folder / f"{pyx.stem}{suffix}.pyx"
    text = (f"# Generated by setup.py: {pyx.name} built {how}.\n"
            f'include "{pyx.name}"\n')
    if not twin.exists() or twin.read_text() != text:
        twin.write_text(text)
    _drop_stale_c(twin, f"fastdl.backends.cython._{pyx.stem}{suffix}")
    return str(SERIAL_SRC / twin.name)


def _serial_twin_source(pyx):
    """A generated ``<stem>_serial.pyx`` that textually includes ``pyx``."""
    return _twin_source(pyx, "_serial", "without OpenMP")


#: Modules also built for x86-64-v3 (AVX2 + FMA) as ``_<stem>_avx2`` and
#: ``_<stem>_serial_avx2``, and for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL, 512-bit
#: vectors) as ``_<stem>_avx512`` and ``_<stem>_serial_avx512``, which
#: fastdl.backends.cython._select loads instead of the portable builds when
#: the CPU runs them (the best one first).  Their loops (the pointwise ops'
#: scalars widened to double, the optimizer updates) are plain C that GCC
#: vectorises: 2 float64 lanes in the x86-64 baseline (SSE2), 4 with AVX2, 8
#: with AVX-512.  The row kernels of the other modules run their hot loops in
#: _fastexp.h's own AVX2/AVX-512F copies and gain nothing.  The flags are
#: otherwise the same, -ffp-contract=off included (no FMA contraction), so
#: every result has the same bits as the portable build's
#: (tests/test_cython_isa.py).  Only where the SIMD copies are built (GCC,
#: x86-64 Linux; FASTDL_NO_SIMD_CLONES=1 turns both off).
ISA_STEMS = ("elementwise", "optim")
ISA_FLAGS = {
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq",
               "-mavx512vl", "-mprefer-vector-width=512"],
}


def _drop_stale_c(pyx, module):
    """Delete ``pyx``'s generated C file if it was made for another module name.

    cythonize regenerates a .c only when a source is newer, and the module
    name is not one of its inputs: a .c left from before a module moved would
    compile into a library whose init function has the old name (the import
    then fails with "does not define module export function").
    """
    c = pyx.with_suffix(".c")
    if c.exists() and f'"{module}"' not in c.read_text(errors="replace"):
        c.unlink()


#: Cython's options for every kernel; with Cython's and NumPy's versions they
#: are recorded in CYTHON_CONFIG (see cythonize_outdated).
CYTHON_OPTIONS = dict(
    include_path=["kernels"],
    compiler_directives={
        "language_level": "3",
        "boundscheck": False,
        "wraparound": False,
        "initializedcheck": False,
        "cdivision": True,
    },
)
CYTHON_CONFIG = Path("build", "cython_config.txt")


def _dependency_tree():
    """Cython's own dependency scanner (the one cythonize uses), or None.

    Not a documented API: should a Cython release change it, every module is
    regenerated as before (slower, never stale).
    """
    try:
        from Cython.Build.Dependencies import create_dependency_tree
        from Cython.Compiler.Main import CompilationOptions, Context

        options = CompilationOptions(include_path=CYTHON_OPTIONS["include_path"])
        return create_dependency_tree(Context.from_options(options), quiet=True)
    except Exception:  # noqa: BLE001 - any failure means "scan nothing"
        return None


def cythonize_outdated(exts):
    """cythonize the extensions whose C file is out of date; pass the others
    through with their existing C file as the source.

    A C file is up to date when it exists, no in-tree file it depends on
    (found by Cython's scanner: the .pyx, the .pyx it includes, the .pxd it
    cimports) is newer, and ``build/cython_config.txt`` records the same
    Cython version, NumPy version and options as now.  cythonize's own check
    cannot be used under pip: it also compares the installed .pxd files of
    Cython and NumPy, which are new in every isolated build environment, so
    it regenerated every module on every install (and every regenerated C
    file is then compiled again).  Their versions stand for them here.

    Each extension's ``depends`` becomes the in-tree .pxd files it cimports
    and the headers in kernels/ (all of which the C files include through
    _common.pxd and _pointwise.pxd), so build_ext recompiles a module when
    one of those changes even if its C file did not.
    """
    config = HERE / CYTHON_CONFIG
    signature = (f"Cython {cython_version}\nNumPy {np.__version__}\n"
                 f"options {CYTHON_OPTIONS!r}\n")
    same_config = config.exists() and config.read_text() == signature
    tree = _dependency_tree()
    headers = sorted(str(h.relative_to(HERE)) for h in Path(HERE, "kernels").glob("*.h"))
    every_pxd = sorted(str(h.relative_to(HERE)) for pattern in ("*.pxd", "*.pxi")
                       for h in Path(HERE, "kernels").glob(pattern))
    outdated, c_files = [], {}
    for ext in exts:
        source = ext.sources[0]
        c = HERE / Path(source).with_suffix(".c")
        if tree is None:
            ext.depends = every_pxd + headers
            outdated.append(ext)
            continue
        deps = sorted(d for d in tree.all_dependencies(source) if _in_tree(d))
        ext.depends = [d for d in deps if not d.endswith((".pyx", ".py"))] + headers
        if (same_config and c.exists()
                and all(os.path.getmtime(HERE / d) <= c.stat().st_mtime for d in deps)):
            c_files[ext.name] = str(Path(source).with_suffix(".c"))
        else:
            outdated.append(ext)
    cythonized = {}
    if outdated:
        # force: these are out of date by the rules above, whatever
        # cythonize's timestamps say (a changed option leaves none newer).
        for ext in cythonize(outdated, force=tree is not None, **CYTHON_OPTIONS):
            # cythonize adds the "cdef extern from" headers it found, NumPy's
            # by absolute path into the build environment: keep in-tree ones.
            ext.depends = sorted({d for d in ext.depends if _in_tree(d)})
            cythonized[ext.name] = ext
    if not same_config and tree is not None:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(signature)
    result = []
    for ext in exts:
        if ext.name in c_files:
            ext.sources = [c_files[ext.name]]
            result.append(ext)
        else:
            result.append(cythonized[ext.name])
    return result


def extensions():
    """Each ``kernels/<stem>.pyx`` twice, as ``fastdl.backends.cython._<stem>``
    and ``fastdl.backends.cython._<stem>_serial``.

    The twin is the same source compiled without OpenMP, where Cython's
    ``prange`` is a plain loop.  Entering an OpenMP parallel region costs
    about 1 us even with one thread (measured here: a two-array kernel on 4
    elements, 1.34 us with prange and num_threads=1, 0.44 us as a plain
    loop), which is most of a small call's time; the backends call the twin
    whenever a call runs on one thread.  The modules of ``ISA_STEMS`` are
    also built for AVX2 + FMA and for AVX-512, both ways (see ``ISA_FLAGS``).
    """
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if not SIMD_CLONES:
        macros.append(("FASTDL_NO_SIMD_CLONES", "1"))
    common = dict(include_dirs=[np.get_include(), "kernels"])
    expand_templates()
    exts = []
    for pyx in sorted(Path(HERE, "kernels").glob("*.pyx")):
        _drop_stale_c(pyx, f"fastdl.backends.cython._{pyx.stem}")
        exts.append(
            Extension(
                f"fastdl.backends.cython._{pyx.stem}",
                [str(pyx.relative_to(HERE))],
                define_macros=macros + [("FASTDL_HAVE_OPENMP", "1" if OMP_C else "0")],
                extra_compile_args=OPT + OMP_C,
                extra_link_args=OMP_L,
                **common,
            )
        )
        exts.append(
            Extension(
                f"fastdl.backends.cython._{pyx.stem}_serial",
                [_serial_twin_source(pyx)],
                define_macros=macros + [("FASTDL_HAVE_OPENMP", "0")],
                extra_compile_args=OPT,
                **common,
            )
        )
        if not SIMD_CLONES or pyx.stem not in ISA_STEMS:
            continue
        for isa, flags in ISA_FLAGS.items():
            exts.append(
                Extension(
                    f"fastdl.backends.cython._{pyx.stem}_{isa}",
                    [_twin_source(pyx, f"_{isa}", f"for {isa}")],
                    define_macros=macros + [("FASTDL_HAVE_OPENMP", "1" if OMP_C else "0")],
                    extra_compile_args=OPT + flags + OMP_C,
                    extra_link_args=OMP_L,
                    **common,
                )
            )
            exts.append(
                Extension(
                    f"fastdl.backends.cython._{pyx.stem}_serial_{isa}",
                    [_twin_source(pyx, f"_serial_{isa}", f"for {isa} without OpenMP")],
                    define_macros=macros + [("FASTDL_HAVE_OPENMP", "0")],
                    extra_compile_args=OPT + flags,
                    **common,
                )
            )
    return cythonize_outdated(exts)


setup(ext_modules=extensions(),
      cmdclass={"build_ext": BuildExtWithInfo, "build_py": BuildPyWithoutRecord})
