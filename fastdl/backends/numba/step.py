"""The compiled training step of :func:`fastdl.compile_step`, on the Numba backend.

:mod:`fastdl._compiled_step` reads a model, a criterion and an optimizer of
the layer API into the tables below; this module holds the Numba code that
runs a whole step over them, made of this backend's own kernels.

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
import threading
import types as _pytypes
from pathlib import Path

import numpy as np

from .._blas import find_numpy_cblas as _find_numpy_cblas

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
_k_cross_entropy = _k_sgd = _k_adam = _k_adam_scalars = None
_k_bias_add = _k_column_sums = None
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
                _k_bias_add(out, _view1(params[p, _B], h, x))
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
                # db = dout.sum(0), accumulated in float64 (the backend's kernel).
                acc = col_acc[:h]
                acc[:] = 0.0
                _k_column_sums(dout, _view1(params[p, _DB], h, x), acc)
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
        sc = _k_adam_scalars(hyper[0], hyper[1], hyper[2], hyper[3], hyper[4],
                             1.0 - hyper[1] ** np.float64(t), 1.0 - hyper[2] ** np.float64(t))
        for i in range(7):
            scalars[i] = sc[i]
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


def _ce_step_body(x, y, weight, label_smoothing, ops, opts, params, bufs, first_affine,
                  col_acc, row_loss, row_scale, ignore_index, sum_reduction, opt_kind,
                  has_state, nesterov, first, t, hyper, scalars):
    """Cross-entropy training step; returns (bad row or -1, loss).

    ``weight`` is the class weights (C,) of the model's dtype, or None.
    Every label is checked before anything is written: nothing below
    indexes with an unchecked label (Numba does not bounds-check).
    """
    n = x.shape[0]
    last = ops.shape[0] - 1
    c = ops[last, _N_OUT]
    # "mean" divides by the summed weight of the rows not ignored (their
    # count without weights), as cross_entropy does.
    denom = 0.0
    for i in range(n):
        label = y[i]
        if label != ignore_index:
            if label < 0 or label >= c:
                return i, 0.0
            if weight is None:
                denom += 1.0
            else:
                denom += np.float64(weight[label])
    _forward(x, ops, opts, params, bufs)
    logits = _view2(bufs[last, _OUT], n, c, x)
    dlogits = _view2(bufs[last, _DOUT], n, c, x)
    # All rows ignored gives 1/0 = inf here (NumPy error model), harmless
    # since every row's gradient is then 0, and a 0/0 = NaN loss, as
    # cross_entropy_with_grad gives.
    scale = 1.0 if sum_reduction else 1.0 / denom
    for i in range(n):
        row_scale[i] = scale
    _k_cross_entropy(logits, y, weight, ignore_index, label_smoothing, row_scale,
                     row_loss, dlogits)
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    loss = total if sum_reduction else total / denom
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

        from . import _jit as nk
        from . import elementwise as ne
        from . import optim as no
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
        _k_bias_add=nk.bias_add, _k_column_sums=nk.column_sums,
    )
    g["_k_adam_scalars"] = jit(no.adam_scalars, inline="always")
    g["_forward"] = jit(_forward_body)
    g["_backward"] = jit(_backward_body)
    g["_update"] = jit(_update_body)
    _KERNELS["ce"] = jit(_ce_step_body)
    _KERNELS["_jit"] = jit
    _KERNELS["_ne"] = ne
