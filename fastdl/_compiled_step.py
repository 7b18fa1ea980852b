"""One compiled call per training step: :func:`compile_step`.

The layer API spends most of a small network's step in Python: the digits
MLP (64 -> 128 -> ReLU -> 10, batch 64, float32, 1 thread) takes about
190 us per step through ``Sequential``/``CrossEntropyLoss``/``Adam``, of
which the five GEMMs are 45 us and the rest is the overhead of a dozen
public calls.  :func:`compile_step` checks a model, a criterion and an
optimizer once and returns ``step(x, y)``, which runs forward, loss,
backward and the optimizer update in a single Numba call, on the very same
parameter, gradient and optimizer-state arrays the layer API uses.

The compiled code is :mod:`fastdl.backends.numba.step` (how it sees the
arrays, which BLAS its GEMMs call); this module reads the model, criterion
and optimizer through their public attributes (``options``,
``state_arrays()``, ``first_step``) into the tables it takes.
"""

from __future__ import annotations

import itertools
import operator

import numpy as np

from ._optim_functional import _adam_hyperparameters, _sgd_hyperparameters
from .backends._blas import find_numpy_cblas as _find_numpy_cblas  # noqa: F401  (_linear_ce)
from .backends.numba import step as _step
from .backends.numba.step import (  # the layout of the tables the compiled step reads
    _AFFINE,
    _ACTIVATIONS,
    _POINTWISE_LOSSES,
    _KIND,
    _N_IN,
    _N_OUT,
    _OPS_COLS,
    _W,
    _B,
    _DW,
    _DB,
    _S1W,
    _S1B,
    _S2W,
    _S2B,
    _W_SIZE,
    _B_SIZE,
    _PARAM_COLS,
    _OUT,
    _DOUT,
    _SGD,
    _ADAM,
    _MAX_BATCH_SIZES,
    _INT64,
    _kernels,
)

__all__ = ["compile_step"]


def __getattr__(name):
    # ``gemm_blas``: which BLAS the compiled GEMMs call, set on first use.
    if name == "gemm_blas":
        return _step.gemm_blas
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# ---------------------------------------------------------------------------
# Structure checks (once, in compile_step)
# ---------------------------------------------------------------------------

def _flatten(model, layers_mod):
    """The model's layers in order, nested Sequentials expanded."""
    if type(model) is layers_mod.Sequential:
        out = []
        for layer in model.layers:
            out.extend(_flatten(layer, layers_mod))
        return out
    return [model]


def _activation_options(name, layer):
    """The activation's options (o0, o1), checked as its functional checks them."""
    from . import _activations as A

    opts = layer.options
    if name == "leaky_relu":
        return A._finite_float(opts["negative_slope"], "negative_slope"), 0.0
    if name == "elu":
        return A._finite_float(opts["alpha"], "alpha"), 0.0
    if name == "softplus":
        return (A._finite_float(opts["beta"], "beta", nonzero=True),
                A._threshold(opts["threshold"]))
    return 0.0, 0.0


def _layer_table(model, layers_mod, head=None):
    """(ops, opts, affines, dtype) for the supported layer chain.

    ``opts`` (float64, one row per layer): the activation's options o0, o1
    in the order of its row in the op table; 0 where unused.  ``head``: the
    projection of a :class:`fastdl.losses.LinearCrossEntropyLoss`, run as
    the chain's last Affine layer.
    """
    if type(model) not in (layers_mod.Sequential, layers_mod.Affine):
        raise TypeError(
            f"model must be a fastdl.layers.Sequential or Affine, got {type(model).__name__}")
    chain = _flatten(model, layers_mod) + ([head] if head is not None else [])
    activations = {getattr(layers_mod, cls): code_name
                   for cls, code_name in _ACTIVATIONS.items()}
    affines = []
    ops = []
    opts = []
    width = None
    for i, layer in enumerate(chain):
        kind = type(layer)
        if kind is layers_mod.Affine:
            if width is not None and layer.in_features != width:
                raise ValueError(
                    f"layer {i} ({layer!r}) takes {layer.in_features} features but the "
                    f"layer before it gives {width}")
            if any(layer is a for a in affines):
                raise ValueError(f"layer {i} ({layer!r}) appears twice in the model; "
                                 "compile_step does not support shared layers")
            ops.append((_AFFINE, layer.in_features, layer.out_features,
                        int(layer.b is not None), len(affines)))
            opts.append((0.0, 0.0))
            affines.append(layer)
            width = layer.out_features
        elif kind in activations:
            if width is None:
                raise ValueError(
                    f"layer {i} ({layer!r}) comes before the first Affine layer; "
                    "compile_step needs the model to start with an Affine layer")
            code, name = activations[kind]
            ops.append((code, width, width, 0, -1))
            opts.append(_activation_options(name, layer))
        else:
            raise TypeError(
                f"compile_step does not support layer {i}, {layer!r} ({kind.__name__}); "
                f"it supports Affine, {', '.join(_ACTIVATIONS)} (exact types, not "
                "subclasses). The layer API (model.forward/backward) works for every layer")
    if not affines:
        raise ValueError("the model has no Affine layer: nothing to train")
    dtypes = {a.W.value.dtype for a in affines} | {
        a.b.value.dtype for a in affines if a.b is not None}
    if len(dtypes) != 1:
        raise TypeError(f"the layers mix dtypes {sorted(str(d) for d in dtypes)}; "
                        "compile_step needs one dtype (float32 or float64)")
    dtype = dtypes.pop()
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"parameter dtype {dtype}; compile_step supports float32 and float64")
    return (np.array(ops, np.int64).reshape(-1, _OPS_COLS),
            np.array(opts, np.float64).reshape(-1, 2), affines, dtype)


def _criterion_kind(criterion, losses_mod):
    """"ce" or the pointwise loss's op name; raises for anything compile_step does not fuse."""
    if type(criterion) is losses_mod.CrossEntropyLoss:
        _check_ce(criterion)
        return "ce"
    if type(criterion) is losses_mod.LinearCrossEntropyLoss:
        for name, off in (("z_loss", 0.0), ("softcap", None)):
            if getattr(criterion, name) != off:
                raise ValueError(f"compile_step supports LinearCrossEntropyLoss with "
                                 f"{name}={off}; use the layer API for it")
        _check_ce(criterion)
        return "ce"
    for cls, name in _POINTWISE_LOSSES.items():
        if type(criterion) is getattr(losses_mod, cls):
            _check_pointwise(criterion, name)
            return name
    raise TypeError(
        f"compile_step does not support the criterion {criterion!r} "
        f"({type(criterion).__name__}); it supports fastdl.losses.CrossEntropyLoss, "
        "LinearCrossEntropyLoss, "
        f"{', '.join(_POINTWISE_LOSSES)} (exact types). The layer API works with every loss")


def _check_pointwise(criterion, name):
    """The pointwise loss's option o0 (Huber's delta, else 0), checked."""
    from . import _activations as A

    opts = criterion.options
    if name == "binary_cross_entropy_with_logits":
        for extra in ("weight", "pos_weight"):
            if opts[extra] is not None:
                raise ValueError(f"compile_step supports BCEWithLogitsLoss without {extra} "
                                 f"({extra}=None); use the layer API for it")
    _check_reduction(criterion)
    if name == "huber_loss":
        return A._finite_float(opts["delta"], "delta", positive=True)
    return 0.0


def _check_reduction(criterion):
    if criterion.reduction not in ("mean", "sum"):
        raise ValueError(f"compile_step supports reduction 'mean' or 'sum', "
                         f"got {criterion.reduction!r}")


def _check_ce(criterion, dtype=None, n_classes=None):
    """``(ignore_index, weight, label_smoothing)`` of the criterion, checked as
    :func:`fastdl.cross_entropy` checks them; ``weight`` as a C-contiguous
    array of the model's ``dtype`` (when given) or None."""
    _check_reduction(criterion)
    try:
        ignore = operator.index(criterion.ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got "
                        f"{criterion.ignore_index!r}") from None
    if not -2**63 <= ignore < 2**63:
        raise ValueError(f"compile_step needs an ignore_index that fits int64, got {ignore}")
    eps = float(criterion.label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {criterion.label_smoothing!r}")
    weight = criterion.weight
    if weight is not None and dtype is not None:
        weight = np.asarray(weight)
        if weight.dtype != dtype:
            raise TypeError(f"CrossEntropyLoss weight has dtype {weight.dtype}; the model "
                            f"is {dtype}")
        if weight.shape != (n_classes,):
            raise ValueError(f"CrossEntropyLoss weight has shape {weight.shape}; the model's "
                             f"{n_classes} classes need ({n_classes},)")
        weight = np.ascontiguousarray(weight)
    return ignore, weight, eps


def _optimizer_kind(optimizer, params, optim_mod):
    if type(optimizer) is optim_mod.Adam:
        kind = _ADAM
    elif type(optimizer) is optim_mod.SGD:
        kind = _SGD
    else:
        raise TypeError(
            f"compile_step does not support the optimizer {type(optimizer).__name__}; it "
            "supports fastdl.optim.SGD and Adam (exact types). The layer API works with any")
    ours = optimizer.params
    if len(ours) != len(params) or any(a is not b for a, b in zip(ours, params)):
        raise ValueError(
            "the optimizer must hold exactly the model's parameters, the same objects in "
            "the order of model.parameters() (followed by criterion.parameters() for a "
            "LinearCrossEntropyLoss head)")
    return kind


def _address(a):
    return a.__array_interface__["data"][0]


def _check_no_overlap(arrays):
    """ValueError if two of the (C-contiguous) arrays share memory.

    The compiled code writes each of them through its own view: a gradient
    or a state array aliasing a parameter would make the result depend on
    the order of the writes.
    """
    spans = sorted((_address(a), _address(a) + a.nbytes, i)
                   for i, a in enumerate(arrays) if a is not None and a.nbytes)
    for (_, end, i), (start, _, j) in itertools.pairwise(spans):
        if start < end:
            raise ValueError(
                "two of the parameter, gradient and optimizer-state arrays share memory "
                f"(arrays {min(i, j)} and {max(i, j)} of values + grads + state); "
                "compile_step needs them distinct")


def _as_input(a, dtype, name):
    """``a`` as a writeable C-contiguous array of ``dtype`` (a copy if need be).

    A read-only array is copied: Numba types read-only arrays separately,
    so passing one would compile the whole step a second time.
    """
    a = np.asarray(a)
    if a.dtype != dtype and (a.dtype.kind != dtype.kind
                             or a.dtype.newbyteorder("=") != dtype):
        raise TypeError(f"{name} has dtype {a.dtype}; the model is {dtype}")
    if a.flags.carray and a.dtype == dtype and type(a) is np.ndarray:
        return a
    return np.array(a, dtype=dtype, order="C")


# ---------------------------------------------------------------------------
# The step object
# ---------------------------------------------------------------------------

class _Step:
    """``step(x, y) -> loss``: see :func:`compile_step`."""

    def __init__(self, model, criterion, optimizer, layers_mod, losses_mod, optim_mod):
        self._loss = _criterion_kind(criterion, losses_mod)
        self._head = type(criterion) is losses_mod.LinearCrossEntropyLoss
        self._ops, self._opts, self._affines, self._dtype = _layer_table(
            model, layers_mod, criterion._linear if self._head else None)
        # A pointwise loss's options, as last checked, and its o0.
        self._loss_options = ()
        self._loss_o0 = 0.0
        if self._loss != "ce":
            self._loss_options = tuple(criterion.options.values())
            self._loss_o0 = _check_pointwise(criterion, self._loss)
        else:  # checked again when one of them changes (by identity)
            self._ce_key = (criterion.ignore_index, criterion.weight, criterion.label_smoothing)
            self._ce = _check_ce(criterion, self._dtype, int(self._ops[-1, _N_OUT]))
        self._params = model.parameters() + (criterion.parameters() if self._head else [])
        ids = {id(p) for p in self._params}
        if len(ids) != len(self._params):
            raise ValueError("a Parameter appears twice in model.parameters(); "
                             "compile_step does not support shared parameters")
        self._opt_kind = _optimizer_kind(optimizer, self._params, optim_mod)
        self._model = model
        self._criterion = criterion
        self._optimizer = optimizer
        self._kernel = _kernels(self._loss)
        ops = self._ops
        self._n_in = int(ops[0, _N_IN])
        self._n_out = int(ops[-1, _N_OUT])
        self._first_affine = int(np.flatnonzero(ops[:, _KIND] == _AFFINE)[0])
        self._col_acc = np.zeros(int(ops[:, _N_OUT].max()), np.float64)
        # Scratch of the model's dtype: 7 optimizer scalars, then the loss.
        self._scalars = np.zeros(8, self._dtype)
        self._hyper = np.zeros(5, np.float64)
        self._hyper_key = None
        self._nesterov = False
        self._batches = {}
        self._live = None
        self._table = None
        self._refresh()

    # -- the arrays the compiled code addresses --------------------------

    def _live_arrays(self):
        """Every parameter, gradient and optimizer-state array, as listed now."""
        arrays = [p.value for p in self._params] + [p.grad for p in self._params]
        for state in self._optimizer.state_arrays().values():
            arrays += state
        return arrays

    def _refresh(self):
        """Check the arrays and rebuild the address table (when they changed)."""
        live = self._live_arrays()
        dt = self._dtype
        opt = self._optimizer
        n = len(self._params)
        for p in self._params:
            for what, a in (("value", p.value), ("grad", p.grad)):
                if not (isinstance(a, np.ndarray) and a.dtype == dt and a.flags.c_contiguous
                        and a.flags.writeable and a.shape == p.value.shape):
                    raise ValueError(
                        f"{p!r}.{what} must be a writeable C-contiguous {dt} array of the "
                        "parameter's shape for compile_step; call compile_step again after "
                        "replacing parameter arrays")
        state = opt.state_arrays()
        if self._opt_kind == _ADAM:
            states = list(zip(state["exp_avg"], state["exp_avg_sq"]))
        else:
            states = [(buf, None) for buf in state["momentum_buffer"]]
        for p, (s1, s2) in zip(self._params, states):
            for s in (s1, s2):
                if s is not None and not (isinstance(s, np.ndarray) and s.dtype == dt
                                          and s.flags.c_contiguous and s.flags.writeable
                                          and s.shape == p.value.shape):
                    raise ValueError(f"the optimizer state of {p!r} is not a writeable "
                                     f"C-contiguous {dt} array of its shape")
        _check_no_overlap(live)
        self._has_state = self._opt_kind == _ADAM or all(s is not None for s, _ in states)
        index = {id(p): i for i, p in enumerate(self._params)}
        table = np.zeros((len(self._affines), _PARAM_COLS), np.int64)
        for row, layer in zip(table, self._affines):
            for param, cols in ((layer.W, (_W, _DW, _S1W, _S2W, _W_SIZE)),
                                (layer.b, (_B, _DB, _S1B, _S2B, _B_SIZE))):
                if param is None:
                    continue
                value, grad, state1, state2, size = cols
                s1, s2 = states[index[id(param)]]
                row[value] = _address(param.value)
                row[grad] = _address(param.grad)
                row[state1] = 0 if s1 is None else _address(s1)
                row[state2] = 0 if s2 is None else _address(s2)
                row[size] = param.value.size
        self._table = table
        self._live = live

    def _check_head_memory(self, n):
        """ValueError if a batch's logits exceed the head's memory budget.

        The compiled step runs the head as a last Affine layer, so it holds
        the batch's (N, V) logits and their gradient, which the layer API's
        LinearCrossEntropyLoss never does; a batch is allowed the head's
        ``chunk_size`` rows, or the rows whose two buffers fit its default
        budget (``fastdl._linear_ce.DEFAULT_MAX_MEMORY``).
        """
        from ._linear_ce import DEFAULT_MAX_MEMORY

        v = self._n_out
        row_bytes = 2 * v * self._dtype.itemsize
        rows = self._criterion.chunk_size
        if rows is None:
            rows = max(1, DEFAULT_MAX_MEMORY // row_bytes)
        if n > rows:
            raise ValueError(
                f"batch of {n} rows: compile_step holds the head's ({n}, {v}) logits and "
                f"their gradient ({n * row_bytes / 2**20:.0f} MiB), beyond the "
                f"LinearCrossEntropyLoss budget of {rows} rows; use the layer API "
                "(head.forward/backward chunks the rows) or a smaller batch")

    def _batch(self, n):
        """(address table, row losses, row scales) for batch size ``n``."""
        entry = self._batches.get(n)
        if entry is None:
            if self._head:
                self._check_head_memory(n)
            if len(self._batches) >= _MAX_BATCH_SIZES:
                self._batches.pop(next(iter(self._batches)))  # the oldest size
            ops = self._ops
            arrays = []
            table = np.zeros((ops.shape[0], 2), np.int64)
            for k in range(ops.shape[0]):
                out = np.zeros((n, int(ops[k, _N_OUT])), self._dtype)
                dout = np.zeros_like(out)
                arrays += [out, dout]
                table[k, _OUT] = _address(out)
                table[k, _DOUT] = _address(dout)
            entry = (table, np.zeros(n, np.float64), np.zeros(n, np.float64), arrays)
            self._batches[n] = entry
        return entry

    # -- one step ----------------------------------------------------------

    def _hyperparameters(self):
        """The optimizer's hyperparameters, checked as its step() checks them.

        The check runs only when they differ from the last call's (a
        learning-rate schedule changes ``lr``; the rest rarely change).
        """
        opt = self._optimizer
        if self._opt_kind == _ADAM:
            key = (opt.lr, opt.betas, opt.eps, opt.weight_decay)
            if key != self._hyper_key:
                lr, beta1, beta2, eps, wd = _adam_hyperparameters(*key)
                self._hyper[:5] = (lr, beta1, beta2, eps, wd)
                self._hyper_key = key
        else:
            key = (opt.lr, opt.momentum, opt.nesterov, opt.weight_decay)
            if key != self._hyper_key:
                lr, momentum, nesterov, wd = _sgd_hyperparameters(*key)
                self._hyper[:3] = (lr, momentum, wd)
                self._nesterov = nesterov
                self._hyper_key = key
        return self._hyper

    def __call__(self, x, y):
        dt = self._dtype
        if not (type(x) is np.ndarray and x.dtype is dt and x.flags.carray):
            x = _as_input(x, dt, "x")
        if x.ndim != 2 or x.shape[1] != self._n_in:
            raise ValueError(f"x has shape {x.shape}; the model needs (N, {self._n_in})")
        n = x.shape[0]
        if n == 0:
            raise ValueError("x is an empty batch (N = 0); compile_step needs N >= 1")
        crit = self._criterion
        reduction = crit.reduction
        if reduction != "mean" and reduction != "sum":
            _check_reduction(crit)
        y_in = y
        if self._loss == "ce":
            if not (type(y) is np.ndarray and y.dtype is _INT64 and y.flags.carray):
                y = np.asarray(y)
                if y.dtype.kind not in "iu":
                    raise TypeError(f"y has dtype {y.dtype}; CrossEntropyLoss in compile_step "
                                    "needs integer class indices")
                y = _as_input(y.astype(np.int64, copy=False), _INT64, "y")
            if y.shape != (n,):
                raise ValueError(f"y has shape {y.shape}; x {x.shape} needs ({n},)")
            key = (crit.ignore_index, crit.weight, crit.label_smoothing)
            if any(map(operator.is_not, key, self._ce_key)):
                self._ce = _check_ce(crit, dt, self._n_out)
                self._ce_key = key
            ignore, weight, eps = self._ce
        else:
            # The loss's options are checked again when they changed (by
            # identity: BCE's weight may be an array).
            options = tuple(crit.options.values())
            if len(options) != len(self._loss_options) or \
                    any(map(operator.is_not, options, self._loss_options)):
                self._loss_o0 = _check_pointwise(crit, self._loss)
                self._loss_options = options
            if not (type(y) is np.ndarray and y.dtype is dt and y.flags.carray):
                y = _as_input(y, dt, "y")
            if y.shape != (n, self._n_out):
                raise ValueError(f"y has shape {y.shape}; the model's output is "
                                 f"{(n, self._n_out)}")

        live = self._live_arrays()
        if len(live) != len(self._live) or any(map(operator.is_not, live, self._live)):
            self._refresh()
        table, row_loss, row_scale, _ = self._batch(n)
        hyper = self._hyperparameters()
        opt = self._optimizer
        if self._opt_kind == _ADAM:
            t = opt.t + 1
            has_state, nesterov, first = True, False, False
        else:
            t = 0
            has_state = hyper[1] != 0.0
            if has_state and not self._has_state:
                raise ValueError("momentum > 0 needs a momentum_buffer")
            nesterov = self._nesterov
            first = opt.first_step

        if self._loss == "ce":
            bad, loss = self._kernel(
                x, y, weight, eps, self._ops, self._opts, self._table, table, self._first_affine,
                self._col_acc, row_loss, row_scale, ignore, reduction == "sum",
                self._opt_kind, has_state, nesterov, first, t, hyper, self._scalars)
            if bad >= 0:
                label = np.asarray(y_in).reshape(-1)[bad]
                raise IndexError(
                    f"target {label} (row {bad}) is out of bounds for {self._n_out} classes; "
                    f"valid labels are 0..{self._n_out - 1} or ignore_index={ignore}")
        else:
            _, loss = self._kernel(
                x, y, self._ops, self._opts, self._table, table, self._first_affine,
                self._col_acc, self._loss_o0, reduction == "sum", self._opt_kind, has_state,
                nesterov, first, t, hyper, self._scalars)

        if self._opt_kind == _ADAM:
            opt.t = t
        else:
            opt.first_step = False
        return dt.type(loss)  # exact: the kernel rounded it to the dtype

    def __repr__(self):
        return (f"compile_step({type(self._model).__name__}, {self._criterion!r}, "
                f"{type(self._optimizer).__name__}, dtype={self._dtype})")


def compile_step(model, criterion, optimizer):
    """One training step -- forward, loss, backward, update -- as one compiled call.

    Checks the model, criterion and optimizer once and returns
    ``step(x, y) -> loss``.  Each call does what the layer API does::

        loss = criterion.forward(model.forward(x), y)
        model.backward(criterion.backward(), input_grad=False)
        optimizer.step()

    in a single Numba function: it updates the same ``Parameter.value``
    arrays in place, writes every ``Parameter.grad``, and advances the
    optimizer's own state (Adam's ``t`` and moments, SGD's momentum buffers
    and first-step flag), so compiled and layer-API steps can be mixed
    freely.  The optimizer's hyperparameters (``lr`` ...) are read at every
    call, so learning-rate schedules work.

    Parameters
    ----------
    model : fastdl.layers.Sequential or fastdl.layers.Affine
        A chain of ``Affine`` layers and ``ReLU``, ``LeakyReLU``, ``Tanh``,
        ``Sigmoid``, ``ELU``, ``SiLU`` or ``Softplus`` activations (with
        their options; nested Sequentials are flattened), starting with an
        Affine layer, all of one dtype (float32 or float64).
    criterion : fastdl.losses loss
        ``CrossEntropyLoss`` (class ``weight`` of the model's dtype,
        ``ignore_index``, ``label_smoothing``); ``LinearCrossEntropyLoss``
        (the same options; ``z_loss=0`` and ``softcap=None``), whose
        projection runs as the model's last Affine layer (the step holds
        the batch's logits: at most ``chunk_size`` rows, or as many as fit
        the head's 64 MiB budget; larger batches raise ValueError); ``MSELoss``, ``L1Loss``,
        ``HuberLoss`` (any ``delta``) or ``BCEWithLogitsLoss`` with
        ``weight=None`` and ``pos_weight=None``.  Reduction "mean" or "sum".
    optimizer : fastdl.optim.SGD or fastdl.optim.Adam
        Over exactly ``model.parameters()`` (same objects, same order),
        followed by ``criterion.parameters()`` for a LinearCrossEntropyLoss.

    Returns
    -------
    step : callable
        ``step(x, y) -> loss``: ``x`` (N, D) of the model's dtype (converted
        to C order when needed); ``y`` integer class indices (N,) for
        cross-entropy, or for the other losses an array of the output's
        shape and the model's dtype (BCE: target probabilities).  Returns
        the loss as the criterion returns it, a NumPy scalar of the model's
        dtype (``np.float32``/``np.float64``), after the update.

    Raises
    ------
    TypeError
        An unsupported layer, criterion or optimizer type (the message says
        which; the layer API still works for it), or mixed dtypes.
        ``step`` raises it for ``x``/``y`` of the wrong dtype.
    ValueError
        Unsupported options (BCE's ``weight``/``pos_weight``, reduction
        "none"), class weights of the wrong shape, an activation or
        Huber option its functional rejects (a non-finite ``alpha``, a zero
        ``beta``, ``delta <= 0`` ...), an optimizer over other parameters,
        shared layers or parameters, inconsistent layer sizes.  ``step``
        raises it for ``x`` or ``y`` of the wrong shape and for an empty
        batch.
    IndexError
        Raised by ``step`` for a class index outside ``[0, C)`` that is not
        ``ignore_index``, naming the label and its row; nothing is updated.
    ImportError
        Numba is missing, or SciPy is missing where NumPy's BLAS cannot be
        called directly (Numba's ``np.dot`` calls SciPy's BLAS).

    Notes
    -----
    The numerics are those of the Numba backend's kernels (stable
    log-sum-exp cross-entropy with float64 sums, overflow-free sigmoid and
    tanh derivatives, ReLU derivative 0 at 0, softplus's ``threshold``
    rule, the pointwise losses summed in float64 and "mean" dividing by the
    element count, the optimizers computed in the parameters' dtype); bias
    gradients are summed in float64.  Results agree
    with the layer API to rounding.

    Buffers for activations and gradients are allocated per batch size on
    first use (a few sizes are kept, e.g. the batch size and a last partial
    batch); a steady-state step allocates nothing.  Apart from the GEMMs
    the step runs on one thread (at batch 64 a parallel region costs more
    than it saves).  The GEMMs use NumPy's own BLAS when it can be called
    directly (NumPy's wheels), so its thread count is the one NumPy uses
    (threadpoolctl); otherwise they go through Numba's ``np.dot`` to
    SciPy's BLAS, a separate library that ``threadpool_limits`` limits only
    when it is already loaded (``compile_step`` loads it).
    ``fastdl._compiled_step.gemm_blas`` says which ("numpy" or "scipy").

    The model's structure and activation options are read once; parameter
    arrays replaced later are picked up (checked by identity at each call),
    and the criterion's reduction and options are read at each call.
    A step object is not thread-safe, like the layers it replaces.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl import layers, losses, optim
    >>> from fastdl._compiled_step import compile_step
    >>> net = layers.Sequential(layers.Affine(4, 8, rng=0), layers.ReLU(),
    ...                         layers.Affine(8, 3, rng=1))
    >>> opt = optim.SGD(net.parameters(), lr=0.1)
    >>> step = compile_step(net, losses.CrossEntropyLoss(), opt)
    >>> x = np.ones((2, 4), np.float32)
    >>> loss = step(x, np.array([0, 2]))
    >>> bool(loss > 0), net[0].W.grad.shape
    (True, (8, 4))
    """
    from . import layers as layers_mod
    from . import losses as losses_mod
    from . import optim as optim_mod

    return _Step(model, criterion, optimizer, layers_mod, losses_mod, optim_mod)
