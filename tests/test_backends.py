"""The backend registry, selection API, thread settings and kernel signatures."""

import importlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastdl
from fastdl.backends import BACKEND_NAMES

from conftest import BACKENDS


def test_numpy_reference_always_available():
    assert "numpy" in fastdl.available_backends()


def test_required_backends_are_available():
    """CI sets FASTDL_REQUIRE_BACKENDS so a broken build cannot pass as a skip."""
    required = [b for b in os.environ.get("FASTDL_REQUIRE_BACKENDS", "").split(",") if b]
    missing = [b for b in required if b not in fastdl.available_backends()]
    assert not missing, f"required backends unavailable: {fastdl.unavailable_backends()}"


def test_required_oracles_are_installed():
    """CI sets FASTDL_REQUIRE_ORACLES so parity tests cannot silently skip."""
    required = [m for m in os.environ.get("FASTDL_REQUIRE_ORACLES", "").split(",") if m]
    for module in required:
        importlib.import_module(module)


def test_default_backend_is_auto_and_prefers_compiled():
    assert fastdl.get_backend() in ("auto",) + BACKEND_NAMES
    from fastdl._backend import resolve

    with fastdl.use_backend("auto"):
        mod = resolve("softmax")
    if len(BACKENDS) > 1:
        assert mod.NAME != "numpy"


def test_set_and_use_backend(backend):
    fastdl.set_backend(backend)
    assert fastdl.get_backend() == backend
    with fastdl.use_backend("numpy"):
        assert fastdl.get_backend() == "numpy"
    assert fastdl.get_backend() == backend


def test_use_backend_is_per_thread():
    seen = {}

    def worker():
        seen["other"] = fastdl.get_backend()

    with fastdl.use_backend("numpy"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert fastdl.get_backend() == "numpy"
    assert seen["other"] == "auto"


@pytest.mark.parametrize("name", ["torch", "", None, "NUMPY"])
def test_unknown_backend_raises_listing_available(name):
    with pytest.raises(ValueError, match="available: .*numpy"):
        fastdl.set_backend(name)
    with pytest.raises(ValueError, match="numpy"):
        with fastdl.use_backend(name):
            pass
    if name is not None:  # backend=None in a call means "the backend in force"
        with pytest.raises(ValueError, match="numpy"):
            fastdl.softmax(np.ones(3), backend=name)


def test_backend_argument_overrides(backend, rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(fastdl.softmax(x, backend=backend),
                               fastdl.softmax(x, backend="numpy"), rtol=1e-12)


def test_env_var_sets_start_backend():
    code = "import fastdl; print(fastdl.get_backend())"
    env = dict(os.environ, FASTDL_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "numpy"
    env["FASTDL_BACKEND"] = "bogus"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "FASTDL_BACKEND" in bad.stderr


def test_import_does_not_import_numba():
    code = "import sys, fastdl; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_num_threads_roundtrip():
    n = fastdl.get_num_threads()
    assert n >= 1
    fastdl.set_num_threads(1)
    try:
        assert fastdl.get_num_threads() == 1
    finally:
        fastdl.set_num_threads(n)
    with pytest.raises(ValueError):
        fastdl.set_num_threads(0)
    with pytest.raises(TypeError):
        fastdl.set_num_threads(1.5)


def test_results_do_not_depend_on_thread_count(backend, rng):
    x = rng.standard_normal((256, 300)).astype(np.float32)
    n = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        one = fastdl.log_softmax(x, backend=backend)
        fastdl.set_num_threads(n)
        many = fastdl.log_softmax(x, backend=backend)
    finally:
        fastdl.set_num_threads(n)
    np.testing.assert_array_equal(one, many)


def test_show_config_reports_backends(capsys):
    fastdl.show_config()
    text = capsys.readouterr().out
    assert fastdl.__version__ in text
    for name in BACKENDS:
        assert name in text
    assert "threads" in text
