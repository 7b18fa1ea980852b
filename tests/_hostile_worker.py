"""Hostile-input fuzzer for every public function, run in a subprocess.

Usage::

    python tests/_hostile_worker.py [--max-examples N] [--functions f,g]
                                    [--backends cython,numba] [--random]

Hypothesis draws a *spec* per example: shapes (including empty and
mismatched ones), dtypes (ints, float16, complex, bool, object, byte-swapped
floats, mixed float32/float64), layouts (Fortran order, strided slices,
transposes, read-only, zero-stride broadcasts), values (NaN, ±inf, -0.0,
large), labels (negative, huge, ``ignore_index``, wrong dtype), weights,
options of every wrong type, and ``out=`` buffers (aliasing an input, wrong
shape / dtype / layout, read-only, not an ndarray).  The arguments are built
from the spec twice, once for the backend under test and once for the NumPy
reference (so in-place calls see fresh inputs), and the two outcomes must
agree:

* both return: same structure, types, dtypes and shapes, values equal
  within a dtype tolerance with NaN and ±inf in the same places; a call
  with ``out=`` returns ``out`` itself; inputs that are not ``out`` are left
  unchanged;
* both raise the same documented exception (TypeError, ValueError or
  IndexError).

Anything else (another exception type, a disagreement) is reported with the
falsifying example; a crash of the interpreter shows as a non-zero exit
code, with faulthandler's traceback on stderr.  The last line of stdout is a
JSON summary: per function, examples run and outcomes.

Run by ``tests/test_hostile.py`` (smoke and ``slow`` variants).  The
``FASTDL_HOSTILE_EXAMPLES`` environment variable sets ``--max-examples``'s
default, e.g. ``FASTDL_HOSTILE_EXAMPLES=10000`` for the big run.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import math
import os
import sys
import time
import traceback
import warnings

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fastdl
from fastdl import _config, _ops

_THRESHOLD = _config.PARALLEL_MIN_ELEMENTS

DOCUMENTED = (TypeError, ValueError, IndexError)

# ---------------------------------------------------------------------------
# building arguments from a spec
# ---------------------------------------------------------------------------

#: Dtypes an array may have: the two supported ones, most of the time.
BAD_DTYPES = ("int64", "int32", "uint8", "float16", "complex64", "complex128",
              "bool", "object", ">f8", ">f4", "longdouble")
FLOATS = ("float32", "float64")

#: Element values: ordinary, special and large.
SPECIAL = np.array([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e6, -1e6, 1e-30, 88.0, -88.0,
                    710.0, 1e4, -1e4, 0.5, 1.0])


def value_pool(seed, mode):
    """64 element values from a seed (cheaper to draw than element by element).

    mode 0: ordinary values; 1: with some NaN/inf/-0.0/large values; 2: mostly
    special values; 3: small integers (ties, exact zeros, kinks).
    """
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal(64) * rng.choice([1.0, 5.0, 30.0])
    if mode == 3:
        return np.round(vals.clip(-3, 3))
    if mode:
        special = rng.random(64) < (0.2 if mode == 1 else 0.7)
        vals[special] = rng.choice(SPECIAL, special.sum())
    return vals

LAYOUTS = ("c", "c", "c", "f", "strided", "transposed", "readonly", "broadcast")


class Arr:
    """Spec of one array argument: built fresh by :func:`build` each time."""

    def __init__(self, shape, dtype, layout, offset, kind="array"):
        self.shape, self.dtype, self.layout = tuple(shape), dtype, layout
        self.offset, self.kind = offset, kind

    def __repr__(self):
        return f"Arr({self.shape}, {self.dtype}, {self.layout}, {self.offset}, {self.kind})"


class Ints:
    """Spec of an integer label array (or scalar) from a list of values."""

    def __init__(self, values, dtype, shape):
        self.values, self.dtype, self.shape = list(values), dtype, shape

    def __repr__(self):
        return f"Ints({self.values}, {self.dtype}, {self.shape})"


class Alias:
    """``out=`` is the very object passed as argument ``name``."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Alias({self.name!r})"


def _values(pool, n, offset):
    return np.resize(np.roll(pool, -offset), n).astype(np.float64)


def build_array(spec, pool):
    if spec.kind == "list":
        return _values(pool, math.prod(spec.shape), spec.offset).reshape(spec.shape).tolist()
    if spec.kind == "scalar":
        return float(_values(pool, 1, spec.offset)[0])
    n = math.prod(spec.shape)
    vals = _values(pool, max(n, 1), spec.offset)
    dt = np.dtype(spec.dtype)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dt.kind in "iub":
            vals = np.nan_to_num(vals, nan=0, posinf=7, neginf=-7).clip(-100, 100)
        if dt.kind == "O":
            base_vals = vals.astype(object)
        else:
            base_vals = vals.astype(dt)
    layout = spec.layout
    shape = spec.shape
    if layout == "transposed" and len(shape) >= 2:
        a = base_vals[:n].reshape(shape[::-1]).T
    elif layout == "strided" and len(shape) >= 1:
        big_shape = shape[:-1] + (shape[-1] * 2,)
        big = np.resize(base_vals, big_shape) if math.prod(big_shape) else \
            np.empty(big_shape, base_vals.dtype)
        a = big[..., ::2]
    elif layout == "broadcast" and len(shape) >= 1:
        row = base_vals[: math.prod(shape[1:])].reshape(shape[1:]) if n else \
            np.empty(shape[1:], base_vals.dtype)
        a = np.broadcast_to(row, shape)
    else:
        a = base_vals[:n].reshape(shape)
        if layout == "f":
            a = np.asfortranarray(a)
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
    return a


def build_ints(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.dtype == "object":
            a = np.array(spec.values, dtype=object)
        elif spec.dtype == "list":
            return list(spec.values) if spec.shape != () else spec.values[0]
        else:
            dt = np.dtype(spec.dtype)
            info = np.iinfo(dt) if dt.kind in "iu" else None
            vals = spec.values
            if info is not None:
                vals = [min(max(v, info.min), info.max) for v in vals]
            a = np.array(vals, dtype=np.float64 if dt.kind == "f" else object).astype(dt)
    if spec.shape == ():
        return a[0]  # a NumPy scalar
    return a


def build(args_spec, pool):
    """Positional args and kwargs from a spec, freshly allocated."""
    pos_spec, kw_spec = args_spec
    built = {}

    def one(name, s):
        if isinstance(s, Arr):
            return build_array(s, pool)
        if isinstance(s, Ints):
            return build_ints(s)
        return s

    pos = []
    for name, s in pos_spec:
        v = one(name, s)
        built[name] = v
        pos.append(v)
    kw = {}
    for name, s in kw_spec.items():
        if not isinstance(s, Alias):
            kw[name] = one(name, s)
            built[name] = kw[name]
    for name, s in kw_spec.items():
        if isinstance(s, Alias):
            kw[name] = built.get(s.name)
    return pos, kw


def build_named(args_spec, pool):
    """As :func:`build`, plus a {name: object} map of every argument."""
    pos, kw = build(args_spec, pool)
    named = dict(zip((n for n, _ in args_spec[0]), pos))
    named.update(kw)
    return pos, kw, named


# ---------------------------------------------------------------------------
# strategies for the pieces
# ---------------------------------------------------------------------------

side = st.integers(0, 5)


@st.composite
def dtypes(draw, base):
    r = draw(st.integers(0, 39))
    if r < 36:
        return base
    if r < 38:
        return "float32" if base == "float64" else "float64"
    return draw(st.sampled_from(BAD_DTYPES))


@st.composite
def arrays(draw, shape, base_dtype, mutate=True):
    """An array spec of ``shape`` (sometimes another shape) near ``base_dtype``."""
    if mutate and draw(st.integers(0, 24)) == 0:
        shape = tuple(draw(st.lists(side, max_size=3)))
    dtype = draw(dtypes(base_dtype)) if mutate else base_dtype
    kind = "array"
    if mutate:
        k = draw(st.integers(0, 29))
        kind = "list" if k == 0 else "scalar" if k == 1 else "array"
    return Arr(shape, dtype, draw(st.sampled_from(LAYOUTS)), draw(st.integers(0, 63)), kind)


@st.composite
def outs(draw, shape, base_dtype, alias_names=()):
    r = draw(st.integers(0, 9))
    if r <= 3:
        return None
    if r <= 5 and alias_names:
        return Alias(draw(st.sampled_from(alias_names)))
    if r == 6:
        return draw(st.sampled_from([[0.0], "out", 3.0]))
    return draw(arrays(shape, base_dtype))


real_option = st.one_of(
    st.sampled_from([1.0, 0.5, 2.0, -2.0, 0.0, -0.0, math.nan, math.inf, -math.inf,
                     1e300, 1e-300, 3, True, np.float32(1.5), np.float64(-1.0),
                     "1.0", None, 1 + 1j, np.array([1.0, 2.0]), np.array(0.7)]),
    st.floats(-5, 5),
)
axes = st.sampled_from([-1, -1, -1, 0, 1, 2, -2, -3, 3, 7, None, (0,), (0, 1), (1, 0),
                        (0, 0), (-1, 5), 1.0, "0", True, np.int64(0), np.int8(-1)])
reductions = st.sampled_from(["mean"] * 4 + ["sum"] * 3 + ["none"] * 4 + ["batchmean",
                              "avg", None, 1, "MEAN"])


def _shape2(draw):
    return draw(side), draw(side)


# Each builder draws (positional [(name, spec)], keyword {name: spec}).

@st.composite
def affine_forward_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    n, d = _shape2(draw)
    h = draw(side)
    one_d = draw(st.integers(0, 4)) == 0
    x_shape = (d,) if one_d else (n, d)
    res = (h,) if one_d else (n, h)
    kw = {}
    if draw(st.booleans()):
        kw["b"] = draw(arrays((h,), dt))
    kw["out"] = draw(outs(res, dt, ("x",)))
    return [("x", draw(arrays(x_shape, dt))), ("W", draw(arrays((h, d), dt)))], kw


@st.composite
def affine_backward_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    n, d = _shape2(draw)
    h = draw(side)
    one_d = draw(st.integers(0, 4)) == 0
    pos = [("dy", draw(arrays((h,) if one_d else (n, h), dt))),
           ("x", draw(arrays((d,) if one_d else (n, d), dt))),
           ("W", draw(arrays((h, d), dt)))]
    return pos, {"bias": draw(st.sampled_from([True, False, 0, "yes"]))}


@st.composite
def nd_shape(draw):
    return tuple(draw(st.lists(side, min_size=0, max_size=3)))


@st.composite
def logsumexp_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    return ([("x", draw(arrays(draw(nd_shape()), dt)))],
            {"axis": draw(axes), "keepdims": draw(st.sampled_from([False, True, 1, None]))})


@st.composite
def softmax_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    shape = draw(nd_shape())
    return ([("x", draw(arrays(shape, dt)))],
            {"axis": draw(axes), "out": draw(outs(shape, dt, ("x",)))})


@st.composite
def softmax_backward_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    shape = draw(nd_shape())
    return ([("dy", draw(arrays(shape, dt))), ("y", draw(arrays(shape, dt)))],
            {"axis": draw(axes), "out": draw(outs(shape, dt, ("dy", "y")))})


LABELS = st.one_of(st.integers(-2, 6), st.sampled_from(
    [-100, -1, 2**31, -2**31 - 1, 2**62, -2**63, 2**64 - 1, 255, 7]))
IGNORE = st.one_of(st.just(-100), st.integers(-2, 6), st.sampled_from(
    [2**70, -2**70, 2**63, 1.5, "a", None, np.int64(3), True, np.uint64(2**64 - 1)]))
LABEL_DTYPES = st.sampled_from(["int64", "int64", "int64", "int32", "uint8", "uint64",
                                "int8", "bool", "float64", "object", "list", "float16"])


@st.composite
def cross_entropy_args(draw, variant):
    dt = draw(st.sampled_from(FLOATS))
    n, c = _shape2(draw)
    one_d = draw(st.integers(0, 5)) == 0
    logits_shape = (c,) if one_d else (n, c)
    logits = draw(arrays(logits_shape, dt))
    if draw(st.integers(0, 3)) == 0:  # probability targets
        target = draw(arrays(logits_shape, dt))
    else:
        shape = () if one_d else (n,)
        if draw(st.integers(0, 14)) == 0:
            shape = tuple(draw(st.lists(side, max_size=2)))
        k = max(1, math.prod(shape))
        values = draw(st.lists(LABELS, min_size=k, max_size=k))
        if draw(st.booleans()):  # mostly valid labels, to reach the kernels
            values = [v % max(c, 1) if abs(v) < 10 else v for v in values]
        target = Ints(values, draw(LABEL_DTYPES), shape)
    kw = {}
    if draw(st.booleans()):
        kw["weight"] = draw(arrays((c,), dt))
    if draw(st.booleans()):
        kw["ignore_index"] = draw(IGNORE)
    kw["reduction"] = draw(reductions)
    if draw(st.booleans()):
        kw["label_smoothing"] = draw(st.sampled_from(
            [0.0, 0.1, 1.0, 0.5, -0.1, 1.5, math.nan, math.inf, "0.1", None, np.float32(0.2)]))
    pos = [("logits", logits), ("target", target)]
    if variant == "backward":
        go = draw(st.integers(0, 5))
        if go == 0:
            pos.append(("grad_output", draw(arrays((n,), dt))))
        elif go == 1:
            pos.append(("grad_output", draw(real_option)))
        elif go == 2:
            pos.append(("grad_output", draw(st.sampled_from([np.float32(2), np.float64(2),
                                                             np.array(1.5), 2, -1.0]))))
    if variant in ("backward", "with_grad"):
        kw["out"] = draw(outs(logits_shape, dt, ("logits",)))
    return pos, kw


def option_values(option):
    """Values to try for an op's keyword option: mostly valid, sometimes anything."""
    if option.codes:
        return st.sampled_from(list(option.codes) + ["x", None, 1.0, np.array(["tanh"])])
    if isinstance(option.default, bool):
        return st.sampled_from([True, False, 0, 1, "x", None, np.array([True, False])])
    return real_option


@st.composite
def activation_args(draw, name, backward):
    dt = draw(st.sampled_from(FLOATS))
    shape = draw(nd_shape())
    pos = [("x", draw(arrays(shape, dt)))]
    if backward:
        pos.insert(0, ("dy", draw(arrays(shape, dt))))
    kw = {"out": draw(outs(shape, dt, tuple(n for n, _ in pos)))}
    for opt in _ops.BY_NAME[name].options:
        if draw(st.booleans()):
            kw[opt.name] = draw(option_values(opt))
    return pos, kw


@st.composite
def loss_args(draw, name, variant):
    dt = draw(st.sampled_from(FLOATS))
    shape = draw(nd_shape())
    pos = [("input", draw(arrays(shape, dt))), ("target", draw(arrays(shape, dt)))]
    red = draw(reductions)
    kw = {"reduction": red}
    if variant == "backward":
        go = draw(st.integers(0, 3))
        if go == 0:
            g = draw(arrays(shape, dt))
        elif go == 1:
            g = draw(real_option)
        else:
            g = draw(st.sampled_from([1.0, np.float32(2), np.float64(0.5), np.array(2.0), 3]))
        pos.insert(0, ("grad_output", g))
    op = _ops.BY_NAME[name]
    for opt in op.options:
        if draw(st.booleans()):
            kw[opt.name] = draw(option_values(opt))
    for extra in op.extras:
        if draw(st.booleans()):
            sub = shape[draw(st.integers(0, len(shape))):]
            kw[extra] = draw(arrays(sub, dt))
    if variant in ("backward", "with_grad"):
        names = tuple(n for n, _ in pos if n != "grad_output")
        kw["out"] = draw(outs(shape, dt, names))
    return pos, kw


@st.composite
def entropy_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    return [("p", draw(arrays(draw(nd_shape()), dt)))], {"axis": draw(axes)}


#: A hyperparameter: mostly valid, sometimes anything.
hyper_option = st.one_of(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), real_option)


@st.composite
def sgd_step_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    shape = draw(nd_shape())
    pos = [("param", draw(arrays(shape, dt))), ("grad", draw(arrays(shape, dt)))]
    kw = {"lr": draw(hyper_option)}
    r = draw(st.integers(0, 3))
    if r:
        kw["momentum_buffer"] = draw(arrays(shape, dt))
        kw["momentum"] = draw(hyper_option)
    elif draw(st.booleans()):
        kw["momentum"] = draw(real_option)
    for opt, values in (("nesterov", [True, False, 0, 1]),
                        ("first_step", [True, False]),
                        ("weight_decay", [0.0, 0.01, -1.0, math.nan, math.inf, "x"])):
        if draw(st.booleans()):
            kw[opt] = draw(st.sampled_from(values))
    return pos, kw


@st.composite
def adam_step_args(draw):
    dt = draw(st.sampled_from(FLOATS))
    shape = draw(nd_shape())
    pos = [(name, draw(arrays(shape, dt)))
           for name in ("param", "grad", "exp_avg", "exp_avg_sq")]
    kw = {"step": draw(st.sampled_from([1, 1, 1, 2, 2, 10, 1000, 0, -1, 1.5, True,
                                        np.int64(3), "1", None]))}
    if draw(st.booleans()):
        kw["lr"] = draw(hyper_option)
    if draw(st.booleans()):
        kw["betas"] = draw(st.sampled_from([(0.9, 0.999), (0.0, 0.0), (0.5, 0.9), (1.0, 0.9),
                                            (0.9, -0.1), (math.nan, 0.9), (0.9,), "ab"]))
    for opt in ("eps", "weight_decay"):
        if draw(st.booleans()):
            kw[opt] = draw(hyper_option)
    return pos, kw


#: Functions that update arrays in place: the arguments compared after the
#: call (besides the result), and exempt from the "inputs unchanged" check.
IN_PLACE = {"sgd_step": ("param", "momentum_buffer"),
            "adam_step": ("param", "exp_avg", "exp_avg_sq")}


def _function_table():
    table = {
        "affine_forward": affine_forward_args(),
        "affine_backward": affine_backward_args(),
        "logsumexp": logsumexp_args(),
        "softmax": softmax_args(),
        "log_softmax": softmax_args(),
        "softmax_backward": softmax_backward_args(),
        "log_softmax_backward": softmax_backward_args(),
        "cross_entropy": cross_entropy_args("forward"),
        "cross_entropy_backward": cross_entropy_args("backward"),
        "cross_entropy_with_grad": cross_entropy_args("with_grad"),
        "entropy": entropy_args(),
        "sgd_step": sgd_step_args(),
        "adam_step": adam_step_args(),
    }
    for op in _ops.of_kind("activation"):
        table[op.name] = activation_args(op.name, False)
        table[op.name + "_backward"] = activation_args(op.name, True)
    for op in _ops.of_kind("pointwise_loss"):
        name = op.name
        table[name] = loss_args(name, "forward")
        table[name + "_backward"] = loss_args(name, "backward")
        table[name + "_with_grad"] = loss_args(name, "with_grad")
    return table


FUNCTIONS = _function_table()

# ---------------------------------------------------------------------------
# comparing outcomes
# ---------------------------------------------------------------------------


class Mismatch(AssertionError):
    pass


def _max_abs_finite(objs):
    m = 1.0
    for o in objs:
        if isinstance(o, np.ndarray) and o.dtype.kind == "f" and o.size:
            with np.errstate(all="ignore"):
                f = np.abs(o[np.isfinite(o)].astype(np.float64))
            if f.size:
                m = max(m, float(f.max()))
    return m


def compare(got, ref, scale, n_terms, path="result", loose_nonfinite=False):
    """Raise Mismatch unless ``got`` matches the reference ``ref``.

    ``loose_nonfinite``: where the reference is NaN or ±inf, any non-finite
    value is accepted (used when the inputs make 0 * inf possible: whether a
    probability that underflows is exactly 0 or a subnormal decides between
    NaN and inf, and float32 kernels underflow earlier than float64 NumPy).
    """
    if isinstance(ref, tuple):
        if not isinstance(got, tuple) or len(got) != len(ref):
            raise Mismatch(f"{path}: got {type(got).__name__}, reference a tuple of {len(ref)}")
        for i, (g, r) in enumerate(zip(got, ref)):
            compare(g, r, scale, n_terms, f"{path}[{i}]", loose_nonfinite)
        return
    if ref is None:
        if got is not None:
            raise Mismatch(f"{path}: got {type(got).__name__}, reference None")
        return
    if type(got) is not type(ref):
        raise Mismatch(f"{path}: got type {type(got).__name__}, reference {type(ref).__name__}")
    g, r = np.asarray(got), np.asarray(ref)
    if g.dtype != r.dtype or g.shape != r.shape:
        raise Mismatch(f"{path}: got {g.dtype}{g.shape}, reference {r.dtype}{r.shape}")
    g64, r64 = g.astype(np.float64), r.astype(np.float64)
    if loose_nonfinite:
        if not np.array_equal(np.isfinite(g64), np.isfinite(r64)):
            raise Mismatch(f"{path}: non-finite values in different places:\n got {g!r}\n "
                           f"ref {r!r}")
        g64, r64 = np.where(np.isfinite(r64), g64, 0.0), np.where(np.isfinite(r64), r64, 0.0)
    if not np.array_equal(np.isnan(g64), np.isnan(r64)):
        raise Mismatch(f"{path}: NaN in different places:\n got {g!r}\n ref {r!r}")
    rinf, ginf = np.isinf(r64), np.isinf(g64)
    if not np.array_equal(rinf, ginf) or not np.array_equal(g64[rinf], r64[rinf]):
        raise Mismatch(f"{path}: inf in different places:\n got {g!r}\n ref {r!r}")
    rtol = 1e-4 if r.dtype == np.float32 else 1e-9
    # Summation order differs between backends: allow eps-sized errors of the
    # largest magnitudes the inputs can combine to.
    atol = rtol * scale * scale * max(1, n_terms)
    fin = np.isfinite(r64)
    with np.errstate(all="ignore"):
        bad = np.abs(g64[fin] - r64[fin]) > atol + rtol * np.abs(r64[fin])
    if bad.any():
        raise Mismatch(f"{path}: values differ (rtol {rtol}, atol {atol:g}):\n got {g!r}\n ref {r!r}")


def _snapshot(objs):
    return [np.array(o, copy=True) if isinstance(o, np.ndarray) else None for o in objs]


def call(func, pos, kw, backend):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", func(*pos, **kw, backend=backend)
        except DOCUMENTED as exc:
            return "raised", exc
        except Exception as exc:  # undocumented: a bug
            return "bug", exc


def check_example(name, spec, pool, backends, stats):
    func = getattr(fastdl, name)
    pos_r, kw_r, named_r = build_named(spec, pool)
    kind_r, res_r = call(func, pos_r, kw_r, "numpy")
    if kind_r == "ok" and name in IN_PLACE:
        res_r = _with_updated(name, res_r, named_r)
    if kind_r == "bug":
        raise Mismatch(f"numpy reference raised undocumented "
                       f"{type(res_r).__name__}: {res_r}\n"
                       + "".join(traceback.format_exception(res_r)))
    stats["returned" if kind_r == "ok" else f"raised {type(res_r).__name__}"] += 1
    for backend in backends:
        if backend != "numpy":
            stats[f"calls {backend}"] += 1
            check_backend(func, spec, pool, backend, kind_r, res_r, pos_r, kw_r)


def _with_updated(name, result, named):
    """The result and the arrays updated in place, as one tuple to compare."""
    return (result,) + tuple(
        np.array(named[k], copy=True) if isinstance(named.get(k), np.ndarray) else named.get(k)
        for k in IN_PLACE[name])


def check_backend(func, spec, pool, backend, kind_r, res_r, pos_r, kw_r):
    pos_g, kw_g, named_g = build_named(spec, pool)
    updated = IN_PLACE.get(func.__name__, ())
    inputs_g = [v for k, v in named_g.items() if k != "out" and k not in updated]
    out_g = kw_g.get("out")
    before = _snapshot(inputs_g)
    kind_g, res_g = call(func, pos_g, kw_g, backend)
    if kind_g == "ok" and updated:
        res_g = _with_updated(func.__name__, res_g, named_g)
    if kind_g == "bug":
        raise Mismatch(f"backend {backend} raised undocumented {type(res_g).__name__}: "
                       f"{res_g}\n" + "".join(traceback.format_exception(res_g)))
    if kind_r != kind_g:
        raise Mismatch(f"reference {kind_r} ({res_r!r}) but backend {backend} {kind_g} "
                       f"({res_g!r})")
    if kind_r == "raised":
        if type(res_r) is not type(res_g):
            raise Mismatch(f"reference raised {type(res_r).__name__}({res_r}) but backend "
                           f"{backend} raised {type(res_g).__name__}({res_g})")
        return
    arrays_in = [a for a in pos_r + list(kw_r.values()) if isinstance(a, np.ndarray)]
    n_terms = max([a.size for a in arrays_in] + [1])
    scale = _max_abs_finite(arrays_in)
    # Cross-entropy where NaN-versus-±inf is decided by evaluation order, so
    # only the placement of non-finite values is compared (see compare()):
    # - an infinite target probability, weight or logit: 0 * inf after a
    #   probability that underflows to 0 in one backend, a subnormal in another;
    # - an infinite gradient scale, from grad_output = ±inf or from "mean" over
    #   rows whose weights sum to 0: the reference multiplies the finite row
    #   gradient by it (±inf), the kernels multiply each term (inf - inf = NaN).
    #   Reported: PyTorch gives NaN for the whole row in both cases.
    loose = False
    if func.__name__.startswith("cross_entropy"):
        go = pos_r[2] if len(pos_r) > 2 else 1.0
        weight = kw_r.get("weight")
        with np.errstate(all="ignore"):
            loose = (any(a.dtype.kind == "f" and np.isinf(a).any() for a in arrays_in)
                     or not np.all(np.isfinite(np.asarray(go, dtype=np.float64)))
                     or (isinstance(weight, np.ndarray) and weight.dtype.kind == "f"
                         and (weight == 0).any()))
    compare(res_g, res_r, scale, n_terms, loose_nonfinite=loose)
    if isinstance(out_g, np.ndarray):
        returned = res_g[1] if isinstance(res_g, tuple) else res_g
        if returned is not out_g:
            raise Mismatch("a call with out= did not return out itself")
    for a, b in zip(inputs_g, before):
        if b is None or (isinstance(out_g, np.ndarray) and np.shares_memory(a, out_g)):
            continue
        if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            raise Mismatch("an input that is not out= was modified")


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------

def run_function(name, backends, max_examples, derandomize):
    stats = collections.Counter()
    backends = list(backends)

    @settings(max_examples=max_examples, deadline=None, database=None,
              derandomize=derandomize, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink], print_blob=True)
    @given(spec=FUNCTIONS[name],
           seed=st.integers(0, 2**32 - 1), mode=st.integers(0, 3),
           parallel=st.booleans())
    def test(spec, seed, mode, parallel):
        stats["examples"] += 1
        # Half the examples run the parallel kernels, however small the
        # arrays: a zero threshold sends every call to the threaded path.
        _config.PARALLEL_MIN_ELEMENTS = 0 if parallel else _THRESHOLD
        # Every compiled backend, and "auto" on every 4th example.
        these = backends + ["auto"] if stats["examples"] % 4 == 0 else backends
        check_example(name, spec, value_pool(seed, mode), these, stats)

    try:
        test()
    except Exception as exc:  # the falsifying example, after shrinking
        return stats, "".join(traceback.format_exception(exc))[-6000:]
    return stats, None


def main(argv=None):
    faulthandler.enable()
    p = argparse.ArgumentParser()
    p.add_argument("--max-examples", type=int,
                   default=int(os.environ.get("FASTDL_HOSTILE_EXAMPLES", "100")))
    p.add_argument("--functions", default="")
    p.add_argument("--backends", default="")
    p.add_argument("--random", action="store_true",
                   help="random seeds (default: derandomized, reproducible)")
    args = p.parse_args(argv)
    names = [f for f in args.functions.split(",") if f] or list(FUNCTIONS)
    backends = [b for b in args.backends.split(",") if b] or \
        [b for b in fastdl.available_backends() if b != "numpy"] or ["numpy"]
    summary, failures = {}, {}
    for name in names:
        t0 = time.perf_counter()
        print(f"hostile: {name} ...", file=sys.stderr, flush=True)
        stats, failure = run_function(name, backends, args.max_examples, not args.random)
        stats["seconds"] = round(time.perf_counter() - t0, 2)
        summary[name] = dict(stats)
        print("RESULT " + json.dumps({name: summary[name]}), flush=True)
        if failure:
            failures[name] = failure
            print(f"FAILED {name}:\n{failure}", flush=True)
    print(json.dumps({"summary": summary, "failures": sorted(failures)}), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
