# The scalar math of the elementwise family: one inline function per op of
# the table (fastdl/_ops.py) and role, on doubles, with the names and
# arguments of the Numba scalars in fastdl/backends/numba/elementwise.py:
#
# * an activation <name>: <name>_fwd(x, o0, o1), the result for one element,
#   and <name>_bwd(dy, x, o0, o1) = dy * f'(x); o0, o1 its options in the
#   order of its row in the table, unused ones 0;
# * a pointwise loss <name>: <name>_value(x, t, a, o0), the loss of one
#   element, and <name>_deriv(x, t, a, o0), d loss / d x; a is the element's
#   auxiliary value (pos_weight for BCE with logits), 1 where absent.
#
# kernels/elementwise.pyx.tp writes one loop per kind around them; gcc
# inlines them into each op's loop.  The formulas are the reference's
# (fastdl/backends/numpy/elementwise.py), each stability trick explained
# where it is made.  libc's functions are reached as `math.<name>` so none
# of them can clash with an op (tanh).  exp, expm1, log1p, log, tanh and erf
# are fastdl's own (kernels/_fastexp.h: branch-free arithmetic within 1.3
# ulp, exact at the special values, the algorithms of the Numba scalars),
# which gcc can vectorise where a libm call would keep the loop scalar.

from libc cimport math

cdef extern from "_fastexp.h" nogil:
    double fastdl_exp(double x)
    double fastdl_expm1(double x)
    double fastdl_log1p(double x)
    double fastdl_log(double x)
    double fastdl_tanh(double x)
    double fastdl_erf(double x)


# ------------------------------------------------------------ shared helpers

cdef inline double _sigmoid(double z) noexcept nogil:
    # sigma(z) = 1 / (1 + exp(-z)) for z >= 0, the equal exp(z) / (1 + exp(z))
    # for z < 0: exp's argument is never positive, so no overflow, and sigma
    # is never NaN for finite z (sigma(-inf) = 0, sigma(inf) = 1).
    cdef double e = fastdl_exp(-math.fabs(z))  # in (0, 1]; NaN propagates
    return 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)


cdef inline double _softplus(double z) noexcept nogil:
    # log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): exp's argument is <= 0.
    return (z if z > 0.0 else 0.0) + fastdl_log1p(fastdl_exp(-math.fabs(z)))


cdef inline double _sech2(double x) noexcept nogil:
    # sech(x)^2 = (2 e / (1 + e^2))^2 with e = exp(-|x|) <= 1: no overflow and
    # no cancellation (1 - tanh(x)^2 would lose all digits in the tails).
    cdef double e = fastdl_exp(-math.fabs(x))
    cdef double r = 2.0 * e / (1.0 + e * e)
    return r * r


# --------------------------------------------------------------- activations

cdef inline double sigmoid_fwd(double x, double o0, double o1) noexcept nogil:
    return _sigmoid(x)


cdef inline double sigmoid_bwd(double dy, double x, double o0,
                               double o1) noexcept nogil:
    # sigma(x) sigma(-x) = sigma(x) (1 - sigma(x)): the second factor is
    # computed directly, not as a difference that cancels to 0.
    return dy * (_sigmoid(x) * _sigmoid(-x))


cdef inline double log_sigmoid_fwd(double x, double o0,
                                   double o1) noexcept nogil:
    # log sigma(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)): -1000
    # gives -1000, not log(0) = -inf; written with min so that
    # log_sigmoid(inf) is +0.0 as in PyTorch, not -0.0.
    return (x if x < 0.0 else 0.0) - fastdl_log1p(fastdl_exp(-math.fabs(x)))


cdef inline double log_sigmoid_bwd(double dy, double x, double o0,
                                   double o1) noexcept nogil:
    # d/dx log sigma(x) = 1 - sigma(x) = sigma(-x).
    return dy * _sigmoid(-x)


cdef inline double softplus_fwd(double x, double beta,
                                double threshold) noexcept nogil:
    # PyTorch: x itself once beta*x > threshold (there log1p(exp(bx))/b and x
    # agree to float precision); below it the overflow-free form, so even a
    # huge threshold cannot make exp overflow.
    cdef double bz = beta * x
    return x if bz > threshold else _softplus(bz) / beta


cdef inline double softplus_bwd(double dy, double x, double beta,
                                double threshold) noexcept nogil:
    # d/dx softplus(beta x)/beta = sigma(beta x); 1 above the threshold.
    cdef double bz = beta * x
    return dy if bz > threshold else dy * _sigmoid(bz)


cdef inline double tanh_fwd(double x, double o0, double o1) noexcept nogil:
    return fastdl_tanh(x)


cdef inline double tanh_bwd(double dy, double x, double o0,
                            double o1) noexcept nogil:
    return dy * _sech2(x)


cdef inline double relu_fwd(double x, double o0, double o1) noexcept nogil:
    # A select on x < 0, not max(x, 0): NaN stays NaN (the comparison is
    # false) and -0.0 stays -0.0, as in PyTorch.
    return 0.0 if x < 0.0 else x


cdef inline double relu_bwd(double dy, double x, double o0,
                            double o1) noexcept nogil:
    # PyTorch's threshold_backward: 0 where x <= 0 (the derivative at 0 is
    # taken as 0), dy elsewhere, including where x is NaN.  dy arrives as a
    # value the loop has already loaded: a load under the condition kept gcc
    # from vectorising the loop, a select of two registers vectorises
    # (measured on 8192 float32 elements, serial build: 9.6 us -> 2.0 us).
    return 0.0 if x <= 0.0 else dy


cdef inline double leaky_relu_fwd(double x, double negative_slope,
                                  double o1) noexcept nogil:
    return x if x > 0.0 else negative_slope * x


cdef inline double leaky_relu_bwd(double dy, double x, double negative_slope,
                                  double o1) noexcept nogil:
    return dy if x > 0.0 else negative_slope * dy


cdef inline double elu_fwd(double x, double alpha, double o1) noexcept nogil:
    # expm1 keeps alpha (exp(x) - 1) accurate for small negative x; its
    # argument is <= 0 here, so it cannot overflow.
    return x if x > 0.0 else alpha * fastdl_expm1(x)


cdef inline double elu_bwd(double dy, double x, double alpha,
                           double o1) noexcept nogil:
    # PyTorch: alpha exp(x) for x <= 0, 1 otherwise (NaN counts as otherwise).
    return dy * (alpha * fastdl_exp(x)) if x <= 0.0 else dy


cdef inline double silu_fwd(double x, double o0, double o1) noexcept nogil:
    return x * _sigmoid(x)


cdef inline double silu_bwd(double dy, double x, double o0,
                            double o1) noexcept nogil:
    # d/dx x sigma(x) = sigma(x) (1 + x (1 - sigma(x))) with 1 - sigma(x)
    # formed as sigma(-x): no cancellation for large x.
    return dy * (_sigmoid(x) * (1.0 + x * _sigmoid(-x)))


# gelu's constants, the same doubles numba/elementwise.py computes in Python
# (sqrt and the divisions are correctly rounded in both; gcc folds them at
# compile time): sqrt(1/2), 1 / sqrt(2 pi), sqrt(2 / pi) and the cubic
# coefficient of the tanh form.
cdef inline double _sqrt_half() noexcept nogil:
    return math.sqrt(0.5)


cdef inline double _inv_sqrt_2pi() noexcept nogil:
    return 1.0 / math.sqrt(2.0 * math.M_PI)


cdef inline double _sqrt_2_over_pi() noexcept nogil:
    return math.sqrt(2.0 / math.M_PI)


cdef inline double _gelu_cubic() noexcept nogil:
    return 0.044715


cdef inline double _gelu_inner(double x) noexcept nogil:
    # sqrt(2/pi) (x + 0.044715 x^3), the tanh form's argument; the cubic term
    # as ((0.044715 x) x) x, the Numba scalar's order of operations.
    return _sqrt_2_over_pi() * (x + _gelu_cubic() * x * x * x)


cdef inline double gelu_fwd(double x, double tanh_form,
                            double o1) noexcept nogil:
    # Exact (approximate="none", tanh_form 0): x Phi(x) = x (1 + erf(x /
    # sqrt 2)) / 2.  approximate="tanh" (Hendrycks & Gimpel 2016, PyTorch's
    # formula): x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2.  x^3
    # overflowing to inf only saturates tanh, so neither form overflows.
    if tanh_form != 0.0:
        return 0.5 * x * (1.0 + fastdl_tanh(_gelu_inner(x)))
    return 0.5 * x * (1.0 + fastdl_erf(x * _sqrt_half()))


cdef inline double gelu_bwd(double dy, double x, double tanh_form,
                            double o1) noexcept nogil:
    # Exact: Phi(x) + x phi(x).  Tanh form: PyTorch's formula, with sech^2 of
    # the inner argument from _sech2; beyond |x| = 1e10 tanh has saturated
    # and the second term is exactly 0 (its inf * 0 would otherwise give NaN).
    cdef double inner, half_x, left, inner_d, cdf
    if tanh_form != 0.0:
        inner = _gelu_inner(x)
        half_x = 0.5 * x
        left = 0.5 * (1.0 + fastdl_tanh(inner))
        if math.fabs(x) > 1e10:
            return dy * left
        inner_d = _sqrt_2_over_pi() * (1.0 + 3.0 * _gelu_cubic() * x * x)
        return dy * (left + half_x * _sech2(inner) * inner_d)
    cdf = 0.5 * (1.0 + fastdl_erf(x * _sqrt_half()))
    return dy * (cdf + x * (_inv_sqrt_2pi() * fastdl_exp(-0.5 * x * x)))


# ----------------------------------------------------------- pointwise losses

cdef inline double mse_loss_value(double x, double t, double a,
                                  double o0) noexcept nogil:
    cdef double d = x - t
    return d * d


cdef inline double mse_loss_deriv(double x, double t, double a,
                                  double o0) noexcept nogil:
    return 2.0 * (x - t)


cdef inline double l1_loss_value(double x, double t, double a,
                                 double o0) noexcept nogil:
    return math.fabs(x - t)


cdef inline double l1_loss_deriv(double x, double t, double a,
                                 double o0) noexcept nogil:
    # sign(d), 0 at d == 0 (PyTorch's subgradient of |d|); d * 0 keeps NaN.
    cdef double d = x - t
    return 1.0 if d > 0.0 else (-1.0 if d < 0.0 else d * 0.0)


cdef inline double huber_loss_value(double x, double t, double a,
                                    double delta) noexcept nogil:
    # 0.5 d^2 inside |d| <= delta, delta (|d| - delta/2) outside: the two
    # pieces and their slopes meet at |d| = delta.
    cdef double d = x - t
    cdef double ad = math.fabs(d)
    return 0.5 * d * d if ad <= delta else delta * (ad - 0.5 * delta)


cdef inline double huber_loss_deriv(double x, double t, double a,
                                    double delta) noexcept nogil:
    cdef double d = x - t
    return -delta if d < -delta else (delta if d > delta else d)


cdef inline double log_cosh_loss_value(double x, double t, double a,
                                       double o0) noexcept nogil:
    # |d| <= 1: cosh(d) - 1 = 2 sinh(d/2)^2 exactly, so log1p of it keeps
    # full relative accuracy down to d^2/2 (a plain log(cosh(d)) would round
    # cosh(d) to 1 and return 0 for |d| < 1e-8).  |d| > 1:
    # log cosh(d) = |d| + log1p(exp(-2|d|)) - log 2, whose exp's argument is
    # < -2, so nothing overflows for any finite d (and log_cosh(inf) = inf).
    # sinh(y) = (em + em / (em + 1)) / 2 with em = expm1(y): no cancellation.
    # One log1p, of the side's argument: a vectorised loop computes both
    # sides, and log1p is the dearer part.
    cdef double ad = math.fabs(x - t)
    cdef bint near = ad <= 1.0
    cdef double em = fastdl_expm1(0.5 * ad)
    cdef double s = 0.5 * (em + em / (em + 1.0))
    cdef double r = fastdl_log1p(2.0 * s * s if near else fastdl_exp(-2.0 * ad))
    return r if near else ad + r - math.M_LN2


cdef inline double log_cosh_loss_deriv(double x, double t, double a,
                                       double o0) noexcept nogil:
    # d/dd log cosh(d) = tanh(d), bounded: far from the target it acts like L1.
    return fastdl_tanh(x - t)


cdef inline double kl_div_value(double x, double t, double a,
                                double log_target) noexcept nogil:
    # x holds log q, t holds p (log p when log_target).  The t == 0 case is
    # a select between two computed values (the loop is vectorised, so both
    # are computed anyway).
    cdef double v = t * (fastdl_log(t) - x)  # log of a negative target is NaN
    if log_target != 0.0:
        return fastdl_exp(t) * (t - x)
    # PyTorch's xlogy rule 0 * log 0 = 0: only -0 * log q remains, which is 0
    # for finite log q (NaN for log q = -inf or NaN, as in PyTorch).
    return -(t * x) if t == 0.0 else v


cdef inline double kl_div_deriv(double x, double t, double a,
                                double log_target) noexcept nogil:
    return -fastdl_exp(t) if log_target != 0.0 else -t


cdef inline double _bce_coef(double t, double pos_weight) noexcept nogil:
    # 1 + (pw - 1) t, exactly 1 where pw is 1 (absent) whatever t is (even a
    # NaN or infinite t, which the formula would turn into NaN).
    return 1.0 if pos_weight == 1.0 else 1.0 + (pos_weight - 1.0) * t


cdef inline double binary_cross_entropy_with_logits_value(
        double x, double t, double pos_weight, double o0) noexcept nogil:
    # (1 - t) x + (1 + (pw - 1) t) softplus(-x).  With pw = 1 this is
    # -(t log sigma(x) + (1 - t) log sigma(-x)), using log sigma(x) =
    # -softplus(-x) and log sigma(-x) = -x - softplus(-x); the stable
    # softplus keeps it finite for every finite x.
    return (1.0 - t) * x + _bce_coef(t, pos_weight) * _softplus(-x)


cdef inline double binary_cross_entropy_with_logits_deriv(
        double x, double t, double pos_weight, double o0) noexcept nogil:
    # dl/dx = (1 - t) - (1 + (pw - 1) t) sigma(-x); = sigma(x) - t if pw = 1.
    return (1.0 - t) - _bce_coef(t, pos_weight) * _sigmoid(-x)
