"""``fastdl.warmup``: compile kernels ahead of their first use.

The Numba backend compiles each kernel the first time it is called with a
new combination of argument types (dtype, optional arrays present or None)
and, separately, for its serial and its parallel variant (chosen per call
from the element count, see ``_config.threads_for``).  A first call can so
take from a fraction of a second to several seconds; with the on-disk cache
(``show_config()`` shows where it is) it only loads machine code.

:func:`warmup` runs every chosen kernel through the *public* functions on
tiny inputs, once below and once above the parallel threshold, for each
dtype, with the option variants that select different compiled code
(``weight=``, ``label_smoothing``, probability targets, ``reduction="none"``).
Going through the public API means it compiles exactly what later calls
use, and it changes no global state.  The Cython backend needs no
compilation; warming it only loads the module and starts the OpenMP pool.
"""

from __future__ import annotations

import importlib
import math
import time
from typing import Callable, Iterable

import numpy as np

from . import _backend, _config, _ops

#: Columns of the warm-up inputs; rows are chosen per size (see _shapes).
_COLS = 8


def _shapes() -> tuple[tuple[int, int], ...]:
    """A serial-sized and a parallel-sized (rows, cols) shape.

    The second has at least ``PARALLEL_MIN_ELEMENTS`` elements, so with more
    than one thread the parallel variants are compiled too; it is still
    small (a few hundred KiB).
    """
    rows = math.ceil(_config.PARALLEL_MIN_ELEMENTS / _COLS)
    return ((4, _COLS), (rows, _COLS))


class _Inputs:
    """Deterministic warm-up arrays of one dtype and shape."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, int]):
        n, c = shape
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal(shape).astype(dtype)
        self.dy = rng.standard_normal(shape).astype(dtype)
        self.W = rng.standard_normal((c, c)).astype(dtype)
        self.b = rng.standard_normal(c).astype(dtype)
        self.w = np.full(c, 0.5, dtype)
        self.t = np.arange(n, dtype=np.int64) % c
        p = np.exp(self.x.astype(np.float64))
        self.p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
        self.logp = np.log(self.p)
        self.t01 = (self.x > 0).astype(dtype)
        self.m = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)


# Each recipe calls the public function ``f`` with warm-up inputs ``v``;
# ``kw`` carries ``backend=``.  Variants that change the compiled code's
# argument types get their own call.
_Recipe = Callable[[Callable, "_Inputs", dict], None]


def _calls(*fns: _Recipe) -> _Recipe:
    def run(f, v, kw):
        for fn in fns:
            fn(f, v, kw)
    return run


def _unary(f, v, kw):
    f(v.x, **kw)


def _unary_backward(f, v, kw):
    f(v.dy, v.x, **kw)


def _softmax_backward(f, v, kw):
    f(v.dy, v.p, **kw)


def _log_softmax_backward(f, v, kw):
    f(v.dy, v.logp, **kw)


def _ce(f, v, kw):
    f(v.x, v.t, **kw)
    f(v.x, v.t, weight=v.w, **kw)
    f(v.x, v.t, label_smoothing=0.1, **kw)
    f(v.x, v.p, **kw)


def _loss(target_attr: str, input_attr: str = "x") -> tuple[_Recipe, _Recipe, _Recipe]:
    """(forward, backward, with_grad) recipes of a pointwise loss."""

    def forward(f, v, kw):
        f(getattr(v, input_attr), getattr(v, target_attr), **kw)
        f(getattr(v, input_attr), getattr(v, target_attr), reduction="none", **kw)

    def backward(f, v, kw):
        f(1.0, getattr(v, input_attr), getattr(v, target_attr), **kw)
        f(v.dy, getattr(v, input_attr), getattr(v, target_attr), reduction="none", **kw)

    def with_grad(f, v, kw):
        f(getattr(v, input_attr), getattr(v, target_attr), **kw)
        f(getattr(v, input_attr), getattr(v, target_attr), reduction="none", **kw)

    return forward, backward, with_grad


#: (input, target) attributes of _Inputs for each kind of loss sample (see _ops.Op.sample).
_LOSS_INPUTS = {"real": ("x", "dy"), "binary": ("x", "t01"), "logprob": ("logp", "p")}


def _recipes() -> dict[str, _Recipe]:
    r: dict[str, _Recipe] = {
        "affine_forward": lambda f, v, kw: f(v.x, v.W, v.b, **kw),
        "affine_backward": lambda f, v, kw: f(v.dy, v.x, v.W, **kw),
        "logsumexp": _unary,
        "softmax": _unary,
        "log_softmax": _unary,
        "softmax_backward": _softmax_backward,
        "log_softmax_backward": _log_softmax_backward,
        "cross_entropy": _ce,
        "cross_entropy_backward": _ce,
        "cross_entropy_with_grad": _ce,
        "entropy": lambda f, v, kw: f(v.p, **kw),
        "sgd_step": lambda f, v, kw: (
            f(v.x.copy(), v.dy, lr=0.1, **kw),
            f(v.x.copy(), v.dy, v.m.copy(), lr=0.1, momentum=0.9, **kw),
        ),
        "adam_step": lambda f, v, kw: f(v.x.copy(), v.dy, v.m.copy(), v.v.copy(),
                                        step=1, **kw),
    }
    def _lce(f, v, kw):
        f(v.x, v.W, v.t, b=v.b, **kw)
        f(v.x, v.W, v.p[:, :v.W.shape[0]].copy(), **kw)

    def _lce_backward(f, v, kw):
        f(v.x, v.W, v.t, 1.0, b=v.b, **kw)

    r["linear_cross_entropy"] = r["linear_cross_entropy_with_grad"] = _lce
    r["linear_cross_entropy_backward"] = _lce_backward
    for op in _ops.of_kind("activation"):
        for name in _ops.public_names(op):
            r[name] = _unary_backward if name.endswith("_backward") else _unary
    for op in _ops.of_kind("pointwise_loss"):
        inp, target = _LOSS_INPUTS[op.sample]
        fwd, bwd, both = _loss(target, inp)
        r[op.name], r[f"{op.name}_backward"], r[f"{op.name}_with_grad"] = fwd, bwd, both
    return r


_RECIPES = _recipes()


def warmable_kernels() -> tuple[str, ...]:
    """Names :func:`warmup` accepts: the public functions of the op table."""
    return tuple(name for op in _ops.OPS for name in _ops.public_names(op))


def _public_function(name):
    """The public function ``name``, from the module of its op (not from the
    ``fastdl`` package, which imports this module)."""
    op = next(op for op in _ops.OPS if name in _ops.public_names(op))
    return getattr(importlib.import_module(_ops.public_module(op)), name)


def _dtype_list(dtypes) -> list[np.dtype]:
    if isinstance(dtypes, (str, type, np.dtype)):
        dtypes = (dtypes,)
    out = []
    for d in dtypes:
        try:
            dt = np.dtype(d)
        except TypeError:
            dt = None
        if dt is None or dt.name not in _config.FLOAT_DTYPE_NAMES:
            raise TypeError(
                f"warmup: unsupported dtype {d!r}; supported dtypes are "
                f"{', '.join(_config.FLOAT_DTYPE_NAMES)}"
            )
        out.append(dt)
    return out


def warmup(
    kernels: Iterable[str] | str | None = None,
    dtypes: Iterable = (np.float32, np.float64),
    backends: Iterable[str] | str | None = None,
) -> dict[tuple[str, str, str], float]:
    """Compile (or load from Numba's cache) kernels before their first use.

    Calls each chosen public function on small inputs -- once below and once
    above the parallel threshold, with the option variants that select
    different compiled code -- so that later calls of the same kind start at
    full speed.  Results are discarded; no global setting is changed.

    Parameters
    ----------
    kernels : str or iterable of str, optional
        Names of public functions to warm, e.g. ``["softmax",
        "cross_entropy_with_grad"]``.  None (default) warms every function
        in :func:`fastdl._warmup.warmable_kernels` (the core kernels,
        activations, losses and optimizer steps).
    dtypes : iterable of dtype-like, optional
        Float dtypes to compile for; default ``(np.float32, np.float64)``.
    backends : str or iterable of str, optional
        Backends to warm, e.g. ``"numba"``.  None (default) warms whatever
        the calls would use now: the backend in force in this thread
        (``"auto"`` resolves per operation, so with the Cython backend
        available Numba is not compiled at all).

    Returns
    -------
    dict
        ``{(backend, kernel, dtype_name): seconds}``, the time each took
        (compilation, cache loading and the calls themselves); ``backend``
        is the name given, or the one in force when ``backends`` is None.

    Raises
    ------
    ValueError
        If a kernel name is unknown, or a backend is unknown or unavailable
        (the message lists what is available).
    TypeError
        If a dtype is not float32 or float64.

    Notes
    -----
    Only the variants the current thread count would run are compiled: with
    one thread (``set_num_threads(1)``) the parallel variants are skipped,
    and a later call with more threads compiles them then.  Compiled code is
    cached on disk when a writable cache directory exists (see
    ``show_config()``), so warming once per machine is usually enough; a
    read-only installation compiles in each process instead.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> times = fastdl.warmup(["softmax"], dtypes=[np.float32], backends="numpy")
    >>> sorted(times)
    [('numpy', 'softmax', 'float32')]
    """
    known = warmable_kernels()
    if kernels is None:
        names = list(known)
    else:
        names = [kernels] if isinstance(kernels, str) else list(kernels)
        unknown = [k for k in names if k not in known]
        if unknown:
            raise ValueError(
                f"warmup: unknown kernel(s) {unknown}; choose from {', '.join(known)}"
            )
    dts = _dtype_list(dtypes)
    if backends is None:
        targets: list[str | None] = [None]
    else:
        targets = [backends] if isinstance(backends, str) else list(backends)
        for b in targets:
            _backend._require(b)

    timings: dict[tuple[str, str, str], float] = {}
    for b in targets:
        label = _backend.get_backend() if b is None else b
        kw = {"backend": b}
        for name in names:
            fn = _public_function(name)
            for dt in dts:
                t0 = time.perf_counter()
                for shape in _shapes():
                    _RECIPES[name](fn, _Inputs(dt, shape), kw)
                timings[(label, name, dt.name)] = time.perf_counter() - t0
    return timings
