"""Input checks shared by every public function.

Validation lives here, once, in front of every backend: kernels trust their
arguments (Numba does not bounds-check), so nothing malformed may pass.
"""

from __future__ import annotations

import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SUPPORTED = "float32 and float64"

# The fast path.  Most calls in a training loop pass C-contiguous float
# ndarrays of the right shapes, and the full checks (np.asarray, dtype
# equality, the may-alias analysis of kernel_buffer) cost 5-20 us per call,
# more than a small batch's arithmetic.  The public wrappers first test for
# that common case with the cheap checks below (identity of NumPy's builtin
# dtype objects, flags, shapes) and take the general path for anything else,
# so every error and every unusual input is handled in one place.  Aligned
# too: the compiled kernels read the data through typed pointers.
F32, F64 = FLOAT_DTYPES
_ndarray = np.ndarray


def plain(a, dtype):
    """True when ``a`` is a C-contiguous, aligned ndarray of exactly ``dtype``."""
    if type(a) is not _ndarray or a.dtype is not dtype:
        return False
    flags = a.flags
    return flags.c_contiguous and flags.aligned


def plain_float(a):
    """``a``'s dtype when ``a`` is a C-contiguous, aligned float32/float64
    ndarray, else None."""
    if type(a) is not _ndarray:
        return None
    dt = a.dtype
    if dt is not F32 and dt is not F64:
        return None
    flags = a.flags
    return dt if flags.c_contiguous and flags.aligned else None


def plain_alike(arrays):
    """The dtype when ``arrays`` are C-contiguous ndarrays of one float dtype
    and one shape (see :func:`plain_float`), else None."""
    first = arrays[0]
    dt = plain_float(first)
    if dt is None:
        return None
    shape = first.shape
    for a in arrays[1:]:
        if not (plain(a, dt) and a.shape == shape):
            return None
    return dt


def _owns(a):
    """True when ``a`` owns its memory (no base array): two distinct such
    arrays cannot overlap, which is cheaper to see than np.may_share_memory."""
    return a.base is None and a.flags.owndata


def fast_out(out, shape, dtype, inputs):
    """``out`` when a kernel may write straight into it, else None.

    That is: a writeable, aligned, C-contiguous ndarray of exactly ``shape``
    and ``dtype`` sharing no memory with any of ``inputs`` (None entries are
    skipped).  Anything else (including an exact in-place alias, which the
    general path supports) returns None, and the caller takes the general
    path, which raises the errors.
    """
    if type(out) is not _ndarray or out.dtype is not dtype or out.shape != shape:
        return None
    flags = out.flags
    if not (flags.c_contiguous and flags.writeable and flags.aligned):
        return None
    owned = out.base is None and flags.owndata
    for a in inputs:
        if a is None:
            continue
        if a is out:
            return None
        if not (owned and _owns(a)) and np.may_share_memory(out, a):
            return None
    return out


def float_array(a, name):
    """``a`` as an ndarray of a supported float dtype, or TypeError."""
    arr = np.asarray(a)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {arr.dtype}; fastdl supports {_SUPPORTED}"
        )
    return arr


def same_dtype(*named):
    """Check that every (name, array) pair shares one float dtype."""
    (first_name, first), *rest = named
    for name, arr in rest:
        if arr.dtype != first.dtype:
            raise TypeError(
                f"{first_name} is {first.dtype} but {name} is {arr.dtype}; "
                "inputs of one call must share one float dtype"
            )
    return first.dtype


def float_arrays_alike(named):
    """Validate (name, array-like) pairs: supported floats of one dtype and shape.

    Returns the arrays as ``(name, ndarray)`` pairs, their dtype and shape;
    raises TypeError for a dtype problem, ValueError naming both shapes
    for a mismatch.
    """
    arrays = [(name, float_array(a, name)) for name, a in named]
    dtype = same_dtype(*arrays)
    first_name, first = arrays[0]
    for name, a in arrays[1:]:
        if a.shape != first.shape:
            raise ValueError(
                f"{first_name} has shape {first.shape} but {name} has shape {a.shape}; "
                "they must match"
            )
    return arrays, dtype, first.shape


def c_contiguous(a, dtype=None):
    """``a`` (as ``dtype``, when given) itself when C-contiguous and aligned,
    else a C-contiguous, aligned copy (the compiled kernels read aligned
    data)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()


def check_out(out, shape, dtype, name="out"):
    """Check an ``out=`` buffer: ndarray, exact shape and dtype, writeable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, the result needs {dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, the result needs {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def same_memory(a, b):
    """True when ``a`` and ``b`` view the same bytes laid out the same way."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
    )


def kernel_buffer(out, shape, dtype, may_alias=(), others=()):
    """A C-contiguous buffer the kernel may write the result into.

    ``out`` itself when it is C-contiguous and, for each input, either views
    exactly the same memory as one of ``may_alias`` (the in-place case the
    kernel supports) or shares no memory with it.  Otherwise a fresh array,
    to be copied into ``out`` afterwards.
    """
    if out is None or not (out.flags.c_contiguous and out.flags.aligned):
        return np.empty(shape, dtype)
    # may_share_memory (a bounds check) first: it is ten times cheaper than
    # same_memory, and a separate buffer is the common case.
    ok = all(not np.may_share_memory(out, a) or same_memory(out, a) for a in may_alias)
    ok = ok and not any(np.may_share_memory(out, a) for a in others)
    return out if ok else np.empty(shape, dtype)


def normalize_axis(axis, ndim):
    """A non-negative axis index, or AxisError (a ValueError) naming it."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    return np.lib.array_utils.normalize_axis_index(axis, ndim)


def check_reduction(reduction, allowed=("none", "mean", "sum")):
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction
