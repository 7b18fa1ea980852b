"""Type stubs for the compiled module ``fastdl.backends.cython._elementwise`` (kernels/elementwise.pyx).

kernels/elementwise.pyx is expanded from kernels/elementwise.pyx.tp by setup.py.

Kernels trust their arguments (see the contract in :mod:`fastdl.backends`):
C-contiguous arrays, all float arrays of one dtype (float32 or float64, the
fused type ``floating``), shapes checked by the caller.  Generated from the
``def`` signatures; keep in sync when a kernel's signature changes
(python .ci/gen_stubs.py; tests/test_install.py checks the names).
"""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

#: Whether the module was compiled with OpenMP (else its kernels run serially).
HAVE_OPENMP: bool
#: Whether the module was compiled for AVX2 and FMA (its ``_avx2`` builds).
BUILT_FOR_AVX2: bool
#: Whether this CPU runs AVX2 and FMA code.
CPU_HAS_AVX2_FMA: bool
#: Whether the module was compiled for AVX-512 F/BW/CD/DQ/VL (its ``_avx512`` builds).
BUILT_FOR_AVX512: bool
#: Whether this CPU (and OS) runs that AVX-512 code.
CPU_HAS_AVX512: bool

def sigmoid(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = sigmoid(x), o0 and o1 the options."""
    ...

def sigmoid_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * sigmoid'(x), o0 and o1 the options."""
    ...

def log_sigmoid(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = log_sigmoid(x), o0 and o1 the options."""
    ...

def log_sigmoid_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * log_sigmoid'(x), o0 and o1 the options."""
    ...

def softplus(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = softplus(x), o0 and o1 the options."""
    ...

def softplus_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * softplus'(x), o0 and o1 the options."""
    ...

def tanh(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = tanh(x), o0 and o1 the options."""
    ...

def tanh_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * tanh'(x), o0 and o1 the options."""
    ...

def relu(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = relu(x), o0 and o1 the options."""
    ...

def relu_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * relu'(x), o0 and o1 the options."""
    ...

def leaky_relu(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = leaky_relu(x), o0 and o1 the options."""
    ...

def leaky_relu_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * leaky_relu'(x), o0 and o1 the options."""
    ...

def elu(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = elu(x), o0 and o1 the options."""
    ...

def elu_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * elu'(x), o0 and o1 the options."""
    ...

def silu(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = silu(x), o0 and o1 the options."""
    ...

def silu_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * silu'(x), o0 and o1 the options."""
    ...

def gelu(x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = gelu(x), o0 and o1 the options."""
    ...

def gelu_backward(dy: NDArray[_F], x: NDArray[_F], o0: float, o1: float, out: NDArray[_F], num_threads: int) -> None:
    """out = dy * gelu'(x), o0 and o1 the options."""
    ...

def mse_loss(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, out: NDArray[_F], has_out: bool, num_threads: int) -> float:
    """Sum of the (weighted) mse_loss terms in double; out[i] = the term if has_out."""
    ...

def mse_loss_backward(dy: NDArray[_F], has_dy: bool, x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, out: NDArray[_F], num_threads: int) -> None:
    """out = scale * w * dmse_loss/dx * dy (w, dy: 1 where absent)."""
    ...

def mse_loss_with_grad(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, loss_out: NDArray[_F], has_loss_out: bool, grad: NDArray[_F], num_threads: int) -> float:
    """One pass: grad = scale * w * dmse_loss/dx, loss_out = the terms; returns their sum."""
    ...

def l1_loss(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, out: NDArray[_F], has_out: bool, num_threads: int) -> float:
    """Sum of the (weighted) l1_loss terms in double; out[i] = the term if has_out."""
    ...

def l1_loss_backward(dy: NDArray[_F], has_dy: bool, x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, out: NDArray[_F], num_threads: int) -> None:
    """out = scale * w * dl1_loss/dx * dy (w, dy: 1 where absent)."""
    ...

def l1_loss_with_grad(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, loss_out: NDArray[_F], has_loss_out: bool, grad: NDArray[_F], num_threads: int) -> float:
    """One pass: grad = scale * w * dl1_loss/dx, loss_out = the terms; returns their sum."""
    ...

def huber_loss(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, out: NDArray[_F], has_out: bool, num_threads: int) -> float:
    """Sum of the (weighted) huber_loss terms in double; out[i] = the term if has_out."""
    ...

def huber_loss_backward(dy: NDArray[_F], has_dy: bool, x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, out: NDArray[_F], num_threads: int) -> None:
    """out = scale * w * dhuber_loss/dx * dy (w, dy: 1 where absent)."""
    ...

def huber_loss_with_grad(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, loss_out: NDArray[_F], has_loss_out: bool, grad: NDArray[_F], num_threads: int) -> float:
    """One pass: grad = scale * w * dhuber_loss/dx, loss_out = the terms; returns their sum."""
    ...

def log_cosh_loss(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, out: NDArray[_F], has_out: bool, num_threads: int) -> float:
    """Sum of the (weighted) log_cosh_loss terms in double; out[i] = the term if has_out."""
    ...

def log_cosh_loss_backward(dy: NDArray[_F], has_dy: bool, x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, out: NDArray[_F], num_threads: int) -> None:
    """out = scale * w * dlog_cosh_loss/dx * dy (w, dy: 1 where absent)."""
    ...

def log_cosh_loss_with_grad(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, loss_out: NDArray[_F], has_loss_out: bool, grad: NDArray[_F], num_threads: int) -> float:
    """One pass: grad = scale * w * dlog_cosh_loss/dx, loss_out = the terms; returns their sum."""
    ...

def kl_div(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, out: NDArray[_F], has_out: bool, num_threads: int) -> float:
    """Sum of the (weighted) kl_div terms in double; out[i] = the term if has_out."""
    ...

def kl_div_backward(dy: NDArray[_F], has_dy: bool, x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, out: NDArray[_F], num_threads: int) -> None:
    """out = scale * w * dkl_div/dx * dy (w, dy: 1 where absent)."""
    ...

def kl_div_with_grad(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, loss_out: NDArray[_F], has_loss_out: bool, grad: NDArray[_F], num_threads: int) -> float:
    """One pass: grad = scale * w * dkl_div/dx, loss_out = the terms; returns their sum."""
    ...

def binary_cross_entropy_with_logits(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, out: NDArray[_F], has_out: bool, num_threads: int) -> float:
    """Sum of the (weighted) binary_cross_entropy_with_logits terms in double; out[i] = the term if has_out."""
    ...

def binary_cross_entropy_with_logits_backward(dy: NDArray[_F], has_dy: bool, x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, out: NDArray[_F], num_threads: int) -> None:
    """out = scale * w * dbinary_cross_entropy_with_logits/dx * dy (w, dy: 1 where absent)."""
    ...

def binary_cross_entropy_with_logits_with_grad(x: NDArray[_F], t: NDArray[_F], w: NDArray[_F], has_w: bool, a: NDArray[_F], has_a: bool, o0: float, scale: float, loss_out: NDArray[_F], has_loss_out: bool, grad: NDArray[_F], num_threads: int) -> float:
    """One pass: grad = scale * w * dbinary_cross_entropy_with_logits/dx, loss_out = the terms; returns their sum."""
    ...

def entropy(p: NDArray[_F], out: NDArray[_F], num_threads: int) -> None:
    """out[i] = -sum_j p[i, j] log p[i, j] over the rows of p, 0 log 0 = 0."""
    ...
