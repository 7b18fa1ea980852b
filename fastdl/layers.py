"""The thin layer API: layers with ``forward(x)`` and ``backward(dy) -> dx``.

Layers call only the public fastdl functional API (``fastdl.affine_forward``,
``fastdl.relu`` ...), never a kernel, so the backend in force
(:func:`fastdl.use_backend`) decides where the arithmetic runs.

Conventions
-----------
* ``forward(x)`` keeps what ``backward`` needs (a reference to ``x``, not a
  copy: do not modify ``x`` between the two calls).
* ``backward(dy)`` returns ``dx`` and *overwrites* each parameter's ``.grad``
  (it does not accumulate).
* Output buffers are reused across calls with the same shape and dtype: the
  array ``forward`` returns is valid until the next ``forward`` of that layer
  with the same input shape (copy it to keep it).  ``backward`` likewise.
* Every layer has a training mode, as PyTorch's modules: ``train()`` and
  ``eval()`` set ``.training`` (a :class:`Sequential` sets it on every layer
  inside); only :class:`Dropout` behaves differently in the two modes.
* ``state_dict()`` maps parameter names (``"W"``, ``"b"``; ``"0.W"``,
  ``"2.b"`` in a :class:`Sequential`, after the layer's index) to their
  arrays; ``load_state_dict(d)`` copies arrays into the parameters in place,
  and ``save(path)`` / ``load(path)`` do the same through an ``.npz`` file.

Examples
--------
>>> import numpy as np
>>> from fastdl import layers
>>> net = layers.Sequential(layers.Affine(4, 8, rng=0), layers.ReLU(), layers.Affine(8, 3, rng=1))
>>> y = net.forward(np.ones((2, 4), np.float32))
>>> dx = net.backward(np.ones_like(y))
>>> y.shape, dx.shape, len(net.parameters())
((2, 3), (2, 4), 4)
>>> list(net.state_dict())
['0.W', '0.b', '2.W', '2.b']
"""

from __future__ import annotations

import math
import operator
from collections import namedtuple
from types import MappingProxyType

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import _activations as F
from . import _core
from ._core import affine_backward, affine_forward
from ._validate import normalize_axis

__all__ = [
    "Parameter", "Layer", "Affine", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh",
    "SiLU", "Softplus", "Softmax", "LogSoftmax", "Flatten", "Dropout", "Sequential",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _plain(a):
    """``a``'s array when ``a`` is a :class:`Parameter`, else ``a``."""
    return a.value if type(a) is Parameter else a


def _plain_nested(obj):
    """:func:`_plain` through the tuples, lists and dicts NumPy functions take."""
    if type(obj) is Parameter:
        return obj.value
    if type(obj) is tuple or type(obj) is list:
        return type(obj)(_plain_nested(o) for o in obj)
    if type(obj) is dict:
        return {k: _plain_nested(v) for k, v in obj.items()}
    return obj


class Parameter(NDArrayOperatorsMixin):
    """A trainable array and its gradient, usable as the array itself.

    As ``torch.nn.Linear.weight`` acts as its tensor, a Parameter acts as
    its array: it can be indexed and assigned through (``p[0]``,
    ``p[...] = 0``), passed to NumPy functions (``np.linalg.norm(p)``) and
    to fastdl's, used in arithmetic (``p * 2``, ``x @ p.T``, ``p -= g``),
    and has the array's attributes and methods (``.shape``, ``.dtype``,
    ``.sum()`` ...).  All of these act on :attr:`value`: a Parameter is a
    named handle on that array, not a copy of it, so in-place updates
    through either (an optimizer's through ``.value``, a user's through the
    parameter) are the same update.  Results (of arithmetic, ufuncs, NumPy
    functions, indexing, methods) are plain ndarrays, as in PyTorch, where
    ``weight * 2`` is a tensor without the parameter's role; an in-place
    operation (``p += 1``, ``np.add(p, 1, out=p)``) returns ``p`` itself.

    A Parameter is not an ``np.ndarray`` subclass: ``np.asarray(p)`` is
    ``p.value`` itself (no copy), ``torch.as_tensor(p)`` shares its memory
    (through DLPack), and code that requires an ndarray instance
    (``isinstance`` checks, ``out=`` buffers, the buffer protocol) takes
    ``p.value``.  That keeps :attr:`value` rebindable: assigning
    ``p.value = new_array`` (e.g. when loading weights) makes ``new_array``
    the parameter, and an optimizer holding ``p`` updates it from then on.

    Parameters
    ----------
    value : array_like
        The parameter's values; kept as is (no copy) when it is a
        C-contiguous ndarray.
    name : str, default ""
        A label, shown in the repr.

    Attributes
    ----------
    value : ndarray
        The parameter, updated in place by optimizers.
    grad : ndarray
        d loss / d value, same shape and dtype (zeros initially); written
        by the owning layer's ``backward``.
    name : str

    Notes
    -----
    As for arrays and PyTorch parameters, ``==`` is elementwise, so
    ``p in some_list`` and ``some_list.index(p)`` compare arrays; match
    parameters by identity (``is``, ``id(p)``) instead.  Hashing is by
    identity, so parameters can be dict keys and set members.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import Affine
    >>> layer = Affine(3, 2, dtype=np.float64, rng=0)
    >>> layer.W
    Parameter(W, shape=(2, 3), dtype=float64)
    >>> layer.W[...] = 1.0; layer.W[0, 0] = 3.0
    >>> layer.W[0]
    array([3., 1., 1.])
    >>> float(np.linalg.norm(layer.W))          # sqrt(9 + 5 * 1)
    3.7416573867739413
    >>> type(layer.W * 2).__name__              # arithmetic gives plain arrays
    'ndarray'
    >>> np.shares_memory(layer.W.value, layer.W), layer.W.grad.shape
    (True, (2, 3))
    >>> layer.W.value[1] = 0.0                  # as an optimizer writes
    >>> layer.W.sum()
    np.float64(5.0)
    """

    __slots__ = ("value", "grad", "name")

    def __init__(self, value, name=""):
        # order="C": a copy only when not C-contiguous; a 0-d value stays
        # 0-d (np.ascontiguousarray would make it (1,)).
        self.value = np.asarray(value, order="C")
        self.grad = np.zeros_like(self.value)
        self.name = name

    # The array protocol: NumPy sees the value array.
    def __array__(self, dtype=None, copy=None):
        return np.array(self.value, dtype=dtype, copy=copy)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = tuple(map(_plain, inputs))
        if out is not None:
            kwargs["out"] = tuple(map(_plain, out))
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is None:
            return result
        # In place: give back the objects passed as out, so ``p += 1``
        # leaves ``p`` (and an attribute ``layer.W += 1`` sets) a Parameter.
        plain_out = kwargs["out"]
        if type(result) is tuple:
            return tuple(o if r is po else r for r, po, o in zip(result, plain_out, out))
        return out[0] if result is plain_out[0] else result

    def __array_function__(self, func, types, args, kwargs):
        result = func(*_plain_nested(args), **_plain_nested(kwargs))
        out = kwargs.get("out")
        if type(out) is Parameter and result is out.value:
            return out
        return result

    # DLPack, which PyTorch reads: torch.as_tensor(p) shares p's memory.
    def __dlpack__(self, *args, **kwargs):
        return self.value.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.value.__dlpack_device__()

    # The array's attributes and methods.
    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def ndim(self):
        return self.value.ndim

    @property
    def size(self):
        return self.value.size

    @property
    def T(self):
        return self.value.T

    def __getattr__(self, name):
        # Reached only when normal lookup fails: everything else an array
        # has (.reshape, .sum, .flags, ...).  Never the slots (unset while
        # copy/pickle rebuild a Parameter) nor special names, which the
        # copy and pickle protocols probe on the instance.
        if name.startswith("__") or name in Parameter.__slots__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.value, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(dir(self.value)))

    def __getitem__(self, key):
        return self.value[_plain(key)]

    def __setitem__(self, key, item):
        self.value[_plain(key)] = _plain(item)

    def __len__(self):
        return len(self.value)

    def __iter__(self):
        return iter(self.value)

    def __contains__(self, item):
        return _plain(item) in self.value

    def __bool__(self):
        return bool(self.value)

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    # The elementwise == of the operator mixin makes a class unhashable;
    # a Parameter hashes by identity (as before, and as torch's do).
    __hash__ = object.__hash__

    def __repr__(self):
        return f"Parameter({self.name or '?'}, shape={self.value.shape}, dtype={self.value.dtype})"

    def __str__(self):
        return str(self.value)


def _buffer(cache, key, shape, dtype):
    """A reusable array of ``shape``/``dtype`` kept in ``cache[key]``."""
    buf = cache.get(key)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        buf = np.empty(shape, dtype)
        cache[key] = buf
    return buf


#: What :meth:`Layer.load_state_dict` returns, as PyTorch's ``load_state_dict``.
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _output_grad(layer, dy, out_shape):
    """``dy`` as an array, checked to have ``out_shape``, the shape of ``layer``'s last output."""
    if out_shape is None:
        raise RuntimeError("backward called before forward")
    dy = np.asarray(dy)
    if dy.shape != out_shape:
        raise ValueError(f"{type(layer).__name__}: dy has shape {dy.shape}, the forward "
                         f"output {out_shape}")
    return dy


class Layer:
    """Base class: subclasses define ``forward``/``backward`` (and ``named_parameters``).

    Every layer has, from this class, the training mode (``training``,
    ``train()``, ``eval()``), ``parameters()`` and the state dict
    (``state_dict()``, ``load_state_dict()``, ``save()``, ``load()``), all
    derived from :meth:`named_parameters`.

    Attributes
    ----------
    training : bool
        True (the default) in training mode, False in evaluation mode.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl import layers
    >>> net = layers.Sequential(layers.Affine(2, 2, rng=0), layers.Dropout(0.5))
    >>> net.eval().training, net[1].training
    (False, False)
    >>> x = np.ones((1, 2), np.float32)
    >>> net.forward(x) is net[0].forward(x)     # Dropout is the identity in eval mode
    True
    """

    #: Training mode; ``train()`` / ``eval()`` set it on the instance.
    training = True

    def named_parameters(self):
        """The layer's parameters with their names, as ``[(name, Parameter), ...]`` (a new list).

        The names are the keys of :meth:`state_dict`; a layer without
        parameters returns ``[]``.
        """
        return []

    def parameters(self):
        """The layer's :class:`Parameter` objects (a new list)."""
        return [p for _, p in self.named_parameters()]

    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode; return the layer.

        Parameters
        ----------
        mode : bool, default True

        Returns
        -------
        self : Layer

        Raises
        ------
        TypeError
            ``mode`` is not a bool.
        """
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"training mode must be a bool, got {mode!r}")
        self.training = bool(mode)
        return self

    def eval(self):
        """Set evaluation mode (``train(False)``); return the layer."""
        return self.train(False)

    def state_dict(self):
        """The parameters by name: ``{name: array}``, in :meth:`named_parameters` order.

        The arrays are the parameters' own (``p.value``), not copies, as
        PyTorch's state dicts hold the parameters' tensors: training goes on
        changing them, so copy the dict's arrays to keep a snapshot
        (``{k: v.copy() for k, v in layer.state_dict().items()}``).

        Returns
        -------
        dict of str to ndarray
        """
        return {name: p.value for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters of the same name, in place.

        The :class:`Parameter` objects and their arrays stay the same (so
        optimizers created before keep updating them); only the values
        change.  Every array is checked before any is copied, so a failed
        load changes nothing.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            As :meth:`state_dict` returns (or an ``np.load`` ``.npz`` file).
        strict : bool, default True
            Whether the keys must be exactly the parameters' names.  With
            False, missing and unexpected keys are skipped and returned.

        Returns
        -------
        IncompatibleKeys
            A named tuple ``(missing_keys, unexpected_keys)``, lists of
            names (both empty after a strict load).

        Raises
        ------
        KeyError
            ``strict`` and keys missing from ``state_dict`` or not naming a
            parameter; the message lists both.
        ValueError
            An array whose shape is not its parameter's, or a parameter
            array that is read-only.
        TypeError
            An array whose dtype is not its parameter's (no casting: a
            float64 checkpoint does not silently load into float32).

        Examples
        --------
        >>> import numpy as np
        >>> from fastdl.layers import Affine
        >>> a, b = Affine(3, 2, rng=0), Affine(3, 2, rng=1)
        >>> W = b.W
        >>> b.load_state_dict(a.state_dict())
        IncompatibleKeys(missing_keys=[], unexpected_keys=[])
        >>> b.W is W, bool(np.array_equal(b.W, a.W))
        (True, True)
        >>> b.load_state_dict({"W": a.W.value})
        Traceback (most recent call last):
        ...
        KeyError: "Affine.load_state_dict: missing keys ['b'] (the layer's keys are ['W', 'b'])"
        """
        named = self.named_parameters()
        own = dict(named)
        missing = [name for name in own if name not in state_dict]
        unexpected = [key for key in state_dict.keys() if key not in own]
        if strict and (missing or unexpected):
            what = [f"{label} keys {keys}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected)) if keys]
            raise KeyError(f"{type(self).__name__}.load_state_dict: {'; '.join(what)} "
                           f"(the layer's keys are {list(own)})")
        updates = []
        for name, p in named:
            if name not in state_dict:
                continue
            value = np.asarray(state_dict[name])
            if value.shape != p.value.shape:
                raise ValueError(f"{name}: the state dict has shape {value.shape}, "
                                 f"the parameter {p.value.shape}")
            if value.dtype != p.value.dtype:
                raise TypeError(f"{name}: the state dict has dtype {value.dtype}, "
                                f"the parameter {p.value.dtype}")
            if not p.value.flags.writeable:
                raise ValueError(f"{name}: the parameter's array is read-only")
            updates.append((p.value, value))
        for dst, src in updates:
            np.copyto(dst, src)
        return IncompatibleKeys(missing, unexpected)

    def save(self, path):
        """Write :meth:`state_dict` to an ``.npz`` file (``np.savez``).

        Parameters
        ----------
        path : str, os.PathLike or file
            Where to write; NumPy appends ``.npz`` to a name without it.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from fastdl import layers
        >>> net = layers.Sequential(layers.Affine(3, 4, rng=0), layers.Tanh(), layers.Affine(4, 2, rng=1))
        >>> path = os.path.join(tempfile.mkdtemp(), "net.npz")
        >>> net.save(path)
        >>> fresh = layers.Sequential(layers.Affine(3, 4), layers.Tanh(), layers.Affine(4, 2))
        >>> _ = fresh.load(path)
        >>> x = np.ones((1, 3), np.float32)
        >>> bool(np.array_equal(fresh.forward(x), net.forward(x)))
        True
        """
        np.savez(path, **self.state_dict())

    def load(self, path, strict=True):
        """Load parameters saved by :meth:`save` (``np.load(path, allow_pickle=False)``).

        Parameters
        ----------
        path : str, os.PathLike or file
            An ``.npz`` file.
        strict : bool, default True
            As for :meth:`load_state_dict`.

        Returns
        -------
        IncompatibleKeys
            As :meth:`load_state_dict` returns.

        Raises
        ------
        ValueError
            ``path`` is not an ``.npz`` archive; and as :meth:`load_state_dict`.
        KeyError, TypeError
            As :meth:`load_state_dict`.
        """
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path!r} is a single array (.npy), not an .npz archive "
                             "written by save()")
        with data:
            state = {key: data[key] for key in data.files}
        return self.load_state_dict(state, strict=strict)

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        return f"{type(self).__name__}()"


class Affine(Layer):
    """Fully connected layer ``y = x @ W.T + b`` (PyTorch's ``nn.Linear``).

    Parameters
    ----------
    in_features, out_features : int
        Sizes D and H.
    bias : bool, default True
        Whether to learn a bias ``b``.
    dtype : float32 or float64, default float32
    rng : numpy.random.Generator or int, optional
        Seed or generator for the initialisation.

    Attributes
    ----------
    W : Parameter, shape (out_features, in_features)
    b : Parameter, shape (out_features,), or None
        Both act as their arrays (see :class:`Parameter`).

    Notes
    -----
    PyTorch's default initialisation: ``kaiming_uniform_(a=sqrt(5))``, i.e.
    ``W ~ U(-1/sqrt(D), 1/sqrt(D))``, and ``b ~ U(-1/sqrt(D), 1/sqrt(D))``.

    To load weights, write them in place (``layer.W[...] = new``) or rebind
    the array (``layer.W.value = new``): the Parameter objects, which
    optimizers hold, stay the same.  Assigning the attribute
    (``layer.W = new``) makes ``new`` a new :class:`Parameter` (sharing its
    memory when it is a C-contiguous ndarray) with a zero gradient, as
    assigning a Parameter installs that one; either way an optimizer
    created before still holds the old one, so create optimizers after
    replacing parameters.  The shape must stay (out_features, in_features)
    for ``W``, (out_features,) for ``b`` (``b = None`` removes the bias).

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import Affine
    >>> layer = Affine(3, 2, rng=0)
    >>> layer.W = np.ones((2, 3), np.float32)
    >>> layer.W, layer(np.ones(3, np.float32)) - layer.b
    (Parameter(W, shape=(2, 3), dtype=float32), array([3., 3.], dtype=float32))
    """

    def __init__(self, in_features, out_features, *, bias=True, dtype=np.float32, rng=None):
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype {dtype} is not supported; use float32 or float64")
        in_features = int(in_features)
        out_features = int(out_features)
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        # kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound
        # gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in); the bias uses the same bound.
        bound = 1.0 / math.sqrt(in_features)
        self.in_features = in_features
        self.out_features = out_features
        self.W = Parameter(gen.uniform(-bound, bound, (out_features, in_features)).astype(dtype),
                           "W")
        self.b = (Parameter(gen.uniform(-bound, bound, out_features).astype(dtype), "b")
                  if bias else None)
        self._x = None
        self._bufs = {}

    def __setattr__(self, name, value):
        # W and b are always Parameters (or b None) of the layer's shapes:
        # an array assigned to them is wrapped (see the class notes).
        if name == "W" or (name == "b" and value is not None):
            if not isinstance(value, Parameter):
                value = Parameter(value, name)
            shape = ((self.out_features, self.in_features) if name == "W"
                     else (self.out_features,))
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            if value.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise TypeError(f"{name} has dtype {value.dtype}; use float32 or float64")
        object.__setattr__(self, name, value)

    def named_parameters(self):
        """``[("W", W), ("b", b)]`` (without ``b`` when ``bias=False``)."""
        return [("W", self.W)] if self.b is None else [("W", self.W), ("b", self.b)]

    def forward(self, x):
        x = np.asarray(x)
        self._x = x
        shape = (self.out_features,) if x.ndim == 1 else (*x.shape[:-1], self.out_features)
        out = None
        if x.ndim in (1, 2):
            out = _buffer(self._bufs, "y", shape, self.W.value.dtype)
        return affine_forward(x, self.W.value, None if self.b is None else self.b.value, out=out)

    def backward(self, dy, *, input_grad=True):
        """Store d loss / d W and d loss / d b; return d loss / d x.

        ``input_grad=False`` skips ``dx`` (one GEMM less) and returns None:
        what the first layer of a network needs.
        """
        if self._x is None:
            raise RuntimeError("backward called before forward")
        x = self._x
        dy = np.asarray(dy)
        dx = None
        if input_grad and x.ndim in (1, 2) and dy.dtype == x.dtype:
            dx = _buffer(self._bufs, "dx", x.shape, x.dtype)
        # The gradients land straight in the parameters' .grad arrays.
        dx, _, _ = affine_backward(
            dy, x, self.W.value, bias=self.b is not None, input_grad=input_grad,
            out=(dx, self.W.grad, None if self.b is None else self.b.grad))
        return dx

    def __repr__(self):
        return (f"Affine({self.in_features}, {self.out_features}, bias={self.b is not None}, "
                f"dtype={self.W.value.dtype})")


class _Elementwise(Layer):
    """An activation: ``forward`` = ``fastdl.<name>``, ``backward`` = ``<name>_backward``."""

    _name = ""
    #: The module holding ``<name>`` and ``<name>_backward``.
    _functions = F
    #: Whether ``<name>_backward`` takes the forward output ``y`` (softmax,
    #: log_softmax) rather than the forward input ``x`` (the activations).
    _backward_takes_output = False

    def __init__(self, **options):
        self._options = options
        self._forward = getattr(self._functions, self._name)
        self._backward = getattr(self._functions, self._name + "_backward")
        self._saved = None
        self._bufs = {}

    @property
    def options(self):
        """The options passed to the functional, e.g. ``{"negative_slope": 0.01}`` (read-only).

        A read-only view (``types.MappingProxyType``) of the layer's own
        options, empty for an activation without options.
        """
        return MappingProxyType(self._options)

    def forward(self, x):
        x = np.asarray(x)
        out = None
        if x.dtype in _FLOATS:
            out = _buffer(self._bufs, "y", x.shape, x.dtype)
        y = self._forward(x, out=out, **self._options)
        self._saved = y if self._backward_takes_output else x
        return y

    def backward(self, dy):
        saved = self._saved
        if saved is None:
            raise RuntimeError("backward called before forward")
        dy = np.asarray(dy)
        out = None
        if dy.dtype == saved.dtype and dy.shape == saved.shape:
            out = _buffer(self._bufs, "dx", saved.shape, saved.dtype)
        return self._backward(dy, saved, out=out, **self._options)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({opts})"


class ReLU(_Elementwise):
    """``max(x, 0)``; see :func:`fastdl.relu`."""

    _name = "relu"


class LeakyReLU(_Elementwise):
    """Leaky ReLU; see :func:`fastdl.leaky_relu`."""

    _name = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__(negative_slope=negative_slope)


class ELU(_Elementwise):
    """ELU; see :func:`fastdl.elu`."""

    _name = "elu"

    def __init__(self, alpha=1.0):
        super().__init__(alpha=alpha)


class Sigmoid(_Elementwise):
    """Logistic sigmoid; see :func:`fastdl.sigmoid`."""

    _name = "sigmoid"


class Tanh(_Elementwise):
    """tanh; see :func:`fastdl.tanh`."""

    _name = "tanh"


class SiLU(_Elementwise):
    """SiLU / swish ``x * sigmoid(x)``; see :func:`fastdl.silu`."""

    _name = "silu"


class Softplus(_Elementwise):
    """Softplus; see :func:`fastdl.softplus`."""

    _name = "softplus"

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__(beta=beta, threshold=threshold)


class _AlongAxis(_Elementwise):
    """Softmax and log-softmax: one option, ``axis``; backward from the forward output."""

    _functions = _core
    _backward_takes_output = True

    def __init__(self, axis=-1):
        super().__init__(axis=operator.index(axis))


class Softmax(_AlongAxis):
    """Softmax along ``axis`` (PyTorch's ``nn.Softmax(dim)``); see :func:`fastdl.softmax`.

    ``backward`` is :func:`fastdl.softmax_backward` of the forward output.

    Parameters
    ----------
    axis : int, default -1
        The axis that sums to 1.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import Softmax
    >>> layer = Softmax()
    >>> layer.forward(np.log(np.array([[1.0, 3.0]])))
    array([[0.25, 0.75]])
    >>> layer.backward(np.array([[1.0, 1.0]]))    # the sum is constant: no gradient
    array([[0., 0.]])
    """

    _name = "softmax"


class LogSoftmax(_AlongAxis):
    """Log-softmax along ``axis`` (PyTorch's ``nn.LogSoftmax(dim)``); see :func:`fastdl.log_softmax`.

    ``backward`` is :func:`fastdl.log_softmax_backward` of the forward output.

    Parameters
    ----------
    axis : int, default -1

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import LogSoftmax
    >>> LogSoftmax().forward(np.array([1000.0, 1.0, 0.0]))
    array([    0.,  -999., -1000.])
    """

    _name = "log_softmax"


class Flatten(Layer):
    """Merge axes ``start_axis`` … ``end_axis`` into one (PyTorch's ``nn.Flatten``).

    The default keeps the batch axis: (N, d1, d2, …) becomes (N, d1·d2·…).
    ``forward`` returns a view of ``x`` when NumPy can (as ``reshape``);
    ``backward`` reshapes ``dy`` back to the input's shape.

    Parameters
    ----------
    start_axis : int, default 1
    end_axis : int, default -1
        First and last axis merged (negative counts from the end).

    Raises
    ------
    numpy.exceptions.AxisError
        (in ``forward``) An axis out of range for the input (a ValueError
        and IndexError).
    ValueError
        (in ``forward``) ``start_axis`` after ``end_axis``; (in
        ``backward``) ``dy`` not of the forward output's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import Flatten
    >>> layer = Flatten()
    >>> layer.forward(np.zeros((2, 3, 4))).shape
    (2, 12)
    >>> layer.backward(np.zeros((2, 12))).shape
    (2, 3, 4)
    """

    def __init__(self, start_axis=1, end_axis=-1):
        self.start_axis = operator.index(start_axis)
        self.end_axis = operator.index(end_axis)
        self._in_shape = None
        self._out_shape = None

    def forward(self, x):
        x = np.asarray(x)
        start = normalize_axis(self.start_axis, x.ndim)
        end = normalize_axis(self.end_axis, x.ndim)
        if start > end:
            raise ValueError(f"Flatten: start_axis {self.start_axis} comes after end_axis "
                             f"{self.end_axis} for an input of shape {x.shape}")
        shape = x.shape
        # math.prod, not -1: reshape cannot infer -1 when another axis is 0.
        out_shape = (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
        self._in_shape, self._out_shape = shape, out_shape
        return x.reshape(out_shape)

    def backward(self, dy):
        dy = _output_grad(self, dy, self._out_shape)
        return dy.reshape(self._in_shape)

    def __repr__(self):
        return f"Flatten(start_axis={self.start_axis}, end_axis={self.end_axis})"


class Dropout(Layer):
    """Inverted dropout (PyTorch's ``nn.Dropout``): zero elements with probability ``p``.

    In training mode each element of ``x`` is kept with probability
    ``1 - p`` and scaled by ``1 / (1 - p)``, so the expected output is ``x``;
    ``backward`` multiplies ``dy`` by the same mask and scale.  In
    evaluation mode (``eval()``) the layer is the identity: ``forward``
    returns ``x`` itself and ``backward`` returns ``dy``.

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing an element, in [0, 1).  ``p = 0`` is the
        identity in both modes.
    seed : int, numpy.random.Generator or None, optional
        Seed or generator of the masks (``np.random.default_rng(seed)``):
        the same seed gives the same sequence of masks.  None draws fresh
        entropy (a different run each time, as PyTorch without a seed).

    Raises
    ------
    ValueError
        ``p`` outside [0, 1) (``p = 1`` would drop everything and divide by 0).
    TypeError
        (in ``forward``) An input that is not float32 or float64.

    Notes
    -----
    The masks cannot match PyTorch's bit for bit (another random
    generator); their distribution and the scaling are the same.  An
    element is kept when a uniform draw ``u`` in [0, 1) (of the input's
    dtype) satisfies ``u >= p``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import Dropout
    >>> drop = Dropout(0.5, seed=0)
    >>> y = drop.forward(np.ones(8))
    >>> sorted(set(y.tolist()))                 # dropped (0) or scaled by 1 / (1 - p)
    [0.0, 2.0]
    >>> bool(np.array_equal(drop.backward(np.ones(8)), y))
    True
    >>> drop.eval().forward(np.ones(3))
    array([1., 1., 1.])
    """

    def __init__(self, p=0.5, seed=None):
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p!r}")
        self.p = p
        self._rng = np.random.default_rng(seed)
        self._mask = None
        self._out_shape = None
        self._bufs = {}

    def forward(self, x):
        x = np.asarray(x)
        if x.dtype not in _FLOATS:
            raise TypeError(f"Dropout supports float32 and float64 inputs, got {x.dtype}")
        self._out_shape = x.shape
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        # mask = [u >= p] / (1 - p), built in one buffer: u ~ U[0, 1), then
        # the comparison (0 or 1) in place, then the scale.
        mask = _buffer(self._bufs, "mask", x.shape, x.dtype)
        self._rng.random(dtype=x.dtype, out=mask)
        np.greater_equal(mask, self.p, out=mask)
        mask *= 1.0 / (1.0 - self.p)
        self._mask = mask
        return np.multiply(x, mask, out=_buffer(self._bufs, "y", x.shape, x.dtype))

    def backward(self, dy):
        dy = _output_grad(self, dy, self._out_shape)
        mask = self._mask
        if mask is None:
            return dy
        out = _buffer(self._bufs, "dx", dy.shape, dy.dtype) if dy.dtype == mask.dtype else None
        return np.multiply(dy, mask, out=out)

    def __repr__(self):
        return f"Dropout(p={self.p})"


class Sequential(Layer):
    """Layers applied in order; ``backward`` runs them in reverse.

    ``train()`` / ``eval()`` set the mode of every layer inside (and of
    nested Sequentials).  Parameter names are prefixed with the layer's
    index, as in PyTorch: ``"0.W"``, ``"0.b"``, ``"2.W"``, ``"1.0.W"`` for a
    nested one.

    Parameters
    ----------
    *layers : Layer
        Any objects with ``forward`` and ``backward``; one without
        ``named_parameters`` contributes its ``parameters()`` named by
        position (``"3.0"``, ``"3.1"``), one without ``train`` keeps its mode.
    """

    def __init__(self, *layers):
        for layer in layers:
            if not (callable(getattr(layer, "forward", None))
                    and callable(getattr(layer, "backward", None))):
                raise TypeError(f"{layer!r} is not a layer (needs forward and backward)")
        self.layers = list(layers)

    def named_parameters(self):
        """``[("<index>.<name>", Parameter), ...]`` over the layers, in order."""
        named = []
        for i, layer in enumerate(self.layers):
            inner = getattr(layer, "named_parameters", None)
            pairs = inner() if inner is not None else enumerate(layer.parameters())
            named.extend((f"{i}.{name}", p) for name, p in pairs)
        return named

    def train(self, mode=True):
        """Set the mode of this Sequential and of every layer in it; return self.

        Parameters
        ----------
        mode : bool, default True
            True for training mode, False for evaluation mode.

        Returns
        -------
        self : Sequential
        """
        super().train(mode)
        for layer in self.layers:
            if callable(getattr(layer, "train", None)):
                layer.train(mode)
        return self

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy, *, input_grad=True):
        """Back-propagate ``dy`` through every layer; return d loss / d input.

        With ``input_grad=False`` the input gradient is not needed (the
        network's input is data): a first layer that can skip it
        (:class:`Affine`, a nested :class:`Sequential`) does, and None is
        returned.
        """
        layers = self.layers
        for layer in reversed(layers[1:]):
            dy = layer.backward(dy)
        if not layers:
            return dy
        if not input_grad and isinstance(layers[0], (Affine, Sequential)):
            return layers[0].backward(dy, input_grad=False)
        dx = layers[0].backward(dy)
        return dx if input_grad else None

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"
