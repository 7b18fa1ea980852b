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

from . import _activations as F
from ._core import affine_backward, affine_forward

__all__ = [
    "Parameter", "Layer", "Affine", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh",
    "SiLU", "Softplus", "Sequential",
]


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    value : ndarray
        The parameter, updated in place by optimizers.
    grad : ndarray
        d loss / d value, same shape and dtype; written by the owning
        layer's ``backward``.
    """

    __slots__ = ("value", "grad", "name")

    def __init__(self, value, name=""):
        self.value = np.ascontiguousarray(value)
        self.grad = np.zeros_like(self.value)
        self.name = name

    def __repr__(self):
        return f"Parameter({self.name or '?'}, shape={self.value.shape}, dtype={self.value.dtype})"


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
    W : Parameter, value shape (out_features, in_features)
    b : Parameter, value shape (out_features,), or None

    Notes
    -----
    PyTorch's default initialisation: ``kaiming_uniform_(a=sqrt(5))``, i.e.
    ``W ~ U(-1/sqrt(D), 1/sqrt(D))``, and ``b ~ U(-1/sqrt(D), 1/sqrt(D))``.
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
        self.W = Parameter(gen.uniform(-bound, bound, (out_features, in_features)).astype(dtype),
                           "W")
        self.b = (Parameter(gen.uniform(-bound, bound, out_features).astype(dtype), "b")
                  if bias else None)
        self.in_features = in_features
        self.out_features = out_features
        self._x = None
        self._bufs = {}

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
