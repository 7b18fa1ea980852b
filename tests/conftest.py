"""Shared fixtures: every test runs over available backends × float dtypes."""

import os

import numpy as np
import pytest

import fastdl
from fastdl import _load

# Processes the tests start (workers of the concurrency and fuzzing tests)
# choose their threads as told, whatever the machine's load: the adaptive cap
# (fastdl._load) is tested on its own, in this process (see _fixed_threads).
os.environ["FASTDL_ADAPTIVE_THREADS"] = "0"

BACKENDS = fastdl.available_backends()
COMPILED = tuple(b for b in BACKENDS if b != "numpy")
DTYPES = (np.float32, np.float64)

# Relative tolerance of a backend against the float64-accumulating NumPy
# reference: float32 kernels may differ by a few ulps per element.
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
ATOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}


def pytest_report_header(config):
    lines = [f"fastdl {fastdl.__version__}: backends under test: {', '.join(BACKENDS)}"]
    for name, why in fastdl.unavailable_backends().items():
        lines.append(f"fastdl backend {name} unavailable: {why}")
    return lines


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=COMPILED or ["numpy"])
def compiled_backend(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


def assert_close(actual, expected, dtype, scale=1.0):
    """Compare with the dtype's tolerance; NaN and inf must sit in the same places."""
    dtype = np.dtype(dtype)
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=RTOL[dtype] * scale,
        atol=ATOL[dtype] * scale,
        equal_nan=True,
    )


@pytest.fixture(autouse=True)
def _fixed_threads(request, monkeypatch):
    """Tests choose their threads: the load-adaptive cap (fastdl._load) is off,
    except in the tests of it, so parallel code paths run whatever the load."""
    if request.module.__name__ != "test_adaptive_threads":
        monkeypatch.setattr(_load, "ENABLED", False)


@pytest.fixture(autouse=True)
def _reset_backend():
    yield
    fastdl.set_backend(os.environ.get("FASTDL_BACKEND") or "auto")
