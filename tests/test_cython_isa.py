"""The AVX2 and AVX-512 builds of the Cython elementwise and optim modules
give the portable builds' bits, and the best one the CPU runs is loaded."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdl

pytestmark = pytest.mark.skipif("cython" not in fastdl.available_backends(),
                                reason="Cython backend unavailable")

WORKER = Path(__file__).with_name("_isa_worker.py")
ISAS = ("avx2", "avx512")
CPU_RUNS = {"avx2": "CPU_HAS_AVX2_FMA", "avx512": "CPU_HAS_AVX512"}
BUILT_FOR = {"avx2": "BUILT_FOR_AVX2", "avx512": "BUILT_FOR_AVX512"}


def _built(stem, isa):
    from fastdl.backends import cython as pkg

    folder = Path(pkg.__file__).parent
    return any(folder.glob(f"_{stem}_{isa}.*")) and any(folder.glob(f"_{stem}_serial_{isa}.*"))


def _cpu_runs(isa):
    from fastdl.backends.cython import _elementwise

    return getattr(_elementwise, CPU_RUNS[isa])


def _needs_build(isa):
    return pytest.mark.skipif(not (_built("elementwise", isa) and _built("optim", isa)),
                              reason=f"no {isa} builds (not GCC on x86-64 Linux)")


@pytest.mark.parametrize("isa", [pytest.param(i, marks=_needs_build(i)) for i in ISAS])
def test_isa_builds_are_built_for_their_isa(isa):
    import importlib

    for stem in ("elementwise", "optim"):
        for build in (f"_{stem}_{isa}", f"_{stem}_serial_{isa}"):
            mod = importlib.import_module(f"fastdl.backends.cython.{build}")
            assert getattr(mod, BUILT_FOR[isa]), build
    # The portable build is not (unless CFLAGS asked for it, e.g. -march=native).
    if "-march" not in os.environ.get("CFLAGS", ""):
        from fastdl.backends.cython import _elementwise, _optim

        assert not _elementwise.BUILT_FOR_AVX2 and not _optim.BUILT_FOR_AVX512
    if isa == "avx2":
        from fastdl.backends.cython import _elementwise_avx2

        assert not _elementwise_avx2.BUILT_FOR_AVX512


def test_avx512_implies_avx2():
    from fastdl.backends.cython import _elementwise

    assert not _elementwise.CPU_HAS_AVX512 or _elementwise.CPU_HAS_AVX2_FMA


@_needs_build("avx2")
@_needs_build("avx512")
def test_the_best_build_is_loaded():
    from fastdl.backends.cython import elementwise, optim

    want = next((isa for isa in ("avx512", "avx2") if _cpu_runs(isa)), "baseline")
    if os.environ.get("FASTDL_CYTHON_ISA", "auto") not in ("", "auto"):
        pytest.skip("FASTDL_CYTHON_ISA is set")
    assert elementwise._cy.ISA == optim._cy.ISA == want
    assert want in fastdl._info._loops_isa()


def _run(tmp_path, isa):
    out = tmp_path / f"{isa}.npz"
    env = dict(os.environ, FASTDL_CYTHON_ISA=isa, FASTDL_BACKEND="cython")
    subprocess.run([sys.executable, str(WORKER), str(out)], env=env, check=True, timeout=600)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def baseline_results(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("isa"), "baseline")


@pytest.mark.parametrize("isa", [
    pytest.param(i, marks=[_needs_build(i), pytest.mark.skipif(
        not _cpu_runs(i), reason=f"this CPU does not run the {i} build")]) for i in ISAS])
def test_isa_builds_give_the_portable_bits(tmp_path, baseline_results, isa):
    base = dict(baseline_results)
    other = _run(tmp_path, isa)
    assert list(base.pop("isa")) == ["baseline", "baseline"]
    assert list(other.pop("isa")) == [isa, isa]
    assert base.keys() == other.keys()
    assert len(base) > 300
    for key, a in base.items():
        b = other[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        a, b = a.reshape(-1), b.reshape(-1)
        # Bit for bit: NaN where NaN, the sign of zero, every other bit.
        same = (a.view(np.uint8) == b.view(np.uint8)).reshape(a.shape[0], -1).all(-1) \
            | (np.isnan(a) & np.isnan(b))
        assert same.all(), (key, np.flatnonzero(~same)[:5])


@_needs_build("avx2")
@_needs_build("avx512")
def test_a_cpu_without_avx512_gets_the_avx2_build_or_an_error(monkeypatch):
    """As on a CPU that says it runs AVX2 + FMA but not AVX-512: "auto" falls
    back to the AVX2 build and naming the AVX-512 build is an ImportError."""
    from fastdl.backends.cython import _elementwise, _select

    monkeypatch.setattr(_elementwise, "CPU_HAS_AVX512", False)
    monkeypatch.setattr(_elementwise, "CPU_HAS_AVX2_FMA", True)
    monkeypatch.setenv("FASTDL_CYTHON_ISA", "auto")
    assert _select.Module("elementwise").ISA == "avx2"
    monkeypatch.setenv("FASTDL_CYTHON_ISA", "avx512")
    with pytest.raises(ImportError, match="does not run AVX-512"):
        _select.Module("elementwise")
    monkeypatch.setattr(_elementwise, "CPU_HAS_AVX2_FMA", False)
    monkeypatch.setenv("FASTDL_CYTHON_ISA", "auto")
    assert _select.Module("elementwise").ISA == "baseline"


def test_unknown_isa_choice_is_an_error(monkeypatch):
    from fastdl.backends.cython import _select

    monkeypatch.setenv("FASTDL_CYTHON_ISA", "sse9")
    with pytest.raises(ImportError, match="FASTDL_CYTHON_ISA"):
        _select.isa_choice()
    monkeypatch.setenv("FASTDL_CYTHON_ISA", "Baseline ")
    assert _select.isa_choice() == "baseline"
