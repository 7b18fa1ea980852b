"""Optimizers with PyTorch's update rules, updating parameters in place.

Each optimizer holds :class:`fastdl.layers.Parameter` objects (anything with
``.value`` and ``.grad`` arrays) and, on ``step()``, updates every
``.value`` in place from its ``.grad`` with the fused kernels of
:func:`fastdl.sgd_step` / :func:`fastdl.adam_step` (one pass per
parameter, in the backend in force; the hyperparameters are checked once
per step rather than once per parameter).  State buffers (momentum, Adam's
moments) have the parameter's dtype.  No step allocates.

Examples
--------
The course's worked example: ``L = sum_i (y_i - w1 x_i - w0)^2`` on
(0, 0), (1, 1), (1, 2) from w0 = w1 = 1 with learning rate 0.1:

>>> import numpy as np
>>> from fastdl.layers import Parameter
>>> from fastdl.optim import SGD
>>> w = Parameter(np.array([1.0, 1.0]))            # [w0, w1]
>>> opt = SGD([w], lr=0.1)
>>> w.grad[:] = [4 * w.value[1] + 6 * w.value[0] - 6, 4 * w.value[1] + 4 * w.value[0] - 6]
>>> opt.step(); w.value
array([0.6, 0.8])
"""

from __future__ import annotations

import math

import numpy as np

from ._linear_ce import _positive_int
from ._optim_functional import (
    _adam_hyperparameters, _adam_update, _sgd_hyperparameters, _sgd_update,
)

__all__ = ["Optimizer", "SGD", "Adam", "LRScheduler", "StepLR", "CosineAnnealingLR"]


def _nonneg(value, name):
    v = float(value)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class Optimizer:
    """Base class: holds the parameters; ``zero_grad`` and ``step``."""

    def __init__(self, params):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if not (isinstance(getattr(p, "value", None), np.ndarray)
                    and isinstance(getattr(p, "grad", None), np.ndarray)):
                raise TypeError(f"{p!r} is not a parameter (needs .value and .grad arrays)")
            if p.value.dtype not in (np.float32, np.float64):
                raise TypeError(f"parameter dtype {p.value.dtype}; use float32 or float64")
        self.params = params

    def zero_grad(self):
        """Set every parameter's gradient to 0, in place."""
        for p in self.params:
            p.grad[...] = 0

    def state_arrays(self):
        """The optimizer's state arrays by name, each a list parallel to ``params``.

        Returns
        -------
        dict of str to list
            ``{state name: [array or None, one per parameter]}`` with
            PyTorch's state names; ``{}`` for an optimizer without state.
            The arrays are the optimizer's own (same shape and dtype as
            their parameter, C-contiguous), not copies: writing to them
            changes the state.  The dict and lists are new on each call.
        """
        return {}

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    PyTorch's rule (dampening 0)::

        g = grad + weight_decay * w
        if momentum:  buf = g (first step) else momentum * buf + g
                      g = g + momentum * buf  (nesterov)  or  buf
        w -= lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float
        Learning rate, >= 0.
    momentum : float, default 0.0
    nesterov : bool, default False
        Requires ``momentum > 0``.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.

    Raises
    ------
    ValueError
        A negative or non-finite hyperparameter, Nesterov without momentum,
        an empty parameter list.
    """

    def __init__(self, params, lr, *, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params)
        self.lr = _nonneg(lr, "lr")
        self.momentum = _nonneg(momentum, "momentum")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")
        self._buf = [np.zeros_like(p.value) if self.momentum else None for p in self.params]
        self._first = True

    @property
    def first_step(self):
        """True until :meth:`step` has run (settable).

        The first step sets the momentum buffer to the gradient, later steps
        blend it in (``first_step`` of :func:`fastdl.sgd_step`).  Code that
        updates the parameters itself sets it to False after its first
        update; setting it to True restarts the momentum as in a new
        optimizer.
        """
        return self._first

    @first_step.setter
    def first_step(self, value):
        self._first = bool(value)

    def state_arrays(self):
        """The momentum buffers: ``{"momentum_buffer": [buf, ...]}``, one per parameter.

        Returns
        -------
        dict of str to list
            Each buffer has its parameter's shape and dtype; every entry is
            None when ``momentum`` was 0 at construction (no buffers).  The
            arrays are the optimizer's own, not copies; the dict and list
            are new on each call.

        Examples
        --------
        >>> import numpy as np
        >>> from fastdl.layers import Parameter
        >>> from fastdl.optim import SGD
        >>> w = Parameter(np.zeros(3))
        >>> [b.shape for b in SGD([w], lr=0.1, momentum=0.9).state_arrays()["momentum_buffer"]]
        [(3,)]
        >>> SGD([w], lr=0.1).state_arrays()
        {'momentum_buffer': [None]}
        """
        return {"momentum_buffer": list(self._buf)}

    def step(self):
        """Update every parameter in place (one fused pass each)."""
        # The hyperparameters are checked once per step (they may be changed
        # between steps, e.g. by a learning-rate schedule), the arrays per
        # parameter, as fastdl.sgd_step does.
        hyper = _sgd_hyperparameters(self.lr, self.momentum, self.nesterov,
                                     self.weight_decay)
        for p, buf in zip(self.params, self._buf):
            _sgd_update(p.value, p.grad, buf, hyper, self._first, None)
        self._first = False


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's update rule.

    ::

        g = grad + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : iterable of Parameter
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0.0
        L2 penalty added to the gradient (not AdamW's decoupled decay).

    Attributes
    ----------
    t : int
        The number of steps taken (the next step's bias corrections use
        ``t + 1``).

    Raises
    ------
    ValueError
        A hyperparameter out of range or an empty parameter list.
    """

    def __init__(self, params, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr = _nonneg(lr, "lr")
        self.eps = _nonneg(eps, "eps")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        b1, b2 = (float(b) for b in betas)
        for i, b in enumerate((b1, b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
        self.betas = (b1, b2)
        self.t = 0
        self._m = [np.zeros_like(p.value) for p in self.params]
        self._v = [np.zeros_like(p.value) for p in self.params]

    def state_arrays(self):
        """The moments: ``{"exp_avg": [m, ...], "exp_avg_sq": [v, ...]}``, one per parameter.

        Returns
        -------
        dict of str to list
            ``m`` and ``v`` of the update rule, each of its parameter's shape
            and dtype; the step count is :attr:`t` (the number of steps
            taken, so the next step is ``t + 1``).  The arrays are the
            optimizer's own, not copies; the dict and lists are new on each
            call.
        """
        return {"exp_avg": list(self._m), "exp_avg_sq": list(self._v)}

    def step(self):
        """Update every parameter in place (one fused pass each)."""
        # Hyperparameters checked once per step, arrays per parameter (as
        # fastdl.adam_step does).
        hyper = _adam_hyperparameters(self.lr, self.betas, self.eps, self.weight_decay)
        self.t += 1
        for p, m, v in zip(self.params, self._m, self._v):
            _adam_update(p.value, p.grad, m, v, hyper, self.t, None)


class LRScheduler:
    """Base class of the learning-rate schedules (PyTorch's ``lr_scheduler``).

    A schedule sets ``optimizer.lr`` once per :meth:`step` (an epoch, as in
    PyTorch: call it after the epoch's ``optimizer.step()`` calls).  As
    PyTorch's, the rules are *chainable*: each step updates the optimizer's
    current ``lr`` (so two schedules on one optimizer compose), and the
    values are the same floating-point numbers as PyTorch's.

    Parameters
    ----------
    optimizer : Optimizer
        Anything with a float attribute ``lr``.

    Attributes
    ----------
    optimizer : Optimizer
    base_lrs : list of float
        ``[optimizer.lr]`` at construction (PyTorch's, one per parameter
        group; fastdl's optimizers have one).
    last_epoch : int
        The number of :meth:`step` calls (0 after construction).

    Raises
    ------
    TypeError
        ``optimizer`` has no numeric ``lr``.
    """

    def __init__(self, optimizer):
        try:
            lr = float(optimizer.lr)
        except (AttributeError, TypeError, ValueError):
            raise TypeError(
                f"{type(optimizer).__name__} is not an optimizer with a numeric lr") from None
        self.optimizer = optimizer
        self.base_lrs = [lr]
        # PyTorch's constructor takes a first step, to epoch 0, which leaves
        # the learning rate as it is.
        self.last_epoch = 0
        self._last_lr = [optimizer.lr]

    def _next_lr(self, lr):  # pragma: no cover - abstract
        """The learning rate of epoch ``last_epoch`` (>= 1) from the current ``lr``."""
        raise NotImplementedError

    def step(self):
        """Advance one epoch: set ``optimizer.lr`` to the next epoch's rate."""
        self.last_epoch += 1
        self.optimizer.lr = self._next_lr(self.optimizer.lr)
        self._last_lr = [self.optimizer.lr]

    def get_last_lr(self):
        """The learning rate set by the last :meth:`step` (or the start), as ``[lr]``.

        Returns
        -------
        list of float
            One entry, as PyTorch's list with one per parameter group.
        """
        return list(self._last_lr)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base_lr * gamma ** (epoch // step_size)``, computed as PyTorch
    does: the current ``lr`` times ``gamma`` at every non-zero multiple of
    ``step_size``.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Epochs between decays, >= 1.
    gamma : float, default 0.1
        Decay factor, finite and >= 0.

    Raises
    ------
    ValueError
        ``step_size < 1`` or ``gamma`` negative or not finite.
    TypeError
        A non-integer ``step_size``; an optimizer without ``lr``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import Parameter
    >>> from fastdl.optim import SGD, StepLR
    >>> opt = SGD([Parameter(np.zeros(2))], lr=1.0)
    >>> sched = StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(sched.get_last_lr()[0])  # the epoch's rate; train with opt here
    ...     sched.step()
    >>> lrs, opt.lr
    ([1.0, 1.0, 0.5, 0.5, 0.25], 0.25)
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _nonneg(gamma, "gamma")
        super().__init__(optimizer)

    def _next_lr(self, lr):
        return lr * self.gamma if self.last_epoch % self.step_size == 0 else lr


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial learning rate to ``eta_min`` over ``T_max`` epochs.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``
    (SGDR without restarts), in PyTorch's recursive form: each step rescales
    the current ``lr - eta_min`` by the ratio of consecutive cosine factors,
    so the values are PyTorch's to the last bit.  Past ``T_max`` the rate
    climbs back along the cosine (period ``2 * T_max``), as PyTorch's.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Epochs of the half period, >= 1.
    eta_min : float, default 0.0
        The minimum learning rate, finite and >= 0.

    Raises
    ------
    ValueError
        ``T_max < 1`` or ``eta_min`` negative or not finite.
    TypeError
        A non-integer ``T_max``; an optimizer without ``lr``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdl.layers import Parameter
    >>> from fastdl.optim import Adam, CosineAnnealingLR
    >>> opt = Adam([Parameter(np.zeros(2))], lr=1.0)
    >>> sched = CosineAnnealingLR(opt, T_max=4)
    >>> lrs = [sched.get_last_lr()[0]]
    >>> for epoch in range(4):
    ...     sched.step()
    ...     lrs.append(round(sched.get_last_lr()[0], 4))
    >>> lrs
    [1.0, 0.8536, 0.5, 0.1464, 0.0]
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _positive_int(T_max, "T_max")
        self.eta_min = _nonneg(eta_min, "eta_min")
        super().__init__(optimizer)

    def _next_lr(self, lr):
        epoch, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if (epoch - 1 - T) % (2 * T) == 0:
            # The step out of a minimum, where the ratio below would be 0/0:
            # add the first cosine increment.
            return lr + (self.base_lrs[0] - eta_min) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * epoch / T)) / (1 + math.cos(math.pi * (epoch - 1) / T))
                * (lr - eta_min) + eta_min)
