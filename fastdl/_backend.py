"""The backend registry: which kernels run a call.

Backends are data: a name maps to a module implementing the kernel contract
of :mod:`fastdl.backends`.  A backend is imported the first time it is
needed, so ``import fastdl`` pays neither for Numba's import nor for any
compilation.
"""

from __future__ import annotations

import contextlib
import operator
import importlib
import os
import threading

from . import _config
from ._ops import FAMILY_MODULES, family_kernels
from .backends import BACKEND_NAMES

_CHOICES = BACKEND_NAMES + ("auto",)

#: Kernel families, from the op table: each backend implements a family in
#: one module, ``fastdl.backends.<backend>_<suffix>``, defining the kernels
#: of every op of that family.  A backend is available when its "core"
#: module loads.
FAMILIES = {family: (suffix, family_kernels(family)) for family, suffix in FAMILY_MODULES.items()}

_loaded: dict = {}
_unavailable: dict = {}
#: resolve()'s answers: family -> op -> backend name -> module (nested
#: dicts: no key tuple to build and hash on every call).  Only successes are
#: stored, and a loaded module never changes, so entries never go stale.
_resolved: dict = {}
_lock = threading.Lock()


class _ThreadChoice(threading.local):
    # A class attribute as the default: reading a missing attribute of a
    # threading.local raises (and catches) AttributeError, which made
    # get_backend() ten times slower.
    name = None


_local = _ThreadChoice()


def _check_name(name):
    if not isinstance(name, str) or name not in _CHOICES:
        raise ValueError(
            f"unknown backend {name!r}; choose one of {_CHOICES} "
            f"({_describe_available()})"
        )


def _load(name, family="core"):
    """Backend ``name``'s module for ``family``, or None when it cannot work here.

    The core family's failures are keyed by the backend name, others by
    ``"name/family"``; both are reported by :func:`unavailable_backends`.
    """
    key = name if family == "core" else f"{name}/{family}"
    mod = _loaded.get(key)
    if mod is not None or key in _unavailable:
        return mod
    with _lock:
        if key in _loaded or key in _unavailable:
            return _loaded.get(key)
        suffix, kernels = FAMILIES[family]
        try:
            mod = importlib.import_module(f"fastdl.backends.{name}.{suffix}")
            missing = [k for k in kernels if not callable(getattr(mod, k, None))]
            if missing:
                raise ImportError(f"backend module lacks kernels {missing}")
        except Exception as exc:  # any failure means "unavailable, and why"
            _unavailable[key] = f"{type(exc).__name__}: {exc}"
            return None
        _loaded[key] = mod
        return mod


def available_backends():
    """Names of the backends usable here, fastest first.

    Returns
    -------
    tuple of str
        A subset of ``("cython", "numba", "numpy")``; ``"numpy"`` is always
        present.  Calling this imports every backend (and so Numba).
    """
    return tuple(name for name in BACKEND_NAMES if _load(name) is not None)


def unavailable_backends():
    """Mapping of each unusable backend's name to the reason it failed."""
    available_backends()
    return dict(_unavailable)


def _describe_available():
    names = available_backends()
    text = f"available: {', '.join(names)}"
    if _unavailable:
        text += "; unavailable: " + "; ".join(
            f"{k} ({v})" for k, v in _unavailable.items()
        )
    return text


def _initial_backend():
    name = os.environ.get(_config.BACKEND_ENV, "").strip() or "auto"
    if name not in _CHOICES:
        raise ValueError(
            f"{_config.BACKEND_ENV}={name!r} is not a backend; choose one of {_CHOICES}"
        )
    return name


_default = _initial_backend()


def get_backend():
    """The backend name in force in this thread (``"auto"`` by default)."""
    return _local.name or _default


def _require(name):
    _check_name(name)
    if name != "auto" and _load(name) is None:
        raise ValueError(
            f"backend {name!r} is unavailable here: {_unavailable[name]} "
            f"({_describe_available()})"
        )


def set_backend(name):
    """Set the process-wide backend: one of :func:`available_backends` or ``"auto"``.

    ``"auto"`` picks, per operation, the fastest compiled backend available
    and uses the NumPy reference only when none works.  A
    :func:`use_backend` block in a thread takes precedence in that thread.

    Parameters
    ----------
    name : str
        ``"auto"``, ``"cython"``, ``"numba"`` or ``"numpy"``.

    Raises
    ------
    ValueError
        If ``name`` is unknown or unavailable here; the message lists what is
        available and why the rest is not.
    """
    global _default
    _require(name)
    _default = name


@contextlib.contextmanager
def use_backend(name):
    """Context manager: run the enclosed code, in this thread only, with ``name``.

    Parameters
    ----------
    name : str
        ``"auto"`` or a backend from :func:`available_backends`; restored to
        the previous choice when the block exits.

    Raises
    ------
    ValueError
        If ``name`` is unknown or unavailable here.

    Examples
    --------
    >>> import numpy as np, fastdl
    >>> with fastdl.use_backend("numpy"):
    ...     fastdl.get_backend()
    'numpy'
    """
    _require(name)
    previous = _local.name
    _local.name = name
    try:
        yield name
    finally:
        _local.name = previous


def resolve(op, backend=None, family="core"):
    """The module of ``family`` that runs ``op`` for the ``backend=`` argument given.

    Raises
    ------
    ValueError
        If the backend named is unknown, unavailable, or lacks this family.
    """
    name = (_local.name or _default) if backend is None else backend
    try:
        return _resolved[family][op][name]
    except (KeyError, TypeError):  # TypeError: an unhashable backend= argument
        pass
    mod = _resolve_uncached(name, op, family)
    if isinstance(name, str):
        _resolved.setdefault(family, {}).setdefault(op, {})[name] = mod
    return mod


def _resolve_uncached(name, op, family):
    _check_name(name)
    if name == "auto":
        default = (_config.ELEMENTWISE_AUTO_ORDER if family == "elementwise"
                   else _config.DEFAULT_AUTO_ORDER)
        for candidate in _config.AUTO_ORDER.get(op, default):
            if _load(candidate) is not None:
                mod = _load(candidate, family)
                if mod is not None:
                    return mod
        return _load("numpy", family)
    mod = _loaded.get(name if family == "core" else f"{name}/{family}")
    if mod is not None:
        return mod
    _require(name)
    mod = _load(name, family)
    if mod is None:
        raise ValueError(
            f"backend {name!r} has no working {family} kernels here: "
            f"{_unavailable[f'{name}/{family}']}"
        )
    return mod


def set_num_threads(n):
    """Set how many threads fastdl's parallel kernels use (all backends).

    Parameters
    ----------
    n : int
        From 1 to :func:`fastdl._config.default_num_threads` (every usable
        core, or ``FASTDL_NUM_THREADS``).  In a process created by
        ``os.fork()`` (e.g. a ``multiprocessing`` "fork" pool) the limit is
        1: see :func:`forked_child`.

    Raises
    ------
    ValueError
        If ``n`` is out of range.
    TypeError
        If ``n`` is not an integer.
    """
    n = operator.index(n)
    limit = 1 if _forked_child else _config.default_num_threads()
    if not 1 <= n <= limit:
        why = (" in a forked child process (GNU OpenMP's thread pool does not "
               "survive fork(); use the 'spawn' or 'forkserver' start method "
               "for parallel kernels in workers)") if _forked_child else ""
        raise ValueError(f"num_threads must be between 1 and {limit}{why}, got {n}")
    _config.state.num_threads = n


def get_num_threads():
    """The number of threads fastdl's parallel kernels use."""
    return _config.state.num_threads


# --------------------------------------------------------------------------
# fork safety
# --------------------------------------------------------------------------
#
# GNU OpenMP (libgomp, used by the Cython kernels and by Numba's "omp"
# threading layer) keeps its worker threads in a pool that fork() does not
# copy: a child that opens a parallel region after its parent used one waits
# forever for threads that do not exist.  Measured here (libgomp, Numba
# 0.68.1, a "fork" multiprocessing pool created after the parent ran
# softmax on 131,072 elements): every Cython child hung in its first
# parallel kernel, and every Numba child aborted with "Terminating: fork()
# called from a process already using GNU OpenMP, this is unsafe." (Numba
# checks for this), which leaves the pool's map() waiting forever.
# A region with one thread never touches the pool, so a forked child runs
# every kernel single-threaded: the hook below sets fastdl's thread count to
# 1 (Numba then takes its serial dispatchers and Cython passes
# num_threads=1), and set_num_threads refuses more in that process.  Pool
# workers are usually one per core anyway; use the "spawn" or "forkserver"
# start method for workers that need parallel kernels.  The locks are
# recreated because a thread of the parent may have held one at fork time.

_forked_child = False


def forked_child():
    """True in a process made by ``os.fork()`` after fastdl was imported.

    Such a process runs every kernel on one thread (GNU OpenMP cannot run a
    parallel region in a forked child whose parent used one), and
    :func:`set_num_threads` accepts only 1 there.
    """
    return _forked_child


def _after_fork_in_child():
    global _forked_child, _lock
    _forked_child = True
    _lock = threading.Lock()
    _config.state.num_threads = 1


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
