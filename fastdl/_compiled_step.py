"""One compiled call per training step: :func:`compile_step`.

The layer API spends most of a small network's step in Python: the digits
MLP (64 -> 128 -> ReLU -> 10, batch 64, float32, 1 thread) takes about
190 us per step through ``Sequential``/``CrossEntropyLoss``/``Adam``, of
which the five GEMMs are 45 us and the rest is the overhead of a dozen
public calls.  :func:`compile_step` checks a model, a criterion and an
optimizer once and returns ``step(x, y)``, which runs forward, loss,
backward and the optimizer update in a single Numba call, on the very same
parameter, gradient and optimizer-state arrays the layer API uses.

How the compiled step sees the arrays
-------------------------------------
The network's arrays (parameters, gradients, optimizer state, activation
buffers) reach the compiled code as two int64 tables of addresses plus a
table describing the layers, and the code makes array views over them
(``numba.carray``).  Passed as tuples of arrays instead, every depth,
optimizer variant and bias pattern would be a new Numba type signature,
compiled separately (seconds each) and unboxed array by array on every
call; with the tables there is one compiled function per dtype and loss
(the pointwise losses share one step body, copied per loss on first use
so that a step compiles only its own loss kernel).
The Python side keeps a reference to every array it lists, so no address
outlives its array, and before each call it checks (by identity) that the
parameters, gradients and optimizer state are still the arrays it listed.

Everything numerical is done by the Numba backend's own kernels (their
serial dispatchers): the activations and their backward passes, the fused
cross-entropy, the pointwise losses' fused ``<loss>_with_grad`` (loss and
gradient in one pass), and the SGD/Adam updates, so the compiled step
computes what ``use_backend("numba")`` computes, GEMMs aside.

The GEMMs call NumPy's own BLAS when it can be found (NumPy's wheels:
scipy-openblas64, see :func:`_find_numpy_cblas`), else Numba's ``np.dot``,
which calls SciPy's BLAS (``scipy.linalg.cython_blas``).  Measured on the
digits MLP (float32, 1 thread, this 2-core AVX2 machine): the five GEMMs
take 40 us per step through NumPy's OpenBLAS 0.3.31 and 49 us through
SciPy's OpenBLAS 0.3.30 (``a.T @ b`` of (64, 10) and (64, 128): 5.2 us
against 7.4 us); the whole step 56 us against 69 us.  NumPy's BLAS is also
the library a user already limits with threadpoolctl for NumPy.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import operator
import threading
import types as _pytypes
from pathlib import Path

import numpy as np

from ._optim_functional import _adam_hyperparameters, _sgd_hyperparameters

__all__ = ["compile_step"]

# Operation codes of the layer table (column _KIND).
_AFFINE = 0
_RELU = 1
_LEAKY_RELU = 2
_TANH = 3
_SIGMOID = 4
_ELU = 5
_SILU = 6
_SOFTPLUS = 7

# The activations compile_step runs: layer class name -> (operation code,
# the op's name in the op table).  The op table's options of each, in their
# order there, become the layer's two floats o0, o1 (columns of ``opts``),
# which the Numba kernels take in that order.
_ACTIVATIONS = {"ReLU": (_RELU, "relu"), "LeakyReLU": (_LEAKY_RELU, "leaky_relu"),
                "Tanh": (_TANH, "tanh"), "Sigmoid": (_SIGMOID, "sigmoid"),
                "ELU": (_ELU, "elu"), "SiLU": (_SILU, "silu"),
                "Softplus": (_SOFTPLUS, "softplus")}

# The pointwise losses compile_step runs: criterion class name -> the op's
# name in the op table (its fused kernel is ``<name>_with_grad``).
_POINTWISE_LOSSES = {"MSELoss": "mse_loss", "L1Loss": "l1_loss", "HuberLoss": "huber_loss",
                     "BCEWithLogitsLoss": "binary_cross_entropy_with_logits"}

# Columns of the layer table ``ops`` (one row per layer, int64).
_KIND, _N_IN, _N_OUT, _HAS_BIAS, _PARAM_ROW = range(5)
_OPS_COLS = 5

# Columns of the parameter table (one row per Affine layer, int64):
# addresses of W, b, dW, db, the first and second optimizer state of W and
# of b (Adam's m and v; SGD's momentum buffer and 0), then the sizes of W
# and b.  Absent arrays have address 0.
_W, _B, _DW, _DB, _S1W, _S1B, _S2W, _S2B, _W_SIZE, _B_SIZE = range(10)
_PARAM_COLS = 10

# Columns of the batch table (one row per layer, int64): addresses of the
# layer's output and of the gradient with respect to that output.
_OUT, _DOUT = range(2)

# CBLAS enumerators (cblas.h).
_ROW_MAJOR = 101
_NO_TRANS = 111
_TRANS = 112

# Symbols under which NumPy's CBLAS GEMMs are made known to Numba's linker.
_SGEMM_SYMBOL = "fastdl_numpy_cblas_sgemm"
_DGEMM_SYMBOL = "fastdl_numpy_cblas_dgemm"

# Optimizer codes.
_SGD = 0
_ADAM = 1

#: Batch sizes whose buffers are kept at once (the training batch size and
#: a last partial batch, plus room for an evaluation size or two).
_MAX_BATCH_SIZES = 4


# ---------------------------------------------------------------------------
# Kernel bodies.  Plain Python until _kernels() compiles them; the names
# they call are module globals that _kernels() fills in (None until then):
# the compiled helpers below and the Numba backend's serial kernels (_k_*).
# ---------------------------------------------------------------------------

numba = None  # the module, once _kernels() has imported it
_pointer = _cblas_gemm = _view1 = _view2 = None
_gemm_nt = _gemm_tn = _gemm_nn = _forward = _backward = _update = None
_k_relu = _k_relu_backward = _k_leaky_relu = _k_leaky_relu_backward = None
_k_tanh = _k_tanh_backward = _k_sigmoid = _k_sigmoid_backward = None
_k_elu = _k_elu_backward = _k_silu = _k_silu_backward = None
_k_softplus = _k_softplus_backward = None
_k_cross_entropy = _k_sgd = _k_adam = None
# The pointwise loss's fused kernel: bound per loss in the globals of that
# loss's copy of _pointwise_step_body (see _pointwise_kernel).
_k_loss_with_grad = None

def _view1_body(address, size, like):
    """A 1-D view of ``size`` elements of ``like``'s dtype at ``address``."""
    return numba.carray(_pointer(address, like), (size,))


def _view2_body(address, rows, cols, like):
    """A C-ordered (rows, cols) view of ``like``'s dtype at ``address``."""
    return numba.carray(_pointer(address, like), (rows, cols))


def _dot_nt_body(a, b, out):
    """out = a @ b.T with Numba's np.dot (SciPy's BLAS)."""
    np.dot(a, b.T, out)


def _dot_tn_body(a, b, out):
    """out = a.T @ b with Numba's np.dot (SciPy's BLAS)."""
    np.dot(a.T, b, out)


def _dot_nn_body(a, b, out):
    """out = a @ b with Numba's np.dot (SciPy's BLAS)."""
    np.dot(a, b, out)


def _cblas_nt_body(a, b, out):
    """out = a @ b.T with NumPy's own CBLAS (row-major; all C-contiguous)."""
    _cblas_gemm(_NO_TRANS, _TRANS, out.shape[0], out.shape[1], a.shape[1],
                a, a.shape[1], b, b.shape[1], out, out.shape[1])


def _cblas_tn_body(a, b, out):
    """out = a.T @ b with NumPy's own CBLAS."""
    _cblas_gemm(_TRANS, _NO_TRANS, out.shape[0], out.shape[1], a.shape[0],
                a, a.shape[1], b, b.shape[1], out, out.shape[1])


def _cblas_nn_body(a, b, out):
    """out = a @ b with NumPy's own CBLAS."""
    _cblas_gemm(_NO_TRANS, _NO_TRANS, out.shape[0], out.shape[1], a.shape[1],
                a, a.shape[1], b, b.shape[1], out, out.shape[1])


def _forward_body(x, ops, opts, params, bufs):
    """Every layer's output into its buffer (row k of ``bufs``)."""
    n = x.shape[0]
    x_address = np.int64(x.ctypes.data)
    for k in range(ops.shape[0]):
        d = ops[k, _N_IN]
        h = ops[k, _N_OUT]
        src = _view2(x_address if k == 0 else bufs[k - 1, _OUT], n, d, x)
        out = _view2(bufs[k, _OUT], n, h, x)
        kind = ops[k, _KIND]
        if kind == _AFFINE:
            p = ops[k, _PARAM_ROW]
            W = _view2(params[p, _W], h, d, x)
            _gemm_nt(src, W, out)
            if ops[k, _HAS_BIAS]:
                b = _view1(params[p, _B], h, x)
                for i in range(n):
                    row = out[i]
                    for j in range(h):
                        row[j] += b[j]
        else:
            src1 = src.reshape(n * d)
            out1 = out.reshape(n * h)
            o0 = opts[k, 0]
            o1 = opts[k, 1]
            if kind == _RELU:
                _k_relu(src1, o0, o1, out1)
            elif kind == _LEAKY_RELU:
                _k_leaky_relu(src1, o0, o1, out1)
            elif kind == _TANH:
                _k_tanh(src1, o0, o1, out1)
            elif kind == _SIGMOID:
                _k_sigmoid(src1, o0, o1, out1)
            elif kind == _ELU:
                _k_elu(src1, o0, o1, out1)
            elif kind == _SILU:
                _k_silu(src1, o0, o1, out1)
            else:
                _k_softplus(src1, o0, o1, out1)


def _backward_body(x, ops, opts, params, bufs, first_affine, col_acc):
    """Parameter gradients (into each Parameter's .grad) from the top gradient.

    Expects ``bufs[K-1, _DOUT]`` to hold d loss / d network output.  Input
    gradients are computed only above the first Affine layer: below it
    nothing has parameters (the layer API's ``input_grad=False``).
    """
    n = x.shape[0]
    x_address = np.int64(x.ctypes.data)
    for k in range(ops.shape[0] - 1, -1, -1):
        d = ops[k, _N_IN]
        h = ops[k, _N_OUT]
        dout = _view2(bufs[k, _DOUT], n, h, x)
        src = _view2(x_address if k == 0 else bufs[k - 1, _OUT], n, d, x)
        need_dsrc = k > first_affine
        kind = ops[k, _KIND]
        if kind == _AFFINE:
            p = ops[k, _PARAM_ROW]
            W = _view2(params[p, _W], h, d, x)
            dW = _view2(params[p, _DW], h, d, x)
            _gemm_tn(dout, src, dW)
            if ops[k, _HAS_BIAS]:
                # db = dout.sum(0), accumulated in float64 like the backends.
                db = _view1(params[p, _DB], h, x)
                for j in range(h):
                    col_acc[j] = 0.0
                for i in range(n):
                    row = dout[i]
                    for j in range(h):
                        col_acc[j] += row[j]
                for j in range(h):
                    db[j] = col_acc[j]
            if need_dsrc:
                dsrc = _view2(bufs[k - 1, _DOUT], n, d, x)
                _gemm_nn(dout, W, dsrc)
        elif need_dsrc:
            dout1 = dout.reshape(n * h)
            src1 = src.reshape(n * d)
            dsrc1 = _view1(bufs[k - 1, _DOUT], n * d, x)
            o0 = opts[k, 0]
            o1 = opts[k, 1]
            if kind == _RELU:
                _k_relu_backward(dout1, src1, o0, o1, dsrc1)
            elif kind == _LEAKY_RELU:
                _k_leaky_relu_backward(dout1, src1, o0, o1, dsrc1)
            elif kind == _TANH:
                _k_tanh_backward(dout1, src1, o0, o1, dsrc1)
            elif kind == _SIGMOID:
                _k_sigmoid_backward(dout1, src1, o0, o1, dsrc1)
            elif kind == _ELU:
                _k_elu_backward(dout1, src1, o0, o1, dsrc1)
            elif kind == _SILU:
                _k_silu_backward(dout1, src1, o0, o1, dsrc1)
            else:
                _k_softplus_backward(dout1, src1, o0, o1, dsrc1)


def _update_body(x, params, opt_kind, has_state, nesterov, first, t, hyper, scalars):
    """One SGD or Adam update of every parameter, in its dtype.

    ``hyper`` (float64): SGD ``lr, momentum, weight_decay``; Adam ``lr,
    beta1, beta2, eps, weight_decay`` with ``t`` the step number.  The
    scalars the kernels take are rounded to the parameters' dtype through
    ``scalars`` (an array of that dtype), as the Numba backend's optimizer
    functions pass them, so the updates compute in that dtype.
    """
    if opt_kind == _ADAM:
        # beta ** float(t): libm's pow, what Python's float ** int computes.
        bc1 = 1.0 - hyper[1] ** np.float64(t)
        bc2 = 1.0 - hyper[2] ** np.float64(t)
        scalars[0] = hyper[0] / bc1
        scalars[1] = 1.0 - hyper[1]
        scalars[2] = hyper[2]
        scalars[3] = 1.0 - hyper[2]
        scalars[4] = hyper[3]
        scalars[5] = hyper[4]
        scalars[6] = 1.0 / math.sqrt(bc2)
    else:
        for i in range(3):
            scalars[i] = hyper[i]
    for p in range(params.shape[0]):
        for which in range(2):
            if which == 0:
                size = params[p, _W_SIZE]
                w_address = params[p, _W]
                g_address = params[p, _DW]
                s1_address = params[p, _S1W]
                s2_address = params[p, _S2W]
            else:
                size = params[p, _B_SIZE]
                w_address = params[p, _B]
                g_address = params[p, _DB]
                s1_address = params[p, _S1B]
                s2_address = params[p, _S2B]
            if size == 0:
                continue
            w = _view1(w_address, size, x)
            g = _view1(g_address, size, x)
            if opt_kind == _ADAM:
                _k_adam(w, g, _view1(s1_address, size, x), _view1(s2_address, size, x),
                        scalars[0], scalars[1], scalars[2], scalars[3], scalars[4],
                        scalars[5], scalars[6])
            elif has_state:
                _k_sgd(w, g, _view1(s1_address, size, x), scalars[0], scalars[1],
                       nesterov, scalars[2], first)
            else:
                _k_sgd(w, g, None, scalars[0], scalars[1], nesterov, scalars[2], first)


def _ce_step_body(x, y, ops, opts, params, bufs, first_affine, col_acc, row_loss,
                  row_scale, ignore_index, sum_reduction, opt_kind, has_state, nesterov,
                  first, t, hyper, scalars):
    """Cross-entropy training step; returns (bad row or -1, loss).

    Every label is checked before anything is written: nothing below
    indexes with an unchecked label (Numba does not bounds-check).
    """
    n = x.shape[0]
    last = ops.shape[0] - 1
    c = ops[last, _N_OUT]
    count = 0
    for i in range(n):
        label = y[i]
        if label != ignore_index:
            if label < 0 or label >= c:
                return i, 0.0
            count += 1
    _forward(x, ops, opts, params, bufs)
    logits = _view2(bufs[last, _OUT], n, c, x)
    dlogits = _view2(bufs[last, _DOUT], n, c, x)
    # "mean" divides by the rows not ignored; all ignored gives 1/0 = inf
    # here (NumPy error model), harmless since every row's gradient is then
    # 0, and a 0/0 = NaN loss, as cross_entropy_with_grad gives.
    scale = 1.0 if sum_reduction else 1.0 / count
    for i in range(n):
        row_scale[i] = scale
    _k_cross_entropy(logits, y, None, ignore_index, 0.0, row_scale, row_loss, dlogits)
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    loss = total if sum_reduction else total / count
    _backward(x, ops, opts, params, bufs, first_affine, col_acc)
    _update(x, params, opt_kind, has_state, nesterov, first, t, hyper, scalars)
    scalars[scalars.shape[0] - 1] = loss  # rounded to the model's dtype
    return -1, np.float64(scalars[scalars.shape[0] - 1])


def _pointwise_step_body(x, y, ops, opts, params, bufs, first_affine, col_acc, loss_o0,
                         sum_reduction, opt_kind, has_state, nesterov, first, t, hyper,
                         scalars):
    """Pointwise-loss training step (the loss of _k_loss_with_grad); returns (-1, loss).

    ``loss_o0`` is the loss's option (Huber's delta; 0 for the others).
    One pass of the fused kernel gives the loss sum and d loss / d output.
    """
    n = x.shape[0]
    last = ops.shape[0] - 1
    c = ops[last, _N_OUT]
    _forward(x, ops, opts, params, bufs)
    out = _view1(bufs[last, _OUT], n * c, x)
    dout = _view1(bufs[last, _DOUT], n * c, x)
    target = y.reshape(n * c)
    # "mean" divides by the element count, as the functional losses do
    # (the sum in float64, then one division).
    denom = np.float64(n * c)
    scale = 1.0 if sum_reduction else 1.0 / denom
    total = _k_loss_with_grad(out, target, None, None, loss_o0, scale, None, dout)
    loss = total if sum_reduction else total / denom
    _backward(x, ops, opts, params, bufs, first_affine, col_acc)
    _update(x, params, opt_kind, has_state, nesterov, first, t, hyper, scalars)
    scalars[scalars.shape[0] - 1] = loss
    return -1, np.float64(scalars[scalars.shape[0] - 1])


_INT64 = np.dtype(np.int64)
_compile_lock = threading.Lock()
_KERNELS = {}


def _source_tag():
    """A short hash of this file: part of the compiled functions' names.

    Numba's cache files are named after a function's qualified name and
    line; fastdl's cache locator validates entries against a stamp of the
    backend sources and ``_config.py``, which does not cover this file.  The
    tag in the name gives every version of this file its own entries, so an
    edit never loads machine code compiled from the old source.
    """
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def _find_numpy_cblas():
    """Addresses of NumPy's own ``cblas_sgemm``/``cblas_dgemm``, or None.

    NumPy >= 2 wheels bundle OpenBLAS as scipy-openblas64 (64-bit integers,
    symbols ``scipy_cblas_?gemm64_``) in ``numpy.libs``; loading that file
    again returns the instance NumPy already uses, so its thread settings
    (threadpoolctl) are NumPy's.  Anything else (another BLAS, another
    layout of the install) returns None and the step uses Numba's np.dot.
    """
    import ctypes

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # noqa: BLE001 - an older NumPy or an unusual build
        return None
    if blas.get("name") != "scipy-openblas" or \
            "USE64BITINT" not in str(blas.get("openblas configuration", "")):
        return None
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    found = sorted(libdir.glob("libscipy_openblas64_*"))
    if len(found) != 1:
        return None
    try:
        lib = ctypes.CDLL(str(found[0]))
        sgemm = lib.scipy_cblas_sgemm64_
        dgemm = lib.scipy_cblas_dgemm64_
    except (OSError, AttributeError):
        return None
    return (ctypes.cast(sgemm, ctypes.c_void_p).value,
            ctypes.cast(dgemm, ctypes.c_void_p).value)


#: Which BLAS the compiled GEMMs call: "numpy" or "scipy", set by _kernels().
gemm_blas = None


def _kernels(loss):
    """The compiled step function for ``loss``: "ce" or a pointwise loss's op name.

    The first call imports Numba (and SciPy, when NumPy's BLAS cannot be
    called directly), so ``import fastdl`` stays light, and sets up the
    helpers every step shares.  Nothing compiles here: the dispatchers
    compile, or load from Numba's cache, on their first call for a dtype.
    """
    with _compile_lock:
        if not _KERNELS:
            _setup_kernels()
        kernel = _KERNELS.get(loss)
        if kernel is None:
            kernel = _KERNELS[loss] = _pointwise_kernel(loss)
        return kernel


def _pointwise_kernel(name):
    """``_pointwise_step_body`` bound to the fused kernel of the pointwise loss ``name``.

    One copy of the body per loss, made on first use, whose globals hold
    that loss's ``<name>_with_grad`` as ``_k_loss_with_grad`` (globals, not
    a closure, so the cache entry loads in the next process; the backend
    binds its loops the same way).  A step therefore compiles only its own
    loss kernel, not every loss's as one body branching on a loss code
    would; the layer and update code is shared.
    """
    ne = _KERNELS["_ne"]
    env = dict(globals(), _k_loss_with_grad=ne._K[name + "_with_grad"][0])
    body = _pytypes.FunctionType(_pointwise_step_body.__code__, env,
                                 f"_pointwise_step_body_{name}")
    body.__qualname__ = body.__name__
    body.__doc__ = _pointwise_step_body.__doc__
    return _KERNELS["_jit"](body)


def _setup_kernels():
    """Import Numba and fill in the module globals the kernel bodies call."""
    global gemm_blas
    cblas = _find_numpy_cblas()
    if cblas is None:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (Numba's np.dot needs it)
        except ImportError:
            raise ImportError(
                "fastdl.compile_step needs SciPy here: NumPy's BLAS cannot be called "
                "directly, and Numba's np.dot calls BLAS through "
                "scipy.linalg.cython_blas (pip install scipy); the layer API works "
                "without it") from None
    try:
        import numba
        from llvmlite import binding as llvm
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic

        from .backends.numba import _jit as nk
        from .backends.numba import elementwise as ne
        from .backends.numba import optim as no
    except ImportError as exc:
        raise ImportError(f"fastdl.compile_step needs Numba: {exc}") from None

    @intrinsic
    def _pointer(typingctx, address, like):
        """The int64 ``address`` as a pointer to ``like``'s dtype."""
        if not (isinstance(address, types.Integer) and isinstance(like, types.Array)):
            return None
        ptr = types.CPointer(like.dtype)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(ptr))

        return ptr(address, like), codegen

    @intrinsic
    def _cblas_gemm(typingctx, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
        """Row-major ``c = op(a) @ op(b)`` through NumPy's CBLAS (64-bit ints)."""
        if not (isinstance(c, types.Array) and c.dtype in (types.float32, types.float64)):
            return None
        symbol = _SGEMM_SYMBOL if c.dtype == types.float32 else _DGEMM_SYMBOL

        def codegen(context, builder, signature, args):
            real = context.get_value_type(c.dtype)
            i32 = ir.IntType(32)
            i64 = ir.IntType(64)
            fnty = ir.FunctionType(ir.VoidType(), [
                i32, i32, i32, i64, i64, i64, real, real.as_pointer(), i64,
                real.as_pointer(), i64, real, real.as_pointer(), i64])
            fn = cgutils.get_or_insert_function(builder.module, fnty, symbol)
            ta, tb, mm, nn, kk, av, la, bv, lb, cv, lc = args
            data = [context.make_array(t)(context, builder, v).data
                    for t, v in ((a, av), (b, bv), (c, cv))]
            as_i32 = [builder.trunc(v, i32) for v in (ta, tb)]
            as_i64 = [context.cast(builder, v, t, types.int64)
                      for v, t in ((mm, m), (nn, n), (kk, k), (la, lda), (lb, ldb),
                                   (lc, ldc))]
            builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), as_i32[0], as_i32[1],
                              as_i64[0], as_i64[1], as_i64[2], ir.Constant(real, 1.0),
                              data[0], as_i64[3], data[1], as_i64[4],
                              ir.Constant(real, 0.0), data[2], as_i64[5]])
            return context.get_dummy_value()

        sig = types.void(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)
        return sig, codegen

    options = dict(nk._OPTIONS)
    g = globals()
    g["numba"] = numba
    g["_pointer"] = _pointer
    # The BLAS choice changes the machine code: it is part of the tag.
    tag = f"{_source_tag()}_{'numpy' if cblas is not None else 'scipy'}blas"

    def jit(body, **extra):
        # A copy of the function object carrying the source tag in its
        # qualified name (see _source_tag); same code and globals.
        twin = _pytypes.FunctionType(body.__code__, body.__globals__, body.__name__,
                                     body.__defaults__, body.__closure__)
        twin.__qualname__ = f"{body.__qualname__}_{tag}"
        twin.__doc__ = body.__doc__
        return numba.njit(**options, **extra)(twin)

    g["_view1"] = jit(_view1_body, inline="always")
    g["_view2"] = jit(_view2_body, inline="always")

    if cblas is not None:
        # Known to LLVM's linker by name (as Numba's own helpers are), so
        # machine code loaded from the cache links to it too.
        llvm.add_symbol(_SGEMM_SYMBOL, cblas[0])
        llvm.add_symbol(_DGEMM_SYMBOL, cblas[1])
        g["_cblas_gemm"] = _cblas_gemm
        g["_gemm_nt"] = jit(_cblas_nt_body, inline="always")
        g["_gemm_tn"] = jit(_cblas_tn_body, inline="always")
        g["_gemm_nn"] = jit(_cblas_nn_body, inline="always")
        gemm_blas = "numpy"
    else:
        g["_gemm_nt"] = jit(_dot_nt_body, inline="always")
        g["_gemm_tn"] = jit(_dot_tn_body, inline="always")
        g["_gemm_nn"] = jit(_dot_nn_body, inline="always")
        gemm_blas = "scipy"
    g.update(
        _k_relu=ne._K["relu"][0], _k_relu_backward=ne._K["relu_backward"][0],
        _k_leaky_relu=ne._K["leaky_relu"][0],
        _k_leaky_relu_backward=ne._K["leaky_relu_backward"][0],
        _k_tanh=ne._K["tanh"][0], _k_tanh_backward=ne._K["tanh_backward"][0],
        _k_sigmoid=ne._K["sigmoid"][0], _k_sigmoid_backward=ne._K["sigmoid_backward"][0],
        _k_elu=ne._K["elu"][0], _k_elu_backward=ne._K["elu_backward"][0],
        _k_silu=ne._K["silu"][0], _k_silu_backward=ne._K["silu_backward"][0],
        _k_softplus=ne._K["softplus"][0],
        _k_softplus_backward=ne._K["softplus_backward"][0],
        _k_cross_entropy=nk.cross_entropy_index[0],
        _k_sgd=no._SGD[0], _k_adam=no._ADAM[0],
    )
    g["_forward"] = jit(_forward_body)
    g["_backward"] = jit(_backward_body)
    g["_update"] = jit(_update_body)
    _KERNELS["ce"] = jit(_ce_step_body)
    _KERNELS["_jit"] = jit
    _KERNELS["_ne"] = ne


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

    opts = layer._options
    if name == "leaky_relu":
        return A._finite_float(opts["negative_slope"], "negative_slope"), 0.0
    if name == "elu":
        return A._finite_float(opts["alpha"], "alpha"), 0.0
    if name == "softplus":
        return (A._finite_float(opts["beta"], "beta", nonzero=True),
                A._threshold(opts["threshold"]))
    return 0.0, 0.0


def _layer_table(model, layers_mod):
    """(ops, opts, affines, dtype) for the supported layer chain.

    ``opts`` (float64, one row per layer): the activation's options o0, o1
    in the order of its row in the op table; 0 where unused.
    """
    if type(model) not in (layers_mod.Sequential, layers_mod.Affine):
        raise TypeError(
            f"model must be a fastdl.layers.Sequential or Affine, got {type(model).__name__}")
    chain = _flatten(model, layers_mod)
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
    for cls, name in _POINTWISE_LOSSES.items():
        if type(criterion) is getattr(losses_mod, cls):
            _check_pointwise(criterion, name)
            return name
    raise TypeError(
        f"compile_step does not support the criterion {criterion!r} "
        f"({type(criterion).__name__}); it supports fastdl.losses.CrossEntropyLoss, "
        f"{', '.join(_POINTWISE_LOSSES)} (exact types). The layer API works with every loss")


def _check_pointwise(criterion, name):
    """The pointwise loss's option o0 (Huber's delta, else 0), checked."""
    from . import _activations as A

    opts = criterion._options
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


def _check_ce(criterion):
    if criterion.weight is not None:
        raise ValueError("compile_step supports CrossEntropyLoss without class weights "
                         "(weight=None); use the layer API for weighted losses")
    if criterion.label_smoothing != 0:
        raise ValueError("compile_step supports CrossEntropyLoss with label_smoothing=0; "
                         "use the layer API for label smoothing")
    _check_reduction(criterion)
    try:
        ignore = operator.index(criterion.ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got "
                        f"{criterion.ignore_index!r}") from None
    if not -2**63 <= ignore < 2**63:
        raise ValueError(f"compile_step needs an ignore_index that fits int64, got {ignore}")
    return ignore


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
            "the order of model.parameters()")
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
        self._ops, self._opts, self._affines, self._dtype = _layer_table(model, layers_mod)
        self._loss = _criterion_kind(criterion, losses_mod)
        # A pointwise loss's options, as last checked, and its o0.
        self._loss_options = ()
        self._loss_o0 = 0.0
        if self._loss != "ce":
            self._loss_options = tuple(criterion._options.values())
            self._loss_o0 = _check_pointwise(criterion, self._loss)
        self._params = model.parameters()
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
        opt = self._optimizer
        if self._opt_kind == _ADAM:
            arrays += opt._m
            arrays += opt._v
        else:
            arrays += opt._buf
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
        states = []
        if self._opt_kind == _ADAM:
            states = [(opt._m[i], opt._v[i]) for i in range(n)]
        else:
            states = [(opt._buf[i], None) for i in range(n)]
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

    def _batch(self, n):
        """(address table, row losses, row scales) for batch size ``n``."""
        entry = self._batches.get(n)
        if entry is None:
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
            ignore = crit.ignore_index
            if not (type(ignore) is int and crit.weight is None
                    and crit.label_smoothing == 0):
                ignore = _check_ce(crit)
        else:
            # The loss's options are checked again when they changed (by
            # identity: BCE's weight may be an array).
            options = tuple(crit._options.values())
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
            first = bool(opt._first)

        if self._loss == "ce":
            bad, loss = self._kernel(
                x, y, self._ops, self._opts, self._table, table, self._first_affine,
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
            opt._first = False
        return loss

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
        ``CrossEntropyLoss`` with ``weight=None`` and ``label_smoothing=0``
        (``ignore_index`` is honoured); ``MSELoss``, ``L1Loss``,
        ``HuberLoss`` (any ``delta``) or ``BCEWithLogitsLoss`` with
        ``weight=None`` and ``pos_weight=None``.  Reduction "mean" or "sum".
    optimizer : fastdl.optim.SGD or fastdl.optim.Adam
        Over exactly ``model.parameters()`` (same objects, same order).

    Returns
    -------
    step : callable
        ``step(x, y) -> float``: ``x`` (N, D) of the model's dtype (converted
        to C order when needed); ``y`` integer class indices (N,) for
        cross-entropy, or for the other losses an array of the output's
        shape and the model's dtype (BCE: target probabilities).  Returns
        the loss (rounded to the model's dtype, as the criterion returns
        it), after the update.

    Raises
    ------
    TypeError
        An unsupported layer, criterion or optimizer type (the message says
        which; the layer API still works for it), or mixed dtypes.
        ``step`` raises it for ``x``/``y`` of the wrong dtype.
    ValueError
        Unsupported options (class weights, label smoothing, BCE's
        ``weight``/``pos_weight``, reduction "none"), an activation or
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
    >>> loss > 0, net[0].W.grad.shape
    (True, (8, 4))
    """
    from . import layers as layers_mod
    from . import losses as losses_mod
    from . import optim as optim_mod

    return _Step(model, criterion, optimizer, layers_mod, losses_mod, optim_mod)
