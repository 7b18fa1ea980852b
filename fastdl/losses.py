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

import numpy as np

from . import _losses as F
from ._core import cross_entropy_with_grad

__all__ = ["Loss", "CrossEntropyLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
           "HuberLoss", "LogCoshLoss", "KLDivLoss"]


class Loss:
    """Base class for the pointwise losses (``<name>_backward`` with grad_output 1)."""

    _name = ""

    def __init__(self, *, reduction="mean", **options):
        self.reduction = reduction
        self._options = options
        self._saved = None
        self._grad = None

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
