/* Checks that the copies of kernels/_fastexp.h's row loops agree bit for bit
 * (run by tests/test_simd_copies.py, which compiles it with setup.py's
 * floating-point flags):
 *  - max: the baseline C loop, the AVX2 intrinsics loop and the C body
 *    compiled for AVX2 (the AVX-512F copy's source) return the same bits,
 *    signed zeros included, and the true maximum, on rows of random length
 *    with NaN, infinities and zeros of both signs;
 *  - exp + sum: the AVX2 intrinsics loops and the fused C body compiled for
 *    AVX2 give the same exps and the same eight partial sums, whether a
 *    prefetch row is passed or not.
 * Prints "mismatches N" and exits 1 when N > 0. */
#include "_fastexp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

FASTDL_DEFINE_MAX_LOOP(check_maxf_c, FASTDL_ATTRS_AVX2, float)
FASTDL_DEFINE_MAX_LOOP(check_max_c, FASTDL_ATTRS_AVX2, double)

#define ROW 700

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

int main(void)
{
    static float x[ROW], y1[ROW], y2[ROW];
    static double xd[ROW], z1[ROW], z2[ROW];
    long bad = 0;
    int t, i, k, n, kind;
    srand(12345);
    for (t = 0; t < 100000; t++) {
        float ref = -INFINITY, a, b, c;
        double ad, bd, cd;
        n = rand() % 300;
        kind = rand() % 4;
        for (i = 0; i < n; i++) {
            x[i] = pick(kind);
            xd[i] = x[i];
            if (x[i] > ref)
                ref = x[i];
        }
        a = fastdl_maxf_baseline(x, n);
        b = fastdl_maxf_avx2(x, n);
        c = check_maxf_c(x, n);
        ad = fastdl_max_baseline(xd, n);
        bd = fastdl_max_avx2(xd, n);
        cd = check_max_c(xd, n);
        if (memcmp(&a, &b, sizeof a) || memcmp(&a, &c, sizeof a) ||
            memcmp(&ad, &bd, sizeof ad) || memcmp(&ad, &cd, sizeof ad) ||
            a != ref || ad != (double)ref)
            bad++;
    }
    for (t = 0; t < 20000; t++) {
        double a1[8], a2[8], d1[8], d2[8];
        n = rand() % ROW;
        for (i = 0; i < n; i++) {
            x[i] = (float)(rand() % 4000 - 2000) / 37.0f;
            xd[i] = x[i] * 1.37;
        }
        for (k = 0; k < 8; k++)
            a1[k] = a2[k] = d1[k] = d2[k] = 0.1 * k;
        fastdl_expf_shift_sum_fused_c(x, 3.0f, y1, n, a1, NULL);
        fastdl_expf_shift_sum_avx2(x, 3.0f, y2, n, a2, t & 1 ? x : NULL);
        fastdl_exp_shift_sum_fused_c(xd, 3.0, z1, n, d1, t & 1 ? xd : NULL);
        fastdl_exp_shift_sum_avx2(xd, 3.0, z2, n, d2, NULL);
        if (memcmp(a1, a2, sizeof a1) || memcmp(y1, y2, n * sizeof *y1) ||
            memcmp(d1, d2, sizeof d1) || memcmp(z1, z2, n * sizeof *z1))
            bad++;
    }
    printf("mismatches %ld\n", bad);
    return bad != 0;
}
