"""The Numba backend: the kernel contract on Numba-compiled loops.

A thin dispatch layer over :mod:`fastdl.backends.numba._jit`.  For each
call it handles empty arrays, chooses the serial or the parallel compiled
kernel from the element count (``_config.threads_for``) and, before a
parallel call, sets Numba's thread count to fastdl's.  The GEMMs of the
affine kernels go to NumPy's BLAS (Numba's own ``np.dot`` needs SciPy);
the bias add and bias gradient are Numba kernels.

Importing this module compiles nothing: every kernel is a lazy dispatcher
compiled (or loaded from Numba's cache) on its first call for a dtype.

See :mod:`fastdl.backends` for the kernel contract.
"""

from __future__ import annotations

import os
import threading
import warnings

import numba
import numpy as np

from ... import _config as config
from .. import fast_case_gradient, fast_case_loss
from . import _jit as _k

NAME = "numba"


# --------------------------------------------------------------------------
# Threading layer: safe whatever Numba resolves to
# --------------------------------------------------------------------------
#
# Numba runs parallel=True kernels on one of three "threading layers":
# "tbb" (thread- and fork-safe), "omp" (thread-safe; with GNU OpenMP not
# fork-safe) and "workqueue" (fork-safe, NOT thread-safe: two Python threads
# inside parallel kernels at once make it abort the process with
# "Concurrent access has been detected").  fastdl's choice:
#
# * Unless the user chose a layer (NUMBA_THREADING_LAYER, or
#   numba.config.THREADING_LAYER set before this module loads), ask for
#   "omp": thread-safe, and the same libgomp thread pool the Cython backend
#   already uses, so the two backends share one pool (and one
#   GOMP_SPINCOUNT) instead of competing with a second one.  Where "omp"
#   cannot load (no OpenMP runtime for Numba), Numba's own default order
#   (tbb, omp, workqueue) is used instead.
# * Whatever layer is finally in use (it may have been launched before
#   fastdl loaded, by other Numba code), if it is "workqueue" every parallel
#   call goes through one process-wide lock (``_workqueue_lock``): calls from
#   several threads then take turns, each still parallel inside.
# * If no layer loads at all, kernels run on their serial dispatchers.
# * Fork: fastdl._backend makes a forked child single-threaded, so a child
#   never launches a parallel region (Numba aborts a forked child that uses
#   GNU OpenMP after its parent did).
#
# The layer is launched lazily, on the first parallel call, so importing
# this module still starts no threads.

_LAYER_CHOSEN_BY_USER = numba.config.THREADING_LAYER not in ("default", "")
if not _LAYER_CHOSEN_BY_USER:
    numba.config.THREADING_LAYER = "omp"

_launch_lock = threading.Lock()
_workqueue_lock = threading.Lock()

#: After the first parallel call: the layer in use ("" when none loads) and
#: why it was chosen; read by tests and show_config.
layer_status = {"layer": None, "serialised": False, "note": "not launched yet"}

_locked_wrappers = {}  # parallel dispatcher -> its locked wrapper (workqueue only)


def _launch_layer():
    """Start Numba's threading layer once; fill in ``layer_status``."""
    with _launch_lock:
        if layer_status["layer"] is not None:
            return
        note = ("chosen by the user" if _LAYER_CHOSEN_BY_USER
                else "requested by fastdl")
        try:
            numba.get_num_threads()  # launches the layer
        except ValueError as exc:  # the requested layer cannot load here
            if _LAYER_CHOSEN_BY_USER:
                return _no_layer(exc)
            numba.config.THREADING_LAYER = "default"
            try:
                numba.get_num_threads()
            except ValueError as exc2:
                return _no_layer(exc2)
            note = f"omp unavailable ({exc}); Numba's default order"
        layer = numba.threading_layer()
        serialised = layer == "workqueue"
        if serialised:
            note += "; workqueue is not thread-safe, so parallel calls are serialised by a lock"
        layer_status.update(layer=layer, serialised=serialised, note=note)


def _no_layer(exc):
    """No threading layer loads: run serial kernels, and say so once."""
    reason = " ".join(str(exc).split())
    layer_status.update(layer="", note=f"no layer loads ({reason}); serial kernels")
    warnings.warn(f"Numba could not start a threading layer ({reason}); fastdl's Numba "
                  "kernels run on one thread", RuntimeWarning, stacklevel=4)


def _locked(parallel):
    """``parallel`` wrapped so that one thread at a time runs it (workqueue)."""
    wrapper = _locked_wrappers.get(parallel)
    if wrapper is None:
        def wrapper(*args):
            with _workqueue_lock:
                return parallel(*args)
        _locked_wrappers[parallel] = wrapper
    return wrapper


def _after_fork_in_child():
    global _launch_lock, _workqueue_lock
    _launch_lock = threading.Lock()
    _workqueue_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _pick(kernel, n_elements):
    """The serial or the parallel dispatcher of ``kernel`` for this size.

    Numba's thread count is per calling thread and fastdl's may change at
    any time, so it is compared (cheap) and set before each parallel call.
    It cannot exceed the pool Numba started with (NUMBA_NUM_THREADS).  On
    the "workqueue" layer the parallel dispatcher comes wrapped in a lock.
    """
    serial, parallel = kernel
    threads = config.threads_for(n_elements)
    if threads <= 1:
        return serial
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    if threads <= 1:
        return serial
    if layer_status["layer"] is None:
        _launch_layer()
    if not layer_status["layer"]:
        return serial
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    return _locked(parallel) if layer_status["serialised"] else parallel


# The bias add and the bias gradient are serial kernels: _config.BIAS_SERIAL.

def affine_forward(x, W, b, out):
    np.matmul(x, W.T, out=out)
    if b is not None and out.size:
        _k.bias_add(out, b)


def affine_backward(dy, x, W, dx, dW, db):
    if dx is not None:
        np.matmul(dy, W, out=dx)
    np.matmul(dy.T, x, out=dW)
    if db is None or db.shape[0] == 0:
        return
    _k.column_sums(dy, db, np.zeros(db.shape[0]))


def logsumexp(x, out):
    if x.shape[0] == 0:
        return
    if x.shape[1] == 0:  # log(sum of nothing) = log(0)
        out[...] = -np.inf
        return
    _pick(_k.logsumexp, x.size)(x, out)


def softmax(x, out):
    if x.size == 0:
        return
    _pick(_k.softmax, x.size)(x, out)


def log_softmax(x, out):
    if x.size == 0:
        return
    _pick(_k.log_softmax, x.size)(x, out)


def softmax_backward(dy, y, out):
    if y.size == 0:
        return
    _pick(_k.softmax_backward, y.size)(dy, y, out)


def log_softmax_backward(dy, y, out):
    if y.size == 0:
        return
    _pick(_k.log_softmax_backward, y.size)(dy, y, out)


def _total(loss):
    """The exact sum of the row losses (math.fsum's value), or None for the
    caller to sum (from EXACT_SUM_MAX_ROWS rows, or non-finite terms)."""
    if loss.shape[0] >= config.EXACT_SUM_MAX_ROWS:
        return None
    total = _k.exact_sum(loss)
    return None if total != total else total  # NaN: math.fsum decides


def _scale_rows(scale, n):
    """The kernels read one multiplier per row: a float becomes (n,)."""
    return scale if scale is None or isinstance(scale, np.ndarray) else np.full(n, float(scale))


def cross_entropy_index(logits, target, weight, ignore_index, label_smoothing,
                        scale, loss, grad):
    if logits.shape[0] == 0:
        return 0.0
    if logits.shape[1] == 0:  # then every row is ignored (caller validated)
        loss[...] = 0.0
        return 0.0
    _pick(_k.cross_entropy_index, logits.size)(
        logits, target, weight, int(ignore_index), float(label_smoothing),
        _scale_rows(scale, logits.shape[0]), loss, grad)
    return _total(loss)


def cross_entropy_prob(logits, target, weight, label_smoothing, scale, loss,
                       grad):
    if logits.shape[0] == 0:
        return 0.0
    if logits.shape[1] == 0:  # an empty sum
        loss[...] = 0.0
        return 0.0
    _pick(_k.cross_entropy_prob, logits.size)(
        logits, target, weight, float(label_smoothing),
        _scale_rows(scale, logits.shape[0]), loss, grad)
    return _total(loss)


def cross_entropy_index_fast(logits, target, ignore_index, label_smoothing, mean, out,
                             want_grad):
    # The labels' check, the rows and their exact sum in one kernel call.
    ok, grad = fast_case_gradient(logits, target, out, want_grad)
    if not ok:
        return None
    loss = np.empty(logits.shape[0], np.float64)
    ok, total = _pick(_k.cross_entropy_index_fast, logits.size)(
        logits, target, ignore_index, float(label_smoothing), bool(mean), grad, loss,
        config.EXACT_SUM_MAX_ROWS)
    if not ok:
        return None
    return fast_case_loss(logits, loss, None if total != total else total, mean), grad
