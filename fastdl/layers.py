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

Examples
--------
>>> import numpy as np
>>> from fastdl import layers
>>> net = layers.Sequential(layers.Affine(4, 8, rng=0), layers.ReLU(), layers.Affine(8, 3, rng=1))
>>> y = net.forward(np.ones((2, 4), np.float32))
>>> dx = net.backward(np.ones_like(y))
>>> y.shape, dx.shape, len(net.parameters())
((2, 3), (2, 4), 4)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import _activations as F
from ._core import affine_backward, affine_forward

__all__ = [
    "Parameter", "Layer", "Affine", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh",
    "SiLU", "Softplus", "Sequential",
]


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


class Layer:
    """Base class: no parameters, identity-free; subclasses define forward/backward."""

    def parameters(self):
        """The layer's :class:`Parameter` objects (a new list)."""
        return []

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

    def parameters(self):
        return [self.W] if self.b is None else [self.W, self.b]

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

    def __init__(self, **options):
        self._options = options
        self._forward = getattr(F, self._name)
        self._backward = getattr(F, self._name + "_backward")
        self._x = None
        self._bufs = {}

    def forward(self, x):
        x = np.asarray(x)
        self._x = x
        out = None
        if x.dtype in (np.float32, np.float64):
            out = _buffer(self._bufs, "y", x.shape, x.dtype)
        return self._forward(x, out=out, **self._options)

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError("backward called before forward")
        dy = np.asarray(dy)
        out = None
        if dy.dtype == self._x.dtype and dy.shape == self._x.shape:
            out = _buffer(self._bufs, "dx", self._x.shape, self._x.dtype)
        return self._backward(dy, self._x, out=out, **self._options)

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


class Sequential(Layer):
    """Layers applied in order; ``backward`` runs them in reverse.

    Parameters
    ----------
    *layers : Layer
    """

    def __init__(self, *layers):
        for layer in layers:
            if not (callable(getattr(layer, "forward", None))
                    and callable(getattr(layer, "backward", None))):
                raise TypeError(f"{layer!r} is not a layer (needs forward and backward)")
        self.layers = list(layers)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

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
