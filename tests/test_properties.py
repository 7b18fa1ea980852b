"""Hypothesis properties: translation invariance, normalisation, agreement."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastdl

from conftest import BACKENDS

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=64)
matrices = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1,
                                                    max_side=40), elements=finite)
SETTINGS = settings(max_examples=60, deadline=None)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(x=matrices, shift=st.floats(-1e3, 1e3), use32=st.booleans())
def test_softmax_is_translation_invariant(backend, x, shift, use32):
    dtype = np.float32 if use32 else np.float64
    x = x.astype(dtype)
    a = fastdl.softmax(x, backend=backend)
    b = fastdl.softmax((x + dtype(shift)).astype(dtype), backend=backend)
    # Shifting rounds x + shift in the dtype; compare with that tolerance.
    tol = 1e-3 if use32 else 1e-9
    np.testing.assert_allclose(a, b, atol=tol)
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5 if use32 else 1e-12)
    assert (a >= 0).all() and (a <= 1).all()


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(x=matrices, shift=st.floats(-1e3, 1e3))
def test_log_softmax_and_logsumexp_shift_exactly(backend, x, shift):
    lse = fastdl.logsumexp(x, backend=backend)
    np.testing.assert_allclose(fastdl.logsumexp(x + shift, backend=backend), lse + shift,
                               rtol=1e-12, atol=1e-9)
    ls = fastdl.log_softmax(x, backend=backend)
    np.testing.assert_allclose(ls, x - lse[:, None], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(np.exp(ls), fastdl.softmax(x, backend=backend), rtol=1e-12,
                               atol=1e-15)
    assert (ls <= 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(x=matrices, data=st.data())
def test_cross_entropy_agrees_with_log_softmax(backend, x, data):
    n, c = x.shape
    target = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    loss = fastdl.cross_entropy(x, target, reduction="none", backend=backend)
    expected = -fastdl.log_softmax(x, backend="numpy")[np.arange(n), target]
    np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-12)
    assert (loss >= 0).all()
