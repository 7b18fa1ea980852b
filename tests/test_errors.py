"""Every bad input named in the API contract raises the documented exception,
in every backend, before any kernel runs."""

import re

import numpy as np
import pytest

import fastdl

BAD_DTYPES = [np.int32, np.int64, np.float16, np.complex128, object, bool]
ROW_FUNCS = ["softmax", "log_softmax", "logsumexp"]


@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ROW_FUNCS)
def test_unsupported_dtype_is_type_error(op, bad, backend):
    x = np.ones((2, 3), dtype=bad)
    with pytest.raises(TypeError, match="float32 and float64"):
        getattr(fastdl, op)(x, backend=backend)


@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_unsupported_dtype_everywhere(bad, backend):
    a = np.ones((2, 3), dtype=bad)
    good = np.ones((2, 3))
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.affine_forward(a, np.ones((4, 3)), backend=backend)
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.affine_backward(np.ones((2, 4)), a, np.ones((4, 3)), backend=backend)
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.softmax_backward(a, good, backend=backend)
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.log_softmax_backward(good, a, backend=backend)
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.cross_entropy(a, np.array([0, 1]), backend=backend)


def test_mixed_float_dtypes_name_both(backend):
    x32 = np.ones((2, 3), np.float32)
    x64 = np.ones((2, 3), np.float64)
    cases = [
        lambda: fastdl.affine_forward(x32, np.ones((4, 3)), backend=backend),
        lambda: fastdl.affine_forward(x32, np.ones((4, 3), np.float32), np.ones(4), backend=backend),
        lambda: fastdl.affine_backward(np.ones((2, 4), np.float32), x64, np.ones((4, 3)),
                                       backend=backend),
        lambda: fastdl.softmax_backward(x32, x64, backend=backend),
        lambda: fastdl.log_softmax_backward(x64, x32, backend=backend),
        lambda: fastdl.cross_entropy(x32, x64, backend=backend),
        lambda: fastdl.cross_entropy(x32, np.array([0, 1]), weight=np.ones(3), backend=backend),
        lambda: fastdl.cross_entropy_backward(x32, np.array([0, 1]), np.float64(1.0),
                                              backend=backend),
    ]
    for case in cases:
        with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
            case()


def test_shape_mismatches_name_shapes(backend):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        fastdl.affine_forward(np.ones((2, 3)), np.ones((4, 5)), backend=backend)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        fastdl.affine_forward(np.ones((2, 3)), np.ones((4, 3)), np.ones(3), backend=backend)
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        fastdl.affine_backward(np.ones((2, 5)), np.ones((2, 3)), np.ones((4, 3)), backend=backend)
    with pytest.raises(ValueError, match="W"):
        fastdl.affine_forward(np.ones((2, 3)), np.ones(3), backend=backend)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        fastdl.softmax_backward(np.ones((2, 3)), np.ones((2, 4)), backend=backend)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        fastdl.cross_entropy(np.ones((2, 4)), np.array([0, 1, 2]), backend=backend)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        fastdl.cross_entropy(np.ones((2, 4)), np.ones((2, 3)), backend=backend)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        fastdl.cross_entropy(np.ones((2, 4)), np.array([0, 1]), weight=np.ones(3), backend=backend)
    with pytest.raises(ValueError, match="logits"):
        fastdl.cross_entropy(np.ones((2, 4, 1)), np.array([0, 1]), backend=backend)
    with pytest.raises(ValueError, match="grad_output"):
        fastdl.cross_entropy_backward(np.ones((2, 4)), np.array([0, 1]), np.ones(2),
                                      backend=backend)
    with pytest.raises(ValueError, match="grad_output"):
        fastdl.cross_entropy_backward(np.ones((2, 4)), np.array([0, 1]), np.ones(3),
                                      reduction="none", backend=backend)


@pytest.mark.parametrize("label", [-1, 4, 10**12, -101, 2**40])
def test_out_of_range_label_is_index_error_naming_it(label, backend):
    target = np.array([0, label, 1])
    for fn in (fastdl.cross_entropy, fastdl.cross_entropy_backward,
               fastdl.cross_entropy_with_grad):
        with pytest.raises(IndexError, match=str(label)):
            fn(np.zeros((3, 4)), target, backend=backend)


def test_out_of_range_unsigned_label(backend):
    target = np.array([0, 2**63 + 1], dtype=np.uint64)  # would wrap negative in int64
    with pytest.raises(IndexError, match=str(2**63 + 1)):
        fastdl.cross_entropy(np.zeros((2, 4)), target, backend=backend)


def test_out_of_range_scalar_label_for_vector_logits(backend):
    with pytest.raises(IndexError, match="7"):
        fastdl.cross_entropy(np.zeros(4), 7, backend=backend)


def test_bad_target_dtypes(backend):
    with pytest.raises(TypeError, match="target"):
        fastdl.cross_entropy(np.zeros((2, 3)), np.array([True, False]), backend=backend)
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.cross_entropy(np.zeros((2, 3)), np.ones((2, 3), np.float16), backend=backend)
    with pytest.raises(TypeError):
        fastdl.cross_entropy(np.zeros((2, 3)), np.array(["a", "b"]), backend=backend)


def test_bad_options(backend):
    z, t = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match="reduction"):
        fastdl.cross_entropy(z, t, reduction="avg", backend=backend)
    for eps in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="label_smoothing"):
            fastdl.cross_entropy(z, t, label_smoothing=eps, backend=backend)
    with pytest.raises(TypeError, match="ignore_index"):
        fastdl.cross_entropy(z, t, ignore_index=1.5, backend=backend)
    with pytest.raises(TypeError, match="axis"):
        fastdl.softmax(z, axis=1.0, backend=backend)
    with pytest.raises(ValueError):
        fastdl.softmax(z, axis=2, backend=backend)
    with pytest.raises(ValueError):
        fastdl.logsumexp(z, axis=(0, 0), backend=backend)


def test_bad_out_buffers(backend):
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        fastdl.softmax(x, out=np.empty((3, 2)), backend=backend)
    with pytest.raises(TypeError, match="float32"):
        fastdl.softmax(x, out=np.empty((2, 3), np.float32), backend=backend)
    with pytest.raises(TypeError, match="ndarray"):
        fastdl.softmax(x, out=[[0.0] * 3] * 2, backend=backend)
    ro = np.empty((2, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastdl.log_softmax(x, out=ro, backend=backend)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        fastdl.affine_forward(x, np.ones((4, 3)), out=np.empty((4, 2)), backend=backend)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        fastdl.cross_entropy_with_grad(x, np.array([0, 1]), out=np.empty((3, 2)), backend=backend)
    with pytest.raises(TypeError):
        fastdl.cross_entropy_backward(x, np.array([0, 1]), out=np.empty((2, 3), np.float32),
                                      backend=backend)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        fastdl.softmax(np.ones(3), -1, None)
    with pytest.raises(TypeError):
        fastdl.cross_entropy(np.ones((1, 3)), np.array([0]), None)


FLOAT_LABEL_CASES = [
    # (logits, target): float class labels where class indices were meant
    (np.zeros((3, 3), np.float32), np.array([0., 1., 2.])),  # float64 labels, float32 logits
    (np.zeros((3, 3), np.float64), np.array([0., 1., 2.])),
    (np.zeros((3, 4), np.float32), np.array([0., 1., 2.], np.float32)),
    (np.zeros((2, 5), np.float64), np.array([[1.], [3.]])),
    (np.zeros(4, np.float64), np.float64(2.0)),  # a float scalar for 1-D logits
    (np.zeros((2, 3), np.float32), np.array([0., 1.], np.float16)),
]


@pytest.mark.parametrize("logits, target", FLOAT_LABEL_CASES,
                         ids=["f64-labels-f32-logits", "f64", "f32", "column", "scalar", "f16"])
def test_float_class_labels_explain_probability_targets(logits, target, backend):
    """Regression: float labels of shape (N,) were reported as mixed dtypes.

    A float target is read as class probabilities, which must have the
    logits' shape; one of any other shape cannot be a valid target whatever
    its dtype, so the shape is checked first and the error is the
    ValueError the API gives for shape mismatches (also when the dtypes
    differ: the same mistake raises the same exception for float32 and
    float64 logits).  The message names both shapes and says that class
    indices must be an integer array.
    """
    expected = re.escape(str(logits.shape))
    calls = [
        lambda: fastdl.cross_entropy(logits, target, backend=backend),
        lambda: fastdl.cross_entropy_backward(logits, target, backend=backend),
        lambda: fastdl.cross_entropy_with_grad(logits, target, backend=backend),
        lambda: fastdl.cross_entropy(logits, target, reduction="none", backend=backend),
    ]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "probabilities" in message and re.search(expected, message), message
        assert re.search(re.escape(str(np.shape(target))), message), message
        assert "class indices" in message and "integer" in message, message


def test_float_class_labels_as_integers_work(backend):
    """What the message suggests: the same labels as an integer array."""
    logits = np.zeros((3, 3), np.float32)
    target = np.array([0., 1., 2.])
    loss = fastdl.cross_entropy(logits, target.astype(np.int64), backend=backend)
    assert loss.dtype == np.float32 and np.isclose(loss, np.log(3))


def test_probability_target_of_the_logits_shape_still_checks_dtype(backend):
    """With the logits' shape a float target is probabilities: dtype rules apply."""
    with pytest.raises(TypeError, match="float32.*float64"):
        fastdl.cross_entropy(np.zeros((2, 3), np.float32), np.ones((2, 3)), backend=backend)
    with pytest.raises(TypeError, match="float32 and float64"):
        fastdl.cross_entropy(np.zeros((2, 3)), np.ones((2, 3), np.float16), backend=backend)
