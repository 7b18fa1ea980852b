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

import concurrent.futures
import contextlib
import ctypes
import functools
import math
import operator
import os
import threading

import numpy as np

from ._activations import tanh, tanh_backward
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

#: The loss-only path (class-index targets) makes the logits in blocks of
#: FORWARD_ROWS rows by as many vocabulary columns as fit FORWARD_BLOCK_BYTES
#: (at least FORWARD_MIN_COLUMNS), and reduces each block while it is in
#: cache; many rows per block keep W's passes few (one per row block), and
#: few blocks keep the GEMM calls few.  Measured here (2 threads, load ~6,
#: 4 rounds): 8192x256x50257 took 2.54 s in 2048 x 16 MiB blocks, 2.71 s in
#: 2048 x 8 MiB, 3.84 s in 1024 x 4 MiB, 7.5 s in 512 x 2 MiB (one GEMM:
#: 2.00 s); 1024x1024x32000: 0.73, 0.76, 0.76, 1.83 s (one GEMM: 0.57 s).
FORWARD_ROWS = 2048
FORWARD_BLOCK_BYTES = 16 << 20
FORWARD_MIN_COLUMNS = 256

#: Whether the GEMMs run on a team of threads calling single-threaded BLAS
#: (see :func:`_gemm_team`); False leaves each GEMM to BLAS's own threads.
#: Measured here end to end (2 threads, load ~6, 8-18 interleaved rounds):
#: with_grad 1024x1024x32000 2.61 s on the team against 4.01 s on BLAS's
#: threads (the three bare GEMMs: 2.73 s), 8192x256x50257 10.2 against
#: 12.4 s (8.3 s); the loss alone 0.81 against 0.99 s (one GEMM 0.75 s) and
#: 2.83 against 3.54 s (2.57 s).  Single GEMMs timed alone lose 8-17% on
#: the team at H = 256, but in the chunk loop BLAS's threads also spin
#: after each GEMM while the row kernels run.
GEMM_TEAM = True

#: The gradient path's softcap / z-loss row work runs in sub-blocks of rows
#: of about this many bytes, so its extra passes hit cache, not memory.
ROW_BLOCK_BYTES = 2 << 20


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
# the GEMMs on a team of threads, each calling single-threaded BLAS
# ---------------------------------------------------------------------------
#
# OpenBLAS splits one GEMM over its threads and synchronises them once per
# block of the K dimension.  The dx GEMM of a chunk has K = V (tens of
# thousands), so it synchronises hundreds of times per chunk, and every
# chunk again; on a machine where another process holds a core, each wait
# on a descheduled thread costs a time slice.  Measured here (2 threads, a
# 455-row chunk of V = 32000, H = 512): 45 ms with the machine to itself,
# 330-830 ms with other work keeping the load near 4-6 (the logits GEMM,
# K = H: 44 -> 130 ms).  So while a call runs, NumPy's OpenBLAS is set to
# one thread and each GEMM is cut into independent parts (vocabulary
# columns of the logits, vocabulary rows of dW, halves of K for dx), one
# per thread of a team: the caller and BLAS_THREADS - 1 pooled threads.  A
# GEMM then waits once, at its end.  The row kernels between the GEMMs run
# on fastdl's own threads while the team's sleep, so the cores are never
# asked for more threads than the user set.

class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


_blas_threads_fns = None


def _load_blas_threads():
    """(get, set) of NumPy's OpenBLAS thread count, or () when unreachable.

    The library is the one whose CBLAS :func:`_load_cblas` found (dladdr of
    its sgemm); scipy-openblas64 names its functions ``scipy_openblas_*64_``.
    """
    global _blas_threads_fns
    if _blas_threads_fns is not None:
        return _blas_threads_fns
    found = ()
    fn = _load_cblas().get(np.dtype(np.float32))
    try:
        info = _DlInfo()
        address = ctypes.cast(fn, ctypes.c_void_p).value
        if fn is not None and ctypes.CDLL(None).dladdr(ctypes.c_void_p(address),
                                                       ctypes.byref(info)):
            lib = ctypes.CDLL(info.dli_fname.decode())
            get = lib.scipy_openblas_get_num_threads64_
            set_ = lib.scipy_openblas_set_num_threads64_
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            found = (get, set_)
    except (OSError, AttributeError, TypeError):  # another BLAS or platform
        found = ()
    _blas_threads_fns = found
    return found


_team_lock = threading.Lock()
_team_users = 0
_team_blas_threads = 1
_pool = None


def _reset_after_fork():
    # The pool's threads do not exist in a forked child; nor does a call.
    global _pool, _team_users
    _pool, _team_users = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _Team:
    """The threads a call's GEMMs run on (``size`` of them, the caller first)."""

    __slots__ = ("size", "pool")

    def __init__(self, size, pool):
        self.size, self.pool = size, pool

    def run(self, jobs):
        """Run the callables ``jobs`` (at most ``size``) at once; re-raise an error."""
        if len(jobs) == 1:
            jobs[0]()
            return
        futures = [self.pool.submit(job) for job in jobs[1:]]
        try:
            jobs[0]()
        finally:
            concurrent.futures.wait(futures)
        for f in futures:
            f.result()


@contextlib.contextmanager
def _gemm_team():
    """A :class:`_Team` as wide as NumPy's OpenBLAS threads, BLAS single-threaded
    meanwhile (restored when the last concurrent call leaves); a team of one
    (BLAS's own threads) when its thread count cannot be set."""
    global _team_users, _team_blas_threads, _pool
    fns = _load_blas_threads()
    if not fns or not GEMM_TEAM:
        yield _Team(1, None)
        return
    get, set_ = fns
    with _team_lock:
        if _team_users == 0:
            _team_blas_threads = max(1, get())
            if _team_blas_threads > 1:
                set_(1)
        _team_users += 1
        size = _team_blas_threads
        if size > 1 and (_pool is None or _pool._max_workers != size - 1):
            _pool = concurrent.futures.ThreadPoolExecutor(size - 1, "fastdl-gemm")
        pool = _pool
    try:
        yield _Team(size, pool)
    finally:
        with _team_lock:
            _team_users -= 1
            if _team_users == 0 and _team_blas_threads > 1:
                set_(_team_blas_threads)


def _cuts(n, parts):
    """``parts + 1`` boundaries cutting range(n) into near-equal parts."""
    return [n * i // parts for i in range(parts + 1)]


def _gemm_columns(team, a, trans_a, b, c, alpha, beta, fill=None):
    """``c = alpha * op(a) @ b.T + beta * c`` cut into column ranges of c (rows
    of b), one per thread; ``fill`` (a vector) is first copied into c's rows."""
    n = c.shape[1]
    parts = min(team.size, n)

    def job(c0, c1):
        def run():
            if fill is not None:
                np.copyto(c[:, c0:c1], fill[c0:c1])
            _gemm(a, trans_a, b[c0:c1], True, c[:, c0:c1], alpha, beta)
        return run

    cuts = _cuts(n, parts)
    team.run([job(c0, c1) for c0, c1 in zip(cuts[:-1], cuts[1:])])


# ---------------------------------------------------------------------------
# validation, once, up front
# ---------------------------------------------------------------------------

class _LCEArgs:
    """Validated arguments, shaped for the chunk loop."""

    __slots__ = ("x", "W", "b", "weight", "dtype", "squeeze", "n", "n_classes", "kind",
                 "rows", "target", "reduction", "eps", "z_loss", "softcap", "denom",
                 "count", "chunk_size", "max_memory", "go", "go_rows", "out", "accumulate",
                 "x_shape", "bias_in", "logit_scale")


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
    # What the logits GEMM computes: (x W^T + b) / softcap, the 1 / softcap as
    # its alpha and the bias divided here, once.
    a.logit_scale = 1.0 if softcap is None else 1.0 / softcap
    a.bias_in = a.b if softcap is None or a.b is None else \
        (a.b / a.dtype.type(softcap)).astype(a.dtype)
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


def _chunk_rows(a, n_buffers, extra_row_bytes, fixed_bytes=0):
    """Rows per chunk: ``chunk_size``, else what fits the memory budget
    (``fixed_bytes`` of it taken by buffers that do not grow with the rows)."""
    m = a.count
    if m == 0:
        return 0
    if a.chunk_size is not None:
        rows = a.chunk_size
    else:
        row_bytes = (n_buffers * a.n_classes * a.dtype.itemsize + extra_row_bytes
                     + _ROW_OVERHEAD)
        budget = DEFAULT_MAX_MEMORY if a.max_memory is None else a.max_memory
        rows = max(1, (budget - fixed_bytes) // row_bytes)
        if a.max_memory is None:
            rows = max(rows, MIN_CHUNK_ROWS)
    return _equal_parts(m, min(rows, m))


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


def _logits(a, xc, out, team, v0=0, v1=None):
    """``out = xc @ W[v0:v1].T + b[v0:v1]``, divided by ``softcap`` when it is set.

    The bias goes in as BLAS's C operand (beta = 1): with beta = 0 OpenBLAS
    first clears C in a pass of its own, so copying the bias rows into C in
    its place adds no pass, where :func:`fastdl.affine_forward` adds the bias
    after the GEMM in one more (serial) pass.  The softcap's ``1 / c`` is the
    GEMM's alpha (the bias was divided once, in :func:`_lce_args`).
    """
    v1 = a.n_classes if v1 is None else v1
    bias = None if a.bias_in is None else a.bias_in[v0:v1]
    _gemm_columns(team, xc, False, a.W[v0:v1], out, a.logit_scale,
                  0.0 if bias is None else 1.0, fill=bias)


def _cap(a, u, out, backend):
    """``out = softcap * tanh(u)``: the capped logits from ``u = logits / softcap``."""
    tanh(u, out=out, backend=backend)
    np.multiply(out, a.softcap, out=out)


def _equal_parts(total, most):
    """The part length that splits ``total`` into ceil(total / most) equal parts."""
    parts = -(-total // most)
    return -(-total // parts)


def _forward(a, backend):
    """The loss, as :func:`linear_cross_entropy` returns it."""
    with _gemm_team() as team:
        if a.kind == "index":
            return _forward_blocked(a, team, backend)
        return _forward_rows(a, team, backend)


def _forward_blocks(a):
    """(rows, columns) of the loss-only path's logits blocks."""
    V, item = a.n_classes, a.dtype.itemsize
    budget = FORWARD_BLOCK_BYTES if a.max_memory is None else \
        min(FORWARD_BLOCK_BYTES, a.max_memory)
    rows = a.chunk_size or FORWARD_ROWS
    rows = min(rows, a.count)
    cols = budget // (rows * item)
    if cols < FORWARD_MIN_COLUMNS and a.chunk_size is None:
        # A small budget: fewer rows rather than thin blocks.
        cols = min(V, FORWARD_MIN_COLUMNS)
        rows = max(1, min(rows, budget // (cols * item)))
    cols = max(1, min(V, cols))
    return _equal_parts(a.count, rows), _equal_parts(V, cols)


def _forward_blocked(a, team, backend):
    """The loss of class-index targets, from logits blocks that stay in cache.

    Each (rows, columns) block of logits is reduced while it is still in
    cache to its rows' logsumexp (the kernel), merged across the vocabulary
    in float64 (``logaddexp``), plus the target's logit (a gather) and, for
    label smoothing, ``sum_c w_c z_c`` (a GEMV).  Then per row (PyTorch's
    formula, ``A = (1-ε)·w_t + ε/V·Σw``)::

        loss = (1-ε)·w_t·(lse - z_t) + ε/V·(Σw·lse - Σ_c w_c z_c)

    No gradient is written; the logits are never whole rows in memory.
    """
    V, H = a.W.shape
    dt, m, eps = a.dtype, a.count, a.eps
    per_row = np.empty(m, np.float64) if a.reduction == "none" else None
    total = zsum = 0.0
    if m:
        rows, cols = _forward_blocks(a)
        flat = np.empty(rows * cols, dt)
        xbuf = np.empty((rows, H), dt) if _needs_xbuf(a) else None
        wvec = None
        if eps:
            wvec = np.ones(V, dt) if a.weight is None else a.weight
            wsum = float(V) if a.weight is None else float(np.sum(a.weight, dtype=np.float64))
        for s in range(0, m, rows):
            e = min(s + rows, m)
            c = e - s
            xc = _x_chunk(a, s, e, xbuf)
            tc = a.target[s:e]
            lse = np.full(c, -np.inf)
            zt = np.empty(c, np.float64)
            wz = np.zeros(c) if eps else None
            for v0 in range(0, V, cols):
                v1 = min(V, v0 + cols)
                z = flat[:c * (v1 - v0)].reshape(c, v1 - v0)
                _logits(a, xc, z, team, v0, v1)
                if a.softcap is not None:
                    _cap(a, z, z, backend)
                np.logaddexp(lse, logsumexp(z, backend=backend), out=lse)
                hit = np.flatnonzero((tc >= v0) & (tc < v1))
                zt[hit] = z[hit, tc[hit] - v0]
                if eps:
                    wz += z @ wvec[v0:v1]
            wt = 1.0 if a.weight is None else a.weight[tc].astype(np.float64)
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, as the kernel
                loss = wt * (lse - zt)
                if eps:
                    loss *= 1.0 - eps
                    loss += eps / V * (wsum * lse - wz)
            if per_row is None:
                total += float(np.sum(loss))
                if a.z_loss:
                    zsum += float(np.dot(lse, lse))
            else:
                if a.z_loss:
                    loss += a.z_loss * np.square(lse)
                per_row[s:e] = loss
    return _reduce(a, total, zsum, per_row)


def _forward_rows(a, team, backend):
    """The loss of probability targets: whole logits rows, chunk by chunk, into
    the cross-entropy kernel (which reads the rows' target probabilities)."""
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
            _logits(a, _x_chunk(a, s, e, xbuf), logits, team)
            if a.softcap is not None:
                _cap(a, logits, logits, backend)
            lse = logsumexp(logits, backend=backend) if a.z_loss else None
            tc = _target_chunk(a, s, e)
            if per_row is None:
                total += float(cross_entropy(logits, tc, weight=a.weight, reduction="sum",
                                             label_smoothing=a.eps, backend=backend))
                if lse is not None:
                    zsum += _sum_squares(lse)
            else:
                loss = cross_entropy(logits, tc, weight=a.weight, reduction="none",
                                     label_smoothing=a.eps, backend=backend).astype(np.float64)
                if lse is not None:
                    loss += a.z_loss * np.square(lse, dtype=np.float64)
                per_row[s:e] = loss
    return _reduce(a, total, zsum, per_row)


def _sum_squares(lse):
    lse64 = lse.astype(np.float64)
    return float(np.dot(lse64, lse64))


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


class _Side:
    """Cache-sized buffers of the softcap / z-loss row work: ``rows`` rows of
    capped logits (softcap) and of their softmax (z-loss)."""

    __slots__ = ("rows", "z", "p")

    def __init__(self, a, chunk_rows):
        V = a.n_classes
        self.rows = max(1, min(chunk_rows, ROW_BLOCK_BYTES // (V * a.dtype.itemsize)))
        self.z = None if a.softcap is None else np.empty((self.rows, V), a.dtype)
        self.p = np.empty((self.rows, V), a.dtype) if a.z_loss else None

    @staticmethod
    def nbytes(a):
        V, item = a.n_classes, a.dtype.itemsize
        n = (a.softcap is not None) + (a.z_loss > 0)
        return n * max(V * item, ROW_BLOCK_BYTES) if n else 0


def _grads(a, want_loss, backend):
    """(loss or None, dx, dW, db): the chunk loop of the gradient functions."""
    with _gemm_team() as team:
        return _grads_on(a, want_loss, team, backend)


def _grads_on(a, want_loss, team, backend):
    dt = a.dtype
    V, H = a.W.shape
    has_b = a.b is not None
    gather = _needs_xbuf(a)
    # Per row of a chunk: its logits/gradient row, its gathered x and dx rows,
    # and a dx row per extra thread of the team.
    rows = _chunk_rows(a, 1, dt.itemsize * H * (int(gather) + int(a.rows is not None)
                                                + team.size - 1), _Side.nbytes(a))

    # Work arrays: the out buffers when the GEMMs can write them directly.
    finals = list(a.out) if a.out is not None else [None, None, None]
    shapes = ((a.n, H), (V, H), (V,))
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
        buf = np.empty((rows, V), dt)
        side = _Side(a, rows)
        xbuf = np.empty((rows, H), dt) if gather else None
        dxbuf = np.empty((rows, H), dt) if a.rows is not None else None
        parts = [np.empty((rows, H), dt) for _ in range(team.size - 1)]
        colsum = np.empty(V, dt) if has_b else None
        first = not a.accumulate
        for s in range(0, a.count, rows):
            e = min(s + rows, a.count)
            c = e - s
            xc = _x_chunk(a, s, e, xbuf)
            g, loss, lse = _chunk_gradient(a, xc, _target_chunk(a, s, e), buf[:c], side,
                                           None if a.go_rows is None else a.go_rows[s:e],
                                           z_factor, want_loss, team, backend)
            if scale_in_chunk:
                with np.errstate(invalid="ignore"):
                    g *= alpha  # inf * 0: NaN, as PyTorch's 0 / 0
            if want_loss:
                if per_row is None:
                    total += loss
                    if lse is not None:
                        zsum += float(np.dot(lse, lse))
                else:
                    per_row[s:e] = loss
                    if lse is not None:
                        per_row[s:e] += a.z_loss * np.square(lse)
            beta = 0.0 if first else 1.0
            # dx_chunk = g @ W, its K = V cut in one part per thread of the
            # team, the parts after the first summed into the first.
            rows_out = dx[s:e] if a.rows is None else dxbuf[:c]
            beta_dx = 1.0 if a.accumulate and a.rows is None else 0.0
            cuts = _cuts(V, team.size)
            dests = [rows_out] + [p[:c] for p in parts]
            team.run([functools.partial(_gemm, g[:, k0:k1], False, a.W[k0:k1], False,
                                              dest, gemm_alpha, beta_dx if i == 0 else 0.0)
                            for i, (k0, k1, dest) in enumerate(zip(cuts[:-1], cuts[1:], dests))])
            for p in dests[1:]:
                np.add(rows_out, p, out=rows_out)
            if a.rows is not None:
                idx = a.rows[s:e]
                if a.accumulate:
                    dx[idx] += rows_out
                else:
                    dx[idx] = rows_out
            # dW (+)= g.T @ x_chunk and db (+)= g.sum(0), cut into rows of
            # dW (vocabulary ranges), each thread summing its columns of g.
            team.run([functools.partial(_dW_part, g, xc, dW, colsum, v0, v1, gemm_alpha,
                                              beta)
                            for v0, v1 in zip(cuts[:-1], cuts[1:])])
            if has_b:
                if gemm_alpha != 1.0:
                    colsum *= dt.type(gemm_alpha)
                if first:
                    np.copyto(db, colsum)
                else:
                    db += colsum
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


def _dW_part(g, xc, dW, colsum, v0, v1, alpha, beta):
    """Rows v0:v1 of ``dW (+)= alpha * g.T @ xc`` and of ``colsum = g.sum(0)``."""
    _gemm(g[:, v0:v1], True, xc, False, dW[v0:v1], alpha, beta)
    if colsum is not None:
        np.add.reduce(g[:, v0:v1], axis=0, out=colsum[v0:v1])


def _ce_grad(a, z, t, go_rows, want_loss, backend):
    """The cross-entropy kernel in place on rows ``z`` (their gradient replaces
    them); the rows' loss sum (float), per-row losses ("none", float64) or None."""
    options = dict(weight=a.weight, ignore_index=-1, label_smoothing=a.eps, backend=backend)
    if go_rows is not None:
        # Per-row grad_output (the backward of reduction="none"): no loss wanted.
        cross_entropy_backward(z, t, go_rows, reduction="none", out=z, **options)
        return None
    if want_loss and a.reduction == "none":
        rows, _ = cross_entropy_with_grad(z, t, reduction="none", out=z, **options)
        return rows.astype(np.float64)
    loss, _ = cross_entropy_with_grad(z, t, reduction="sum", out=z, **options)
    return float(loss)


def _chunk_gradient(a, xc, tc, g, side, go_rows, z_factor, want_loss, team, backend):
    """The gradient of one chunk in the chunk buffer ``g``: (g, loss, lse).

    ``loss`` is the chunk's loss sum (a float), its per-row losses ("none",
    float64) or None; ``lse`` the rows' logsumexp (float64) when z_loss is
    on, else None.
    """
    _logits(a, xc, g, team)  # the logits (divided by softcap)
    if a.softcap is None and not a.z_loss:
        # The kernel reads each row before writing its gradient in place.
        return g, _ce_grad(a, g, tc, go_rows, want_loss, backend), None
    # Softcap and z-loss need more passes over the rows: they run in
    # sub-blocks of side.rows rows, which stay in cache from one pass to the
    # next, so the chunk itself is read once and written once.
    c = g.shape[0]
    lse = np.empty(c, np.float64) if a.z_loss else None
    per_row = want_loss and a.reduction == "none" and go_rows is None
    loss = np.empty(c, np.float64) if per_row else 0.0
    for r0 in range(0, c, side.rows):
        r1 = min(c, r0 + side.rows)
        u = g[r0:r1]
        if a.softcap is None:
            z = u
        else:
            z = side.z[:r1 - r0]
            _cap(a, u, z, backend)  # z = c tanh(u), u = logits / c kept for the chain rule
        gr = None if go_rows is None else go_rows[r0:r1]
        if a.z_loss:
            lse_s = logsumexp(z, backend=backend)
            lse[r0:r1] = lse_s
            p = softmax(z, out=side.p[:r1 - r0], backend=backend)
        part = _ce_grad(a, z, tc[r0:r1], gr, want_loss, backend)  # z: the CE gradient
        if per_row:
            loss[r0:r1] = part
        elif part is not None:
            loss += part
        if a.z_loss:
            # d(z_loss lse^2)/dz = 2 z_loss lse softmax(z), scaled like the rows.
            coef = z_factor * lse[r0:r1]
            if gr is not None:
                coef *= gr
            np.multiply(p, coef.astype(a.dtype)[:, None], out=p)
            np.add(z, p, out=z)
        if a.softcap is not None:
            # d(c tanh(u))/d logits = 1 - tanh(u)^2.  Its relative precision
            # drops as |tanh| -> 1, but the absolute error stays ~ulp(1),
            # which is what the GEMMs' sums of the gradient see.
            tanh_backward(z, u, out=u, backend=backend)
    return g, (loss if want_loss and go_rows is None else None), lse


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------


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
    b : ndarray, shape (V,), optional
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
        Rows per chunk.  Default: as many as fit ``max_memory`` (the
        gradient functions, and the loss of probability targets); for the
        loss of class indices, the rows of a logits block (default 2048).
    max_memory : int, optional
        Budget in bytes for the chunk scratch (default 64 MiB, and at least
        256 rows when the batch has them; the loss of class indices uses
        blocks of at most 16 MiB within it); at least one row is always
        taken.  Give ``chunk_size`` or ``max_memory``, not both.
    backend : str, optional
        Backend of the kernels (affine_forward, cross-entropy, logsumexp,
        softmax); None uses :func:`fastdl.get_backend`.

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
    Rows whose target is ``ignore_index`` are dropped first (the others
    are gathered block by block).  Class-index targets: the logits are
    made in blocks of ``r`` rows by ``c`` classes (2048 x 2048 float32 by
    default, 16 MiB) by one GEMM each, bias included (BLAS's C operand);
    each block is reduced at once to its rows' logsumexp
    (:func:`fastdl.logsumexp`), merged over the vocabulary in float64
    (``logaddexp``), plus the target's logit and, with label smoothing,
    ``Σ_c w_c·z_c`` (a GEMV).  The loss per row is then PyTorch's
    ``(1-ε)·w_t·(lse - z_t) + ε/V·(Σw·lse - Σ_c w_c·z_c)``, so it equals
    :func:`linear_cross_entropy_with_grad`'s to a few ulps of ``lse``.  No
    gradient is written and no whole row of logits is held.  Probability
    targets: whole rows of logits, chunk by chunk, into
    :func:`fastdl.cross_entropy`.  Sums are accumulated in float64;
    "mean" divides by the whole batch's denominator, computed from the
    targets before the first GEMM.

    ``softcap``: the GEMM's alpha is ``1/softcap`` (and the bias divided
    once), then :func:`fastdl.tanh` and a multiply by ``softcap`` on the
    block; ``z_loss``: the rows' ``lse``, which the loss needs anyway.

    Memory: one block (16 MiB by default, at most ``max_memory``; whole
    rows of ``chunk_size`` or as many as fit for probability targets)
    plus O(r·H) for gathered rows and O(N) per-row scalars, whatever N is:
    the (N, V) logits never exist.  A non-C-contiguous ``W`` is copied
    once.

    Threads: while the call runs, NumPy's OpenBLAS is set to one thread
    and each GEMM is cut into independent parts run at once by a team of
    as many threads as OpenBLAS had (the caller and pooled threads); the
    previous count is restored on return.  A GEMM then waits for its
    threads once instead of once per block of its K dimension, which on
    a shared machine costs a time slice per wait.  The row kernels run on
    fastdl's threads (:func:`fastdl.set_num_threads`) between the GEMMs.
    Without access to OpenBLAS's thread count (another BLAS), every GEMM
    runs on BLAS's own threads.

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
    b : ndarray, shape (V,), optional
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
        Rows per chunk.  Default: as many as fit ``max_memory`` (the
        gradient functions, and the loss of probability targets); for the
        loss of class indices, the rows of a logits block (default 2048).
    max_memory : int, optional
        Budget in bytes for the chunk scratch (default 64 MiB, and at least
        256 rows when the batch has them; the loss of class indices uses
        blocks of at most 16 MiB within it); at least one row is always
        taken.  Give ``chunk_size`` or ``max_memory``, not both.
    out : tuple (dx, dW, db) of ndarray, optional
        Buffers for the gradients (exact shapes x.shape, (V, H), (V,) and
        x's dtype; ``db`` None exactly when ``b`` is None; a None entry is
        allocated), e.g. the parameters' ``.grad`` arrays.  They must not
        share memory with the inputs or each other.
    accumulate : bool, default False
        Add the gradients into ``out`` instead of overwriting it (gradient
        accumulation over micro-batches); needs ``out``.
    backend : str, optional
        Backend of the kernels (affine_forward, cross-entropy, logsumexp,
        softmax); None uses :func:`fastdl.get_backend`.

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
    The batch is processed in chunks of rows; rows whose target is
    ``ignore_index`` are dropped first (the others are gathered chunk by
    chunk; their ``dx`` rows are 0).  Per chunk of ``r`` rows:

    1. the (r, V) logits by one GEMM into the chunk buffer, the bias its C
       operand (copied into the rows, ``beta = 1``; no pass of its own);
    2. :func:`fastdl.cross_entropy_with_grad` with ``out=`` the buffer:
       the loss sum and, in place of the logits, the gradient ``g`` of the
       summed loss.  The scalar factor of the real gradient
       (``grad_output``, and 1 / the whole batch's "mean" denominator,
       computed from the targets before the first GEMM) is applied as the
       GEMMs' alpha, not as a pass over the chunk; a per-row
       ``grad_output`` goes into :func:`fastdl.cross_entropy_backward`
       instead;
    3. two GEMMs read ``g``: ``dx_chunk = g @ W`` and ``dW += g.T @
       x_chunk`` (BLAS accumulating in place, ``beta = 1``), and ``db +=
       g.sum(0)`` one streaming pass.

    So the chunk is written by the GEMM, read and rewritten by the
    kernel, and read by the two GEMMs and the column sums.

    ``softcap`` and ``z_loss`` add row work, done in sub-blocks of rows
    (2 MiB) that stay in cache between its passes, so the chunk is still
    read and written once: the GEMM gives ``u = logits / softcap`` (its
    alpha), :func:`fastdl.tanh` and a multiply make the capped rows in a
    sub-block buffer, the kernel replaces them by their gradient, then
    :func:`fastdl.tanh_backward` (``g·(1 - tanh(u)²)``) writes the chain
    rule over ``u``; the z-loss takes the sub-block's
    :func:`fastdl.logsumexp` and :func:`fastdl.softmax` before the kernel
    and adds ``2·z_loss·lse·softmax`` after it (two NumPy passes, in
    cache).

    Memory: the (r, V) chunk buffer, up to two 2 MiB sub-block buffers
    (softcap, z-loss), O(r·H) for gathered rows and the team's partial
    ``dx`` rows, O(N) per-row scalars.  ``r`` is chosen so they fit
    ``max_memory`` (64 MiB by default), so the extra memory does not grow
    with N and the (N, V) logits never exist; the returned gradients are
    the only O(N·H) and O(V·H) allocations (none with ``out``).  A
    non-C-contiguous ``W`` is copied once.

    Threads: while the call runs, NumPy's OpenBLAS is set to one thread
    and each GEMM is cut into independent parts run at once by a team of
    as many threads as OpenBLAS had (the caller and pooled threads); the
    previous count is restored on return.  A GEMM then waits for its
    threads once instead of once per block of its K dimension, which on
    a shared machine costs a time slice per wait.  The row kernels run on
    fastdl's threads (:func:`fastdl.set_num_threads`) between the GEMMs.
    Without access to OpenBLAS's thread count (another BLAS), every GEMM
    runs on BLAS's own threads.

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
    b : ndarray, shape (V,), optional
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
        Rows per chunk.  Default: as many as fit ``max_memory`` (the
        gradient functions, and the loss of probability targets); for the
        loss of class indices, the rows of a logits block (default 2048).
    max_memory : int, optional
        Budget in bytes for the chunk scratch (default 64 MiB, and at least
        256 rows when the batch has them; the loss of class indices uses
        blocks of at most 16 MiB within it); at least one row is always
        taken.  Give ``chunk_size`` or ``max_memory``, not both.
    out : tuple (dx, dW, db) of ndarray, optional
        As for :func:`linear_cross_entropy_with_grad`.
    accumulate : bool, default False
        As for :func:`linear_cross_entropy_with_grad`.
    backend : str, optional
        Backend of the kernels (affine_forward, cross-entropy, logsumexp,
        softmax); None uses :func:`fastdl.get_backend`.

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
    The batch is processed in chunks of rows; rows whose target is
    ``ignore_index`` are dropped first (the others are gathered chunk by
    chunk; their ``dx`` rows are 0).  Per chunk of ``r`` rows:

    1. the (r, V) logits by one GEMM into the chunk buffer, the bias its C
       operand (copied into the rows, ``beta = 1``; no pass of its own);
    2. :func:`fastdl.cross_entropy_with_grad` with ``out=`` the buffer:
       the loss sum and, in place of the logits, the gradient ``g`` of the
       summed loss.  The scalar factor of the real gradient
       (``grad_output``, and 1 / the whole batch's "mean" denominator,
       computed from the targets before the first GEMM) is applied as the
       GEMMs' alpha, not as a pass over the chunk; a per-row
       ``grad_output`` goes into :func:`fastdl.cross_entropy_backward`
       instead;
    3. two GEMMs read ``g``: ``dx_chunk = g @ W`` and ``dW += g.T @
       x_chunk`` (BLAS accumulating in place, ``beta = 1``), and ``db +=
       g.sum(0)`` one streaming pass.

    So the chunk is written by the GEMM, read and rewritten by the
    kernel, and read by the two GEMMs and the column sums.

    ``softcap`` and ``z_loss`` add row work, done in sub-blocks of rows
    (2 MiB) that stay in cache between its passes, so the chunk is still
    read and written once: the GEMM gives ``u = logits / softcap`` (its
    alpha), :func:`fastdl.tanh` and a multiply make the capped rows in a
    sub-block buffer, the kernel replaces them by their gradient, then
    :func:`fastdl.tanh_backward` (``g·(1 - tanh(u)²)``) writes the chain
    rule over ``u``; the z-loss takes the sub-block's
    :func:`fastdl.logsumexp` and :func:`fastdl.softmax` before the kernel
    and adds ``2·z_loss·lse·softmax`` after it (two NumPy passes, in
    cache).

    Memory: the (r, V) chunk buffer, up to two 2 MiB sub-block buffers
    (softcap, z-loss), O(r·H) for gathered rows and the team's partial
    ``dx`` rows, O(N) per-row scalars.  ``r`` is chosen so they fit
    ``max_memory`` (64 MiB by default), so the extra memory does not grow
    with N and the (N, V) logits never exist; the returned gradients are
    the only O(N·H) and O(V·H) allocations (none with ``out``).  A
    non-C-contiguous ``W`` is copied once.

    Threads: while the call runs, NumPy's OpenBLAS is set to one thread
    and each GEMM is cut into independent parts run at once by a team of
    as many threads as OpenBLAS had (the caller and pooled threads); the
    previous count is restored on return.  A GEMM then waits for its
    threads once instead of once per block of its K dimension, which on
    a shared machine costs a time slice per wait.  The row kernels run on
    fastdl's threads (:func:`fastdl.set_num_threads`) between the GEMMs.
    Without access to OpenBLAS's thread count (another BLAS), every GEMM
    runs on BLAS's own threads.

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


