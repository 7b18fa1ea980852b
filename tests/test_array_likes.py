"""Array-likes (torch CPU tensors, nested lists) work in every backend.

The public functions convert any input ``np.asarray`` accepts; their fast
paths must take only real ``np.ndarray`` objects and leave everything else to
that conversion.  Regression: ``fastdl.cross_entropy(torch.randn(4, 3),
np.array([0, 1, 2, 0]))`` raised ``TypeError: '<' not supported between
instances of 'builtin_function_or_method' and 'int'`` in the Cython backend,
whose one-call fast path read ``.size`` (a method on a tensor) of the logits.
"""

import numpy as np
import pytest

import fastdl

from conftest import assert_close


def _as_torch(a):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.array(a))  # a copy: the tensor owns its memory


def _as_list(a):
    return np.asarray(a).tolist()


CONVERTERS = {"torch": _as_torch, "list": _as_list}


@pytest.fixture(params=sorted(CONVERTERS))
def like(request):
    return CONVERTERS[request.param]


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def float_dtype(request):
    return np.dtype(request.param)


def _data(dtype, rng):
    x = rng.normal(size=(4, 3)).astype(dtype)
    return {
        "x": x,
        "target": np.array([0, 1, 2, 0]),
        "W": rng.normal(size=(5, 3)).astype(dtype),
        "b": rng.normal(size=5).astype(dtype),
        "dy": rng.normal(size=(4, 5)).astype(dtype),
        "y": fastdl.softmax(x, backend="numpy"),
        "dy_rows": rng.normal(size=(4, 3)).astype(dtype),
    }


# name -> (function, the argument names it takes positionally)
CALLS = {
    "cross_entropy": (fastdl.cross_entropy, ("x", "target")),
    "cross_entropy_with_grad": (fastdl.cross_entropy_with_grad, ("x", "target")),
    "cross_entropy_backward": (fastdl.cross_entropy_backward, ("x", "target")),
    "softmax": (fastdl.softmax, ("x",)),
    "log_softmax": (fastdl.log_softmax, ("x",)),
    "logsumexp": (fastdl.logsumexp, ("x",)),
    "softmax_backward": (fastdl.softmax_backward, ("dy_rows", "y")),
    "log_softmax_backward": (fastdl.log_softmax_backward, ("dy_rows", "y")),
    "affine_forward": (fastdl.affine_forward, ("x", "W", "b")),
    "affine_backward": (fastdl.affine_backward, ("dy", "x", "W")),
}


def _flat(result):
    return result if isinstance(result, tuple) else (result,)


def _check_same(got, expected, dtype):
    got, expected = _flat(got), _flat(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert type(g) is type(e)  # ndarray stays ndarray, a NumPy scalar stays one
        assert np.asarray(g).dtype == np.asarray(e).dtype
        assert np.shape(g) == np.shape(e)
        assert_close(g, e, dtype)


def _check_as_asarray(fn, args, backend):
    """``fn(*args)`` behaves exactly as ``fn`` of the arrays np.asarray makes of them.

    A list of floats becomes float64, so next to a float32 array it makes a
    mixed-dtype call: then both calls raise the documented TypeError.
    """
    arrays = [np.asarray(a) for a in args]
    dtype = np.result_type(*[a for a in arrays if a.dtype.kind == "f"])
    try:
        expected = fn(*arrays, backend=backend)
    except TypeError as e:
        with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
            fn(*args, backend=backend)
        assert "float32" in str(e) and "float64" in str(e)
        return
    _check_same(fn(*args, backend=backend), expected, dtype)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_argument_array_like(name, like, float_dtype, backend, rng):
    fn, arg_names = CALLS[name]
    data = _data(float_dtype, rng)
    args = [like(data[k]) for k in arg_names]
    _check_as_asarray(fn, args, backend)
    if like is _as_torch:  # a tensor keeps its dtype: the same as the ndarrays
        expected = fn(*[data[k] for k in arg_names], backend=backend)
        _check_same(fn(*args, backend=backend), expected, float_dtype)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_one_argument_array_like(name, like, float_dtype, backend, rng):
    """Each argument in turn converted, the others left as ndarrays."""
    fn, arg_names = CALLS[name]
    data = _data(float_dtype, rng)
    for i in range(len(arg_names)):
        args = [like(data[k]) if j == i else data[k] for j, k in enumerate(arg_names)]
        _check_as_asarray(fn, args, backend)


@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_with_grad"])
def test_torch_logits_default_backend(name):
    """The reported call, with the default ("auto") backend."""
    torch = pytest.importorskip("torch")
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    target = np.array([0, 1, 2, 0])
    fn = getattr(fastdl, name)
    got = fn(logits, target)
    expected = fn(logits.numpy().copy(), target)
    _check_same(got, expected, np.float32)
    # And against PyTorch itself.
    ref = torch.nn.functional.cross_entropy(logits, torch.from_numpy(target))
    assert_close(_flat(got)[0], ref.item(), np.float32)


def test_torch_target_and_probability_target(backend, rng):
    torch = pytest.importorskip("torch")
    logits = rng.normal(size=(4, 3))
    probs = fastdl.softmax(rng.normal(size=(4, 3)), backend="numpy")
    for target in (np.array([2, 0, 1, 1]), probs):
        expected = fastdl.cross_entropy_with_grad(logits, target, backend=backend)
        for lg, tg in ((torch.from_numpy(logits.copy()), torch.from_numpy(target.copy())),
                       (logits, torch.from_numpy(target.copy())),
                       (logits.tolist(), target.tolist())):
            _check_same(fastdl.cross_entropy_with_grad(lg, tg, backend=backend),
                        expected, np.float64)


def test_array_like_with_out_buffer(backend, rng):
    """An ndarray ``out`` with an array-like input takes the general path too."""
    x = rng.normal(size=(4, 3))
    target = np.array([0, 1, 2, 0])
    out = np.empty((4, 3))
    loss, grad = fastdl.cross_entropy_with_grad(x.tolist(), target.tolist(), out=out,
                                                backend=backend)
    ref_loss, ref_grad = fastdl.cross_entropy_with_grad(x, target, backend=backend)
    assert grad is out
    assert_close(loss, ref_loss, np.float64)
    assert_close(out, ref_grad, np.float64)
    res = fastdl.softmax(x.tolist(), out=out, backend=backend)
    assert res is out
    assert_close(out, fastdl.softmax(x, backend=backend), np.float64)


def test_unsupported_array_like_is_type_error(backend):
    """What np.asarray makes of it decides: an int tensor or list is not a float input."""
    torch = pytest.importorskip("torch")
    target = np.array([0, 1])
    for bad in (torch.ones(2, 3, dtype=torch.int64), [[1, 2, 3], [4, 5, 6]],
                torch.ones(2, 3, dtype=torch.float16)):
        with pytest.raises(TypeError, match="float32 and float64"):
            fastdl.cross_entropy(bad, target, backend=backend)
        with pytest.raises(TypeError, match="float32 and float64"):
            fastdl.softmax(bad, backend=backend)
        with pytest.raises(TypeError, match="float32 and float64"):
            fastdl.affine_forward(bad, np.ones((4, 3)), backend=backend)
