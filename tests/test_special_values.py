"""inf, NaN, huge offsets and empty inputs: SciPy/PyTorch semantics, every backend.

Expected values here are written out by hand from those libraries' rules, not
computed by fastdl, so the NumPy reference is held to them too.
"""

import numpy as np
import pytest

import fastdl

inf, nan = np.inf, np.nan


def test_logsumexp_special_rows(backend, dtype):
    x = np.array([
        [-inf, -inf, -inf],   # all -inf -> -inf
        [inf, 1.0, -inf],     # +inf -> +inf
        [nan, -inf, -inf],    # NaN wins over -inf
        [nan, 1.0, 2.0],      # NaN propagates
        [inf, nan, 0.0],      # NaN wins over +inf
        [-inf, 0.0, -inf],    # one finite entry -> that entry
        [1e4, 1e4, -1e4],     # huge offset: 1e4 + log 2
    ], dtype)
    got = fastdl.logsumexp(x, backend=backend)
    expected = np.array([-inf, inf, nan, nan, nan, 0.0, 1e4 + np.log(2)])
    np.testing.assert_allclose(got, expected.astype(dtype), rtol=1e-7, equal_nan=True)


def test_logsumexp_empty(backend, dtype):
    assert fastdl.logsumexp(np.zeros((3, 0), dtype), backend=backend).tolist() == [-inf] * 3
    assert fastdl.logsumexp(np.zeros((0, 4), dtype), backend=backend).shape == (0,)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_family_nan_rows(op, backend, dtype):
    x = np.array([[-inf, -inf, -inf], [nan, 0.0, 1.0], [inf, 0.0, 1.0]], dtype)
    got = getattr(fastdl, op)(x, backend=backend)
    assert np.isnan(got[0]).all()  # all -inf: 0/0
    assert np.isnan(got[1]).all()  # NaN propagates through the sum
    assert np.isnan(got[2]).all()  # inf - inf in the shift, as in PyTorch


def test_softmax_partial_neg_inf(backend, dtype):
    x = np.array([[-inf, 0.0, 0.0], [-inf, -inf, 5.0]], dtype)
    np.testing.assert_array_equal(fastdl.softmax(x, backend=backend),
                                  np.array([[0, 0.5, 0.5], [0, 0, 1]], dtype))
    np.testing.assert_array_equal(fastdl.log_softmax(x, backend=backend)[1],
                                  np.array([-inf, -inf, 0], dtype))


def test_log_softmax_exact_large_offsets(backend, dtype):
    got = fastdl.log_softmax(np.array([1000.0, 1.0, 0.0], dtype), backend=backend)
    np.testing.assert_array_equal(got, np.array([0.0, -999.0, -1000.0], dtype))
    x = np.array([[1e4, 1e4 + 1, 1e4 + 2]], dtype)
    shifted = np.array([[0.0, 1.0, 2.0]], dtype)
    np.testing.assert_allclose(fastdl.softmax(x, backend=backend),
                               fastdl.softmax(shifted, backend="numpy"), rtol=1e-6)


def test_softmax_of_extreme_finite_values(backend, dtype):
    big = np.finfo(dtype).max
    x = np.array([[big, -big, 0.0]], dtype)
    np.testing.assert_array_equal(fastdl.softmax(x, backend=backend),
                                  np.array([[1, 0, 0]], dtype))
    assert fastdl.logsumexp(x, backend=backend)[0] == big


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_empty_inputs(op, backend, dtype):
    for shape in [(0, 5), (0,), (3, 0, 2)]:
        x = np.zeros(shape, dtype)
        got = getattr(fastdl, op)(x, backend=backend)
        assert got.dtype == dtype


def test_cross_entropy_nan_and_inf_logits(backend, dtype):
    logits = np.array([[nan, 0.0], [-inf, 0.0], [0.0, -inf]], dtype)
    loss = fastdl.cross_entropy(logits, np.array([1, 1, 1]), reduction="none", backend=backend)
    assert np.isnan(loss[0])
    assert loss[1] == 0.0          # the impossible class is not the target
    assert loss[2] == inf          # the target has probability 0
    # Without smoothing a -inf non-target logit stays harmless ...
    _, grad = fastdl.cross_entropy_with_grad(logits[1:2], np.array([1]), backend=backend)
    np.testing.assert_array_equal(grad, np.zeros((1, 2), dtype))
    # ... with smoothing it carries probability mass, so the loss is inf.
    assert fastdl.cross_entropy(logits[1:2], np.array([1]), label_smoothing=0.1,
                                backend=backend) == inf


def test_cross_entropy_huge_offsets(backend, dtype):
    z = np.array([[1e4, 1e4 + 1.0, 1e4 - 1.0]], dtype)
    got = fastdl.cross_entropy(z, np.array([1]), backend=backend)
    expected = -np.log(np.exp(1.0) / (1 + np.exp(1.0) + np.exp(-1.0)))
    np.testing.assert_allclose(got, expected, rtol=1e-3 if dtype == np.float32 else 1e-12)
