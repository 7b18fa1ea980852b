#!/usr/bin/env bash
# Build the sdist and the wheel with `python -m build`, check what each
# contains (and that the wheel's compiled modules carry no debug sections),
# install the wheel into a fresh venv (no Cython, no compiler on
# PATH for the test run) and run the test suite against the installed
# package; then check that a read-only install with no writable HOME still
# imports and computes (Numba cache redirected or disabled, never a crash).
#
# Usage: .ci/test_wheel.sh [WORKDIR]     (default: a new temporary directory)
# Build switches pass through (see setup.py), e.g.
#   FASTDL_NO_SIMD_CLONES=1 .ci/test_wheel.sh   # test the baseline exp path
#   FASTDL_DEBUG=1 .ci/test_wheel.sh            # a wheel with debug information
# Needs network access to PyPI (build dependencies and test extras).
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d -t fastdl-wheel-XXXXXX)}"
mkdir -p "$WORK"
PY="${PYTHON:-python3}"
t0=$SECONDS
phase() { echo; echo "=== [$((SECONDS - t0))s] $*"; }

phase "build sdist + wheel (python -m build) into $WORK/dist"
"$PY" -m venv "$WORK/buildenv"
"$WORK/buildenv/bin/python" -m pip install -q build
# Build from a clean copy of the tree so local build products (kernels/*.c,
# in-place .so files, __pycache__) cannot leak into the artefacts.
SRC="$WORK/src"
rm -rf "$SRC" && mkdir -p "$SRC"
tar -C "$REPO" --exclude=./build --exclude=./dist --exclude='*.egg-info' \
    --exclude=./.git --exclude=__pycache__ --exclude='*.so' --exclude='kernels/*.c' \
    --exclude=./fastdl/_build_info.py --exclude=./.hypothesis --exclude=./.benchmarks \
    -cf - . | tar -C "$SRC" -xf -
"$WORK/buildenv/bin/python" -m build --outdir "$WORK/dist" "$SRC" > "$WORK/build.log" 2>&1 \
    || { tail -50 "$WORK/build.log"; exit 1; }
t_build=$((SECONDS - t0))
SDIST=$(ls "$WORK"/dist/fastdl-*.tar.gz)
WHEEL=$(ls "$WORK"/dist/fastdl-*.whl)
ls -l "$WORK/dist"

phase "check artefact contents"
"$PY" - "$SDIST" "$WHEEL" <<'PYEOF'
import sys, tarfile, zipfile, fnmatch
sdist, wheel = sys.argv[1:]
s = [n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n]
w = zipfile.ZipFile(wheel).namelist()
def has(names, pat): return [n for n in names if fnmatch.fnmatch(n, pat)]
problems = []
for pat in ["kernels/*.pyx", "kernels/_common.pxd", "kernels/_fastexp.h", "tests/test_*.py",
            "tests/conftest.py", "bench/*.py", "examples/*.py", "fastdl/py.typed",
            "fastdl/backends/cython/_*.pyi", "CHANGELOG.md", "setup.py", "pyproject.toml"]:
    if not has(s, pat): problems.append(f"sdist lacks {pat}")
if not has(s, "tests/c/simd_copies.c"): problems.append("sdist lacks tests/c/simd_copies.c")
for pat in ["*.c", "*.so", "*.pyd", "*.html", "*.nbi", "*.nbc", "*__pycache__*", "*.py[cod]",
            "fastdl/_build_info.py"]:
    found = [n for n in has(s, pat) if n != "tests/c/simd_copies.c"]  # a test's source
    if found: problems.append(f"sdist ships {pat}: {found[:3]}")
for pat in ["fastdl/backends/cython/_*.so", "fastdl/backends/cython/_*.pyi", "fastdl/py.typed",
            "fastdl/_build_info.py", "fastdl/_version.py"]:
    if not has(w, pat): problems.append(f"wheel lacks {pat}")
for pat in ["*.pyx", "*.c", "*.nbi", "*.nbc", "tests/*"]:
    if has(w, pat): problems.append(f"wheel ships {pat}: {has(w, pat)[:3]}")
print(f"sdist: {len(s)} files; wheel: {len(w)} files;",
      "compiled:", ", ".join(n.rsplit("/", 1)[1] for n in has(w, "*.so")))

# Release wheels are stripped (setup.py: -g0, -Wl,--strip-debug): no ELF
# module may carry .debug_* sections, unless FASTDL_DEBUG=1 asked for them.
def elf_sections(data):
    """Section names of an ELF file (bytes), or None if it is not ELF."""
    import struct
    if data[:4] != b"\x7fELF":
        return None
    end = "<" if data[5] == 1 else ">"
    if data[4] == 2:  # ELFCLASS64
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
        off_at, fmt = 0x18, "Q"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)
        off_at, fmt = 0x10, "I"
    def header(i):
        base = shoff + i * shentsize
        name, = struct.unpack_from(end + "I", data, base)
        offset, = struct.unpack_from(end + fmt, data, base + off_at)
        return name, offset
    _, strtab = header(shstrndx)
    names = []
    for i in range(shnum):
        name, _ = header(i)
        names.append(data[strtab + name:data.index(b"\0", strtab + name)].decode())
    return names

import os
zf = zipfile.ZipFile(wheel)
so_bytes = 0
for n in has(w, "*.so"):
    data = zf.read(n)
    so_bytes += len(data)
    sections = elf_sections(data)
    debug = [x for x in sections or [] if x.startswith(".debug_")]
    if debug and os.environ.get("FASTDL_DEBUG", "0") in ("", "0"):
        problems.append(f"wheel ships an unstripped {n.rsplit('/', 1)[1]}: {debug[:3]}")
print(f"wheel {os.path.getsize(wheel) / 1e6:.2f} MB;",
      f"compiled modules {so_bytes / 1e6:.2f} MB unpacked")
if problems:
    print("\n".join(problems)); sys.exit(1)
PYEOF

phase "fresh venv; install the wheel + test extras from PyPI"
VENV="$WORK/venv"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "$WHEEL[test]"
t_install=$((SECONDS - t0))

# PATH for the test run: the venv plus a handful of basic tools, and no C
# compiler, so nothing can be (re)built behind our back.
NOCC="$WORK/nocc-bin"
mkdir -p "$NOCC"
for tool in sh bash env uname cat ls rm mkdir chmod ldconfig setpriv; do
    p=$(command -v "$tool" || true); [ -n "$p" ] && ln -sf "$p" "$NOCC/$tool"
done
TEST_PATH="$VENV/bin:$NOCC"
for cc in cc gcc c++ g++ clang x86_64-linux-gnu-gcc; do
    if PATH="$TEST_PATH" command -v "$cc" >/dev/null; then echo "compiler $cc on test PATH" >&2; exit 1; fi
done
env -u CC -u CFLAGS PATH="$TEST_PATH" "$VENV/bin/python" -c \
    "import importlib.util as u, sys; sys.exit(1 if u.find_spec('Cython') else 0)" \
    || { echo "Cython is installed in the test venv" >&2; exit 1; }

phase "test suite against the installed wheel"
status=0
env -u CC -u CFLAGS PATH="$TEST_PATH" "$VENV/bin/python" "$REPO/.ci/test_installed.py" "$REPO" \
    || status=$?
t_tests=$((SECONDS - t0))

phase "read-only site-packages, no writable HOME"
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
RO="$WORK/ro-home"; mkdir -p "$RO"
find "$SITE/fastdl" -name __pycache__ -prune -exec rm -rf {} +
chmod -R a-w "$SITE" "$RO"
# As root, file modes do not stop writes: drop CAP_DAC_OVERRIDE so they do.
DROP=()
if [ "$(id -u)" = 0 ]; then DROP=(setpriv --bounding-set=-dac_override,-dac_read_search); fi
ro_status=0
cd "$WORK"   # not the repository: `python -` puts the cwd on sys.path
for tmpdir in "$WORK/tmp-rw" "$RO"; do   # a writable TMPDIR (the cache goes there), then none
    mkdir -p "$WORK/tmp-rw"
    env -u NUMBA_CACHE_DIR -u FASTDL_NUMBA_CACHE_DIR -u XDG_CACHE_HOME -u PYTHONPATH \
        HOME="$RO/nonexistent" TMPDIR="$tmpdir" PATH="$TEST_PATH" SITE="$SITE" \
        "${DROP[@]}" "$VENV/bin/python" - <<'PYEOF' || ro_status=$?
import os, numpy as np, fastdl
assert fastdl.__file__.startswith(os.environ["SITE"]), fastdl.__file__
x = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
for b in ("cython", "numba"):
    np.testing.assert_allclose(fastdl.softmax(x, backend=b).sum(1), 1, rtol=1e-5)
    loss, g = fastdl.cross_entropy_with_grad(x, np.arange(64) % 10, backend=b)
cfg = fastdl._info.config_info()
print("read-only OK:", fastdl.__file__, "| numba cache:", cfg["numba cache"])
PYEOF
done
chmod -R u+w "$SITE" "$RO"
t_total=$((SECONDS - t0))

echo
echo "=== timings: build ${t_build}s, install $((t_install - t_build))s," \
     "tests $((t_tests - t_install))s, read-only check $((t_total - t_tests))s, total ${t_total}s"
echo "=== artefacts in $WORK/dist; tests exit $status; read-only exit $ro_status"
[ "$status" -eq 0 ] && [ "$ro_status" -eq 0 ]
