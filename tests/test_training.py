"""Real training runs on scikit-learn's bundled datasets (no downloads), small
and fast settings; plus the training demo and gradcheck's own contract."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fastdl import _train_demo, layers  # noqa: E402
from fastdl._gradcheck import GradcheckError, gradcheck  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Tiny matrices: one BLAS thread is fastest and keeps timings sane."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def test_linear_regression_reaches_closed_form():
    res = _example("linear_regression_diabetes").main(sgd_epochs=5, verbose=False)
    assert res["rel_error"] <= 1e-6
    assert res["rel_error_after_sgd"] > 1e-3  # the full-batch phase did the rest
    assert res["mse"] == pytest.approx(res["mse_closed_form"], rel=1e-10)


def test_logistic_regression_breast_cancer():
    res = _example("logistic_regression_breast_cancer").main(epochs=15, verbose=False)
    assert res["test_accuracy"] >= 0.94


def test_mlp_digits():
    res = _example("mlp_digits").main(epochs=8, lr=5e-3, batch_size=32, verbose=False)
    assert res["test_accuracy"] >= 0.96


def test_train_demo_runs(capsys):
    code = _train_demo.run_train_demo(["--epochs", "8", "--lr", "5e-3", "--batch-size", "32", "--repeat", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "held-out accuracy" in out
    for row in ("fastdl layers (auto)", "fastdl compile_step", "fastdl (numpy backend)",
                "hand-written NumPy", "speed-up over hand-written NumPy"):
        assert row in out


def test_gradcheck_reports_worst_parameter_mismatch():
    layer = layers.Affine(3, 2, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).normal(size=(4, 3))

    def wrong_backward(dy, v):
        layer.forward(v)
        dx = layer.backward(dy)
        layer.W.grad[0, 1] += 0.5  # corrupt one parameter gradient
        return dx

    with pytest.raises(GradcheckError, match=r"parameter 0 index \(0, 1\)"):
        gradcheck(layer.forward, x, backward=wrong_backward, params=layer.parameters())
    with pytest.raises(ValueError, match="shape"):
        gradcheck(np.sin, x, backward=lambda dy, v: dy[:1])
