"""Loss objects for the layer API: ``forward(input, target) -> loss``, ``backward() -> dinput``.

Each wraps the functional loss of the same name (PyTorch semantics) and keeps
what ``backward`` needs.  ``backward()`` returns the gradient of the value
``forward`` returned (of its sum for ``reduction="none"``) with respect to
``input``; it takes no argument, as the loss is the end of the graph.
The gradient array is a buffer reused by the next ``forward``/``backward``
of the same shape.

Examples
--------
>>> import numpy as np
>>> from fastdl import losses
>>> crit = losses.MSELoss()
>>> float(crit.forward(np.array([1., 3.]), np.array([0., 0.])))
5.0
>>> crit.backward()
array([1., 3.])
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from . import _loss_functions as F
from ._core import cross_entropy_with_grad
from ._linear_ce import linear_cross_entropy_with_grad
from .layers import Affine

__all__ = ["Loss", "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
           "HuberLoss", "LogCoshLoss", "KLDivLoss", "LinearCrossEntropyLoss"]


class Loss:
    """Base class for the pointwise losses (``<name>_backward`` with grad_output 1)."""

    _name = ""

    def __init__(self, *, reduction="mean", **options):
        self.reduction = reduction
        self._options = options
        self._saved = None
        self._grad = None

    @property
    def options(self):
        """The loss's options besides ``reduction``, e.g. ``{"delta": 1.0}`` (read-only).

        A read-only view (``types.MappingProxyType``) of the keyword
        arguments passed to the functional, empty for a loss without
        options; ``reduction`` is the attribute of its own name.
        """
        return MappingProxyType(self._options)

    def forward(self, input, target):
        """The loss of ``input`` against ``target`` (see the functional's docs)."""
        loss = getattr(F, self._name)(input, target, reduction=self.reduction, **self._options)
        self._saved = (input, target)
        return loss

    def backward(self):
        """d loss / d input for the last ``forward``."""
        if self._saved is None:
            raise RuntimeError("backward called before forward")
        input, target = self._saved
        input = np.asarray(input)
        out = self._grad
        if out is None or out.shape != input.shape or out.dtype != input.dtype:
            out = None
        self._grad = getattr(F, self._name + "_backward")(
            1.0, input, target, reduction=self.reduction, out=out, **self._options)
        return self._grad

    def __call__(self, input, target):
        return self.forward(input, target)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in {"reduction": self.reduction,
                                                   **self._options}.items())
        return f"{type(self).__name__}({opts})"


class MSELoss(Loss):
    """Mean squared error; see :func:`fastdl.mse_loss`."""

    _name = "mse_loss"

    def __init__(self, *, reduction="mean"):
        super().__init__(reduction=reduction)


class L1Loss(Loss):
    """Mean absolute error; see :func:`fastdl.l1_loss`."""

    _name = "l1_loss"

    def __init__(self, *, reduction="mean"):
        super().__init__(reduction=reduction)


class HuberLoss(Loss):
    """Huber loss; see :func:`fastdl.huber_loss`."""

    _name = "huber_loss"

    def __init__(self, delta=1.0, *, reduction="mean"):
        super().__init__(reduction=reduction, delta=delta)


class LogCoshLoss(Loss):
    """Log-cosh loss; see :func:`fastdl.log_cosh_loss`."""

    _name = "log_cosh_loss"

    def __init__(self, *, reduction="mean"):
        super().__init__(reduction=reduction)


class KLDivLoss(Loss):
    """KL divergence with log-probability input; see :func:`fastdl.kl_div`."""

    _name = "kl_div"

    def __init__(self, *, reduction="mean", log_target=False):
        super().__init__(reduction=reduction, log_target=log_target)


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits; see :func:`fastdl.binary_cross_entropy_with_logits`."""

    _name = "binary_cross_entropy_with_logits"

    def __init__(self, *, weight=None, pos_weight=None, reduction="mean"):
        super().__init__(reduction=reduction, weight=weight, pos_weight=pos_weight)


class CrossEntropyLoss:
    """Softmax cross-entropy on logits (PyTorch's ``nn.CrossEntropyLoss``).

    ``forward`` runs the fused kernel :func:`fastdl.cross_entropy_with_grad`,
    which computes the loss and its gradient in one pass over the logits;
    ``backward`` returns the stored gradient.

    Parameters
    ----------
    weight, ignore_index, reduction, label_smoothing
        As for :func:`fastdl.cross_entropy`.
    """

    def __init__(self, *, weight=None, ignore_index=-100, reduction="mean",
                 label_smoothing=0.0):
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self._grad = None
        self._have = False

    def forward(self, input, target):
        """The loss of ``input`` (logits (N, C) or (C,)) against ``target``."""
        logits = np.asarray(input)
        out = self._grad
        if out is None or out.shape != logits.shape or out.dtype != logits.dtype \
                or np.may_share_memory(out, logits):
            out = None
        loss, self._grad = cross_entropy_with_grad(
            logits, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.label_smoothing, out=out)
        self._have = True
        return loss

    def backward(self):
        """d loss / d logits (of ``loss.sum()`` for reduction="none")."""
        if not self._have:
            raise RuntimeError("backward called before forward")
        return self._grad

    def __call__(self, input, target):
        return self.forward(input, target)

    def __repr__(self):
        return (f"CrossEntropyLoss(reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing})")


class LinearCrossEntropyLoss:
    """A linear layer and softmax cross-entropy in one: the LM head.

    ``forward(x, target)`` is ``cross_entropy(x @ W.T + b, target)`` through
    :func:`fastdl.linear_cross_entropy_with_grad`, which never holds the
    (N, out_features) logits: it computes the loss and every gradient in one
    chunked pass, writes ``W.grad`` and ``b.grad`` (overwriting, as layers'
    ``backward`` does) and keeps ``dx`` for :meth:`backward`.  The head owns
    its parameters, so an optimizer takes ``body.parameters() +
    head.parameters()``.

    Parameters
    ----------
    in_features, out_features : int
        Hidden size H and number of classes V.
    bias : bool, default True
        Whether to learn a bias ``b``.
    dtype : float32 or float64, default float32
    rng : numpy.random.Generator or int, optional
        Seed or generator for the initialisation (as :class:`fastdl.layers.Affine`,
        which draws the same values for the same seed).
    weight, ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size
        As for :func:`fastdl.linear_cross_entropy`.

    Attributes
    ----------
    W : Parameter, shape (out_features, in_features)
    b : Parameter, shape (out_features,), or None
        Assigning an array wraps it in a new Parameter, as for ``Affine``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl import layers, losses, optim
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((64, 8)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    >>> body = layers.Sequential(layers.Affine(8, 16, rng=1), layers.Tanh())
    >>> head = losses.LinearCrossEntropyLoss(16, 4, rng=2)
    >>> opt = optim.Adam(body.parameters() + head.parameters(), lr=0.05)
    >>> for step in range(60):
    ...     loss = head.forward(body.forward(x), y)
    ...     _ = body.backward(head.backward())
    ...     opt.step()
    ...     first = loss if step == 0 else first
    >>> bool(loss < 0.5 * first)
    True
    """

    def __init__(self, in_features, out_features, *, bias=True, dtype=np.float32, rng=None,
                 weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                 z_loss=0.0, softcap=None, chunk_size=None):
        # The projection's parameters, created, initialised and checked on
        # assignment exactly as Affine's (PyTorch's nn.Linear initialisation).
        self._linear = Affine(in_features, out_features, bias=bias, dtype=dtype, rng=rng)
        self.weight = weight
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.chunk_size = chunk_size
        self._dx = None
        self._have = False

    @property
    def in_features(self):
        return self._linear.in_features

    @property
    def out_features(self):
        return self._linear.out_features

    @property
    def W(self):
        return self._linear.W

    @W.setter
    def W(self, value):
        self._linear.W = value

    @property
    def b(self):
        return self._linear.b

    @b.setter
    def b(self, value):
        self._linear.b = value

    def parameters(self):
        """The head's :class:`fastdl.layers.Parameter` objects, ``[W, b]`` (a new list)."""
        return self._linear.parameters()

    def forward(self, x, target):
        """The loss of the logits ``x @ W.T + b`` (x (N, in_features) or (in_features,))."""
        W, b = self.W, self.b
        x = np.asarray(x)
        dx = self._dx
        if dx is None or dx.shape != x.shape or dx.dtype != x.dtype \
                or np.may_share_memory(dx, x):
            dx = None
        loss, self._dx, _, _ = linear_cross_entropy_with_grad(
            x, W.value, target, b=None if b is None else b.value, weight=self.weight,
            ignore_index=self.ignore_index, reduction=self.reduction,
            label_smoothing=self.label_smoothing, z_loss=self.z_loss, softcap=self.softcap,
            chunk_size=self.chunk_size, out=(dx, W.grad, None if b is None else b.grad))
        self._have = True
        return loss

    def backward(self):
        """d loss / d x for the last ``forward`` (of ``loss.sum()`` for reduction="none")."""
        if not self._have:
            raise RuntimeError("backward called before forward")
        return self._dx

    def __call__(self, x, target):
        return self.forward(x, target)

    def __repr__(self):
        return (f"LinearCrossEntropyLoss({self.in_features}, {self.out_features}, "
                f"bias={self.b is not None}, dtype={self.W.value.dtype}, "
                f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, "
                f"softcap={self.softcap})")
