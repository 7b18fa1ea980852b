"""The installed package: read-only installs, the Numba cache, warmup, typing.

The read-only tests copy the imported ``fastdl`` package (whatever is under
test: the source tree or an installed wheel) into a temporary directory,
make it read-only and import it from there in a subprocess with no writable
HOME.  As root, file modes do not stop writes, so the subprocess then runs
under ``setpriv`` without CAP_DAC_OVERRIDE (skipped if that is impossible).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastdl
from fastdl import _config, _info, _warmup

PACKAGE = Path(fastdl.__file__).resolve().parent

numba = pytest.importorskip("numba")
needs_numba = pytest.mark.skipif(
    "numba" not in fastdl.available_backends(), reason="Numba backend unavailable"
)

# One small Numba kernel, then a report of where its cache went.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, tempfile
    if os.environ.get("TEST_FORCE_TEMPDIR"):
        # gettempdir() would fall back to a writable /tmp: pin it instead.
        tempfile.tempdir = os.environ["TEST_FORCE_TEMPDIR"]
    import numpy as np
    import fastdl
    from fastdl import _config
    from fastdl.backends.numba import elementwise as ne
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(fastdl.relu(x, backend="numba"), np.maximum(x, 0))
    hits = sum(sum(d.stats.cache_hits.values()) for d in ne._K["relu"])
    status = {k: v for k, v in _config.numba_cache_status.items() if k != "skipped"}
    print(json.dumps({"file": fastdl.__file__, "hits": hits, **status}))
    """
)


def _make_tree_writable(path):
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)
    os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


def _make_tree_readonly(path):
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode & ~0o222)
    os.chmod(path, os.stat(path).st_mode & ~0o222)


@pytest.fixture
def readonly_install(tmp_path):
    """(site dir holding a read-only copy of fastdl, a read-only dir, runner)."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "fastdl",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    ro = tmp_path / "ro"
    ro.mkdir()
    _make_tree_readonly(site)
    _make_tree_readonly(ro)
    prefix = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            _make_tree_writable(site)
            _make_tree_writable(ro)
            pytest.skip("running as root without setpriv: cannot make files read-only")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]

    def run(tmpdir, **env_extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CACHE_DIR", "FASTDL_NUMBA_CACHE_DIR", "XDG_CACHE_HOME",
                            "PYTHONPATH", "NUMBA_CACHE_LOCATOR_CLASSES")}
        # A HOME that does not exist and cannot be created (its parent is
        # read-only): Numba's user-wide cache dir is unusable.
        env.update(HOME=str(ro / "nonexistent"), TMPDIR=str(tmpdir), TEMP=str(tmpdir),
                   TMP=str(tmpdir), PYTHONPATH=str(site), **env_extra)
        proc = subprocess.run(prefix + [sys.executable, "-c", SCRIPT], cwd=tmpdir, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        import json

        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert Path(report["file"]).resolve().is_relative_to(site.resolve())
        return report

    yield site, ro, run
    _make_tree_writable(site)
    _make_tree_writable(ro)


@needs_numba
def test_readonly_install_falls_back_to_private_temp_cache(readonly_install, tmp_path):
    site, ro, run = readonly_install
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    report = run(tmp)
    assert report["enabled"] is True
    assert report["dir"].startswith(str(tmp / f"fastdl-numba-{os.getuid()}"))
    assert any(p.suffix == ".nbi" for p in Path(report["dir"]).iterdir())
    private = tmp / f"fastdl-numba-{os.getuid()}"
    assert stat.S_IMODE(private.stat().st_mode) & 0o077 == 0
    assert run(tmp)["hits"] > 0  # the second process loads instead of compiling


@needs_numba
def test_readonly_install_without_any_writable_dir_disables_cache(readonly_install):
    site, ro, run = readonly_install
    report = run(ro, TEST_FORCE_TEMPDIR=str(ro))  # the temp dir is read-only too
    assert report["enabled"] is False
    assert report["dir"] is None
    assert "disabled" in report["source"]


@needs_numba
def test_readonly_install_ignores_foreign_private_temp_dir(readonly_install, tmp_path):
    site, ro, run = readonly_install
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    planted = tmp / f"fastdl-numba-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # writable by others: must not be trusted
    report = run(tmp)
    assert report["enabled"] is False


@needs_numba
@pytest.mark.parametrize("variable", ["FASTDL_NUMBA_CACHE_DIR", "NUMBA_CACHE_DIR"])
def test_cache_dir_environment_variables(readonly_install, tmp_path, variable):
    site, ro, run = readonly_install
    cache = tmp_path / "cache"
    report = run(ro, **{variable: str(cache)})
    assert report["enabled"] is True
    assert Path(report["dir"]).parent == cache
    assert "$" + variable in report["source"]
    assert run(ro, **{variable: str(cache)})["hits"] > 0


@needs_numba
def test_fastdl_cache_dir_wins_over_numba_cache_dir(readonly_install, tmp_path):
    site, ro, run = readonly_install
    report = run(ro, FASTDL_NUMBA_CACHE_DIR=str(tmp_path / "a"),
                 NUMBA_CACHE_DIR=str(tmp_path / "b"))
    assert Path(report["dir"]).parent == tmp_path / "a"


@needs_numba
def test_locator_leaves_other_packages_alone(tmp_path):
    """A user's own cache=True function still caches where Numba puts it."""
    mod = tmp_path / "usermod.py"
    mod.write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    code = textwrap.dedent(
        """
        import numpy as np, fastdl
        fastdl.relu(np.ones(3, np.float32), backend="numba")  # installs the locator
        import usermod
        assert usermod.f(1) == 2
        print(type(usermod.f._cache._impl.locator).__name__)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR",)}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "InTreeCacheLocator"
    assert (tmp_path / "__pycache__").is_dir()


# ---------------------------------------------------------------------------
# warmup
# ---------------------------------------------------------------------------

def test_warmup_numpy_is_cheap_and_reports_times():
    times = _warmup.warmup(["softmax", "relu"], dtypes=(np.float64,), backends="numpy")
    assert set(times) == {("numpy", "softmax", "float64"), ("numpy", "relu", "float64")}
    assert all(t >= 0 for t in times.values())


@needs_numba
def test_warmup_compiles_numba_kernels():
    from fastdl.backends.numba import _jit as k

    _warmup.warmup("logsumexp", dtypes=[np.float32], backends=["numba"])
    serial, parallel = k.logsumexp
    assert serial.signatures
    if fastdl.get_num_threads() > 1 and numba.config.NUMBA_NUM_THREADS > 1:
        assert parallel.signatures


def test_warmup_covers_every_public_array_function():
    """Every public function that takes ``backend=`` is warmable."""
    missing = [
        name for name in fastdl.__all__
        if inspect.isfunction(getattr(fastdl, name))
        and "backend" in inspect.signature(getattr(fastdl, name)).parameters
        and name not in _warmup.warmable_kernels()
    ]
    assert not missing


def test_warmup_default_backend_runs_every_recipe():
    with fastdl.use_backend("numpy"):
        times = _warmup.warmup(dtypes="float32")
    assert {k[1] for k in times} == set(_warmup.warmable_kernels())
    assert {k[0] for k in times} == {"numpy"}


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"kernels": ["softmaks"]}, ValueError, "softmaks"),
        ({"kernels": ["softmax"], "dtypes": [np.int32]}, TypeError, "float32, float64"),
        ({"kernels": ["softmax"], "dtypes": [np.float16]}, TypeError, "float16"),
        ({"kernels": ["softmax"], "backends": ["cuda"]}, ValueError, "cuda"),
    ],
)
def test_warmup_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _warmup.warmup(**kwargs)


# ---------------------------------------------------------------------------
# typing, version, configuration report
# ---------------------------------------------------------------------------

def test_py_typed_marker_is_installed():
    assert (PACKAGE / "py.typed").is_file()


def _compiled_modules():
    names = sorted(p.name.split(".")[0] for p in (PACKAGE / "backends" / "cython").iterdir()
                   if p.name.startswith("_") and p.suffix in (".so", ".pyd"))
    return names


@pytest.mark.skipif("cython" not in fastdl.available_backends(), reason="Cython backend unavailable")
@pytest.mark.parametrize("modname", _compiled_modules())
def test_stub_matches_compiled_module(modname):
    # A serial build (_<stem>_serial, the same source without OpenMP) and the
    # AVX2 and AVX-512 builds (_<stem>_avx2, _<stem>_serial_avx512, ...) are
    # checked against the stub of the portable OpenMP build.
    stem = modname.removesuffix("_avx2").removesuffix("_avx512").removesuffix("_serial")
    stub_path = PACKAGE / "backends" / "cython" / f"{stem}.pyi"
    assert stub_path.is_file(), f"no stub {stub_path.name}"
    tree = ast.parse(stub_path.read_text())
    stub_funcs = {n.name: [a.arg for a in n.args.args] for n in tree.body
                  if isinstance(n, ast.FunctionDef)}
    stub_vars = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    mod = importlib.import_module(f"fastdl.backends.cython.{modname}")
    public = {n for n in dir(mod) if not n.startswith("_")}
    funcs = {n for n in public if callable(getattr(mod, n))}
    assert set(stub_funcs) == funcs
    assert stub_vars == public - funcs
    for name, params in stub_funcs.items():
        assert list(inspect.signature(getattr(mod, name)).parameters) == params, name


def test_version_has_one_source():
    from importlib.metadata import PackageNotFoundError, version

    from fastdl._version import __version__

    assert fastdl.__version__ == __version__
    try:
        assert version("fastdl") == __version__
    except PackageNotFoundError:  # imported from a plain source tree
        pass


def test_show_config_reports_build_simd_and_cache(capsys):
    fastdl.relu(np.ones(2), backend="numba") if "numba" in fastdl.available_backends() else None
    info = _info.config_info()
    for key in ("fastdl", "numpy", "available backends", "numba threading layer",
                "numba cache", "blas", "cpu simd"):
        assert key in info
    if "cython" in fastdl.available_backends():
        try:
            from fastdl import _build_info
        except ImportError:
            pytest.skip("compiled without setup.py's build record")
        assert info["cython openmp"].startswith("on" if _build_info.OPENMP else "off")
        simd = info["exp simd copy"]
        if _build_info.SIMD_CLONES:
            assert simd.split()[0] in _build_info.SIMD_CLONES
        else:
            assert simd.startswith("default")
    fastdl.show_config()
    assert "numba cache" in capsys.readouterr().out


def test_simd_in_use_follows_resolver_priority(monkeypatch):
    import numpy._core._multiarray_umath as um

    clones = ("avx512f", "avx2+fma", "default")
    feats = dict(um.__cpu_features__)
    for avx512, avx2, fma, expected in [(True, True, True, "avx512f"),
                                        (False, True, True, "avx2+fma"),
                                        (False, True, False, "default"),  # AVX2 without FMA
                                        (False, False, False, "default")]:
        feats.update(AVX512F=avx512, AVX2=avx2, FMA3=fma)
        monkeypatch.setattr(um, "__cpu_features__", feats)
        assert _info._simd_in_use(clones).split()[0] == expected
    assert _info._simd_in_use(()).startswith("default only")


def test_cache_status_is_recorded_when_numba_loaded():
    if "numba" not in fastdl.available_backends():
        pytest.skip("Numba backend unavailable")
    assert _config.numba_cache_status.get("done")
    assert _config.numba_cache_status["source"]
