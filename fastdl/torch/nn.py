"""``torch.nn`` module twins running fastdl: activations, softmax and losses.

Each module stores its options as attributes (tensor options such as
``weight`` as buffers, so ``.to()`` and ``state_dict()`` treat them as
PyTorch's do) and calls the :mod:`fastdl.torch.functional` function of the
same name in ``forward``.  Constructor arguments are the function's options,
in its order: ``LeakyReLU(0.2)``, ``CrossEntropyLoss(weight,
label_smoothing=0.1)``, ``Softmax(dim=1)``.

:class:`LinearCrossEntropyLoss` is the LM head: it owns an ``nn.Linear``
(``.linear.weight``, ``.linear.bias``) and computes the cross-entropy of
its output without the logits, as ``torch.nn.LinearCrossEntropyLoss`` does,
with the same state-dict keys.
"""

from __future__ import annotations

import inspect

import torch

from . import functional as F

__all__ = []

#: The functional each module class calls, by its torch.nn name.
_ACTIVATIONS = {
    "Sigmoid": "sigmoid", "LogSigmoid": "logsigmoid", "Softplus": "softplus",
    "Tanh": "tanh", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu",
    "SiLU": "silu", "GELU": "gelu", "Softmax": "softmax", "LogSoftmax": "log_softmax",
}
_LOSSES = {
    "CrossEntropyLoss": "cross_entropy", "MSELoss": "mse_loss", "L1Loss": "l1_loss",
    "HuberLoss": "huber_loss", "LogCoshLoss": "log_cosh_loss", "KLDivLoss": "kl_div",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
}

#: Options held as buffers (tensors that move with the module).
_BUFFERS = ("weight", "pos_weight")


class _FunctionalModule(torch.nn.Module):
    """A module calling one fastdl.torch function with its construction options."""

    _function = None
    _signature = None  # the function's signature without its tensor arguments

    def __init__(self, *args, **kwargs):
        super().__init__()
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            if name in _BUFFERS:
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)

    def _options(self):
        return {name: getattr(self, name) for name in self._signature.parameters}

    def extra_repr(self):
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self._signature.parameters
                         if name not in _BUFFERS)


class _Activation(_FunctionalModule):
    def forward(self, input):
        return self._function(input, **self._options())


class _Loss(_FunctionalModule):
    def forward(self, input, target):
        return self._function(input, target, **self._options())


_DOC = """``torch.nn.{name}`` running :func:`fastdl.torch.functional.{function}`.

    Parameters
    ----------
    {params}
        As for :func:`fastdl.torch.functional.{function}` (stored as attributes{buffers}).

    Examples
    --------
    >>> import torch, fastdl.torch.nn as fnn
{example}
"""


def _module(name, function, base, n_tensors):
    fn = getattr(F, function)
    params = list(inspect.signature(fn).parameters.values())[n_tensors:]
    if base is _Activation:
        ctor = "dim=1" if function in ("softmax", "log_softmax") else ""
        example = (f"    >>> x = torch.randn(4, 3)\n"
                   f"    >>> bool(torch.allclose(fnn.{name}({ctor})(x), torch.nn.{name}({ctor})(x),"
                   " atol=1e-6))\n    True")
    elif name == "LogCoshLoss":
        example = ("    >>> x, t = torch.randn(4, 3), torch.randn(4, 3)\n"
                   "    >>> reference = torch.log(torch.cosh(x - t)).mean()\n"
                   "    >>> bool(torch.allclose(fnn.LogCoshLoss()(x, t), reference))\n"
                   "    True")
    else:
        t = {"CrossEntropyLoss": "torch.tensor([0, 2, 1, 0])", "KLDivLoss": "torch.softmax(x, 1)",
             "BCEWithLogitsLoss": "torch.rand(4, 3)"}.get(name, "torch.randn(4, 3)")
        kw = "reduction='batchmean'" if name == "KLDivLoss" else ""
        example = (f"    >>> x = torch.randn(4, 3); t = {t}\n"
                   f"    >>> ours, theirs = fnn.{name}({kw}), torch.nn.{name}({kw})\n"
                   "    >>> bool(torch.allclose(ours(x, t), theirs(x, t)))\n"
                   "    True")
    buffers = [p.name for p in params if p.name in _BUFFERS]
    doc = _DOC.format(
        name=name, function=function, example=example,
        params=", ".join(p.name for p in params),
        buffers="; " + " and ".join(f"``{b}`` as a buffer" for b in buffers) if buffers else "")
    cls = type(name, (base,), {"_function": staticmethod(fn),
                               "_signature": inspect.Signature(params),
                               "__doc__": doc, "__module__": __name__})
    cls.__signature__ = cls._signature
    return cls


for _name, _function in _ACTIVATIONS.items():
    globals()[_name] = _module(_name, _function, _Activation, 1)
    __all__.append(_name)
for _name, _function in _LOSSES.items():
    globals()[_name] = _module(_name, _function, _Loss, 2)
    __all__.append(_name)
del _name, _function


class LinearCrossEntropyLoss(torch.nn.Module):
    """A linear layer and cross-entropy in one, without the logits (the LM head).

    ``torch.nn.LinearCrossEntropyLoss``'s constructor and state-dict keys
    (``linear.weight``, ``linear.bias``, the ``weight`` buffer), running
    :func:`fastdl.torch.functional.linear_cross_entropy`.

    Parameters
    ----------
    in_features : int
        Hidden size H.
    num_classes : int
        Number of classes V.
    bias : bool, default False
        Whether the linear layer learns a bias (PyTorch's default).
    device, dtype
        Of the linear layer's parameters (``nn.Linear``'s initialisation);
        fastdl runs on the CPU in float32 or float64.
    reduction, weight, ignore_index, label_smoothing
        As for ``torch.nn.CrossEntropyLoss``; ``weight`` is a buffer.
    z_loss, softcap, chunk_size, max_memory
        As for :func:`fastdl.linear_cross_entropy`.

    Attributes
    ----------
    linear : torch.nn.Linear
        The projection; its ``weight`` (V, H) and ``bias`` (V,) are the
        module's parameters.

    Examples
    --------
    >>> import torch, fastdl.torch.nn as fnn
    >>> head = fnn.LinearCrossEntropyLoss(8, 5, bias=True)
    >>> x, target = torch.randn(16, 8), torch.randint(0, 5, (16,))
    >>> logits = torch.nn.functional.linear(x, head.linear.weight, head.linear.bias)
    >>> bool(torch.allclose(head(x, target), torch.nn.functional.cross_entropy(logits, target)))
    True
    """

    def __init__(self, in_features, num_classes, *, bias=False, device=None, dtype=None,
                 reduction="mean", weight=None, ignore_index=-100, label_smoothing=0.0,
                 z_loss=0.0, softcap=None, chunk_size=None, max_memory=None):
        super().__init__()
        self.num_classes = num_classes
        self.linear = torch.nn.Linear(in_features, num_classes, bias=bias, device=device,
                                      dtype=dtype)
        self.register_buffer("weight", weight)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.chunk_size = chunk_size
        self.max_memory = max_memory

    def forward(self, input, target):
        return F.linear_cross_entropy(
            input, self.linear.weight, target, linear_bias=self.linear.bias, weight=self.weight,
            reduction=self.reduction, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, z_loss=self.z_loss, softcap=self.softcap,
            chunk_size=self.chunk_size, max_memory=self.max_memory)

    def extra_repr(self):
        return (f"in_features={self.linear.in_features}, num_classes={self.num_classes}, "
                f"bias={self.linear.bias is not None}, reduction={self.reduction!r}, "
                f"ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, "
                f"z_loss={self.z_loss}, softcap={self.softcap}")


__all__.append("LinearCrossEntropyLoss")
