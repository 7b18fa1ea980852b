"""Fused linear + cross-entropy (the LM head) without the (N, V) logits.

``cross_entropy(affine_forward(x, W, b), target)`` for a vocabulary of V
classes holds an (N, V) logits array (and, for training, its gradient): for
N = 8192 tokens and V = 50257 that is 1.5 GiB of float32.  The functions here
walk the batch in row chunks instead.  Per chunk they run the public kernels
(:func:`fastdl.affine_forward` into one reused scratch buffer, then
:func:`fastdl.cross_entropy_with_grad` in place on it) and feed the chunk's
gradient straight into the GEMMs of ``dx``, ``dW`` and ``db``, so the extra
memory is the chunk scratch, whatever N is.

Validation happens once, up front, in :func:`_lce_args` (shapes, dtypes,
labels, options, ``out``), before any GEMM runs; the per-chunk work trusts it.
"""

from __future__ import annotations

import ctypes
import math
import operator

import numpy as np

from ._core import (
    _affine_shapes,
    affine_forward,
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_with_grad,
    logsumexp,
    softmax,
)
from ._validate import FLOAT_DTYPES, check_out, check_reduction, float_array, same_dtype

__all__ = [
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "linear_cross_entropy_backward",
]

#: Default budget of the chunk scratch, in bytes.
DEFAULT_MAX_MEMORY = 64 << 20

#: Fewest rows a chunk gets under the default budget (when N has them): below
#: a few hundred rows the GEMMs' K dimension (dW) and M dimension (logits, dx)
#: get too thin for BLAS to reach its throughput.  A vocabulary so large that
#: 256 rows exceed the default budget (over 65,536 float32 classes) gets 256
#: rows anyway; an explicit ``max_memory`` or ``chunk_size`` is always obeyed.
MIN_CHUNK_ROWS = 256

#: Bytes of per-row bookkeeping inside the kernels besides the (rows, V)
#: buffers: float64 losses and scales, int64 labels, the row's lse.
_ROW_OVERHEAD = 64


# ---------------------------------------------------------------------------
# GEMM with accumulation: C = alpha * op(A) @ op(B) + beta * C
# ---------------------------------------------------------------------------

# CBLAS enumerators (cblas.h).
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

#: Which BLAS the accumulating GEMMs call, set on first use: "numpy-cblas"
#: (NumPy's own OpenBLAS through its CBLAS entry, accumulating in place) or
#: "numpy-matmul" (np.matmul into row blocks of a small temporary, then an
#: add: one more pass over dW per chunk).
gemm_blas = None
_cblas = None


def _load_cblas():
    """{dtype: cblas_?gemm callable} of NumPy's own BLAS, or {} when unreachable.

    ``dW += g.T @ x_chunk`` in NumPy needs a (V, H) temporary per chunk (np.matmul
    cannot accumulate); BLAS's ``beta = 1`` accumulates in place.  NumPy's
    wheels ship OpenBLAS with a CBLAS entry; :func:`fastdl._compiled_step.
    _find_numpy_cblas` finds it (the same library instance NumPy uses, so its
    thread settings apply).  ctypes releases the GIL during the call.
    """
    global _cblas, gemm_blas
    if _cblas is not None:
        return _cblas
    found = None
    try:
        from ._compiled_step import _find_numpy_cblas

        found = _find_numpy_cblas()
    except Exception:  # noqa: BLE001 - any failure means: use np.matmul
        found = None
    table = {}
    if found is not None:
        i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
        for dtype, real, address in ((np.dtype(np.float32), ctypes.c_float, found[0]),
                                     (np.dtype(np.float64), ctypes.c_double, found[1])):
            proto = ctypes.CFUNCTYPE(None, i32, i32, i32, i64, i64, i64, real, ptr, i64,
                                     ptr, i64, real, ptr, i64)
            table[dtype] = proto(address)
    _cblas = table
    gemm_blas = "numpy-cblas" if table else "numpy-matmul"
    return table


def _blas_matrix(a):
    """The leading dimension of ``a`` for row-major BLAS, or None if unusable."""
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        return None
    item = a.itemsize
    s0, s1 = a.strides
    if s1 != item or s0 % item or s0 // item < a.shape[1]:
        return None
    return s0 // item


def _gemm(a, trans_a, b, trans_b, c, alpha, beta):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place (beta 0 or 1).

    All of one float dtype, 2-D with unit column stride (C-contiguous arrays
    and their row slices).  ``beta = 0`` ignores c's old contents.
    """
    fn = _load_cblas().get(c.dtype)
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    lds = (_blas_matrix(a), _blas_matrix(b), _blas_matrix(c))
    if fn is not None and k > 0 and None not in lds:
        fn(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
           m, n, k, alpha, a.ctypes.data, lds[0], b.ctypes.data, lds[1],
           beta, c.ctypes.data, lds[2])
        return
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    if beta == 0:
        np.matmul(opa, opb, out=c)
        if alpha != 1:
            c *= alpha
        return
    # Accumulate through a temporary of at most 4 MiB (row blocks of c).
    block = max(1, (4 << 20) // max(1, n * c.itemsize))
    tmp = np.empty((min(block, m), n), c.dtype)
    for r0 in range(0, m, block):
        r1 = min(m, r0 + block)
        t = tmp[:r1 - r0]
        np.matmul(opa[r0:r1], opb, out=t)
        if alpha != 1:
            t *= alpha
        c[r0:r1] += t


# ---------------------------------------------------------------------------
# validation, once, up front
# ---------------------------------------------------------------------------

class _LCEArgs:
    """Validated arguments, shaped for the chunk loop."""

    __slots__ = ("x", "W", "b", "weight", "dtype", "squeeze", "n", "n_classes", "kind",
                 "rows", "target", "reduction", "eps", "z_loss", "softcap", "denom",
                 "count", "chunk_size", "max_memory", "go", "go_rows", "out", "accumulate",
                 "x_shape")


_NO_GRAD_OUTPUT = object()


def _positive_int(value, name):
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


def _lce_args(x, W, target, b, weight, ignore_index, reduction, label_smoothing, z_loss,
              softcap, chunk_size, max_memory, grad_output=_NO_GRAD_OUTPUT, out=None,
              accumulate=False, want_out=False):
    """Check every argument (dtypes, shapes, labels, options, ``out``).

    Raises TypeError, ValueError or IndexError as documented by the public
    functions; nothing after this raises for a bad argument.
    """
    a = _LCEArgs()
    x = float_array(x, "x")
    W = float_array(W, "W")
    named = [("x", x), ("W", W)]
    if b is not None:
        b = float_array(b, "b")
        named.append(("b", b))
    if weight is not None:
        weight = float_array(weight, "weight")
        named.append(("weight", weight))
    dtype = same_dtype(*named)
    _affine_shapes(x, W)
    V, H = W.shape
    if b is not None and b.shape != (V,):
        raise ValueError(f"b has shape {b.shape}; W has shape {W.shape}, so b must be ({V},)")
    if weight is not None and weight.shape != (V,):
        raise ValueError(f"weight has shape {weight.shape}; W {W.shape} has {V} classes, "
                         f"so weight must be ({V},)")
    a.dtype = dtype
    a.squeeze = x.ndim == 1
    a.x_shape = x.shape
    a.x = x.reshape(1, H) if a.squeeze else x
    a.n = N = a.x.shape[0]
    a.n_classes = V
    # W and b are read once per chunk: one C-contiguous copy up front (none
    # when they already are), so every chunk's affine_forward takes its fast path.
    a.W = np.ascontiguousarray(W)
    a.b = None if b is None else np.ascontiguousarray(b)
    a.weight = None if weight is None else np.ascontiguousarray(weight)

    a.reduction = check_reduction(reduction)
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    a.eps = eps
    z = float(z_loss)
    if not (math.isfinite(z) and z >= 0.0):
        raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss!r}")
    a.z_loss = z
    if softcap is not None:
        cap = float(softcap)
        if not (math.isfinite(cap) and cap > 0.0):
            raise ValueError(f"softcap must be None or a finite number > 0, got {softcap!r}")
        softcap = cap
    a.softcap = softcap
    if chunk_size is not None and max_memory is not None:
        raise ValueError("give chunk_size (rows) or max_memory (bytes), not both")
    a.chunk_size = None if chunk_size is None else _positive_int(chunk_size, "chunk_size")
    a.max_memory = None if max_memory is None else _positive_int(max_memory, "max_memory")

    logits_shape = (V,) if a.squeeze else (N, V)
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        a.kind = "index"
        expected = () if a.squeeze else (N,)
        if t.shape != expected:
            raise ValueError(f"class-index target has shape {t.shape}; x {x.shape} and "
                             f"W {W.shape} need {expected}")
        t = t.reshape(N)
        # The range check in the target's own dtype (a uint64 could wrap in int64).
        valid = t != ignore_index
        bad = valid & ((t < 0) | (t >= V))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise IndexError(
                f"target {t[first]} (row {first}) is out of bounds for {V} classes; "
                f"valid labels are 0..{V - 1} or ignore_index={ignore_index}")
        # Ignored rows cost nothing: the loop only sees the others, compacted.
        if valid.all():
            a.rows = None
            a.target = np.ascontiguousarray(t, dtype=np.int64)
        else:
            a.rows = np.flatnonzero(valid)
            a.target = t[a.rows].astype(np.int64)
        a.count = a.target.shape[0]
        if a.weight is None:
            a.denom = float(a.count)
        else:
            a.denom = float(np.sum(a.weight[a.target], dtype=np.float64))
    elif t.dtype.kind == "f":
        a.kind = "prob"
        if t.shape != logits_shape:
            if a.squeeze:
                indices, example = "an integer", "int(target)"
            else:
                indices, example = f"an integer array of shape ({N},)", "target.astype(np.int64)"
            raise ValueError(
                f"target is a float array of shape {t.shape}; float targets are read as "
                f"class probabilities, which must have the logits' shape {logits_shape}; "
                f"class indices must be {indices} (e.g. {example})")
        t = float_array(t, "target")
        same_dtype(("x", x), ("target", t))
        a.rows = None
        a.target = t.reshape(N, V)
        a.count = N
        a.denom = float(N)
    else:
        raise TypeError(f"target has dtype {t.dtype}; use integer class indices or "
                        "float32/float64 probabilities of the logits' shape")

    a.go = 1.0
    a.go_rows = None
    if grad_output is not _NO_GRAD_OUTPUT:
        g = np.asarray(grad_output)
        if g.dtype.kind not in "fiu" or (g.dtype.kind == "f" and g.dtype not in FLOAT_DTYPES):
            raise TypeError(f"grad_output has dtype {g.dtype}; fastdl supports float32 and float64")
        if isinstance(grad_output, (np.ndarray, np.generic)) and g.dtype.kind == "f" \
                and g.dtype != dtype:
            raise TypeError(f"x is {dtype} but grad_output is {g.dtype}; "
                            "inputs of one call must share one float dtype")
        if a.reduction == "none" and not a.squeeze:
            if g.shape not in ((), (N,)):
                raise ValueError(f"grad_output has shape {g.shape}; reduction='none' "
                                 f"needs ({N},) or a scalar")
        elif g.shape != ():
            raise ValueError(f"grad_output has shape {g.shape}; reduction={a.reduction!r} "
                             "needs a scalar")
        if g.shape == ():
            a.go = float(g)
        else:
            rows = g.astype(dtype)
            a.go_rows = rows if a.rows is None else rows[a.rows]

    a.accumulate = bool(accumulate)
    a.out = None
    if want_out:
        a.out = _check_grad_out(out, a, x, W, b)
    return a


def _check_grad_out(out, a, x, W, b):
    """``out`` as a list [dx, dW, db] (entries None where not given)."""
    if out is None:
        if a.accumulate:
            raise ValueError("accumulate=True adds into out=(dx, dW, db): give the buffers")
        return [None, None, None]
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise TypeError("out must be a tuple (dx, dW, db)")
    if (out[2] is None) != (b is None):
        raise ValueError("out's db must be None exactly when b is None")
    outs = list(out)
    shapes = (a.x_shape, W.shape, (W.shape[0],))
    inputs = [x, W] + ([] if b is None else [b])
    for i, (name, o, shape) in enumerate(zip(("dx", "dW", "db"), outs, shapes)):
        if o is None:
            continue
        check_out(o, shape, a.dtype, f"out {name}")
        if any(np.may_share_memory(o, v) for v in inputs):
            raise ValueError(f"out {name} shares memory with an input")
        if any(p is not None and np.may_share_memory(o, p) for p in outs[:i]):
            raise ValueError(f"out {name} shares memory with another out buffer")
    return outs


def _chunk_rows(a, n_buffers, extra_row_bytes):
    """Rows per chunk: ``chunk_size``, else what fits the memory budget."""
    m = a.count
    if m == 0:
        return 0
    if a.chunk_size is not None:
        rows = a.chunk_size
    else:
        row_bytes = (n_buffers * a.n_classes * a.dtype.itemsize + extra_row_bytes
                     + _ROW_OVERHEAD)
        budget = DEFAULT_MAX_MEMORY if a.max_memory is None else a.max_memory
        rows = max(1, budget // row_bytes)
        if a.max_memory is None:
            rows = max(rows, MIN_CHUNK_ROWS)
    rows = min(rows, m)
    # Equal chunks: ceil(m / rows) of them, each as long as needed.
    chunks = -(-m // rows)
    return -(-m // chunks)


# ---------------------------------------------------------------------------
# the chunk loop
# ---------------------------------------------------------------------------

def _x_chunk(a, s, e, xbuf):
    """Rows s:e of the (compacted) batch as a C-contiguous (e - s, H) array."""
    if a.rows is not None:
        return np.take(a.x, a.rows[s:e], axis=0, out=xbuf[:e - s])
    xc = a.x[s:e]
    if xc.flags.c_contiguous:
        return xc
    np.copyto(xbuf[:e - s], xc)
    return xbuf[:e - s]


def _target_chunk(a, s, e):
    if a.kind == "index":
        return a.target[s:e]
    return np.ascontiguousarray(a.target[s:e])


def _needs_xbuf(a):
    return a.rows is not None or not a.x.flags.c_contiguous


def _forward(a, backend):
    """The loss, as :func:`linear_cross_entropy` returns it."""
    V, H = a.W.shape
    rows = _chunk_rows(a, 1, a.dtype.itemsize * H if _needs_xbuf(a) else 0)
    per_row = np.zeros(a.count, np.float64) if a.reduction == "none" else None
    total = zsum = 0.0
    if rows:
        buf = np.empty((rows, V), a.dtype)
        xbuf = np.empty((rows, H), a.dtype) if _needs_xbuf(a) else None
        for s in range(0, a.count, rows):
            e = min(s + rows, a.count)
            logits = buf[:e - s]
            affine_forward(_x_chunk(a, s, e, xbuf), a.W, a.b, out=logits, backend=backend)
            _softcap_forward(a, logits)
            lse = logsumexp(logits, backend=backend) if a.z_loss else None
            # The compacted chunk holds no ignored row, so any negative
            # ignore_index serves (and keeps the kernels' fast path).
            tc = _target_chunk(a, s, e)
            if per_row is None:
                total += float(cross_entropy(logits, tc, weight=a.weight, ignore_index=-1,
                                             reduction="sum", label_smoothing=a.eps,
                                             backend=backend))
                if lse is not None:
                    zsum += _sum_squares(lse)
            else:
                loss = cross_entropy(logits, tc, weight=a.weight, ignore_index=-1,
                                     reduction="none", label_smoothing=a.eps,
                                     backend=backend).astype(np.float64)
                if lse is not None:
                    loss += a.z_loss * np.square(lse, dtype=np.float64)
                per_row[s:e] = loss
    return _reduce(a, total, zsum, per_row)


def _sum_squares(lse):
    lse64 = lse.astype(np.float64)
    return float(np.dot(lse64, lse64))


def _softcap_forward(a, logits):
    """``logits = c * tanh(logits / c)`` in place (Gemma 2's logit soft-capping)."""
    if a.softcap is not None:
        np.divide(logits, a.softcap, out=logits)
        np.tanh(logits, out=logits)
        np.multiply(logits, a.softcap, out=logits)


def _reduce(a, total, zsum, per_row):
    """The loss value from the chunk sums, or from the per-row losses of the
    counted rows for "none" (ignored rows get 0)."""
    dt = a.dtype.type
    if a.reduction == "none":
        if a.rows is not None:
            full = np.zeros(a.n, np.float64)
            full[a.rows] = per_row[:a.count]
            per_row = full
        return dt(per_row[0]) if a.squeeze else per_row.astype(a.dtype)
    if a.reduction == "sum":
        return dt(total + a.z_loss * zsum)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.float64(total) / np.float64(a.denom)
        if a.z_loss:
            # z-loss: the mean over the rows that count (unweighted), as PaLM
            # and Liger-Kernel's lse_square_scale.
            value += np.float64(a.z_loss * zsum) / np.float64(a.count)
    return dt(value)


def _grads(a, want_loss, backend):
    """(loss or None, dx, dW, db): the chunk loop of the gradient functions."""
    dt = a.dtype
    V, H = a.W.shape
    has_b = a.b is not None
    n_buffers = 1 + (a.z_loss > 0) + (a.softcap is not None)
    gather = _needs_xbuf(a)
    rows = _chunk_rows(a, n_buffers, dt.itemsize * H * (int(gather) + int(a.rows is not None)))

    # Work arrays: the out buffers when the GEMMs can write them directly.
    finals = list(a.out) if a.out is not None else [None, None, None]
    shapes = ((a.n, H), (V, H), (1, V))
    work = []
    for o, shape, wanted in zip(finals, shapes, (True, True, has_b)):
        if not wanted:
            work.append(None)
        elif o is None:
            work.append(np.empty(shape, dt))
        elif o.flags.c_contiguous and o.flags.writeable:
            work.append(o.reshape(shape))
        else:  # strided out: a contiguous copy (its contents, to accumulate into)
            work.append(np.ascontiguousarray(o).reshape(shape) if a.accumulate
                        else np.empty(shape, dt))
    dx, dW, db = work
    if not a.accumulate and (a.rows is not None or rows == 0):
        dx.fill(0.0)  # ignored rows (and an empty loop) leave dx rows untouched

    # The chunk gradient's scalar factor, applied by the GEMMs (alpha) rather
    # than in a pass over the chunk: grad_output, and for "mean" 1 / the
    # global denominator (the kernel runs with reduction="sum").  Per-row
    # grad_output ("none") goes into the kernel instead (alpha 1).
    if a.go_rows is not None:
        alpha = 1.0
        z_factor = 2.0 * a.z_loss
    else:
        alpha = a.go / a.denom if a.reduction == "mean" and a.denom else a.go
        if a.reduction == "mean" and not a.denom:
            alpha = a.go * math.inf if a.count else 0.0  # weight sum 0: NaN as PyTorch
        # The z-loss gradient 2 z lse softmax is summed into the chunk before
        # alpha applies; for "mean" its own denominator is the row count.
        z_factor = 2.0 * a.z_loss * (a.denom / a.count if a.reduction == "mean" and a.count
                                     else 1.0)
    scale_in_chunk = not math.isfinite(alpha)
    gemm_alpha = 1.0 if scale_in_chunk else alpha

    total = zsum = 0.0
    per_row = (np.zeros(a.count, np.float64)
               if want_loss and a.reduction == "none" else None)
    if rows:
        bufs = [np.empty((rows, V), dt) for _ in range(n_buffers)]
        xbuf = np.empty((rows, H), dt) if gather else None
        dxbuf = np.empty((rows, H), dt) if a.rows is not None else None
        ones = np.ones((1, rows), dt) if has_b else None
        first = not a.accumulate
        for s in range(0, a.count, rows):
            e = min(s + rows, a.count)
            c = e - s
            xc = _x_chunk(a, s, e, xbuf)
            g, loss, lse = _chunk_gradient(a, xc, _target_chunk(a, s, e), bufs, c,
                                           None if a.go_rows is None else a.go_rows[s:e],
                                           z_factor, want_loss, backend)
            if scale_in_chunk:
                with np.errstate(invalid="ignore"):
                    g *= alpha  # inf * 0: NaN, as PyTorch's 0 / 0
            if want_loss:
                if per_row is None:
                    total += float(loss)
                    if lse is not None:
                        zsum += _sum_squares(lse)
                else:
                    per_row[s:e] = loss
                    if lse is not None:
                        per_row[s:e] += a.z_loss * np.square(lse, dtype=np.float64)
            beta = 0.0 if first else 1.0
            # dx = g @ W, straight into dx's rows when they are consecutive.
            if a.rows is None:
                _gemm(g, False, a.W, False, dx[s:e], gemm_alpha, 0.0 if not a.accumulate else 1.0)
            else:
                _gemm(g, False, a.W, False, dxbuf[:c], gemm_alpha, 0.0)
                idx = a.rows[s:e]
                if a.accumulate:
                    dx[idx] += dxbuf[:c]
                else:
                    dx[idx] = dxbuf[:c]
            _gemm(g, True, xc, False, dW, gemm_alpha, beta)  # dW (+)= g.T @ x_chunk
            if has_b:
                _gemm(ones[:, :c], False, g, False, db, gemm_alpha, beta)  # db (+)= g.sum(0)
            first = False
    if not a.accumulate and rows == 0:
        dW.fill(0.0)
        if has_b:
            db.fill(0.0)

    results = []
    for o, w, shape in zip(finals, work, (a.x_shape, (V, H), (V,))):
        if w is None:
            results.append(None)
        elif o is None:
            results.append(w.reshape(shape))
        else:
            if not np.shares_memory(o, w):
                o[...] = w.reshape(shape)
            results.append(o)
    loss = _reduce(a, total, zsum, per_row) if want_loss else None
    return (loss, *results)


def _chunk_gradient(a, xc, tc, bufs, c, go_rows, z_factor, want_loss, backend):
    """The gradient of one chunk in a scratch buffer, (g, loss, lse).

    ``loss`` is the chunk's loss sum (a float), its per-row losses ("none",
    float64) or None; ``lse`` the rows' logsumexp when z_loss is on, else None.
    """
    logits = bufs[0][:c]
    affine_forward(xc, a.W, a.b, out=logits, backend=backend)
    k = 1
    tanh = None
    if a.softcap is not None:
        # Keep t = tanh(z / c) for the chain rule; the capped logits c * t
        # go to the next buffer.
        tanh = logits
        np.divide(logits, a.softcap, out=tanh)
        np.tanh(tanh, out=tanh)
        logits = bufs[k][:c]
        k += 1
        np.multiply(tanh, a.softcap, out=logits)
    lse = None
    if a.z_loss:
        lse = logsumexp(logits, backend=backend)
        g = bufs[k][:c]  # the CE gradient beside the logits, which z-loss reads again
    else:
        g = logits  # in place: the kernel reads each row before writing it
    options = dict(weight=a.weight, ignore_index=-1, label_smoothing=a.eps, backend=backend)
    loss = None
    if go_rows is not None:
        # Per-row grad_output (the backward of reduction="none"): no loss wanted.
        cross_entropy_backward(logits, tc, go_rows, reduction="none", out=g, **options)
    elif want_loss and a.reduction == "none":
        rows, _ = cross_entropy_with_grad(logits, tc, reduction="none", out=g, **options)
        loss = rows.astype(np.float64)
    else:
        loss, _ = cross_entropy_with_grad(logits, tc, reduction="sum", out=g, **options)
    if a.z_loss:
        # d(z lse^2)/dlogits = 2 z lse softmax(logits), scaled like the rows.
        coef = z_factor * lse.astype(np.float64)
        if go_rows is not None:
            coef *= go_rows
        p = softmax(logits, out=logits, backend=backend)
        np.multiply(p, coef.astype(a.dtype)[:, None], out=p)
        np.add(g, p, out=g)
    if tanh is not None:
        # d(c tanh(z / c))/dz = 1 - tanh^2.  Its relative precision drops as
        # |tanh| -> 1, but the absolute error stays ~ulp(1), which is what the
        # GEMMs' sums of the gradient see.
        np.square(tanh, out=tanh)
        np.subtract(1.0, tanh, out=tanh)
        np.multiply(g, tanh, out=g)
    return g, loss, lse


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

_DOC_OPTIONS = """    b : ndarray, shape (V,), optional
        Bias of the projection; omitted means none.
    weight : ndarray, shape (V,), optional
        Per-class rescaling weights, as for :func:`fastdl.cross_entropy`.
    ignore_index : int, default -100
        Class-index target value whose rows contribute neither loss nor
        gradient nor (for "mean") denominator; they cost no GEMM work.  Not
        used with probability targets.
    reduction : {"mean", "sum", "none"}, default "mean"
        As for :func:`fastdl.cross_entropy`: "none" gives per-row losses
        (N,), "sum" their sum, "mean" the sum divided by the summed weight
        ``weight[target]`` of the rows not ignored (their count without
        ``weight``; N with probability targets).  "mean" over an empty or
        all-ignored batch is NaN, "sum" is 0.
    label_smoothing : float in [0, 1], default 0.0
        ``(1-ε)·nll + ε/V·Σ_c(-w_c·logp_c)``, as PyTorch.
    z_loss : float >= 0, default 0.0
        Adds ``z_loss * lse**2`` per row that counts (not ignored), with
        ``lse`` the row's logsumexp of the (soft-capped) logits: PaLM's
        auxiliary loss that keeps the softmax normaliser near 1.  Reduced as
        the loss is: per row for "none", summed for "sum", and for "mean"
        divided by the number of rows that count (not weighted by
        ``weight``, as Liger-Kernel's ``lse_square_scale``; with no class
        weights that is the loss's own denominator).
    softcap : float > 0, optional
        Soft-caps the logits first, ``softcap * tanh(logits / softcap)``
        (Gemma 2); every other term sees the capped logits.
    chunk_size : int, optional
        Rows per chunk.  Default: as many as fit ``max_memory``.
    max_memory : int, optional
        Budget in bytes for the chunk scratch (default 64 MiB, and at least
        256 rows when the batch has them); at least one row is always
        taken.  Give ``chunk_size`` or ``max_memory``, not both."""

_DOC_BACKEND = """    backend : str, optional
        Backend of the kernels (affine_forward, cross-entropy, logsumexp,
        softmax); None uses :func:`fastdl.get_backend`."""

_NOTES_LOSS = """    The batch is processed in chunks of rows; rows whose target is
    ``ignore_index`` are dropped first (the others are gathered chunk by
    chunk).  Per chunk of ``r`` rows: ``affine_forward(x_chunk, W, b,
    out=scratch)`` gives the (r, V) logits, then the cross-entropy kernel
    sums the chunk's loss.  Sums are accumulated in float64; "mean" divides
    by the whole batch's denominator, computed from the targets before the
    first GEMM.

    Memory: one (r, V) scratch buffer plus O(r·H) for gathered rows and
    O(N) per-row scalars.  ``r`` is chosen so the scratch fits
    ``max_memory`` (64 MiB by default), so the extra memory does not grow
    with N and the (N, V) logits never exist.  A non-C-contiguous ``W`` is
    copied once.

    ``softcap`` and ``z_loss`` take extra passes over each chunk (vectorised
    NumPy ``tanh`` for the cap, a :func:`fastdl.logsumexp` for the z-loss)."""

_NOTES_GRAD = """    The batch is processed in chunks of rows; rows whose target is
    ``ignore_index`` are dropped first (the others are gathered chunk by
    chunk; their ``dx`` rows are 0).  Per chunk of ``r`` rows:

    1. ``affine_forward(x_chunk, W, b, out=scratch)``: the (r, V) logits;
    2. :func:`fastdl.cross_entropy_with_grad` with ``out=scratch``: the loss
       sum and, in place of the logits, the gradient ``g`` of the summed
       loss.  The scalar factor of the real gradient (``grad_output``, and
       1 / the whole batch's "mean" denominator, computed from the targets
       before the first GEMM) is applied as the GEMMs' alpha, not as a pass
       over the chunk; a per-row ``grad_output`` goes into
       :func:`fastdl.cross_entropy_backward` instead;
    3. ``dx_chunk = g @ W``, ``dW += g.T @ x_chunk``, ``db += g.sum(0)``,
       BLAS accumulating in place (``beta = 1``).

    Memory: the (r, V) scratch buffer, plus one more each for ``softcap``
    (the tanh kept for the chain rule) and ``z_loss`` (the logits kept
    beside the gradient), plus O(r·H) for gathered rows and O(N) per-row
    scalars.  ``r`` is chosen so the buffers fit ``max_memory`` (64 MiB by
    default), so the extra memory does not grow with N and the (N, V)
    logits never exist; the returned gradients are the only O(N·H) and
    O(V·H) allocations (none with ``out``).  A non-C-contiguous ``W`` is
    copied once.

    ``softcap`` and ``z_loss`` take extra passes over each chunk, in
    vectorised NumPy: the cap's tanh and its chain rule ``g *= 1 - tanh²``;
    the z-loss's :func:`fastdl.logsumexp`, :func:`fastdl.softmax` and the
    add of ``2·z_loss·lse·softmax``."""


def linear_cross_entropy(x, W, target, *, b=None, weight=None, ignore_index=-100,
                         reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None,
                         chunk_size=None, max_memory=None, backend=None):
    """Cross-entropy of a linear layer's output, without the (N, V) logits.

    The value of ``cross_entropy(affine_forward(x, W, b), target, ...)`` (PyTorch's
    ``F.linear_cross_entropy``) to rounding, computed chunk by chunk.

    Parameters
    ----------
    x : ndarray, shape (N, H) or (H,)
        Hidden states, float32 or float64.
    W : ndarray, shape (V, H)
        Projection weights, out_features × in_features as ``nn.Linear.weight``.
    target : ndarray
        Class indices: an integer array (N,) (an int for 1-D ``x``), each in
        ``[0, V)`` or equal to ``ignore_index``.  Or class probabilities: a
        float array (N, V) (or (V,)) of x's dtype.
{options}
{backend}

    Returns
    -------
    loss : scalar of x's dtype, or ndarray (N,) for "none"

    Raises
    ------
    TypeError
        Unsupported or mixed dtypes (naming both), a non-integer
        ``ignore_index``/``chunk_size``/``max_memory``.
    ValueError
        Inconsistent shapes (naming them), a bad ``reduction``,
        ``label_smoothing``, ``z_loss`` or ``softcap``, or both
        ``chunk_size`` and ``max_memory``.
    IndexError
        A class index outside ``[0, V)`` that is not ``ignore_index`` (named
        in the message), raised before any GEMM.

    Notes
    -----
{algorithm}

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> from fastdl._linear_ce import linear_cross_entropy
    >>> rng = np.random.default_rng(0)
    >>> x, W = rng.standard_normal((37, 8)), rng.standard_normal((50, 8))
    >>> target = rng.integers(0, 50, 37)
    >>> loss = linear_cross_entropy(x, W, target, chunk_size=8)
    >>> bool(np.isclose(loss, fastdl.cross_entropy(x @ W.T, target)))
    True
    """
    a = _lce_args(x, W, target, b, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap, chunk_size, max_memory)
    return _forward(a, backend)


def linear_cross_entropy_with_grad(x, W, target, *, b=None, weight=None, ignore_index=-100,
                                   reduction="mean", label_smoothing=0.0, z_loss=0.0,
                                   softcap=None, chunk_size=None, max_memory=None,
                                   out=None, accumulate=False, backend=None):
    """Loss of :func:`linear_cross_entropy` and its gradients, in one chunked pass.

    Parameters
    ----------
    x, W, target
        As for :func:`linear_cross_entropy`.
{options}
    out : tuple (dx, dW, db) of ndarray, optional
        Buffers for the gradients (exact shapes x.shape, (V, H), (V,) and
        x's dtype; ``db`` None exactly when ``b`` is None; a None entry is
        allocated), e.g. the parameters' ``.grad`` arrays.  They must not
        share memory with the inputs or each other.
    accumulate : bool, default False
        Add the gradients into ``out`` instead of overwriting it (gradient
        accumulation over micro-batches); needs ``out``.
{backend}

    Returns
    -------
    loss : scalar of x's dtype, or ndarray (N,) for "none"
        As :func:`linear_cross_entropy` returns.
    dx : ndarray, shape of x
        d loss / d x (of ``loss.sum()`` for "none"); rows of ignored
        targets are 0.
    dW : ndarray, shape (V, H)
    db : ndarray, shape (V,), or None
        None when ``b`` is None.

    Raises
    ------
    TypeError, ValueError, IndexError
        As for :func:`linear_cross_entropy`; also a wrong ``out`` (its
        dtype: TypeError; shape, aliasing, or ``accumulate`` without it:
        ValueError).

    Notes
    -----
{algorithm}

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> from fastdl._linear_ce import linear_cross_entropy_with_grad
    >>> rng = np.random.default_rng(0)
    >>> x, W, b = rng.standard_normal((37, 8)), rng.standard_normal((50, 8)), np.zeros(50)
    >>> target = rng.integers(0, 50, 37)
    >>> loss, dx, dW, db = linear_cross_entropy_with_grad(x, W, target, b=b, chunk_size=8)
    >>> g = fastdl.cross_entropy_backward(x @ W.T, target)      # the unfused (37, 50) path
    >>> all(np.allclose(p, q) for p, q in [(dx, g @ W), (dW, g.T @ x), (db, g.sum(0))])
    True
    """
    a = _lce_args(x, W, target, b, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap, chunk_size, max_memory, out=out, accumulate=accumulate,
                  want_out=True)
    return _grads(a, True, backend)


def linear_cross_entropy_backward(x, W, target, grad_output=1.0, *, b=None, weight=None,
                                  ignore_index=-100, reduction="mean", label_smoothing=0.0,
                                  z_loss=0.0, softcap=None, chunk_size=None, max_memory=None,
                                  out=None, accumulate=False, backend=None):
    """Gradients of :func:`linear_cross_entropy` (recomputing the logits per chunk).

    Parameters
    ----------
    x, W, target
        As for :func:`linear_cross_entropy`.
    grad_output : float or ndarray, default 1.0
        Gradient of the final objective with respect to the loss: a scalar
        for "mean"/"sum", shape (N,) (or a scalar) for "none".
{options}
    out : tuple (dx, dW, db) of ndarray, optional
        As for :func:`linear_cross_entropy_with_grad`.
    accumulate : bool, default False
        As for :func:`linear_cross_entropy_with_grad`.
{backend}

    Returns
    -------
    dx : ndarray, shape of x
    dW : ndarray, shape (V, H)
    db : ndarray, shape (V,), or None
        None when ``b`` is None.

    Raises
    ------
    TypeError, ValueError, IndexError
        As for :func:`linear_cross_entropy_with_grad`; also a
        ``grad_output`` of the wrong shape or dtype.

    Notes
    -----
{algorithm}

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl._linear_ce import linear_cross_entropy_backward
    >>> x, W = np.ones((4, 3)), np.zeros((5, 3))
    >>> dx, dW, db = linear_cross_entropy_backward(x, W, np.array([0, 1, -100, 1]), 2.0)
    >>> dx[2], dW.shape, db is None
    (array([0., 0., 0.]), (5, 3), True)
    """
    a = _lce_args(x, W, target, b, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap, chunk_size, max_memory, grad_output=grad_output, out=out,
                  accumulate=accumulate, want_out=True)
    return _grads(a, False, backend)[1:]


def _fill_doc(fn, notes):
    fn.__doc__ = (fn.__doc__.replace("{algorithm}", notes).replace("{options}", _DOC_OPTIONS)
                  .replace("{backend}", _DOC_BACKEND))


_fill_doc(linear_cross_entropy, _NOTES_LOSS)
_fill_doc(linear_cross_entropy_with_grad, _NOTES_GRAD)
_fill_doc(linear_cross_entropy_backward, _NOTES_GRAD)
