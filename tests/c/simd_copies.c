/* Checks that the copies of kernels/_fastexp.h's row loops agree bit for bit
 * (run by tests/test_simd_copies.py, which compiles it with setup.py's
 * floating-point flags).  Each copy -- the AVX2 intrinsics, the C max body
 * compiled for AVX2, and on a CPU with AVX-512F the AVX-512F intrinsics --
 * goes through the same checks against the baseline C loops and the fused C
 * body (the reference of the accuracy sweeps):
 *  - max: the same bits as the baseline loop, signed zeros included, and
 *    the true maximum, on rows of random length with NaN, infinities and
 *    zeros of both signs (the row minimum the same loops return only
 *    selects a code path: its value is checked, not the sign of a zero);
 *  - exp + sum: the same exps and the same eight partial sums as the fused
 *    C body, whether a prefetch row is passed or not, and whether the copy
 *    takes its in-range exp (row minimum passed) or the full one; both for
 *    the exact difference x - shift and for the rounded one (_sum_r);
 *  - exp alone: the fused C body's bits.
 * Then the vector exps (shift 0; the row tests above shift by the row max):
 * the in-range ones give the full ones' bits for
 * every float32 input in [FASTDL_EXPF_FAST_MIN, 0] and NaN and on 2e7
 * random float64 inputs in [FASTDL_EXP_FAST_MIN, 0] and the ends of the
 * range; the AVX-512F full exps give the AVX2 ones' bits for every float32
 * bit pattern and 2e7 random float64 inputs.
 * The plain C map loops (scale, sub2, sum, dot, msub, dscale), compiled
 * per copy, give the baseline copy's bits on random rows too, and so do
 * the output passes with non-temporal stores (sub2 and scale into another
 * row), at every offset of the output from a 64-byte boundary.
 * Prints "mismatches N", then whether the AVX-512F copy was checked, and
 * exits 1 when N > 0. */
#include "_fastexp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

FASTDL_DEFINE_MAX_LOOP(check_maxf_c, FASTDL_ATTRS_AVX2, float)
FASTDL_DEFINE_MAX_LOOP(check_max_c, FASTDL_ATTRS_AVX2, double)

#define ROW 700

/* One copy's loops; NULL where it has none. */
struct copy {
    fastdl_maxf_fn maxf;
    fastdl_max_fn max;
    fastdl_expf_shift_sum_fn expf_sum, expf_sum_r;
    fastdl_exp_shift_sum_fn exp_sum;
    fastdl_expf_shift_fn expf;
    fastdl_exp_shift_fn exp;
};

static float pick(int kind)
{
    int r = rand() % 20;
    switch (kind) {
    case 0:
        return (float)(rand() % 4000 - 2000) / 37.0f;
    case 1:
        if (r == 0) return NAN;
        if (r == 1) return -INFINITY;
        if (r == 2) return INFINITY;
        if (r < 6) return 0.0f;
        if (r < 10) return -0.0f;
        return (float)-(rand() % 100);
    case 2:
        return r < 10 ? 0.0f : -0.0f;
    default:
        return r == 0 ? NAN : -INFINITY;
    }
}

static long check_max(const struct copy *c)
{
    static float x[ROW];
    static double xd[ROW];
    long bad = 0;
    int t, i, n, kind;
    for (t = 0; t < 100000; t++) {
        float ref = -INFINITY, lo_ref = INFINITY, a, b, la, lb;
        double ad, bd, lad, lbd;
        n = rand() % 300;
        kind = rand() % 4;
        for (i = 0; i < n; i++) {
            x[i] = pick(kind);
            xd[i] = x[i];
            if (x[i] > ref)
                ref = x[i];
            if (x[i] < lo_ref)
                lo_ref = x[i];
        }
        a = fastdl_maxf_baseline(x, n, &la);
        b = c->maxf(x, n, &lb);
        ad = fastdl_max_baseline(xd, n, &lad);
        bd = c->max(xd, n, &lbd);
        if (memcmp(&a, &b, sizeof a) || memcmp(&ad, &bd, sizeof ad) ||
            a != ref || ad != (double)ref)
            bad++;
        if (la != lo_ref || lb != lo_ref || lad != lo_ref || lbd != lo_ref)
            bad++;
    }
    return bad;
}

static long check_exps(const struct copy *c)
{
    static float x[ROW], y1[ROW], y2[ROW];
    static double xd[ROW], z1[ROW], z2[ROW];
    long bad = 0;
    int t, i, k, n;
    for (t = 0; t < 20000; t++) {
        double a1[8], a2[8], d1[8], d2[8], mxd, mnd;
        float mx, mn;
        n = rand() % ROW;
        for (i = 0; i < n; i++) {
            x[i] = (float)(rand() % 4000 - 2000) / 37.0f;
            xd[i] = x[i] * 1.37;
        }
        /* Rows below their shift: t % 3 picks a spread that is inside the
         * in-range exp's domain, straddles its edge, or holds -inf. */
        for (i = 0; i < n; i++) {
            if (t % 3 == 0)
                x[i] = fmodf(fabsf(x[i]), 80.0f) - 80.0f;
            else if (t % 3 == 2 && rand() % 50 == 0)
                x[i] = -INFINITY;
            xd[i] = t % 3 == 0 ? -fmod(fabs(xd[i]), 700.0) : xd[i];
        }
        for (k = 0; k < 8; k++)
            a1[k] = a2[k] = d1[k] = d2[k] = 0.1 * k;
        mx = fastdl_maxf_baseline(x, n, &mn);
        mxd = fastdl_max_baseline(xd, n, &mnd);
        if (n == 0)
            mx = 0.0f, mxd = 0.0;
        /* t & 2: the copy is told the row minimum (its in-range exp may
         * run), or not. */
        fastdl_expf_shift_sum_fused_c(x, mx, y1, n, a1, NULL, -INFINITY);
        c->expf_sum(x, mx, y2, n, a2, t & 1 ? x : NULL, t & 2 ? mn : -INFINITY);
        fastdl_exp_shift_sum_fused_c(xd, mxd, z1, n, d1, NULL, -INFINITY);
        c->exp_sum(xd, mxd, z2, n, d2, t & 1 ? NULL : xd,
                   t & 2 ? mnd : -INFINITY);
        if (memcmp(a1, a2, sizeof a1) || memcmp(y1, y2, n * sizeof *y1) ||
            memcmp(d1, d2, sizeof d1) || memcmp(z1, z2, n * sizeof *z1))
            bad++;
        /* The variant with x - shift rounded first. */
        for (k = 0; k < 8; k++)
            a1[k] = a2[k] = 0.1 * k;
        fastdl_expf_shift_sum_r_fused_c(x, mx, y1, n, a1, NULL, -INFINITY);
        c->expf_sum_r(x, mx, y2, n, a2, t & 1 ? NULL : x,
                      t & 2 ? mn : -INFINITY);
        if (memcmp(a1, a2, sizeof a1) || memcmp(y1, y2, n * sizeof *y1))
            bad++;
        fastdl_expf_shift_fused_c(x, 1.5f, y1, n);
        c->expf(x, 1.5f, y2, n);
        fastdl_exp_shift_fused_c(xd, 1.5, z1, n);
        c->exp(xd, 1.5, z2, n);
        if (memcmp(y1, y2, n * sizeof *y1) || memcmp(z1, z2, n * sizeof *z1))
            bad++;
    }
    return bad;
}

/* One copy's map loops. */
struct maps {
    fastdl_scalef_fn scalef;
    fastdl_scale_fn scale;
    fastdl_sub2f_fn sub2f;
    fastdl_sub2_fn sub2;
    fastdl_sumf_fn sumf;
    fastdl_sum_fn sum;
    fastdl_dotf_fn dotf;
    fastdl_dot_fn dot;
    fastdl_bwdf_fn msubf, dscalef;
    fastdl_bwd_fn msub, dscale;
};
#define FASTDL_MAPS(S)                                                      \
    {fastdl_scalef_##S, fastdl_scale_##S, fastdl_sub2f_##S, fastdl_sub2_##S, \
     fastdl_sumf_##S, fastdl_sum_##S, fastdl_dotf_##S, fastdl_dot_##S,      \
     fastdl_msubf_##S, fastdl_dscalef_##S, fastdl_msub_##S,                 \
     fastdl_dscale_##S}

/* Every loop of c against the baseline's, on rows of random length (the
 * outputs compared as bytes, the sums as doubles' bits). */
static long check_maps(const struct maps *c)
{
    static const struct maps base = FASTDL_MAPS(baseline);
    static float x[ROW], w[ROW], y1[ROW], y2[ROW];
    static double xd[ROW], wd[ROW], z1[ROW], z2[ROW];
    long bad = 0;
    int t, i, n;
    double r1, r2;
    for (t = 0; t < 20000; t++) {
        n = rand() % ROW;
        for (i = 0; i < n; i++) {
            x[i] = (float)(rand() % 4000 - 2000) / 37.0f;
            w[i] = (float)rand() / RAND_MAX;
            xd[i] = x[i] * 1.37;
            wd[i] = w[i] / 3.0;
        }
/* Both outputs start as a copy of src (the scale loops work in place). */
#define SAME(src, call_base, call_c, out1, out2)                            \
        do {                                                                \
            memcpy(out1, src, n * sizeof *src);                             \
            memcpy(out2, src, n * sizeof *src);                             \
            call_base;                                                      \
            call_c;                                                         \
            bad += memcmp(out1, out2, n * sizeof *out1) != 0;               \
        } while (0)
        SAME(x, base.scalef(y1, 0.3, n), c->scalef(y2, 0.3, n), y1, y2);
        SAME(xd, base.scale(z1, 0.3, n), c->scale(z2, 0.3, n), z1, z2);
        SAME(x, base.sub2f(x, 2.5, 0.7, y1, n), c->sub2f(x, 2.5, 0.7, y2, n),
             y1, y2);
        SAME(xd, base.sub2(xd, 2.5, 0.7, z1, n),
             c->sub2(xd, 2.5, 0.7, z2, n), z1, z2);
        SAME(x, base.msubf(x, w, 1.7, y1, n), c->msubf(x, w, 1.7, y2, n),
             y1, y2);
        SAME(xd, base.msub(xd, wd, 1.7, z1, n),
             c->msub(xd, wd, 1.7, z2, n), z1, z2);
        SAME(x, base.dscalef(w, x, 0.4, y1, n),
             c->dscalef(w, x, 0.4, y2, n), y1, y2);
        SAME(xd, base.dscale(wd, xd, 0.4, z1, n),
             c->dscale(wd, xd, 0.4, z2, n), z1, z2);
        r1 = base.sumf(x, n), r2 = c->sumf(x, n);
        bad += memcmp(&r1, &r2, sizeof r1) != 0;
        r1 = base.sum(xd, n), r2 = c->sum(xd, n);
        bad += memcmp(&r1, &r2, sizeof r1) != 0;
        r1 = base.dotf(x, w, n), r2 = c->dotf(x, w, n);
        bad += memcmp(&r1, &r2, sizeof r1) != 0;
        r1 = base.dot(xd, wd, n), r2 = c->dot(xd, wd, n);
        bad += memcmp(&r1, &r2, sizeof r1) != 0;
    }
    return bad;
}

/* One copy's output passes with non-temporal stores. */
struct streams {
    fastdl_sub2f_fn sub2f;
    fastdl_sub2_fn sub2;
    fastdl_scalef_stream_fn scalef;
    fastdl_scale_stream_fn scale;
};
#define FASTDL_STREAMS(S)                                                   \
    {fastdl_sub2f_stream_##S, fastdl_sub2_stream_##S,                       \
     fastdl_scalef_stream_##S, fastdl_scale_stream_##S}

/* Against the baseline's sub2 and in-place scale: rows of random length
 * written at every offset (0 to 15 elements) from a 64-byte boundary, and
 * the bytes around the row untouched. */
static long check_streams(const struct streams *c)
{
    static const struct maps base = FASTDL_MAPS(baseline);
    static float x[ROW], y1[ROW], y2[ROW + 32] __attribute__((aligned(64)));
    static double xd[ROW], z1[ROW], z2[ROW + 32] __attribute__((aligned(64)));
    long bad = 0;
    int t, i, n, off;
    for (t = 0; t < 20000; t++) {
        n = rand() % (ROW - 16);
        off = t % 16;
        for (i = 0; i < n; i++) {
            x[i] = (float)(rand() % 4000 - 2000) / 37.0f;
            xd[i] = x[i] * 1.37;
        }
        memset(y2, 0x5a, sizeof y2);
        memset(z2, 0x5a, sizeof z2);
        base.sub2f(x, 2.5, 0.7, y1, n);
        c->sub2f(x, 2.5, 0.7, y2 + off, n);
        bad += memcmp(y1, y2 + off, n * sizeof *y1) != 0;
        bad += (off && ((unsigned char *)(y2 + off))[-1] != 0x5a) ||
               ((unsigned char *)(y2 + off + n))[0] != 0x5a;
        base.sub2(xd, 2.5, 0.7, z1, n);
        c->sub2(xd, 2.5, 0.7, z2 + off, n);
        bad += memcmp(z1, z2 + off, n * sizeof *z1) != 0;
        memcpy(y1, x, n * sizeof *x);
        base.scalef(y1, 0.3, n);
        c->scalef(x, 0.3, y2 + off, n);
        bad += memcmp(y1, y2 + off, n * sizeof *y1) != 0;
        memcpy(z1, xd, n * sizeof *xd);
        base.scale(z1, 0.3, n);
        c->scale(xd, 0.3, z2 + off, n);
        bad += memcmp(z1, z2 + off, n * sizeof *z1) != 0;
        bad += ((unsigned char *)(z2 + off + n))[0] != 0x5a;
    }
    return bad;
}

static long check_copy(const struct copy *c)
{
    return check_max(c) + (c->expf_sum != NULL ? check_exps(c) : 0);
}

/* float32 bit patterns from -0 (0x80000000) down to FASTDL_EXPF_FAST_MIN,
 * the domain of the in-range exp, into xs[0:n]; returns how many (0 at the
 * end), the last call padding with -0. */
static int next_in_range(uint32_t *bits, float *xs, int n)
{
    float lim = FASTDL_EXPF_FAST_MIN;
    uint32_t last, b;
    int i, got = 0;
    memcpy(&last, &lim, sizeof last);
    for (i = 0; i < n; i++) {
        b = *bits + (uint32_t)i <= last ? *bits + (uint32_t)i : 0x80000000u;
        got += *bits + (uint32_t)i <= last;
        memcpy(&xs[i], &b, sizeof b);
    }
    *bits += (uint32_t)n;
    return got;
}

FASTDL_ATTRS_AVX2 static long check_in_range_exps_avx2(void)
{
    const __m256 z8 = _mm256_setzero_ps();
    float xs[8], a[8], b[8];
    double xd[4], u[4], v[4];
    long bad = 0, k;
    uint32_t bits = 0x80000000u;
    int i;
    while (next_in_range(&bits, xs, 8)) {
        _mm256_storeu_ps(a, fastdl_expf_avx2_v_in_range(_mm256_loadu_ps(xs), z8));
        _mm256_storeu_ps(b, fastdl_expf_avx2_v(_mm256_loadu_ps(xs), z8));
        bad += memcmp(a, b, sizeof a) != 0;
    }
    xs[0] = NAN;
    _mm256_storeu_ps(a, fastdl_expf_avx2_v_in_range(_mm256_loadu_ps(xs), z8));
    bad += !isnan(a[0]);
    for (k = 0; k < 5000000; k++) {
        for (i = 0; i < 4; i++)
            xd[i] = FASTDL_EXP_FAST_MIN * ((double)rand() / RAND_MAX);
        if (k == 0)
            xd[0] = FASTDL_EXP_FAST_MIN, xd[1] = 0.0, xd[2] = -0.0,
            xd[3] = -1e-300;
        _mm256_storeu_pd(u, fastdl_exp_avx2_v_in_range(_mm256_loadu_pd(xd)));
        _mm256_storeu_pd(v, fastdl_exp_avx2_v(_mm256_loadu_pd(xd)));
        bad += memcmp(u, v, sizeof u) != 0;
    }
    return bad;
}

FASTDL_ATTRS_AVX512 static long check_exps_avx512(void)
{
    const __m512 z16 = _mm512_setzero_ps();
    const __m256 z8 = _mm256_setzero_ps();
    float xs[16], a[16], b[16];
    double xd[8], u[8], v[8];
    long bad = 0, k;
    uint32_t bits = 0;
    int i;
    /* Every float32 bit pattern through the full exps. */
    do {
        for (i = 0; i < 16; i++) {
            uint32_t w = bits + (uint32_t)i;
            memcpy(&xs[i], &w, sizeof w);
        }
        _mm512_storeu_ps(a, fastdl_expf_avx512_v(_mm512_loadu_ps(xs), z16));
        _mm256_storeu_ps(b, fastdl_expf_avx2_v(_mm256_loadu_ps(xs), z8));
        _mm256_storeu_ps(b + 8, fastdl_expf_avx2_v(_mm256_loadu_ps(xs + 8), z8));
        bad += memcmp(a, b, sizeof a) != 0;
        bits += 16;
    } while (bits != 0);
    bits = 0x80000000u;
    while (next_in_range(&bits, xs, 16)) {
        _mm512_storeu_ps(a, fastdl_expf_avx512_v_in_range(_mm512_loadu_ps(xs), z16));
        _mm512_storeu_ps(b, fastdl_expf_avx512_v(_mm512_loadu_ps(xs), z16));
        bad += memcmp(a, b, sizeof a) != 0;
    }
    for (k = 0; k < 2500000; k++) {
        for (i = 0; i < 8; i++)
            xd[i] = FASTDL_EXP_FAST_MIN * ((double)rand() / RAND_MAX);
        _mm512_storeu_pd(u, fastdl_exp_avx512_v_in_range(_mm512_loadu_pd(xd)));
        _mm512_storeu_pd(v, fastdl_exp_avx512_v(_mm512_loadu_pd(xd)));
        bad += memcmp(u, v, sizeof u) != 0;
        for (i = 0; i < 8; i++)
            xd[i] = 1500.0 * ((double)rand() / RAND_MAX) - 750.0;
        _mm512_storeu_pd(u, fastdl_exp_avx512_v(_mm512_loadu_pd(xd)));
        _mm256_storeu_pd(v, fastdl_exp_avx2_v(_mm256_loadu_pd(xd)));
        _mm256_storeu_pd(v + 4, fastdl_exp_avx2_v(_mm256_loadu_pd(xd + 4)));
        bad += memcmp(u, v, sizeof u) != 0;
    }
    return bad;
}

int main(void)
{
    const struct copy avx2 = {
        fastdl_maxf_avx2, fastdl_max_avx2, fastdl_expf_shift_sum_avx2,
        fastdl_expf_shift_sum_r_avx2, fastdl_exp_shift_sum_avx2,
        fastdl_expf_shift_avx2, fastdl_exp_shift_avx2};
    const struct copy max_c = {check_maxf_c, check_max_c, NULL, NULL, NULL,
                               NULL, NULL};
    const struct copy avx512 = {
        fastdl_maxf_avx512, fastdl_max_avx512, fastdl_expf_shift_sum_avx512,
        fastdl_expf_shift_sum_r_avx512, fastdl_exp_shift_sum_avx512,
        fastdl_expf_shift_avx512, fastdl_exp_shift_avx512};
    long bad = 0;
    int has_avx512;
    srand(12345);
    const struct maps maps_avx2 = FASTDL_MAPS(avx2);
    const struct maps maps_avx512 = FASTDL_MAPS(avx512);
    const struct streams streams_base = FASTDL_STREAMS(baseline);
    const struct streams streams_avx2 = FASTDL_STREAMS(avx2);
    const struct streams streams_avx512 = FASTDL_STREAMS(avx512);
    bad += check_copy(&avx2) + check_copy(&max_c) + check_maps(&maps_avx2);
    bad += check_streams(&streams_base) + check_streams(&streams_avx2);
    bad += check_in_range_exps_avx2();
    has_avx512 = __builtin_cpu_supports("avx512f");
    if (has_avx512)
        bad += check_copy(&avx512) + check_exps_avx512() +
               check_maps(&maps_avx512) + check_streams(&streams_avx512);
    printf("mismatches %ld\n", bad);
    printf(has_avx512 ? "avx512f checked\n" : "avx512f not on this cpu\n");
    return bad != 0;
}
