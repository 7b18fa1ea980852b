"""The AVX2 builds of the Cython elementwise and optim modules give the
portable builds' bits, and are the ones loaded where the CPU runs them."""

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


def _built(stem):
    from fastdl.backends import cython as pkg

    folder = Path(pkg.__file__).parent
    return any(folder.glob(f"_{stem}_avx2.*")) and any(folder.glob(f"_{stem}_serial_avx2.*"))


def _cpu_runs_avx2():
    from fastdl.backends.cython import _elementwise

    return _elementwise.CPU_HAS_AVX2_FMA


needs_avx2 = pytest.mark.skipif(not (_built("elementwise") and _built("optim")),
                                reason="no AVX2 builds (not GCC on x86-64 Linux)")


@needs_avx2
def test_avx2_builds_are_built_for_avx2():
    from fastdl.backends.cython import _elementwise, _elementwise_avx2, _optim_avx2

    assert _elementwise_avx2.BUILT_FOR_AVX2 and _optim_avx2.BUILT_FOR_AVX2
    # The portable build is not (unless CFLAGS asked for it, e.g. -march=native).
    if "-march" not in os.environ.get("CFLAGS", ""):
        assert not _elementwise.BUILT_FOR_AVX2


@needs_avx2
def test_the_best_build_is_loaded():
    from fastdl.backends.cython import elementwise, optim

    want = "avx2" if _cpu_runs_avx2() else "baseline"
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


@needs_avx2
@pytest.mark.skipif(not _cpu_runs_avx2(), reason="this CPU does not run AVX2 and FMA code")
def test_avx2_builds_give_the_portable_bits(tmp_path):
    base = _run(tmp_path, "baseline")
    avx2 = _run(tmp_path, "avx2")
    assert list(base.pop("isa")) == ["baseline", "baseline"]
    assert list(avx2.pop("isa")) == ["avx2", "avx2"]
    assert base.keys() == avx2.keys()
    assert len(base) > 300
    for key, a in base.items():
        b = avx2[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        a, b = a.reshape(-1), b.reshape(-1)
        # Bit for bit: NaN where NaN, the sign of zero, every other bit.
        same = (a.view(np.uint8) == b.view(np.uint8)).reshape(a.shape[0], -1).all(-1) \
            | (np.isnan(a) & np.isnan(b))
        assert same.all(), (key, np.flatnonzero(~same)[:5])


def test_unknown_isa_choice_is_an_error(monkeypatch):
    from fastdl.backends.cython import _select

    monkeypatch.setenv("FASTDL_CYTHON_ISA", "sse9")
    with pytest.raises(ImportError, match="FASTDL_CYTHON_ISA"):
        _select.isa_choice()
    monkeypatch.setenv("FASTDL_CYTHON_ISA", "Baseline ")
    assert _select.isa_choice() == "baseline"
