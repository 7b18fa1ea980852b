"""The SIMD copies of the C row loops give the same bits as each other.

``kernels/_fastexp.h`` holds each row loop (max, exp + sum) as a baseline C
copy, an AVX2+FMA intrinsics copy and an AVX-512F intrinsics copy (and the
fused C body both are held to); the loader picks one per CPU, so a test run
through the kernels only ever sees one.  ``tests/c/simd_copies.c`` calls
them side by side; it is compiled here with setup.py's floating-point flags.
"""

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"
         and shutil.which("gcc")),
    reason="the SIMD copies exist on x86-64 Linux with gcc only")


def test_simd_copies_agree(tmp_path):
    exe = tmp_path / "simd_copies"
    subprocess.run(
        ["gcc", "-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
         f"-I{ROOT / 'kernels'}", str(ROOT / "tests" / "c" / "simd_copies.c"),
         "-o", str(exe), "-lm"],
        check=True, capture_output=True, text=True)
    cpu = Path("/proc/cpuinfo").read_text()
    if not (" avx2" in cpu and " fma" in cpu):
        pytest.skip("this CPU cannot run the AVX2+FMA copy")
    proc = subprocess.run([str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The AVX-512F copy is compared too wherever this CPU can run it.
    avx512 = " avx512f" in cpu
    assert proc.stdout.split("\n")[:2] == [
        "mismatches 0", "avx512f checked" if avx512 else "avx512f not on this cpu"]
