/* float32 and float64 exps that gcc -O3 vectorises (fastdl kernels,
 * _common.pxd).
 *
 * glibc's expf/exp are scalar calls unless -ffast-math is on (their SIMD
 * variants are only declared under __FAST_MATH__), so a loop of them runs one
 * element at a time.  fastdl_expf / fastdl_exp are plain branch-free
 * arithmetic instead, so a loop of them becomes SIMD code; the kernels call
 * the block loops below (y = exp(x - shift), optionally summed), which are
 * dispatched at load time to an AVX2+FMA copy when the CPU has it.
 *
 * Cost, one thread, 1000-element rows in L1 (AMD EPYC Zen 3, AVX2+FMA; same
 * run): float32 0.38 ns per element (0.57 with the double sum), against
 * 1.08 ns for the previous degree-7 Taylor version's AVX2 copy; float64
 * 1.10 ns, against 5.7-6.2 ns for a loop of glibc's exp.  The baseline
 * (SSE2, no FMA) copies: 1.75 ns for float32 (the previous version's: 2.44)
 * and 4.65 ns for float64.  With the double sum on AMD Zen 4 (same run,
 * exp + sum per element, full exp / in-range exp): AVX-512F copy float32
 * 0.36 / 0.28 ns, float64 0.65 / 0.57 ns; AVX2+FMA copy float32 0.49 /
 * 0.38 ns, float64 1.01 / 0.80 ns.
 *
 * Method (both precisions): exp(x) = 2^k * exp(r), k = round(x / ln2),
 * r = x - k ln2.
 *  - k: x * log2(e) + MAGIC, MAGIC = 1.5 * 2^p + 2 * bias (p = 23 or 52
 *    mantissa bits, bias = 127 or 1023).  The sum's ulp is 1, so the
 *    addition itself rounds x log2 e to the nearest integer, and the low
 *    bits of the sum's bit pattern hold m = k + 2 bias; kf = sum - MAGIC is k
 *    exactly.  No float -> int conversion, so a NaN never reaches one.
 *  - r: Cody-Waite reduction with ln2 split into LN2_HI (trailing zero bits,
 *    so kf * LN2_HI is exact for every k used here, and x - kf * LN2_HI is
 *    exact too, x and kf LN2_HI being within a factor 2) and
 *    LN2_LO = ln2 - LN2_HI; |r| <= ln2/2 + tiny.
 *  - exp(r) = 1 + r q(r), q by Horner.  q interpolates (e^r - 1)/r at the
 *    Chebyshev nodes of [-0.3466, 0.3466] (computed in 60-digit mpmath),
 *    which is within a small factor of the minimax polynomial; relative
 *    error of the polynomial with its rounded coefficients, measured on 4001
 *    points in mpmath: 1.04e-8 for float32 (degree 6, 0.1 ulp) and 9.8e-18
 *    for float64 (degree 11, 0.09 ulp).  The constant term is exactly 1, so
 *    exp(0) == 1 exactly.
 *  - 2^k: two factors 2^floor(m/2 - bias) * 2^ceil(m/2 - bias), built from
 *    the bits of the sum: (bits >> 1) << p and (bits - (bits >> 1)) << p
 *    (the shifts push MAGIC's own bits out of the word, so no masking).
 *    Each factor is a normal number for every k the clamp allows, so p * 2^k
 *    is formed as (p * s1) * s2 with the first product exact: overflow
 *    happens in the final multiply (+inf exactly when the rounded true
 *    result exceeds the largest finite number) and results in the denormal
 *    range are rounded once, by that multiply, from the rounded p.
 * Special values: x is clamped to [-104, 89] (float32) or [-746, 710]
 * (float64), where exp rounds to 0 below and overflows above, which sends
 * -inf to 0 and +inf to +inf.  The clamp is written `lo > x ? lo : x` (the
 * operand order of x86 max/min), so a NaN passes through it, makes r and
 * the polynomial NaN and comes out as NaN: NaN * s1 * s2 is NaN whatever
 * the (meaningless) scale factors built from its bits.
 *
 * Each function exists in two arithmetic flavours, generated from one body
 * by FASTDL_DEFINE_EXP*:
 *  - separate: a*b + c as a rounded multiply then a rounded add.  setup.py
 *    compiles with -ffp-contract=off, so the compiler never fuses them and
 *    every platform computes the same bits.  This is fastdl_expf / fastdl_exp
 *    (inline, for scalar use) and the baseline copy of the block loops
 *    below.
 *  - fused: a*b + c as one FMA (__builtin_fma*), single rounding.  Only in
 *    the AVX2+FMA and AVX-512F copies of the block loops (x86 FMA3 is IEEE
 *    fusedMultiplyAdd, so both copies give the same bits per element).
 *    The FMA halves the polynomial's instruction count and latency.  The
 *    two flavours differ by up to 1 ulp on some inputs; each stays within
 *    the bounds below.
 *
 * Accuracy, against the exact exp (glibc's expf/exp are < 1 ulp; we allow
 * 2 ulp for float32 and about 1 ulp for float64), measured with setup.py's
 * flags on each copy of the block loops (see Dispatch below):
 *  - float32: exhaustive sweep of all 2.24e9 float32 values in [-105, 89.5]
 *    against exp computed in double: max error 0.976 ulp (none >= 1 ulp)
 *    for the AVX2+FMA copy and the fused C body, 1.156 ulp (15937 values
 *    >= 1 ulp) for the baseline copy.  A comparison of all 2^32 inputs
 *    found the AVX2+FMA copy bit-identical to the fused C body, the inline
 *    fastdl_expf bit-identical to the baseline copy, and the baseline copy
 *    bit-identical to this header's previous version (the same Taylor
 *    polynomial, reduction and scaling; only the clamp, the rounding of k
 *    and the NaN path are written differently).  -inf, +inf, NaN, the overflow
 *    threshold 88.72284 and the denormal/zero thresholds give exactly
 *    glibc's results.
 *  - float64: 3.4e8 random points (2e8 uniform in [-746, 710], 1e8 in
 *    [-1, 1], 2e7 in the denormal range [-745.2, -708.4], 1e7 in [709, 709.79]
 *    next to the overflow threshold, 1e7 in [-1e-6, 1e-6]) against expl
 *    (x87 long double): max error 0.916 ulp for the AVX2+FMA copy (6% of
 *    results not correctly rounded) and 1.206 ulp for the baseline copy
 *    (10%); 1e5 of the points checked against mpmath at 120 bits gave 0.833
 *    and 1.088 ulp.  Denormal results are within those bounds of their own
 *    (coarser) spacing.  exp(0) == 1, exp(-inf) == 0, exp(+inf) == +inf,
 *    exp(NaN) is NaN, and exp(709.782712893384), the largest finite result,
 *    its overflowing neighbour and the underflow-to-zero threshold
 *    -745.1332191019412 give exactly glibc's results.
 */
#ifndef FASTDL_FASTEXP_H
#define FASTDL_FASTEXP_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define FASTDL_MADD_SEPARATE(a, b, c) ((a) * (b) + (c))
#define FASTDL_MADD_FUSED_F32(a, b, c) __builtin_fmaf((a), (b), (c))
#define FASTDL_MADD_FUSED_F64(a, b, c) __builtin_fma((a), (b), (c))

/* float32 exp(r) into q, two polynomials:
 *  - FASTDL_EXPF_POLY6, the degree-6 Chebyshev interpolant above, for the
 *    fused flavour: 6 FMAs, 0.976 ulp.
 *  - FASTDL_EXPF_TAYLOR7, 1 + r + r^2/2! + ... + r^7/7! (truncation
 *    <= 0.3466^8 / 8! * 1.42 < 2.2e-8 relative), for the separate flavour:
 *    with separately rounded multiplies and adds the degree-6 polynomial
 *    reached 1.276 ulp, the Taylor one 1.156 ulp (sweeps below), inside the
 *    1.2 ulp the README states; the baseline copy only runs on CPUs without
 *    AVX2+FMA, where one more multiply-add matters less. */
#define FASTDL_EXPF_POLY6(MADD, q, r)                                       \
    q = MADD(1.3933647e-3f, r, 8.3691543e-3f);                              \
    q = MADD(q, r, 4.1666467e-2f);                                          \
    q = MADD(q, r, 1.6666505e-1f);                                          \
    q = MADD(q, r, 0.5f);                                                   \
    q = MADD(q, r, 1.0f);                                                   \
    q = MADD(q, r, 1.0f)
#define FASTDL_EXPF_TAYLOR7(MADD, q, r)                                     \
    q = MADD(1.0f / 40320.0f, r, 1.0f / 5040.0f);                           \
    q = MADD(q, r, 1.0f / 720.0f);                                          \
    q = MADD(q, r, 1.0f / 120.0f);                                          \
    q = MADD(q, r, 1.0f / 24.0f);                                           \
    q = MADD(q, r, 1.0f / 6.0f);                                            \
    q = MADD(q, r, 0.5f);                                                   \
    q = MADD(q, r, 1.0f);                                                   \
    q = MADD(q, r, 1.0f)

/* float32: ln2_hi has 9 significant bits (0x1.63p-1), so kf * ln2_hi is
 * exact for |k| <= 150.
 *
 * NAME##_shifted(x, sh) is exp(x - sh) of the exact difference: d = x - sh
 * rounded to float32 is off by up to half an ulp of d, which moves exp(d) by
 * |d| 2^-24 relative -- 40 float32 ulp at d = -77, 17.6 ulp measured on a
 * float32 softmax of 3 * standard normal logits (PyTorch's float32 softmax:
 * 21 ulp; NumPy's x - x.max() in float32: the same).  The rounding error e
 * of d comes from TwoSum (Knuth: exact for any two floats, no FMA needed)
 * and is added to the reduced argument, r = (d - k ln2) + e; where d is
 * clamped or not finite, e is dropped (it is NaN for an infinite d).  With
 * sh = 0, e is 0 and the bits are those of exp(x).  Cost of the TwoSum in
 * the in-range AVX-512F loop: 0.26 -> 0.31 ns per element; the same loop's
 * error at d in [-77, 3]: 40 -> 0.7 ulp. */
#define FASTDL_DEFINE_EXPF(NAME, ATTRS, MADD, POLY)                         \
/* exp(d + e) for a small correction e (0, or the TwoSum error of d). */    \
ATTRS static inline float NAME##_core(float d, float e)                     \
{                                                                           \
    const float magic = 12583166.0f;          /* 1.5 * 2^23 + 254 */        \
    float xc, kb, kf, r, q, s1, s2;                                         \
    uint32_t bits, half;                                                    \
    xc = -104.0f > d ? -104.0f : d;                                         \
    xc = 89.0f < xc ? 89.0f : xc;                                           \
    e = xc == d ? e : 0.0f;                                                 \
    kb = MADD(xc, 1.44269504088896341f, magic);                             \
    kf = kb - magic;                                                        \
    r = MADD(kf, -0.693359375f, xc);                                        \
    r = MADD(kf, 2.12194440e-4f, r);          /* -(ln2 - ln2_hi) */         \
    r = r + e;                                                              \
    POLY(MADD, q, r);                                                       \
    memcpy(&bits, &kb, sizeof bits);                                        \
    half = bits >> 1;                                                       \
    bits = (bits - half) << 23;                                             \
    half = half << 23;                                                      \
    memcpy(&s1, &half, sizeof s1);                                          \
    memcpy(&s2, &bits, sizeof s2);                                          \
    return (q * s1) * s2;                                                   \
}                                                                           \
ATTRS static inline float NAME##_shifted(float x, float sh)                 \
{                                                                           \
    float d = x - sh, bb = d - x;                                           \
    return NAME##_core(d, (x - (d - bb)) - (sh + bb));                      \
}                                                                           \
/* exp(x): the shifted exp with sh = 0 (its e is 0) without the TwoSum. */  \
ATTRS static inline float NAME(float x)                                     \
{                                                                           \
    return NAME##_core(x, 0.0f);                                            \
}                                                                           \
ATTRS static inline float NAME##_rounded(float x, float sh)                 \
{                                                                           \
    return NAME(x - sh);                                                    \
}

/* float64: ln2_hi = 0x1.62e42feep-1 has 32 significant bits, so kf * ln2_hi
 * is exact for |k| < 2^21 (fdlibm's split). */
#define FASTDL_DEFINE_EXP(NAME, ATTRS, MADD)                                \
ATTRS static inline double NAME(double x)                                   \
{                                                                           \
    const double magic = 6755399441057790.0;  /* 1.5 * 2^52 + 2046 */       \
    double xc, kb, kf, r, q, s1, s2;                                        \
    uint64_t bits, half;                                                    \
    xc = -746.0 > x ? -746.0 : x;                                           \
    xc = 710.0 < xc ? 710.0 : xc;                                           \
    kb = MADD(xc, 1.4426950408889634, magic);                               \
    kf = kb - magic;                                                        \
    r = MADD(kf, -6.93147180369123816490e-01, xc);                          \
    r = MADD(kf, -1.90821492927058770002e-10, r);                           \
    q = MADD(2.5105214474751413e-08, r, 2.7626367775723217e-07);            \
    q = MADD(q, r, 2.7557255406285044e-06);                                 \
    q = MADD(q, r, 2.4801504321690158e-05);                                 \
    q = MADD(q, r, 1.9841269874815834e-04);                                 \
    q = MADD(q, r, 1.3888888932508548e-03);                                 \
    q = MADD(q, r, 8.3333333333261360e-03);                                 \
    q = MADD(q, r, 4.1666666666573086e-02);                                 \
    q = MADD(q, r, 1.6666666666666670e-01);                                 \
    q = MADD(q, r, 5.0000000000000060e-01);                                 \
    q = MADD(q, r, 1.0);                                                    \
    q = MADD(q, r, 1.0);                                                    \
    memcpy(&bits, &kb, sizeof bits);                                        \
    half = bits >> 1;                                                       \
    bits = (bits - half) << 52;                                             \
    half = half << 52;                                                      \
    memcpy(&s1, &half, sizeof s1);                                          \
    memcpy(&s2, &bits, sizeof s2);                                          \
    return (q * s1) * s2;                                                   \
}                                                                           \
ATTRS static inline double NAME##_rounded(double x, double sh)              \
{                                                                           \
    return NAME(x - sh);                                                    \
}

/* The block loops.  y[j] = exp(x[j] - shift) for j < n (y may be x); the
 * _sum variants also add y[j] in double into acc[j % 8], the same fixed
 * summation order as the kernels' LANES partial sums (_common.pxd), so
 * every copy returns the same sums for the same exps.  float32: the _sum
 * variants (the row passes shifted by the row max) take the exp of the
 * exact difference (FASTDL_DEFINE_EXPF); the plain ones round x - shift
 * first (the kernels call them with shift 0).  float64: x - shift is
 * rounded in double, as NumPy and PyTorch do (|d| 2^-53 relative).
 *
 * lo is a lower bound of x[0:n] (-inf when unknown).  When shift is finite,
 * no x[j] exceeds shift and lo - shift >= FASTDL_EXPF_FAST_MIN (float32) /
 * FASTDL_EXP_FAST_MIN (float64) -- a softmax row shifted by its max, with no
 * element more than 86 (707) below it -- the AVX2 and AVX-512F copies
 * compute the row with a shorter exp that gives the same bits (see
 * FASTDL_DEFINE_EXPF_V_IN_RANGE); the baseline copy ignores lo.
 *
 * The _sum variants also prefetch pf[0:n] (NULL: nothing): the kernels pass
 * the next row of their input, so the row that comes next streams in from
 * memory while this row's exps are computed.  Without it a row kernel's
 * passes run one after the other: the max pass stalls on memory with the
 * exp units idle, then the exp pass computes from L1 with the memory idle.
 * Measured (float32 softmax rows, AVX2+FMA copy, 2 threads, same run): 47-51%
 * -> 58-60% of the machine's copy bandwidth at 4096x1000 and 1024x32000.
 * A prefetch never faults and changes no result. */
#define FASTDL_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define FASTDL_DEFINE_LOOPS(SUFFIX, ATTRS, EXPF, EXP)                       \
ATTRS static void fastdl_expf_shift_##SUFFIX(const float *x, float shift,   \
                                             float *y, ptrdiff_t n)         \
{                                                                           \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        y[j] = EXPF(x[j] - shift);                                          \
}                                                                           \
ATTRS static void fastdl_exp_shift_##SUFFIX(const double *x, double shift,  \
                                            double *y, ptrdiff_t n)         \
{                                                                           \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        y[j] = EXP(x[j] - shift);                                           \
}                                                                           \
FASTDL_DEFINE_SUM_LOOP_C(fastdl_expf_shift_sum_##SUFFIX, ATTRS, float,      \
                         EXPF##_shifted)                                    \
FASTDL_DEFINE_SUM_LOOP_C(fastdl_expf_shift_sum_r_##SUFFIX, ATTRS, float,    \
                         EXPF##_rounded)                                    \
FASTDL_DEFINE_SUM_LOOP_C(fastdl_exp_shift_sum_##SUFFIX, ATTRS, double,      \
                         EXP##_rounded)

/* One exp + sum block loop in C for element type T; E(x, shift) is the exp
 * of x - shift (see the loops above). */
#define FASTDL_DEFINE_SUM_LOOP_C(NAME, ATTRS, T, E)                         \
ATTRS static void NAME(const T *x, T shift, T *y, ptrdiff_t n, double *acc, \
                       const T *pf, T lo)                                   \
{                                                                           \
    double a[8];                                                            \
    T e;                                                                    \
    ptrdiff_t j, jb, k, nb = n - n % 8;                                     \
    (void)lo; /* every element takes the one exp of this copy */            \
    if (pf == NULL)                                                         \
        pf = x;                                                             \
    for (k = 0; k < 8; k++)                                                 \
        a[k] = acc[k];                                                      \
    for (jb = 0; jb < nb; jb += 8) {                                        \
        FASTDL_PREFETCH(pf + jb);                                           \
        for (k = 0; k < 8; k++) {                                           \
            e = E(x[jb + k], shift);                                        \
            y[jb + k] = e;                                                  \
            a[k] += e;                                                      \
        }                                                                   \
    }                                                                       \
    for (j = nb; j < n; j++) {                                              \
        e = E(x[j], shift);                                                 \
        y[j] = e;                                                           \
        a[j - nb] += e;                                                     \
    }                                                                       \
    for (k = 0; k < 8; k++)                                                 \
        acc[k] = a[k];                                                      \
}

/* The kernels' other row passes, beside the exps, so that they get the
 * same dispatch to AVX2 / AVX-512F (gcc -O3 alone vectorises them only for
 * the baseline SSE2, and the running max not at all: Cython's if/else
 * select defeats the if-conversion, so the max ran as scalar maxss, a third
 * of a float32 softmax row).  No arithmetic is reordered, so every copy
 * gives the same bits:
 *  - max: the largest element, -inf for an empty or all -inf/NaN row (NaN
 *    never compares greater, so it is skipped); the same loop also returns
 *    the smallest element in *lo (+inf for an empty or all-NaN row), which
 *    lets the exp loops below know when a whole row is in the range of
 *    their shorter exp.  Rows of 8 or more: 32
 *    running maxima a[k], taking elements j = k mod 32 of the full blocks of
 *    32, then lanes 0-7 taking the remaining full blocks of 8; the lanes are
 *    folded pairwise, a[k] against a[k + h] for h = 16, 8, 4, 2, 1 (what the
 *    SIMD copies do with whole registers, then register halves); then the
 *    last (< 8) elements one at a time.  Shorter rows: one at a time.  Every
 *    step is `v > m ? v : m`, the operand order of x86 maxps/maxpd.  (Four
 *    independent registers instead of one chain of dependent vmaxps: 0.048
 *    -> 0.021 ns per float32 element.)
 *  - scale: y[j] = y[j] * r; for float32 as a float32 product with r
 *    rounded to float32 (one vmulps per 8 elements instead of widening to
 *    double and back: measured 0.08 vs 0.21 ns per element, 15% of a
 *    float32 softmax row), which adds at most 1 ulp to the result instead
 *    of 0.5 ulp; for float64 in double.
 *  - sub2: y[j] = (x[j] - a) - b (y may be x); for float64 in double; for
 *    float32 in float32 with a and b rounded to float32 (a is a float32
 *    value already: the row max).  x - a and the result have the same sign
 *    as -b, so nothing cancels: within 2 ulp of the exact value instead of
 *    0.5, for a pass 4.7x cheaper than one through double (measured on Zen
 *    4: 0.036 vs 0.17 ns per element at best; converting to double and back
 *    is what costs).
 * And for the backward passes (out may be dy or y; element j is read before
 * out[j] is written), float32 in float32 like the two above, float64 in
 * double:
 *  - sum / dot: sum_j x[j], sum_j a[j] b[j] in double (products too), in
 *    eight partial sums acc[j % 8] folded pairwise ((0+1)+(2+3))+((4+5)+
 *    (6+7)), the same order in every copy;
 *  - msub: out[j] = dy[j] - e[j] * t (log_softmax backward, e = exp(y));
 *  - dscale: out[j] = y[j] * (dy[j] - d) (softmax backward). */
#define FASTDL_DEFINE_MAX_LOOP(NAME, ATTRS, T)                              \
ATTRS static T NAME(const T *x, ptrdiff_t n, T *lo)                         \
{                                                                           \
    T a[32], b[32], m = -__builtin_inf(), l = __builtin_inf(), v;           \
    ptrdiff_t j = 0, k, h;                                                  \
    if (n >= 8) {                                                           \
        for (k = 0; k < 32; k++) {                                          \
            a[k] = -__builtin_inf();                                        \
            b[k] = __builtin_inf();                                         \
        }                                                                   \
        for (; j + 32 <= n; j += 32)                                        \
            for (k = 0; k < 32; k++) {                                      \
                v = x[j + k];                                               \
                a[k] = v > a[k] ? v : a[k];                                 \
                b[k] = v < b[k] ? v : b[k];                                 \
            }                                                               \
        for (; j + 8 <= n; j += 8)                                          \
            for (k = 0; k < 8; k++) {                                       \
                v = x[j + k];                                               \
                a[k] = v > a[k] ? v : a[k];                                 \
                b[k] = v < b[k] ? v : b[k];                                 \
            }                                                               \
        for (h = 16; h > 0; h /= 2)                                         \
            for (k = 0; k < h; k++) {                                       \
                a[k] = a[k + h] > a[k] ? a[k + h] : a[k];                   \
                b[k] = b[k + h] < b[k] ? b[k + h] : b[k];                   \
            }                                                               \
        m = a[0];                                                           \
        l = b[0];                                                           \
    }                                                                       \
    for (; j < n; j++) {                                                    \
        m = x[j] > m ? x[j] : m;                                            \
        l = x[j] < l ? x[j] : l;                                            \
    }                                                                       \
    *lo = l;                                                                \
    return m;                                                               \
}

#define FASTDL_DEFINE_MAP_LOOPS(SUFFIX, ATTRS)                              \
ATTRS static void fastdl_scalef_##SUFFIX(float *y, double r, ptrdiff_t n)   \
{                                                                           \
    const float rf = (float)r;                                              \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        y[j] = y[j] * rf;                                                   \
}                                                                           \
ATTRS static void fastdl_scale_##SUFFIX(double *y, double r, ptrdiff_t n)   \
{                                                                           \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        y[j] = y[j] * r;                                                    \
}                                                                           \
ATTRS static void fastdl_sub2f_##SUFFIX(const float *x, double a, double b, \
                                        float *y, ptrdiff_t n)              \
{                                                                           \
    const float af = (float)a, bf = (float)b;                               \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        y[j] = (x[j] - af) - bf;                                            \
}                                                                           \
ATTRS static void fastdl_sub2_##SUFFIX(const double *x, double a, double b, \
                                       double *y, ptrdiff_t n)              \
{                                                                           \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        y[j] = (x[j] - a) - b;                                              \
}                                                                           \
FASTDL_DEFINE_BACKWARD_LOOPS(SUFFIX, ATTRS, f, float, (float))              \
FASTDL_DEFINE_BACKWARD_LOOPS(SUFFIX, ATTRS, , double, )

/* The sum, dot, msub and dscale loops of one copy for element type T (F:
 * the name's f for float32, empty for float64); CAST rounds a double
 * scalar to T (empty for double). */
#define FASTDL_DEFINE_BACKWARD_LOOPS(SUFFIX, ATTRS, F, T, CAST)             \
ATTRS static double fastdl_sum##F##_##SUFFIX(const T *x, ptrdiff_t n)       \
{                                                                           \
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                 \
    ptrdiff_t j, k, nb = n - n % 8;                                         \
    for (j = 0; j < nb; j += 8)                                             \
        for (k = 0; k < 8; k++)                                             \
            a[k] += (double)x[j + k];                                       \
    for (j = nb; j < n; j++)                                                \
        a[j - nb] += (double)x[j];                                          \
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));\
}                                                                           \
ATTRS static double fastdl_dot##F##_##SUFFIX(const T *x, const T *y,        \
                                        ptrdiff_t n)                        \
{                                                                           \
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                 \
    ptrdiff_t j, k, nb = n - n % 8;                                         \
    for (j = 0; j < nb; j += 8)                                             \
        for (k = 0; k < 8; k++)                                             \
            a[k] += (double)x[j + k] * (double)y[j + k];                    \
    for (j = nb; j < n; j++)                                                \
        a[j - nb] += (double)x[j] * (double)y[j];                           \
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));\
}                                                                           \
ATTRS static void fastdl_msub##F##_##SUFFIX(const T *dy, const T *e, double t,   \
                                       T *out, ptrdiff_t n)                 \
{                                                                           \
    const T tt = CAST t;                                                    \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        out[j] = dy[j] - e[j] * tt;                                         \
}                                                                           \
ATTRS static void fastdl_dscale##F##_##SUFFIX(const T *y, const T *dy, double d, \
                                         T *out, ptrdiff_t n)               \
{                                                                           \
    const T dd = CAST d;                                                    \
    ptrdiff_t j;                                                            \
    for (j = 0; j < n; j++)                                                 \
        out[j] = y[j] * (dy[j] - dd);                                       \
}

FASTDL_DEFINE_EXPF(fastdl_expf, , FASTDL_MADD_SEPARATE, FASTDL_EXPF_TAYLOR7)
FASTDL_DEFINE_EXP(fastdl_exp, , FASTDL_MADD_SEPARATE)
FASTDL_DEFINE_LOOPS(baseline, , fastdl_expf, fastdl_exp)
FASTDL_DEFINE_MAX_LOOP(fastdl_maxf_baseline, , float)
FASTDL_DEFINE_MAX_LOOP(fastdl_max_baseline, , double)
FASTDL_DEFINE_MAP_LOOPS(baseline, )

/* sub2 writing its output past the caches (see FASTDL_DEFINE_SUB2_STREAM
 * below): the baseline copy has no non-temporal stores and is sub2 itself. */
static void fastdl_sub2f_stream_baseline(const float *x, double a, double b,
                                         float *y, ptrdiff_t n)
{
    fastdl_sub2f_baseline(x, a, b, y, n);
}
static void fastdl_sub2_stream_baseline(const double *x, double a, double b,
                                        double *y, ptrdiff_t n)
{
    fastdl_sub2_baseline(x, a, b, y, n);
}
/* y = e * r (scale from a scratch row into the output, see
 * FASTDL_DEFINE_SCALE_STREAM): the products of the scale loops. */
static void fastdl_scalef_stream_baseline(const float *e, double r, float *y,
                                          ptrdiff_t n)
{
    const float rf = (float)r;
    ptrdiff_t j;
    for (j = 0; j < n; j++)
        y[j] = e[j] * rf;
}
static void fastdl_scale_stream_baseline(const double *e, double r, double *y,
                                         ptrdiff_t n)
{
    ptrdiff_t j;
    for (j = 0; j < n; j++)
        y[j] = e[j] * r;
}

/* Dispatch.  On x86-64 Linux with GCC the block loops also exist as an
 * AVX2+FMA copy and an AVX-512F copy (both intrinsics, below; the scale and
 * sub2 loops of the AVX-512F copy are plain C that gcc vectorises well),
 * and an ifunc resolver, run once by the dynamic loader,
 * binds each public name to the best copy the CPU (and OS) supports, so a
 * portable build (no -march=native) still gets 8 or 16 lanes and FMAs.
 * (GCC's target_clones cannot be used: its avx2 copy has no FMA, and the
 * fused body must differ from the baseline one.)
 *
 * Why the AVX2 copy is written with intrinsics: gcc 12 vectorises the clamp
 * `lo > x ? lo : x` as compares, masks and blends (7 instructions for the
 * two bounds) instead of one vmaxps/vminps, which cost 35% of the AVX2 loop
 * (0.49 vs 0.32 ns per float32 measured without the clamp); the intrinsics
 * are vmaxps(lo, x) / vminps(hi, x), which return their second operand on
 * NaN, i.e. exactly `lo > x ? lo : x`.  Every other lane operation is the
 * fused body's, in the same order, and the partial tail goes through masked
 * loads/stores, so each element gets the fused body's bits (the sweeps in
 * the comment at the top were run on this copy and on the fused C body).
 * The AVX-512F copy is the AVX2 copy on 16 (8) lanes, for the same reason
 * (see the comment above fastdl_expf_avx512_v); tests/c/simd_copies.c
 * checks it bit for bit against the others, exhaustively for the float32
 * exps, on CPUs with AVX-512F.
 *
 * setup.py defines FASTDL_NO_SIMD_CLONES (FASTDL_NO_SIMD_CLONES=1 at build
 * time) to compile only the baseline copy, which is how the tests reach the
 * baseline path on a machine whose resolver would pick AVX2. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&      \
    defined(__linux__) && !defined(FASTDL_NO_SIMD_CLONES)

#include <immintrin.h>

#define FASTDL_ATTRS_AVX2 __attribute__((target("avx2,fma")))
#define FASTDL_ATTRS_AVX512 __attribute__((target("avx512f,avx2,fma")))
FASTDL_DEFINE_EXPF(fastdl_expf_fused, FASTDL_ATTRS_AVX2, FASTDL_MADD_FUSED_F32,
                   FASTDL_EXPF_POLY6)
FASTDL_DEFINE_EXP(fastdl_exp_fused, FASTDL_ATTRS_AVX2, FASTDL_MADD_FUSED_F64)
FASTDL_DEFINE_MAP_LOOPS(avx512, FASTDL_ATTRS_AVX512)
FASTDL_DEFINE_MAP_LOOPS(avx2, FASTDL_ATTRS_AVX2)
/* The fused C loops compiled for AVX2 are not dispatched to: they are the
 * reference the swept accuracy figures and tests/c/simd_copies.c hold the
 * AVX2 and AVX-512F intrinsics copies to (hence unused in the modules,
 * which would otherwise warn once per loop and module). */
FASTDL_DEFINE_LOOPS(fused_c, FASTDL_ATTRS_AVX2 __attribute__((unused)),
                    fastdl_expf_fused, fastdl_exp_fused)

/* fastdl_expf_fused / fastdl_exp_fused on one vector of W = 256 (AVX2)
 * or 512 (AVX-512F) bits: the same operations lane by lane, max/min for the
 * clamps (see Dispatch above).  The float32 exps come as NAME(x, sh) =
 * exp(x - sh) of the exact difference (fastdl_expf_fused_shifted), for the
 * passes whose exps are results (softmax, the cross-entropy gradient), and
 * NAME_rounded(x, sh) = exp(x - sh) with x - sh rounded to float32 first,
 * for those that only sum them (logsumexp, log_softmax, the loss): the
 * rounding moves each term by |x - sh| 2^-24 relative, and a term's share
 * of a sum whose largest term is 1 weighs that by exp(x - sh), so the sum
 * moves by at most 2^-24 / e relative.
 * FASTDL_DEFINE_EXP*_V_IN_RANGE below are the shorter exps for rows whose
 * spread is known. */
#define FASTDL_DEFINE_EXPF_V(NAME, ATTRS, W)                                \
ATTRS static inline __m##W NAME(__m##W x, __m##W sh)                        \
{                                                                           \
    const __m##W magic = _mm##W##_set1_ps(12583166.0f);                     \
    __m##W d, e, xc, kb, kf, r, q;                                          \
    __m##W##i bits, half;                                                   \
    FASTDL_EXPF_V_TWOSUM(W, x, sh, d, e);                                   \
    xc = _mm##W##_max_ps(_mm##W##_set1_ps(-104.0f), d);                     \
    xc = _mm##W##_min_ps(_mm##W##_set1_ps(89.0f), xc);                      \
    e = FASTDL_KEEP_IF_EQUAL_##W(xc, d, e);                                 \
    FASTDL_EXPF_V_REDUCE(W, xc);                                            \
    r = _mm##W##_add_ps(r, e);                                              \
    FASTDL_EXPF_V_POLY(W, 1);                                               \
    FASTDL_EXPF_V_SCALE2(W);                                                \
}                                                                           \
ATTRS static inline __m##W NAME##_rounded(__m##W x, __m##W sh)              \
{                                                                           \
    const __m##W magic = _mm##W##_set1_ps(12583166.0f);                     \
    __m##W xc, kb, kf, r, q;                                                \
    __m##W##i bits, half;                                                   \
    xc = _mm##W##_max_ps(_mm##W##_set1_ps(-104.0f), _mm##W##_sub_ps(x, sh)); \
    xc = _mm##W##_min_ps(_mm##W##_set1_ps(89.0f), xc);                      \
    FASTDL_EXPF_V_REDUCE(W, xc);                                            \
    FASTDL_EXPF_V_POLY(W, 1);                                               \
    FASTDL_EXPF_V_SCALE2(W);                                                \
}
/* d = x - sh rounded and its rounding error e (TwoSum, as in
 * FASTDL_DEFINE_EXPF). */
#define FASTDL_EXPF_V_TWOSUM(W, x, sh, d, e)                                \
    do {                                                                    \
        __m##W bb_;                                                         \
        d = _mm##W##_sub_ps(x, sh);                                         \
        bb_ = _mm##W##_sub_ps(d, x);                                        \
        e = _mm##W##_sub_ps(_mm##W##_sub_ps(x, _mm##W##_sub_ps(d, bb_)),    \
                            _mm##W##_add_ps(sh, bb_));                      \
    } while (0)
/* v where a == b, else 0 (a NaN compares unequal). */
#define FASTDL_KEEP_IF_EQUAL_256(a, b, v)                                   \
    _mm256_and_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ), v)
#define FASTDL_KEEP_IF_EQUAL_512(a, b, v)                                   \
    _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), v)
/* kb (the rounding sum), kf = k and r from xc. */
#define FASTDL_EXPF_V_REDUCE(W, xc)                                         \
    kb = _mm##W##_fmadd_ps(xc, _mm##W##_set1_ps(1.44269504088896341f),      \
                           magic);                                          \
    kf = _mm##W##_sub_ps(kb, magic);                                        \
    r = _mm##W##_fmadd_ps(kf, _mm##W##_set1_ps(-0.693359375f), xc);         \
    r = _mm##W##_fmadd_ps(kf, _mm##W##_set1_ps(2.12194440e-4f), r)
/* q = C * exp(r), the polynomial's coefficients times C (1, or 2 for the
 * in-range exp). */
#define FASTDL_EXPF_V_POLY(W, C)                                            \
    q = _mm##W##_fmadd_ps(_mm##W##_set1_ps(C * 1.3933647e-3f), r,           \
                          _mm##W##_set1_ps(C * 8.3691543e-3f));             \
    q = _mm##W##_fmadd_ps(q, r, _mm##W##_set1_ps(C * 4.1666467e-2f));       \
    q = _mm##W##_fmadd_ps(q, r, _mm##W##_set1_ps(C * 1.6666505e-1f));       \
    q = _mm##W##_fmadd_ps(q, r, _mm##W##_set1_ps(C * 0.5f));                \
    q = _mm##W##_fmadd_ps(q, r, _mm##W##_set1_ps(C * 1.0f));                \
    q = _mm##W##_fmadd_ps(q, r, _mm##W##_set1_ps(C * 1.0f))
/* return q * 2^k, k from the bits of kb, in two factors (see fastdl_expf). */
#define FASTDL_EXPF_V_SCALE2(W)                                             \
    bits = _mm##W##_castps_si##W(kb);                                       \
    half = _mm##W##_srli_epi32(bits, 1);                                    \
    bits = _mm##W##_slli_epi32(_mm##W##_sub_epi32(bits, half), 23);         \
    half = _mm##W##_slli_epi32(half, 23);                                   \
    q = _mm##W##_mul_ps(q, _mm##W##_castsi##W##_ps(half));                  \
    return _mm##W##_mul_ps(q, _mm##W##_castsi##W##_ps(bits))

#define FASTDL_DEFINE_EXP_V(NAME, ATTRS, W)                                 \
ATTRS static inline __m##W##d NAME(__m##W##d x)                             \
{                                                                           \
    const __m##W##d magic = _mm##W##_set1_pd(6755399441057790.0);           \
    __m##W##d xc, kb, kf, r, q;                                             \
    __m##W##i bits, half;                                                   \
    xc = _mm##W##_max_pd(_mm##W##_set1_pd(-746.0), x);                      \
    xc = _mm##W##_min_pd(_mm##W##_set1_pd(710.0), xc);                      \
    FASTDL_EXP_V_BODY(W, 1, xc);                                            \
    bits = _mm##W##_castpd_si##W(kb);                                       \
    half = _mm##W##_srli_epi64(bits, 1);                                    \
    bits = _mm##W##_slli_epi64(_mm##W##_sub_epi64(bits, half), 52);         \
    half = _mm##W##_slli_epi64(half, 52);                                   \
    q = _mm##W##_mul_pd(q, _mm##W##_castsi##W##_pd(half));                  \
    return _mm##W##_mul_pd(q, _mm##W##_castsi##W##_pd(bits));               \
}
#define FASTDL_EXP_V_BODY(W, C, xc)                                         \
    kb = _mm##W##_fmadd_pd(xc, _mm##W##_set1_pd(1.4426950408889634), magic);\
    kf = _mm##W##_sub_pd(kb, magic);                                        \
    r = _mm##W##_fmadd_pd(kf, _mm##W##_set1_pd(-6.93147180369123816490e-01),\
                          xc);                                              \
    r = _mm##W##_fmadd_pd(kf, _mm##W##_set1_pd(-1.90821492927058770002e-10),\
                          r);                                               \
    q = _mm##W##_fmadd_pd(_mm##W##_set1_pd(C * 2.5105214474751413e-08), r,  \
                          _mm##W##_set1_pd(C * 2.7626367775723217e-07));    \
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 2.7557255406285044e-06));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 2.4801504321690158e-05));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 1.9841269874815834e-04));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 1.3888888932508548e-03));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 8.3333333333261360e-03));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 4.1666666666573086e-02));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 1.6666666666666670e-01));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 5.0000000000000060e-01));\
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 1.0));                 \
    q = _mm##W##_fmadd_pd(q, r, _mm##W##_set1_pd(C * 1.0))

/* The exps above for x in [FASTDL_EXPF_FAST_MIN, 0] and NaN: the same
 * bits with 13 vector operations instead of 19.  In that range the clamps
 * do nothing and the result 2^k p is a normal number, so the two-factor
 * scaling is not needed: one multiply by 2^(k-1), a power of two made from
 * the bits of the rounding sum (magic 1.5 * 2^23 + 126, which rounds
 * x log2 e exactly like the full version's 1.5 * 2^23 + 254, both even),
 * of 2p, the polynomial with every coefficient doubled (each Horner step is
 * then exactly twice the full version's: scaling by 2 commutes with
 * rounding).  Both products are exact, so the result is the full version's
 * rounded p times 2^k, bit for bit (checked for every float32 in the range:
 * tests/c/simd_copies.c).  A NaN makes p NaN and the product NaN.
 * x >= -86 keeps k >= -125, so 2^(k-1) and p 2^k (p >= 0.7) are normal. */
#define FASTDL_EXPF_FAST_MIN (-86.0f)
#define FASTDL_DEFINE_EXPF_V_IN_RANGE(NAME, ATTRS, W)                       \
ATTRS static inline __m##W NAME(__m##W x, __m##W sh)                        \
{                                                                           \
    const __m##W magic = _mm##W##_set1_ps(12583038.0f);                     \
    __m##W d, e, kb, kf, r, q;                                              \
    FASTDL_EXPF_V_TWOSUM(W, x, sh, d, e);                                   \
    FASTDL_EXPF_V_REDUCE(W, d);                                             \
    r = _mm##W##_add_ps(r, e);                                              \
    FASTDL_EXPF_V_POLY(W, 2);                                               \
    FASTDL_EXPF_V_SCALE1(W);                                                \
}                                                                           \
ATTRS static inline __m##W NAME##_rounded(__m##W x, __m##W sh)              \
{                                                                           \
    const __m##W magic = _mm##W##_set1_ps(12583038.0f);                     \
    __m##W d, kb, kf, r, q;                                                 \
    d = _mm##W##_sub_ps(x, sh);                                             \
    FASTDL_EXPF_V_REDUCE(W, d);                                             \
    FASTDL_EXPF_V_POLY(W, 2);                                               \
    FASTDL_EXPF_V_SCALE1(W);                                                \
}
/* return q * 2^(k-1) from the bits of kb (the in-range scaling). */
#define FASTDL_EXPF_V_SCALE1(W)                                             \
    return _mm##W##_mul_ps(q, _mm##W##_castsi##W##_ps(                      \
        _mm##W##_slli_epi32(_mm##W##_castps_si##W(kb), 23)))

/* The same for float64 (magic 1.5 * 2^52 + 1022; x >= -707 keeps
 * k >= -1020). */
#define FASTDL_EXP_FAST_MIN (-707.0)
#define FASTDL_DEFINE_EXP_V_IN_RANGE(NAME, ATTRS, W)                        \
ATTRS static inline __m##W##d NAME(__m##W##d x)                             \
{                                                                           \
    const __m##W##d magic = _mm##W##_set1_pd(6755399441056766.0);           \
    __m##W##d kb, kf, r, q;                                                 \
    FASTDL_EXP_V_BODY(W, 2, x);                                             \
    return _mm##W##_mul_pd(q, _mm##W##_castsi##W##_pd(                      \
        _mm##W##_slli_epi64(_mm##W##_castpd_si##W(kb), 52)));               \
}

FASTDL_DEFINE_EXPF_V(fastdl_expf_avx2_v, FASTDL_ATTRS_AVX2, 256)
FASTDL_DEFINE_EXP_V(fastdl_exp_avx2_v, FASTDL_ATTRS_AVX2, 256)
FASTDL_DEFINE_EXPF_V_IN_RANGE(fastdl_expf_avx2_v_in_range, FASTDL_ATTRS_AVX2,
                              256)
FASTDL_DEFINE_EXP_V_IN_RANGE(fastdl_exp_avx2_v_in_range, FASTDL_ATTRS_AVX2,
                             256)
FASTDL_DEFINE_EXPF_V(fastdl_expf_avx512_v, FASTDL_ATTRS_AVX512, 512)
FASTDL_DEFINE_EXP_V(fastdl_exp_avx512_v, FASTDL_ATTRS_AVX512, 512)
FASTDL_DEFINE_EXPF_V_IN_RANGE(fastdl_expf_avx512_v_in_range,
                              FASTDL_ATTRS_AVX512, 512)
FASTDL_DEFINE_EXP_V_IN_RANGE(fastdl_exp_avx512_v_in_range,
                             FASTDL_ATTRS_AVX512, 512)

/* Lane mask with the first n (0..8) of 8 int32 lanes set. */
FASTDL_ATTRS_AVX2 static inline __m256i fastdl_mask8(ptrdiff_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lane mask with the first n (0..4) of 4 int64 lanes set. */
FASTDL_ATTRS_AVX2 static inline __m256i fastdl_mask4(ptrdiff_t n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n),
                              _mm256_setr_epi64x(0, 1, 2, 3));
}

FASTDL_ATTRS_AVX2 static void fastdl_expf_shift_avx2(
    const float *x, float shift, float *y, ptrdiff_t n)
{
    const __m256 s = _mm256_set1_ps(shift);
    __m256i mask;
    ptrdiff_t j;
    for (j = 0; j + 8 <= n; j += 8)
        _mm256_storeu_ps(y + j, fastdl_expf_avx2_v_rounded(
            _mm256_loadu_ps(x + j), s));
    if (j < n) {
        mask = fastdl_mask8(n - j);
        _mm256_maskstore_ps(y + j, mask, fastdl_expf_avx2_v_rounded(
            _mm256_maskload_ps(x + j, mask), s));
    }
}

FASTDL_ATTRS_AVX2 static void fastdl_exp_shift_avx2(
    const double *x, double shift, double *y, ptrdiff_t n)
{
    const __m256d s = _mm256_set1_pd(shift);
    __m256i mask;
    ptrdiff_t j;
    for (j = 0; j + 4 <= n; j += 4)
        _mm256_storeu_pd(y + j, fastdl_exp_avx2_v(
            _mm256_sub_pd(_mm256_loadu_pd(x + j), s)));
    if (j < n) {
        mask = fastdl_mask4(n - j);
        _mm256_maskstore_pd(y + j, mask, fastdl_exp_avx2_v(
            _mm256_sub_pd(_mm256_maskload_pd(x + j, mask), s)));
    }
}

/* The partial sums acc[0..7] live in two registers: lanes 0-3 and 4-7.
 * Lanes past n are zeroed before they are added (x + 0.0 == x for the
 * non-negative sums), so every acc[k] receives exactly the terms the
 * baseline loop gives it, in the same order.  Each loop exists with the
 * full vector exp and with the in-range one (FASTDL_DEFINE_*_SUM_AVX2);
 * the entry point picks by the row's range. */
#define FASTDL_DEFINE_EXPF_SUM_AVX2(NAME, EXPV)                             \
FASTDL_ATTRS_AVX2 static void NAME(const float *x, float shift, float *y,   \
                                   ptrdiff_t n, double *acc,                \
                                   const float *pf)                         \
{                                                                           \
    const __m256 s = _mm256_set1_ps(shift);                                 \
    __m256d lo = _mm256_loadu_pd(acc), hi = _mm256_loadu_pd(acc + 4);       \
    __m256 e, f;                                                            \
    __m256i mask;                                                           \
    ptrdiff_t j;                                                            \
    /* Two blocks of 8 (one 64-byte line of pf) per iteration, added into   \
     * lo/hi in element order; two independent exps per iteration also      \
     * measured 8% faster than one. */                                      \
    for (j = 0; j + 16 <= n; j += 16) {                                     \
        FASTDL_PREFETCH(pf + j);                                            \
        e = EXPV(_mm256_loadu_ps(x + j), s);                                \
        f = EXPV(_mm256_loadu_ps(x + j + 8), s);                            \
        _mm256_storeu_ps(y + j, e);                                         \
        _mm256_storeu_ps(y + j + 8, f);                                     \
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e))); \
        hi = _mm256_add_pd(hi,                                              \
                           _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));   \
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(f))); \
        hi = _mm256_add_pd(hi,                                              \
                           _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));   \
    }                                                                       \
    for (; j + 8 <= n; j += 8) {                                            \
        FASTDL_PREFETCH(pf + j);                                            \
        e = EXPV(_mm256_loadu_ps(x + j), s);                                \
        _mm256_storeu_ps(y + j, e);                                         \
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e))); \
        hi = _mm256_add_pd(hi,                                              \
                           _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));   \
    }                                                                       \
    if (j < n) {                                                            \
        mask = fastdl_mask8(n - j);                                         \
        e = EXPV(_mm256_maskload_ps(x + j, mask), s);                       \
        _mm256_maskstore_ps(y + j, mask, e);                                \
        e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));                    \
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e))); \
        hi = _mm256_add_pd(hi,                                              \
                           _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));   \
    }                                                                       \
    _mm256_storeu_pd(acc, lo);                                              \
    _mm256_storeu_pd(acc + 4, hi);                                          \
}

#define FASTDL_DEFINE_EXP_SUM_AVX2(NAME, EXPV)                              \
FASTDL_ATTRS_AVX2 static void NAME(const double *x, double shift, double *y,\
                                   ptrdiff_t n, double *acc,                \
                                   const double *pf)                        \
{                                                                           \
    const __m256d s = _mm256_set1_pd(shift);                                \
    __m256d lo = _mm256_loadu_pd(acc), hi = _mm256_loadu_pd(acc + 4), e;    \
    __m256i mask;                                                           \
    ptrdiff_t j;                                                            \
    for (j = 0; j + 8 <= n; j += 8) {                                       \
        FASTDL_PREFETCH(pf + j);                                            \
        e = EXPV(_mm256_sub_pd(_mm256_loadu_pd(x + j), s));                 \
        _mm256_storeu_pd(y + j, e);                                         \
        lo = _mm256_add_pd(lo, e);                                          \
        e = EXPV(_mm256_sub_pd(_mm256_loadu_pd(x + j + 4), s));             \
        _mm256_storeu_pd(y + j + 4, e);                                     \
        hi = _mm256_add_pd(hi, e);                                          \
    }                                                                       \
    if (j < n) {                                                            \
        mask = fastdl_mask4(n - j);                                         \
        e = EXPV(_mm256_sub_pd(_mm256_maskload_pd(x + j, mask), s));        \
        _mm256_maskstore_pd(y + j, mask, e);                                \
        lo = _mm256_add_pd(lo,                                              \
                           _mm256_and_pd(e, _mm256_castsi256_pd(mask)));    \
    }                                                                       \
    if (j + 4 < n) {                                                        \
        mask = fastdl_mask4(n - j - 4);                                     \
        e = EXPV(_mm256_sub_pd(_mm256_maskload_pd(x + j + 4, mask), s));    \
        _mm256_maskstore_pd(y + j + 4, mask, e);                            \
        hi = _mm256_add_pd(hi,                                              \
                           _mm256_and_pd(e, _mm256_castsi256_pd(mask)));    \
    }                                                                       \
    _mm256_storeu_pd(acc, lo);                                              \
    _mm256_storeu_pd(acc + 4, hi);                                          \
}

FASTDL_DEFINE_EXPF_SUM_AVX2(fastdl_expf_shift_sum_avx2_full, fastdl_expf_avx2_v)
FASTDL_DEFINE_EXPF_SUM_AVX2(fastdl_expf_shift_sum_avx2_in_range,
                            fastdl_expf_avx2_v_in_range)
FASTDL_DEFINE_EXPF_SUM_AVX2(fastdl_expf_shift_sum_r_avx2_full,
                            fastdl_expf_avx2_v_rounded)
FASTDL_DEFINE_EXPF_SUM_AVX2(fastdl_expf_shift_sum_r_avx2_in_range,
                            fastdl_expf_avx2_v_in_range_rounded)
FASTDL_DEFINE_EXP_SUM_AVX2(fastdl_exp_shift_sum_avx2_full, fastdl_exp_avx2_v)
FASTDL_DEFINE_EXP_SUM_AVX2(fastdl_exp_shift_sum_avx2_in_range,
                           fastdl_exp_avx2_v_in_range)

/* The entry points: the in-range loop when shift is finite and the row's
 * lower bound lo is within FASTDL_EXP*_FAST_MIN of it (shift - shift == 0
 * is false for +-inf and NaN), else the full one.  Measured (one thread,
 * 1000-element float32 rows in L1, AMD Zen 3): exp + double sum 0.54 ns
 * per element with the full exp, 0.43 with the in-range one. */
#define FASTDL_DEFINE_EXPF_SUM_ENTRY(NAME, ATTRS)                           \
ATTRS static void NAME(const float *x, float shift, float *y, ptrdiff_t n,  \
                       double *acc, const float *pf, float lo)              \
{                                                                           \
    if (pf == NULL)                                                         \
        pf = x;                                                             \
    if (shift - shift == 0.0f && (double)lo - shift >= FASTDL_EXPF_FAST_MIN)\
        NAME##_in_range(x, shift, y, n, acc, pf);                           \
    else                                                                    \
        NAME##_full(x, shift, y, n, acc, pf);                               \
}
#define FASTDL_DEFINE_SUM_ENTRIES(SUFFIX, ATTRS)                            \
FASTDL_DEFINE_EXPF_SUM_ENTRY(fastdl_expf_shift_sum_##SUFFIX, ATTRS)         \
FASTDL_DEFINE_EXPF_SUM_ENTRY(fastdl_expf_shift_sum_r_##SUFFIX, ATTRS)       \
ATTRS static void fastdl_exp_shift_sum_##SUFFIX(                            \
    const double *x, double shift, double *y, ptrdiff_t n, double *acc,     \
    const double *pf, double lo)                                            \
{                                                                           \
    if (pf == NULL)                                                         \
        pf = x;                                                             \
    if (shift - shift == 0.0 && lo - shift >= FASTDL_EXP_FAST_MIN)          \
        fastdl_exp_shift_sum_##SUFFIX##_in_range(x, shift, y, n, acc, pf);  \
    else                                                                    \
        fastdl_exp_shift_sum_##SUFFIX##_full(x, shift, y, n, acc, pf);      \
}
FASTDL_DEFINE_SUM_ENTRIES(avx2, FASTDL_ATTRS_AVX2)

/* The max loop's 32 lanes in four registers; _mm256_max_ps(v, m) and
 * _mm_max_ps / _mm_max_ss(v, m) are `v > m ? v : m` (and the min's
 * _mm256_min_ps(v, l) is `v < l ? v : l`). */
FASTDL_ATTRS_AVX2 static float fastdl_maxf_avx2(const float *x, ptrdiff_t n,
                                                float *lo)
{
    float m = -__builtin_inf(), l = __builtin_inf();
    __m256 r0, r1, r2, r3, b0, b1, b2, b3, v;
    __m128 u, w;
    ptrdiff_t j = 0;
    if (n >= 8) {
        r0 = r1 = r2 = r3 = _mm256_set1_ps(-__builtin_inf());
        b0 = b1 = b2 = b3 = _mm256_set1_ps(__builtin_inf());
        for (; j + 32 <= n; j += 32) {
            v = _mm256_loadu_ps(x + j);
            r0 = _mm256_max_ps(v, r0);
            b0 = _mm256_min_ps(v, b0);
            v = _mm256_loadu_ps(x + j + 8);
            r1 = _mm256_max_ps(v, r1);
            b1 = _mm256_min_ps(v, b1);
            v = _mm256_loadu_ps(x + j + 16);
            r2 = _mm256_max_ps(v, r2);
            b2 = _mm256_min_ps(v, b2);
            v = _mm256_loadu_ps(x + j + 24);
            r3 = _mm256_max_ps(v, r3);
            b3 = _mm256_min_ps(v, b3);
        }
        for (; j + 8 <= n; j += 8) {
            v = _mm256_loadu_ps(x + j);
            r0 = _mm256_max_ps(v, r0);
            b0 = _mm256_min_ps(v, b0);
        }
        r0 = _mm256_max_ps(r2, r0);                             /* h = 16 */
        r1 = _mm256_max_ps(r3, r1);
        r0 = _mm256_max_ps(r1, r0);                             /* h = 8 */
        u = _mm_max_ps(_mm256_extractf128_ps(r0, 1),            /* h = 4 */
                       _mm256_castps256_ps128(r0));
        u = _mm_max_ps(_mm_movehl_ps(u, u), u);                 /* h = 2 */
        u = _mm_max_ss(_mm_shuffle_ps(u, u, 1), u);             /* h = 1 */
        m = _mm_cvtss_f32(u);
        b0 = _mm256_min_ps(_mm256_min_ps(b2, b0), _mm256_min_ps(b3, b1));
        w = _mm_min_ps(_mm256_extractf128_ps(b0, 1), _mm256_castps256_ps128(b0));
        w = _mm_min_ps(_mm_movehl_ps(w, w), w);
        w = _mm_min_ss(_mm_shuffle_ps(w, w, 1), w);
        l = _mm_cvtss_f32(w);
    }
    for (; j < n; j++) {
        m = x[j] > m ? x[j] : m;
        l = x[j] < l ? x[j] : l;
    }
    *lo = l;
    return m;
}

/* float64: 32 lanes in eight registers of 4 (the min: in four). */
FASTDL_ATTRS_AVX2 static double fastdl_max_avx2(const double *x, ptrdiff_t n,
                                                double *lo)
{
    double m = -__builtin_inf(), l = __builtin_inf();
    __m256d r0, r1, r2, r3, r4, r5, r6, r7, b0, b1, b2, b3, v;
    __m128d u;
    ptrdiff_t j = 0;
    if (n >= 8) {
        r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 =
            _mm256_set1_pd(-__builtin_inf());
        b0 = b1 = b2 = b3 = _mm256_set1_pd(__builtin_inf());
        for (; j + 32 <= n; j += 32) {
            v = _mm256_loadu_pd(x + j);
            r0 = _mm256_max_pd(v, r0);
            b0 = _mm256_min_pd(v, b0);
            v = _mm256_loadu_pd(x + j + 4);
            r1 = _mm256_max_pd(v, r1);
            b1 = _mm256_min_pd(v, b1);
            v = _mm256_loadu_pd(x + j + 8);
            r2 = _mm256_max_pd(v, r2);
            b2 = _mm256_min_pd(v, b2);
            v = _mm256_loadu_pd(x + j + 12);
            r3 = _mm256_max_pd(v, r3);
            b3 = _mm256_min_pd(v, b3);
            v = _mm256_loadu_pd(x + j + 16);
            r4 = _mm256_max_pd(v, r4);
            b0 = _mm256_min_pd(v, b0);
            v = _mm256_loadu_pd(x + j + 20);
            r5 = _mm256_max_pd(v, r5);
            b1 = _mm256_min_pd(v, b1);
            v = _mm256_loadu_pd(x + j + 24);
            r6 = _mm256_max_pd(v, r6);
            b2 = _mm256_min_pd(v, b2);
            v = _mm256_loadu_pd(x + j + 28);
            r7 = _mm256_max_pd(v, r7);
            b3 = _mm256_min_pd(v, b3);
        }
        for (; j + 8 <= n; j += 8) {
            v = _mm256_loadu_pd(x + j);
            r0 = _mm256_max_pd(v, r0);
            b0 = _mm256_min_pd(v, b0);
            v = _mm256_loadu_pd(x + j + 4);
            r1 = _mm256_max_pd(v, r1);
            b1 = _mm256_min_pd(v, b1);
        }
        r0 = _mm256_max_pd(r4, r0);                             /* h = 16 */
        r1 = _mm256_max_pd(r5, r1);
        r2 = _mm256_max_pd(r6, r2);
        r3 = _mm256_max_pd(r7, r3);
        r0 = _mm256_max_pd(r2, r0);                             /* h = 8 */
        r1 = _mm256_max_pd(r3, r1);
        r0 = _mm256_max_pd(r1, r0);                             /* h = 4 */
        u = _mm_max_pd(_mm256_extractf128_pd(r0, 1),            /* h = 2 */
                       _mm256_castpd256_pd128(r0));
        u = _mm_max_sd(_mm_unpackhi_pd(u, u), u);               /* h = 1 */
        m = _mm_cvtsd_f64(u);
        b0 = _mm256_min_pd(_mm256_min_pd(b2, b0), _mm256_min_pd(b3, b1));
        u = _mm_min_pd(_mm256_extractf128_pd(b0, 1), _mm256_castpd256_pd128(b0));
        u = _mm_min_sd(_mm_unpackhi_pd(u, u), u);
        l = _mm_cvtsd_f64(u);
    }
    for (; j < n; j++) {
        m = x[j] > m ? x[j] : m;
        l = x[j] < l ? x[j] : l;
    }
    *lo = l;
    return m;
}

/* The AVX-512F copy: the AVX2 intrinsics above on 16 float32 / 8 float64
 * lanes, each lane operation the same IEEE operation in the same order, so
 * every element and every partial sum gets the AVX2 copy's bits
 * (tests/c/simd_copies.c compares them on CPUs with AVX-512F).  Partial
 * tails use AVX-512 masked loads and stores.  gcc's vectorisation of the
 * fused C body for AVX-512F, which this replaces, was slower than the AVX2
 * intrinsics (its clamps become compares and blends): measured on AMD Zen 4,
 * one thread, 1000-element rows in L1, float32 exp + double sum 0.73 ns per
 * element (AVX2 intrinsics 0.50), row max 0.070 ns (AVX2 0.036).  Its vector
 * exps are defined with the AVX2 ones (FASTDL_DEFINE_EXP*_V above). */

/* Mask of the first n (0..16) lanes. */
#define FASTDL_MASK16(n) ((__mmask16)((1u << (n)) - 1u))

FASTDL_ATTRS_AVX512 static void fastdl_expf_shift_avx512(
    const float *x, float shift, float *y, ptrdiff_t n)
{
    const __m512 s = _mm512_set1_ps(shift);
    __mmask16 mask;
    ptrdiff_t j;
    for (j = 0; j + 16 <= n; j += 16)
        _mm512_storeu_ps(y + j, fastdl_expf_avx512_v_rounded(
            _mm512_loadu_ps(x + j), s));
    if (j < n) {
        mask = FASTDL_MASK16(n - j);
        _mm512_mask_storeu_ps(y + j, mask, fastdl_expf_avx512_v_rounded(
            _mm512_maskz_loadu_ps(mask, x + j), s));
    }
}

FASTDL_ATTRS_AVX512 static void fastdl_exp_shift_avx512(
    const double *x, double shift, double *y, ptrdiff_t n)
{
    const __m512d s = _mm512_set1_pd(shift);
    __mmask8 mask;
    ptrdiff_t j;
    for (j = 0; j + 8 <= n; j += 8)
        _mm512_storeu_pd(y + j, fastdl_exp_avx512_v(
            _mm512_sub_pd(_mm512_loadu_pd(x + j), s)));
    if (j < n) {
        mask = (__mmask8)FASTDL_MASK16(n - j);
        _mm512_mask_storeu_pd(y + j, mask, fastdl_exp_avx512_v(
            _mm512_sub_pd(_mm512_maskz_loadu_pd(mask, x + j), s)));
    }
}

/* The partial sums acc[0..7] are one register; a float32 block of 16 adds
 * its lanes 0-7, then 8-15, so acc[k] receives the terms j = k mod 8 in
 * element order, as in the other copies.  Lanes past n are zeroed before
 * they are added (see the AVX2 copy). */
#define FASTDL_ADD_F32X16(a, e)                                             \
    a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));       \
    a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm256_castpd_ps(                  \
        _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))))
#define FASTDL_DEFINE_EXPF_SUM_AVX512(NAME, EXPV)                           \
FASTDL_ATTRS_AVX512 static void NAME(const float *x, float shift, float *y, \
                                     ptrdiff_t n, double *acc,              \
                                     const float *pf)                       \
{                                                                           \
    const __m512 s = _mm512_set1_ps(shift);                                 \
    __m512d a = _mm512_loadu_pd(acc);                                       \
    __m512 e, f;                                                            \
    __mmask16 mask;                                                         \
    ptrdiff_t j;                                                            \
    for (j = 0; j + 32 <= n; j += 32) {                                     \
        FASTDL_PREFETCH(pf + j);                                            \
        FASTDL_PREFETCH(pf + j + 16);                                       \
        e = EXPV(_mm512_loadu_ps(x + j), s);                                \
        f = EXPV(_mm512_loadu_ps(x + j + 16), s);                           \
        _mm512_storeu_ps(y + j, e);                                         \
        _mm512_storeu_ps(y + j + 16, f);                                    \
        FASTDL_ADD_F32X16(a, e);                                            \
        FASTDL_ADD_F32X16(a, f);                                            \
    }                                                                       \
    for (; j < n; j += 16) {                                                \
        FASTDL_PREFETCH(pf + j);                                            \
        mask = n - j >= 16 ? (__mmask16)0xffff : FASTDL_MASK16(n - j);      \
        e = EXPV(_mm512_maskz_loadu_ps(mask, x + j), s);                    \
        _mm512_mask_storeu_ps(y + j, mask, e);                              \
        e = _mm512_maskz_mov_ps(mask, e);                                   \
        FASTDL_ADD_F32X16(a, e);                                            \
    }                                                                       \
    _mm512_storeu_pd(acc, a);                                               \
}

#define FASTDL_DEFINE_EXP_SUM_AVX512(NAME, EXPV)                            \
FASTDL_ATTRS_AVX512 static void NAME(const double *x, double shift,         \
                                     double *y, ptrdiff_t n, double *acc,   \
                                     const double *pf)                      \
{                                                                           \
    const __m512d s = _mm512_set1_pd(shift);                                \
    __m512d a = _mm512_loadu_pd(acc), e, f;                                 \
    __mmask8 mask;                                                          \
    ptrdiff_t j;                                                            \
    for (j = 0; j + 16 <= n; j += 16) {                                     \
        FASTDL_PREFETCH(pf + j);                                            \
        FASTDL_PREFETCH(pf + j + 8);                                        \
        e = EXPV(_mm512_sub_pd(_mm512_loadu_pd(x + j), s));                 \
        f = EXPV(_mm512_sub_pd(_mm512_loadu_pd(x + j + 8), s));             \
        _mm512_storeu_pd(y + j, e);                                         \
        _mm512_storeu_pd(y + j + 8, f);                                     \
        a = _mm512_add_pd(a, e);                                            \
        a = _mm512_add_pd(a, f);                                            \
    }                                                                       \
    for (; j < n; j += 8) {                                                 \
        FASTDL_PREFETCH(pf + j);                                            \
        mask = n - j >= 8 ? (__mmask8)0xff : (__mmask8)FASTDL_MASK16(n - j);\
        e = EXPV(_mm512_sub_pd(_mm512_maskz_loadu_pd(mask, x + j), s));     \
        _mm512_mask_storeu_pd(y + j, mask, e);                              \
        a = _mm512_add_pd(a, _mm512_maskz_mov_pd(mask, e));                 \
    }                                                                       \
    _mm512_storeu_pd(acc, a);                                               \
}

FASTDL_DEFINE_EXPF_SUM_AVX512(fastdl_expf_shift_sum_avx512_full,
                              fastdl_expf_avx512_v)
FASTDL_DEFINE_EXPF_SUM_AVX512(fastdl_expf_shift_sum_avx512_in_range,
                              fastdl_expf_avx512_v_in_range)
FASTDL_DEFINE_EXPF_SUM_AVX512(fastdl_expf_shift_sum_r_avx512_full,
                              fastdl_expf_avx512_v_rounded)
FASTDL_DEFINE_EXPF_SUM_AVX512(fastdl_expf_shift_sum_r_avx512_in_range,
                              fastdl_expf_avx512_v_in_range_rounded)
FASTDL_DEFINE_EXP_SUM_AVX512(fastdl_exp_shift_sum_avx512_full,
                             fastdl_exp_avx512_v)
FASTDL_DEFINE_EXP_SUM_AVX512(fastdl_exp_shift_sum_avx512_in_range,
                             fastdl_exp_avx512_v_in_range)

FASTDL_DEFINE_SUM_ENTRIES(avx512, FASTDL_ATTRS_AVX512)

/* The max loops of the AVX2 copy with the same 32 lanes, as two registers
 * of 16 (float32) or four of 8 (float64); the blocks of 8 after the blocks
 * of 32 go to lanes 0-7 (a masked max), and the folds take whole registers,
 * then halves, as the AVX2 copy does. */
FASTDL_ATTRS_AVX512 static float fastdl_maxf_avx512(const float *x,
                                                    ptrdiff_t n, float *lo)
{
    float m = -__builtin_inf(), l = __builtin_inf();
    __m512 r0, r1, b0, b1, v;
    __m256 h, g;
    __m128 u, w;
    ptrdiff_t j = 0;
    if (n >= 8) {
        r0 = r1 = _mm512_set1_ps(-__builtin_inf());
        b0 = b1 = _mm512_set1_ps(__builtin_inf());
        for (; j + 32 <= n; j += 32) {
            v = _mm512_loadu_ps(x + j);
            r0 = _mm512_max_ps(v, r0);
            b0 = _mm512_min_ps(v, b0);
            v = _mm512_loadu_ps(x + j + 16);
            r1 = _mm512_max_ps(v, r1);
            b1 = _mm512_min_ps(v, b1);
        }
        for (; j + 8 <= n; j += 8) {
            v = _mm512_maskz_loadu_ps((__mmask16)0xff, x + j);
            r0 = _mm512_mask_max_ps(r0, (__mmask16)0xff, v, r0);
            b0 = _mm512_mask_min_ps(b0, (__mmask16)0xff, v, b0);
        }
        r0 = _mm512_max_ps(r1, r0);                             /* h = 16 */
        h = _mm256_max_ps(                                      /* h = 8 */
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r0), 1)),
            _mm512_castps512_ps256(r0));
        u = _mm_max_ps(_mm256_extractf128_ps(h, 1),             /* h = 4 */
                       _mm256_castps256_ps128(h));
        u = _mm_max_ps(_mm_movehl_ps(u, u), u);                 /* h = 2 */
        u = _mm_max_ss(_mm_shuffle_ps(u, u, 1), u);             /* h = 1 */
        m = _mm_cvtss_f32(u);
        b0 = _mm512_min_ps(b1, b0);
        g = _mm256_min_ps(
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b0), 1)),
            _mm512_castps512_ps256(b0));
        w = _mm_min_ps(_mm256_extractf128_ps(g, 1), _mm256_castps256_ps128(g));
        w = _mm_min_ps(_mm_movehl_ps(w, w), w);
        w = _mm_min_ss(_mm_shuffle_ps(w, w, 1), w);
        l = _mm_cvtss_f32(w);
    }
    for (; j < n; j++) {
        m = x[j] > m ? x[j] : m;
        l = x[j] < l ? x[j] : l;
    }
    *lo = l;
    return m;
}

FASTDL_ATTRS_AVX512 static double fastdl_max_avx512(const double *x,
                                                    ptrdiff_t n, double *lo)
{
    double m = -__builtin_inf(), l = __builtin_inf();
    __m512d r0, r1, r2, r3, b0, b1, v;
    __m256d h;
    __m128d u;
    ptrdiff_t j = 0;
    if (n >= 8) {
        r0 = r1 = r2 = r3 = _mm512_set1_pd(-__builtin_inf());
        b0 = b1 = _mm512_set1_pd(__builtin_inf());
        for (; j + 32 <= n; j += 32) {
            v = _mm512_loadu_pd(x + j);
            r0 = _mm512_max_pd(v, r0);
            b0 = _mm512_min_pd(v, b0);
            v = _mm512_loadu_pd(x + j + 8);
            r1 = _mm512_max_pd(v, r1);
            b1 = _mm512_min_pd(v, b1);
            v = _mm512_loadu_pd(x + j + 16);
            r2 = _mm512_max_pd(v, r2);
            b0 = _mm512_min_pd(v, b0);
            v = _mm512_loadu_pd(x + j + 24);
            r3 = _mm512_max_pd(v, r3);
            b1 = _mm512_min_pd(v, b1);
        }
        for (; j + 8 <= n; j += 8) {
            v = _mm512_loadu_pd(x + j);
            r0 = _mm512_max_pd(v, r0);
            b0 = _mm512_min_pd(v, b0);
        }
        r0 = _mm512_max_pd(r2, r0);                             /* h = 16 */
        r1 = _mm512_max_pd(r3, r1);
        r0 = _mm512_max_pd(r1, r0);                             /* h = 8 */
        h = _mm256_max_pd(_mm512_extractf64x4_pd(r0, 1),        /* h = 4 */
                          _mm512_castpd512_pd256(r0));
        u = _mm_max_pd(_mm256_extractf128_pd(h, 1),             /* h = 2 */
                       _mm256_castpd256_pd128(h));
        u = _mm_max_sd(_mm_unpackhi_pd(u, u), u);               /* h = 1 */
        m = _mm_cvtsd_f64(u);
        b0 = _mm512_min_pd(b1, b0);
        h = _mm256_min_pd(_mm512_extractf64x4_pd(b0, 1),
                          _mm512_castpd512_pd256(b0));
        u = _mm_min_pd(_mm256_extractf128_pd(h, 1), _mm256_castpd256_pd128(h));
        u = _mm_min_sd(_mm_unpackhi_pd(u, u), u);
        l = _mm_cvtsd_f64(u);
    }
    for (; j < n; j++) {
        m = x[j] > m ? x[j] : m;
        l = x[j] < l ? x[j] : l;
    }
    *lo = l;
    return m;
}

/* Output passes with non-temporal stores, for outputs far larger than the
 * caches.  A plain store of a line the cache does not hold first reads it
 * from memory (read for ownership), so an output pass moves its bytes
 * twice; a non-temporal store writes whole lines straight to memory.
 *  - sub2 (y = (x - a) - b): log_softmax's output pass.
 *  - scale into y (y = e * r, e a scratch row): softmax and the
 *    cross-entropy gradient put their exps in a per-thread scratch row
 *    (which stays in L2) instead of the output, then scale it into the
 *    output.  The products of the scale loops, so the same bits.
 * Measured at 1024x32000 float32 (rows of 128 KB, far more data than the
 * caches), 2 threads, AVX-512F copy, Intel Xeon (AVX-512F) with a load
 * average near 4 from other work, lower quartiles of 24 calls, as a
 * fraction of a parallel np.copyto's bandwidth in the same process:
 * plain stores -> these, softmax 79% -> 93%, log_softmax 59% -> 97%,
 * cross-entropy with gradient 79% -> 95%.  The variants tried for softmax
 * (one process, C loops side by side): an online max-and-sum pass, then
 * the exps again into non-temporal stores, 69%; the max, the exp sum, the
 * exps again into non-temporal stores, 74%; plain stores with a write
 * prefetch of the next output row, 85%; the scratch row, 89%.  Plain
 * stores up to the first 64-byte boundary of y and after the last whole
 * vector; each ends with sfence, so the non-temporal stores are ordered
 * before any store after the call (another thread reads the output after
 * the kernel). */
#define FASTDL_DEFINE_SUB2_STREAM(NAME, ATTRS, T, CAST, VT, SET1, LOADU, SUB,  \
                                  STREAM, LANES)                            \
ATTRS static void NAME(const T *x, double a, double b, T *y, ptrdiff_t n)   \
{                                                                           \
    const T af = CAST a, bf = CAST b;                                       \
    const VT av = SET1(af), bv = SET1(bf);                                  \
    ptrdiff_t j = 0;                                                        \
    for (; j < n && ((uintptr_t)(y + j) & 63) != 0; j++)                    \
        y[j] = (x[j] - af) - bf;                                            \
    for (; j + LANES <= n; j += LANES)                                      \
        STREAM(y + j, SUB(SUB(LOADU(x + j), av), bv));                      \
    for (; j < n; j++)                                                      \
        y[j] = (x[j] - af) - bf;                                            \
    _mm_sfence();                                                           \
}
FASTDL_DEFINE_SUB2_STREAM(fastdl_sub2f_stream_avx512, FASTDL_ATTRS_AVX512, float,
                          (float), __m512, _mm512_set1_ps, _mm512_loadu_ps,
                          _mm512_sub_ps, _mm512_stream_ps, 16)
FASTDL_DEFINE_SUB2_STREAM(fastdl_sub2_stream_avx512, FASTDL_ATTRS_AVX512, double,
                          , __m512d, _mm512_set1_pd, _mm512_loadu_pd,
                          _mm512_sub_pd, _mm512_stream_pd, 8)
FASTDL_DEFINE_SUB2_STREAM(fastdl_sub2f_stream_avx2, FASTDL_ATTRS_AVX2, float,
                          (float), __m256, _mm256_set1_ps, _mm256_loadu_ps,
                          _mm256_sub_ps, _mm256_stream_ps, 8)
FASTDL_DEFINE_SUB2_STREAM(fastdl_sub2_stream_avx2, FASTDL_ATTRS_AVX2, double,
                          , __m256d, _mm256_set1_pd, _mm256_loadu_pd,
                          _mm256_sub_pd, _mm256_stream_pd, 4)

#define FASTDL_DEFINE_SCALE_STREAM(NAME, ATTRS, T, CAST, VT, SET1, LOADU, MUL, \
                                   STREAM, LANES)                           \
ATTRS static void NAME(const T *e, double r, T *y, ptrdiff_t n)             \
{                                                                           \
    const T rt = CAST r;                                                    \
    const VT rv = SET1(rt);                                                 \
    ptrdiff_t j = 0;                                                        \
    for (; j < n && ((uintptr_t)(y + j) & 63) != 0; j++)                    \
        y[j] = e[j] * rt;                                                   \
    for (; j + LANES <= n; j += LANES)                                      \
        STREAM(y + j, MUL(LOADU(e + j), rv));                               \
    for (; j < n; j++)                                                      \
        y[j] = e[j] * rt;                                                   \
    _mm_sfence();                                                           \
}
FASTDL_DEFINE_SCALE_STREAM(fastdl_scalef_stream_avx512, FASTDL_ATTRS_AVX512, float,
                           (float), __m512, _mm512_set1_ps, _mm512_loadu_ps,
                           _mm512_mul_ps, _mm512_stream_ps, 16)
FASTDL_DEFINE_SCALE_STREAM(fastdl_scale_stream_avx512, FASTDL_ATTRS_AVX512, double,
                           , __m512d, _mm512_set1_pd, _mm512_loadu_pd,
                           _mm512_mul_pd, _mm512_stream_pd, 8)
FASTDL_DEFINE_SCALE_STREAM(fastdl_scalef_stream_avx2, FASTDL_ATTRS_AVX2, float,
                           (float), __m256, _mm256_set1_ps, _mm256_loadu_ps,
                           _mm256_mul_ps, _mm256_stream_ps, 8)
FASTDL_DEFINE_SCALE_STREAM(fastdl_scale_stream_avx2, FASTDL_ATTRS_AVX2, double,
                           , __m256d, _mm256_set1_pd, _mm256_loadu_pd,
                           _mm256_mul_pd, _mm256_stream_pd, 4)

static int fastdl_simd_level(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
    return 0;
}

#define FASTDL_RESOLVER(NAME, TYPE)                                         \
static TYPE NAME##_resolve(void)                                            \
{                                                                           \
    switch (fastdl_simd_level()) {                                          \
    case 2: return NAME##_avx512;                                           \
    case 1: return NAME##_avx2;                                             \
    default: return NAME##_baseline;                                        \
    }                                                                       \
}

typedef void (*fastdl_expf_shift_fn)(const float *, float, float *,
                                     ptrdiff_t);
typedef void (*fastdl_exp_shift_fn)(const double *, double, double *,
                                    ptrdiff_t);
typedef void (*fastdl_expf_shift_sum_fn)(const float *, float, float *,
                                         ptrdiff_t, double *, const float *,
                                         float);
typedef void (*fastdl_exp_shift_sum_fn)(const double *, double, double *,
                                        ptrdiff_t, double *, const double *,
                                        double);
FASTDL_RESOLVER(fastdl_expf_shift, fastdl_expf_shift_fn)
FASTDL_RESOLVER(fastdl_exp_shift, fastdl_exp_shift_fn)
FASTDL_RESOLVER(fastdl_expf_shift_sum, fastdl_expf_shift_sum_fn)
FASTDL_RESOLVER(fastdl_expf_shift_sum_r, fastdl_expf_shift_sum_fn)
FASTDL_RESOLVER(fastdl_exp_shift_sum, fastdl_exp_shift_sum_fn)
typedef float (*fastdl_maxf_fn)(const float *, ptrdiff_t, float *);
typedef double (*fastdl_max_fn)(const double *, ptrdiff_t, double *);
typedef void (*fastdl_scalef_fn)(float *, double, ptrdiff_t);
typedef void (*fastdl_scale_fn)(double *, double, ptrdiff_t);
typedef void (*fastdl_sub2f_fn)(const float *, double, double, float *,
                                ptrdiff_t);
typedef void (*fastdl_sub2_fn)(const double *, double, double, double *,
                               ptrdiff_t);
FASTDL_RESOLVER(fastdl_maxf, fastdl_maxf_fn)
FASTDL_RESOLVER(fastdl_max, fastdl_max_fn)
FASTDL_RESOLVER(fastdl_scalef, fastdl_scalef_fn)
FASTDL_RESOLVER(fastdl_scale, fastdl_scale_fn)
FASTDL_RESOLVER(fastdl_sub2f, fastdl_sub2f_fn)
FASTDL_RESOLVER(fastdl_sub2, fastdl_sub2_fn)
FASTDL_RESOLVER(fastdl_sub2f_stream, fastdl_sub2f_fn)
FASTDL_RESOLVER(fastdl_sub2_stream, fastdl_sub2_fn)
typedef void (*fastdl_scalef_stream_fn)(const float *, double, float *, ptrdiff_t);
typedef void (*fastdl_scale_stream_fn)(const double *, double, double *, ptrdiff_t);
FASTDL_RESOLVER(fastdl_scalef_stream, fastdl_scalef_stream_fn)
FASTDL_RESOLVER(fastdl_scale_stream, fastdl_scale_stream_fn)
typedef double (*fastdl_sumf_fn)(const float *, ptrdiff_t);
typedef double (*fastdl_sum_fn)(const double *, ptrdiff_t);
typedef double (*fastdl_dotf_fn)(const float *, const float *, ptrdiff_t);
typedef double (*fastdl_dot_fn)(const double *, const double *, ptrdiff_t);
typedef void (*fastdl_bwdf_fn)(const float *, const float *, double, float *,
                               ptrdiff_t);
typedef void (*fastdl_bwd_fn)(const double *, const double *, double,
                              double *, ptrdiff_t);
FASTDL_RESOLVER(fastdl_sumf, fastdl_sumf_fn)
FASTDL_RESOLVER(fastdl_sum, fastdl_sum_fn)
FASTDL_RESOLVER(fastdl_dotf, fastdl_dotf_fn)
FASTDL_RESOLVER(fastdl_dot, fastdl_dot_fn)
FASTDL_RESOLVER(fastdl_msubf, fastdl_bwdf_fn)
FASTDL_RESOLVER(fastdl_msub, fastdl_bwd_fn)
FASTDL_RESOLVER(fastdl_dscalef, fastdl_bwdf_fn)
FASTDL_RESOLVER(fastdl_dscale, fastdl_bwd_fn)

static void fastdl_expf_shift(const float *x, float shift, float *y,
                              ptrdiff_t n)
    __attribute__((ifunc("fastdl_expf_shift_resolve")));
static void fastdl_exp_shift(const double *x, double shift, double *y,
                             ptrdiff_t n)
    __attribute__((ifunc("fastdl_exp_shift_resolve")));
static void fastdl_expf_shift_sum(const float *x, float shift, float *y,
                                  ptrdiff_t n, double *acc, const float *pf,
                                  float lo)
    __attribute__((ifunc("fastdl_expf_shift_sum_resolve")));
/* The same with x - shift rounded to float32 first, for the passes that
 * only sum the exps (see FASTDL_DEFINE_EXPF_V). */
static void fastdl_expf_shift_sum_r(const float *x, float shift, float *y,
                                    ptrdiff_t n, double *acc, const float *pf,
                                    float lo)
    __attribute__((ifunc("fastdl_expf_shift_sum_r_resolve")));
static void fastdl_exp_shift_sum(const double *x, double shift, double *y,
                                 ptrdiff_t n, double *acc, const double *pf,
                                 double lo)
    __attribute__((ifunc("fastdl_exp_shift_sum_resolve")));
static float fastdl_maxf(const float *x, ptrdiff_t n, float *lo)
    __attribute__((ifunc("fastdl_maxf_resolve")));
static double fastdl_max(const double *x, ptrdiff_t n, double *lo)
    __attribute__((ifunc("fastdl_max_resolve")));
static void fastdl_scalef(float *y, double r, ptrdiff_t n)
    __attribute__((ifunc("fastdl_scalef_resolve")));
static void fastdl_scale(double *y, double r, ptrdiff_t n)
    __attribute__((ifunc("fastdl_scale_resolve")));
static void fastdl_sub2f(const float *x, double a, double b, float *y,
                         ptrdiff_t n)
    __attribute__((ifunc("fastdl_sub2f_resolve")));
static void fastdl_sub2(const double *x, double a, double b, double *y,
                        ptrdiff_t n)
    __attribute__((ifunc("fastdl_sub2_resolve")));
static void fastdl_sub2f_stream(const float *x, double a, double b, float *y,
                                ptrdiff_t n)
    __attribute__((ifunc("fastdl_sub2f_stream_resolve")));
static void fastdl_sub2_stream(const double *x, double a, double b, double *y,
                               ptrdiff_t n)
    __attribute__((ifunc("fastdl_sub2_stream_resolve")));
static void fastdl_scalef_stream(const float *e, double r, float *y, ptrdiff_t n)
    __attribute__((ifunc("fastdl_scalef_stream_resolve")));
static void fastdl_scale_stream(const double *e, double r, double *y, ptrdiff_t n)
    __attribute__((ifunc("fastdl_scale_stream_resolve")));
static double fastdl_sumf(const float *x, ptrdiff_t n)
    __attribute__((ifunc("fastdl_sumf_resolve")));
static double fastdl_sum(const double *x, ptrdiff_t n)
    __attribute__((ifunc("fastdl_sum_resolve")));
static double fastdl_dotf(const float *x, const float *y, ptrdiff_t n)
    __attribute__((ifunc("fastdl_dotf_resolve")));
static double fastdl_dot(const double *x, const double *y, ptrdiff_t n)
    __attribute__((ifunc("fastdl_dot_resolve")));
static void fastdl_msubf(const float *dy, const float *e, double t, float *out,
                         ptrdiff_t n)
    __attribute__((ifunc("fastdl_msubf_resolve")));
static void fastdl_msub(const double *dy, const double *e, double t,
                        double *out, ptrdiff_t n)
    __attribute__((ifunc("fastdl_msub_resolve")));
static void fastdl_dscalef(const float *y, const float *dy, double d,
                           float *out, ptrdiff_t n)
    __attribute__((ifunc("fastdl_dscalef_resolve")));
static void fastdl_dscale(const double *y, const double *dy, double d,
                          double *out, ptrdiff_t n)
    __attribute__((ifunc("fastdl_dscale_resolve")));

#else

#define fastdl_expf_shift fastdl_expf_shift_baseline
#define fastdl_exp_shift fastdl_exp_shift_baseline
#define fastdl_expf_shift_sum fastdl_expf_shift_sum_baseline
#define fastdl_expf_shift_sum_r fastdl_expf_shift_sum_r_baseline
#define fastdl_exp_shift_sum fastdl_exp_shift_sum_baseline
#define fastdl_maxf fastdl_maxf_baseline
#define fastdl_max fastdl_max_baseline
#define fastdl_scalef fastdl_scalef_baseline
#define fastdl_scale fastdl_scale_baseline
#define fastdl_sub2f fastdl_sub2f_baseline
#define fastdl_sub2 fastdl_sub2_baseline
#define fastdl_sub2f_stream fastdl_sub2f_stream_baseline
#define fastdl_sub2_stream fastdl_sub2_stream_baseline
#define fastdl_scalef_stream fastdl_scalef_stream_baseline
#define fastdl_scale_stream fastdl_scale_stream_baseline
#define fastdl_sumf fastdl_sumf_baseline
#define fastdl_sum fastdl_sum_baseline
#define fastdl_dotf fastdl_dotf_baseline
#define fastdl_dot fastdl_dot_baseline
#define fastdl_msubf fastdl_msubf_baseline
#define fastdl_msub fastdl_msub_baseline
#define fastdl_dscalef fastdl_dscalef_baseline
#define fastdl_dscale fastdl_dscale_baseline

#endif

/* float64 log1p, expm1 and tanh that gcc vectorises.
 *
 * glibc's log1p/expm1/tanh are scalar calls, so a loop of them runs one
 * element at a time.  These are branch-free arithmetic, selects and integer
 * bit operations (no float -> int conversion, which AVX2 lacks), so gcc -O3
 * vectorises a loop of them (SSE2 for the baseline, wider with -mavx2).
 * They are the algorithms, constants and operation order of
 * _log1p_for_float64, _expm1_for_float64 and _tanh_for_float64 in
 * fastdl/backends/numba/_jit.py, whose docstrings and comments give the
 * derivations and coefficient sources; compiled with -ffp-contract=off
 * (setup.py) they give the bits of the Numba functions compiled without
 * the "contract" flag (tests/test_vector_math.py compares them).  Errors
 * measured against long double on 1e7-point samples: log1p 0.854 ulp,
 * expm1 1.025 ulp, tanh 1.116 ulp (glibc: 0.62, 0.52, 1.18).
 * Cost, a loop over 4M doubles in [0, 1], one thread, AMD Zen 4, gcc 12
 * -O3 with setup.py's flags, ns per element, glibc -> these: baseline
 * (SSE2, 2 lanes, no FMA) log1p 8.6 -> 4.7, expm1 8.4 -> 7.9, tanh
 * 12.3 -> 7.6; with -mavx2 -mfma (still no contraction): 2.1, 3.1, 3.7.
 * So a kernel gains much only from an AVX2 copy, dispatched like the exp
 * loops above. */

static inline double fastdl_f64_from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline uint64_t fastdl_bits_from_f64(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* log(u) + c for a positive normal u (k_sub taken off u's exponent), the
 * reduction and polynomial below that fastdl_log1p and fastdl_log share. */
static inline double fastdl_log_reduced(double u, double c, double k_sub)
{
    double k, m, f, s, z, hfsq, q;
    uint64_t ix;
    ix = fastdl_bits_from_f64(u) + 0x00095F6200000000u;
    k = fastdl_f64_from_bits((ix >> 52) + 0x4330000000000000u)
        - 4503599627371519.0;                      /* 2^52 + 1023 */
    k = k - k_sub;
    m = fastdl_f64_from_bits((ix & 0x000FFFFFFFFFFFFFu) + 0x3FE6A09E00000000u);
    f = m - 1.0;
    s = f / (2.0 + f);
    z = s * s;
    hfsq = 0.5 * f * f;
    q = 1.46164531156136090e-01;
    q = q * z + 1.53317213230113630e-01;
    q = q * z + 1.81828891336114851e-01;
    q = q * z + 2.22222111346804779e-01;
    q = q * z + 2.85714286259761863e-01;
    q = q * z + 3.99999999998995048e-01;
    q = q * z + 6.66666666666666963e-01;
    q = q * z;
    return k * 6.93147180369123816490e-01
        - ((hfsq - (s * (hfsq + q) + (k * 1.90821492927058770002e-10 + c))) - f);
}

/* log(1 + x) (fdlibm's s_log1p.c without its branches):
 *  - u = 1 + x rounded; its exact rounding error e by TwoSum (Knuth, exact
 *    for any two doubles), c = e / u: log(1 + x) = log(u) + c to within
 *    c^2/2 < 2^-107.  For x in [-1, -0.5] u is exact; for tiny |x| u = 1
 *    and the result is c = x exactly.
 *  - u = 2^k m, m in [0x1.6a09ep-1, 0x1.6a09ep0), from u's bits: u's bits
 *    plus 0x3ff00000 - 0x3fe6a09e in the high word (musl's log1p.c) carry
 *    into the exponent exactly when u's significand is >= 0x1.6a09e, which
 *    makes the exponent field k + 1023; the sum's fraction bits plus the
 *    bits of 0x1.6a09ep-1 undo the offset and are m.  k becomes a double
 *    without an int -> double conversion: the bits 0x433... + (k + 1023)
 *    are 2^52 + k + 1023, minus 2^52 + 1023 exactly.
 *  - log(1 + f), f = m - 1 exact, as f - (hfsq - s (hfsq + R)) with
 *    hfsq = f^2/2, s = f/(2 + f), R = z Q(z), z = s^2, Q the degree-6
 *    Chebyshev interpolant of fastdl/backends/numba/_jit.py (relative error of the
 *    polynomial 2^-57.6); then k ln2 in two parts (fdlibm's ln2_hi, exact
 *    products) with the small terms k ln2_lo and c added first.
 *  - Selects: log1p(+-0) = +-0, log1p(-1) = -inf (u == 0), log1p(+inf) =
 *    +inf, NaN for x < -1 and NaN (x >= -1 is false for both). */
static inline double fastdl_log1p(double x)
{
    double u, bb, e, c, y;
    u = 1.0 + x;
    bb = u - 1.0;
    e = (1.0 - (u - bb)) + (x - bb);
    c = e / u;
    y = fastdl_log_reduced(u, c, 0.0);
    y = x == 0.0 ? x : y;
    y = u == 0.0 ? -__builtin_inf() : y;
    y = x == __builtin_inf() ? x : y;
    return x >= -1.0 ? y : __builtin_nan("");
}

/* log(x): the reduction and polynomial of fastdl_log1p on u = x itself (no
 * rounding error to carry, c = 0).  A subnormal x (below 2^-1022, where
 * the exponent bits are 0) is first scaled by 2^54, exactly, and 54 taken
 * off k.  Selects: log(+-0) = -inf, log(+inf) = +inf, NaN for x < 0 and
 * NaN (x >= 0 is false for both).  The algorithm of _log_for_float64 in
 * fastdl/backends/numba/_jit.py. */
static inline double fastdl_log(double x)
{
    double y;
    int sub;
    sub = x < 2.2250738585072014e-308;              /* 2^-1022 */
    y = fastdl_log_reduced(sub ? x * 18014398509481984.0 : x, 0.0,  /* 2^54 */
                           sub ? 54.0 : 0.0);
    y = x == 0.0 ? -__builtin_inf() : y;
    y = x == __builtin_inf() ? x : y;
    return x >= 0.0 ? y : __builtin_nan("");
}

/* exp(x) - 1:
 *  - x clamped to [-40, 710] (NaN passes: the operand order of fastdl_exp's
 *    clamp); below -54 ln2 = -37.43 expm1 rounds to -1, above 709.79 it
 *    overflows.  x = k ln2 + r as in fastdl_exp (k from the magic-number
 *    sum kb, ln2 in two parts), keeping the Fast2Sum error c_r of
 *    r = r_hi - k ln2_lo (r_hi = x - k ln2_hi is exact).
 *  - expm1(x) = 2^k ((1 - 2^-k) + r + q), q = r^2 P(r) + c_r with P the
 *    degree-10 Chebyshev interpolant of (e^r - 1 - r)/r^2 (relative error
 *    of r + r^2 P(r): 2^-60).  t = 1 - 2^-k by TwoSum (error e_t), t + r
 *    by Fast2Sum (|t| >= 1/2 > |r| unless t == 0), and the bracket
 *    b = h + ((e_1 + e_t) + q) rounded once, h + e_1 + e_t being exactly
 *    1 - 2^-k + r.  2^-k from bits, with -k clamped to >= -1022 (normal).
 *  - b times 2^k in two factors, as in fastdl_exp, so overflow to inf is
 *    exp's; expm1(+-0) = +-0 by a select, tiny x gives x, -inf gives -1. */
static inline double fastdl_expm1(double x)
{
    const double magic = 6755399441057790.0;  /* 1.5 * 2^52 + 2046 */
    double xc, kb, k, r_hi, lo, r, c_r, p, q, minus_k, w, t, bt, e_t, h, e_1;
    double b, s1, s2;
    uint64_t bits, half;
    xc = -40.0 > x ? -40.0 : x;
    xc = 710.0 < xc ? 710.0 : xc;
    kb = xc * 1.4426950408889634 + magic;
    k = kb - magic;
    r_hi = xc - k * 6.93147180369123816490e-01;
    lo = -(k * 1.90821492927058770002e-10);
    r = r_hi + lo;
    c_r = lo - (r - r_hi);
    p = 2.09146851614180674e-09;
    p = p * r + 2.51052144747514130e-08;
    p = p * r + 2.75572736474510872e-07;
    p = p * r + 2.75572554062850442e-06;
    p = p * r + 2.48015873255443207e-05;
    p = p * r + 1.98412698748158344e-04;
    p = p * r + 1.38888888888837503e-03;
    p = p * r + 8.33333333332613585e-03;
    p = p * r + 4.16666666666666713e-02;
    p = p * r + 1.66666666666666713e-01;
    p = p * r + 0.5;
    q = (r * r) * p + c_r;
    minus_k = -1022.0 > -k ? -1022.0 : -k;
    /* 1.5 * 2^52 + 1023: the low bits of the sum are -k + 1023. */
    w = fastdl_f64_from_bits(fastdl_bits_from_f64(minus_k + 6755399441056767.0)
                             << 52);
    t = 1.0 + -w;
    bt = t - 1.0;
    e_t = (1.0 - (t - bt)) + (-w - bt);
    h = t + r;
    e_1 = r - (h - t);
    b = h + ((e_1 + e_t) + q);
    bits = fastdl_bits_from_f64(kb);
    half = bits >> 1;
    s1 = fastdl_f64_from_bits(half << 52);
    s2 = fastdl_f64_from_bits((bits - half) << 52);
    b = (b * s1) * s2;
    return x == 0.0 ? x : b;
}

/* tanh(x), on a = |x| with the sign put back by copysign (odd; -0 -> -0):
 *  - a < 0.75: a - a^3 N(z)/D(z), z = a^2, from the [9/8] convergent of
 *    Lambert's continued fraction tanh x = x/(1 + z/(3 + z/(5 + ...)))
 *    (integer coefficients; relative error 1.8e-19 on (0, 0.75]);
 *  - a >= 0.75: 1 - 2/(1 + e^(2a)) with fastdl_exp, a clamped to 20
 *    (tanh rounds to 1 from 55 ln(2)/2 = 19.0615 on; +-inf gives +-1);
 *  - both are computed, and one division serves both: numerator and
 *    denominator (N, D or 2, 1 + e^(2a)) are selected first.  The switch
 *    at 0.75 (Cephes' tanh.c uses 0.625) is where the measured errors of
 *    the two sides are about equal. */
static inline double fastdl_tanh(double x)
{
    double a, ac, big, z, n, d, ratio, t;
    int small;
    a = __builtin_fabs(x);
    ac = 20.0 < a ? 20.0 : a;
    big = fastdl_exp(2.0 * ac);
    z = a * a;
    n = 44.0;
    n = n * z + 12870.0;
    n = n * z + 810810.0;
    n = n * z + 11486475.0;
    d = 45.0;
    d = d * z + 13860.0;
    d = d * z + 945945.0;
    d = d * z + 16216200.0;
    d = d * z + 34459425.0;
    small = a < 0.75;
    ratio = (small ? n : 2.0) / (small ? d : 1.0 + big);
    t = small ? a - (a * z) * ratio : 1.0 - ratio;
    return __builtin_copysign(t, x);
}

/* erf(x), on a = |x| with the sign put back by copysign (odd; -0 -> -0).
 * The algorithm, constants and operation order of _erf_for_float64 in
 * fastdl/backends/numba/_jit.py (the derivation is there):
 *  - a < 1: a + a P(a^2), P of degree 13;
 *  - a >= 1: 1 - e^(-a^2) s Q(t), s = 1/a, t = 2.4 s - 1.4 (s mapped from
 *    [1/6, 1] onto [-1, 1]), Q of degree 23, a clamped to [1, 6] (erf
 *    rounds to 1 from 5.93 on; +-inf gives +-1);
 *  - both are computed and the result selected, NaN passing through the
 *    second (a < 1 is false for it). */
static inline double fastdl_erf(double x)
{
    double a, z, p, small, ac, s, t, q, big;
    a = __builtin_fabs(x);
    z = a * a;
    p = -4.230945824295338e-12;
    p = p * z + 8.709045129053106e-11;
    p = p * z + -1.216456005728345e-09;
    p = p * z + 1.4792401209404813e-08;
    p = p * z + -1.6364642158167616e-07;
    p = p * z + 1.6462045441468418e-06;
    p = p * z + -1.4925647567519332e-05;
    p = p * z + 0.00012055332902888736;
    p = p * z + -0.000854832702193483;
    p = p * z + 0.0052239776254232985;
    p = p * z + -0.02686617064512984;
    p = p * z + 0.1128379167095512;
    p = p * z + -0.37612638903183754;
    p = p * z + 0.1283791670955126;
    small = a + a * p;
    ac = 6.0 < a ? 6.0 : a;
    ac = 1.0 > ac ? 1.0 : ac;
    s = 1.0 / ac;
    t = s * 2.4 + -1.4;
    q = 1.4093687372508204e-09;
    q = q * t + -2.433890074703672e-09;
    q = q * t + -5.503330673720928e-09;
    q = q * t + 1.3948882353327987e-08;
    q = q * t + -5.08229857908709e-09;
    q = q * t + 1.7540555555328367e-09;
    q = q * t + -1.7101817689839376e-08;
    q = q * t + -1.29892188928026e-08;
    q = q * t + 1.571094967489495e-07;
    q = q * t + -4.5394568492152867e-07;
    q = q * t + 9.229601666813976e-07;
    q = q * t + -1.2852234269946865e-06;
    q = q * t + 2.1381658016438615e-07;
    q = q * t + 5.8988676570697e-06;
    q = q * t + -2.385564389256323e-05;
    q = q * t + 5.9516513750388176e-05;
    q = q * t + -9.30346994792105e-05;
    q = q * t + -2.4390402072001684e-06;
    q = q * t + 0.0006408677494091456;
    q = q * t + -0.002669343030631186;
    q = q * t + 0.006219717587559677;
    q = q * t + -0.0019368880677061889;
    q = q * t + -0.07128287792547401;
    q = q * t + 0.49666648512593875;
    big = 1.0 - fastdl_exp(-(ac * ac)) * (s * q);
    return __builtin_copysign(a < 1.0 ? small : big, x);
}

#endif
