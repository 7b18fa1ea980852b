/* A float32 exp that gcc -O3 can vectorise (fastdl kernels, _common.pxd).
 *
 * glibc's expf is a scalar call unless -ffast-math is on (its SIMD variants
 * are only declared under __FAST_MATH__), so a loop of expf runs one element
 * at a time.  fastdl_expf is plain branch-free arithmetic instead, inlined
 * into the loops, so each loop becomes SIMD code.
 *
 * Method: exp(x) = 2^k * exp(r) with k = round(x / ln2), r = x - k ln2.
 *  - k: x * log2(e) rounded to the nearest integer by adding and subtracting
 *    1.5 * 2^23 (the sum's ulp is 1, so the addition itself rounds; exact for
 *    |x log2 e| < 2^22, far beyond the clamped range below).
 *  - r: Cody-Waite reduction with ln2 split into ln2_hi (9 significant
 *    bits, so k * ln2_hi is exact for the |k| <= 150 used here, and
 *    x - k * ln2_hi is exact too, x and k ln2_hi being within a factor 2)
 *    and ln2_lo = ln2 - ln2_hi; |r| <= ln2/2 + tiny.
 *  - exp(r): Taylor polynomial of degree 7 (Horner).  Truncation error
 *    <= |r|^8 / 8! * e^|r| <= 0.3466^8 / 40320 * 1.42 < 2.2e-8 relative,
 *    about 0.2 ulp; the float32 Horner roundings add about 1 ulp.
 *  - 2^k: built from exponent bits as two factors 2^k1 * 2^k2 (k1 = k >> 1,
 *    k2 = k - k1), each a normal float for every k in [-150, 128].  Overflow
 *    then happens in the final multiply (giving +inf exactly when the true
 *    result exceeds FLT_MAX after rounding) and results below FLT_MIN become
 *    denormals or 0 through ordinary IEEE rounding of that multiply.
 * Special values: x is clamped to [-104, 89] (exp(-104) < half the smallest
 * denormal, so it rounds to 0; exp(89) overflows), which sends -inf to 0 and
 * +inf to +inf; NaN is carried through the clamp as 0 (never converted to an
 * integer) and returned as NaN by the final select.
 *
 * Accuracy: max error 1.16 ulp against the exact exp (glibc's expf is
 * < 0.5 ulp; we allow 2), measured by an exhaustive sweep of all 2.24e9
 * float32 values in [-105, 89.5] against exp computed in double, compiled
 * with setup.py's flags, run twice: through the inline SSE2-vectorised loop
 * and through fastdl_expf_shift (AVX2 clone); same result both times.  0.8% of the
 * results differ from glibc's expf, by 1 ulp.  -inf, +inf, NaN, the
 * overflow threshold 88.72284 and the denormal/zero thresholds give exactly
 * glibc's results.  In the denormal range (x < -87.34) the product is
 * rounded twice, which stays within the same 1.16 ulp bound.
 */
#ifndef FASTDL_FASTEXP_H
#define FASTDL_FASTEXP_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline float fastdl_pow2i(int32_t k)
{
    /* 2^k for -126 <= k <= 127: biased exponent k + 127, zero mantissa. */
    int32_t bits = (k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float fastdl_expf(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f;           /* 0x1.63p-1, 9 bits */
    const float ln2_lo = -2.12194440e-4f;        /* ln2 - ln2_hi */
    const float round_magic = 12582912.0f;       /* 1.5 * 2^23 */
    float xc, kf, r, p, result;
    int32_t k, k1;

    /* Clamp; a NaN fails both compares, so it is replaced by 0 explicitly
       to keep it out of the float -> int conversion. */
    xc = x < -104.0f ? -104.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    xc = (x != x) ? 0.0f : xc;

    kf = (xc * log2e + round_magic) - round_magic;
    r = xc - kf * ln2_hi;
    r = r - kf * ln2_lo;

    /* e^r ~ sum_{i<=7} r^i / i! */
    p = 1.0f / 5040.0f + r * (1.0f / 40320.0f);
    p = 1.0f / 720.0f + r * p;
    p = 1.0f / 120.0f + r * p;
    p = 1.0f / 24.0f + r * p;
    p = 1.0f / 6.0f + r * p;
    p = 0.5f + r * p;
    p = 1.0f + r * p;
    p = 1.0f + r * p;

    k = (int32_t)kf;
    k1 = k >> 1;
    result = (p * fastdl_pow2i(k1)) * fastdl_pow2i(k - k1);
    return (x != x) ? x + x : result;
}

/* y[j] = exp(x[j] - shift) for j < n; y may be x.
 *
 * The one out-of-line loop of the kernels' float32 hot paths.  On x86-64
 * Linux with GCC it is compiled three times (target_clones: AVX-512F, AVX2
 * and the baseline SSE2 every x86-64 has) and the dynamic loader's ifunc
 * resolver picks the widest copy the CPU (and OS) supports, so a portable
 * build (no -march=native) still gets 8 or 16 lanes.
 *
 * Why the avx512f copy is correct without having been run here: setup.py
 * compiles with -ffp-contract=off, so no copy fuses a multiply and an add
 * into an FMA (the avx2 target has no FMA anyway; avx512f and aarch64 do).
 * Every copy therefore performs the same IEEE-754 single-precision
 * operations, in the same order, on each element: only the vector width
 * differs, and lanes never interact (no reduction in this loop).  The
 * conversions (cvttps2dq), compares/selects (masked in AVX-512) and integer
 * shifts are exact.  So each copy returns the bits swept above; the kernel
 * tests compare the results against the reference on every CPU they run on
 * (CI runners with AVX-512 exercise that copy).  GCC orders the resolver by
 * ISA priority (avx512f > avx2 > default), so a CPU without AVX-512F, like
 * the AVX2 development machine, never gets the avx512f copy.
 *
 * setup.py defines FASTDL_NO_SIMD_CLONES (FASTDL_NO_SIMD_CLONES=1 at build
 * time) to compile only the baseline copy, which is how the tests reach the
 * default path on a machine whose resolver would always pick AVX2.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(FASTDL_NO_SIMD_CLONES)
#define FASTDL_TARGET_CLONES \
    __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTDL_TARGET_CLONES
#endif

FASTDL_TARGET_CLONES
static void fastdl_expf_shift(const float *x, float shift, float *y,
                              ptrdiff_t n)
{
    ptrdiff_t j;
    for (j = 0; j < n; j++)
        y[j] = fastdl_expf(x[j] - shift);
}

#endif
