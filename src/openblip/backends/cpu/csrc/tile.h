/* The 6 x 16 register tile shared by our compute-bound products (blocked_linear.c, attention.c):
 * acc = a . b over kc steps, with a[i][k] at a[i * rs + k * ks] (packed k-major: rs 1, ks MR;
 * row-major: rs the row length, ks 1; all MR rows must be readable) and b packed by NR columns
 * (b[k][0:16], 32-byte aligned); then y[0:mr, 0:nr] = acc (+ bias) when `first`, else y += acc.
 * 12 vector accumulators, two b vectors and one broadcast: 15 of the 16 ymm registers. Inlined
 * with constant strides, each caller gets its own specialised loop.
 */
#ifndef OPENBLIP_TILE_H
#define OPENBLIP_TILE_H

#include <immintrin.h>

#define MR 6
#define NR 16

static inline void tile(long kc, const float *a, long rs, long ks, const float *b, float *y, long ldy, long mr,
                        long nr, int first, const float *bias) {
    for (long r = 0; r < mr; r++) { /* the output tile's lines arrive while the loop runs */
        __builtin_prefetch(y + r * ldy, 1, 3);
        __builtin_prefetch(y + r * ldy + nr - 1, 1, 3);
    }
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (long k = 0; k < kc; k++, a += ks, b += NR) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        __m256 a0 = _mm256_broadcast_ss(a), a1 = _mm256_broadcast_ss(a + rs);
        c00 = _mm256_fmadd_ps(a0, b0, c00);
        c01 = _mm256_fmadd_ps(a0, b1, c01);
        c10 = _mm256_fmadd_ps(a1, b0, c10);
        c11 = _mm256_fmadd_ps(a1, b1, c11);
        a0 = _mm256_broadcast_ss(a + 2 * rs);
        a1 = _mm256_broadcast_ss(a + 3 * rs);
        c20 = _mm256_fmadd_ps(a0, b0, c20);
        c21 = _mm256_fmadd_ps(a0, b1, c21);
        c30 = _mm256_fmadd_ps(a1, b0, c30);
        c31 = _mm256_fmadd_ps(a1, b1, c31);
        a0 = _mm256_broadcast_ss(a + 4 * rs);
        a1 = _mm256_broadcast_ss(a + 5 * rs);
        c40 = _mm256_fmadd_ps(a0, b0, c40);
        c41 = _mm256_fmadd_ps(a0, b1, c41);
        c50 = _mm256_fmadd_ps(a1, b0, c50);
        c51 = _mm256_fmadd_ps(a1, b1, c51);
    }
    if (mr == MR && nr == NR) { /* a full tile: straight from the registers */
        __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
        __m256 b0 = _mm256_setzero_ps(), b1 = b0;
        if (first && bias) b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
        for (long r = 0; r < MR; r++) {
            float *yr = y + r * ldy;
            if (first) {
                _mm256_storeu_ps(yr, _mm256_add_ps(acc[r][0], b0));
                _mm256_storeu_ps(yr + 8, _mm256_add_ps(acc[r][1], b1));
            } else {
                _mm256_storeu_ps(yr, _mm256_add_ps(_mm256_loadu_ps(yr), acc[r][0]));
                _mm256_storeu_ps(yr + 8, _mm256_add_ps(_mm256_loadu_ps(yr + 8), acc[r][1]));
            }
        }
        return;
    }
    float t[MR * NR] __attribute__((aligned(32)));
    _mm256_store_ps(t + 0, c00), _mm256_store_ps(t + 8, c01);
    _mm256_store_ps(t + 16, c10), _mm256_store_ps(t + 24, c11);
    _mm256_store_ps(t + 32, c20), _mm256_store_ps(t + 40, c21);
    _mm256_store_ps(t + 48, c30), _mm256_store_ps(t + 56, c31);
    _mm256_store_ps(t + 64, c40), _mm256_store_ps(t + 72, c41);
    _mm256_store_ps(t + 80, c50), _mm256_store_ps(t + 88, c51);
    for (long r = 0; r < mr; r++) {
        float *yr = y + r * ldy;
        const float *tr = t + r * NR;
        if (!first)
            for (long j = 0; j < nr; j++) yr[j] += tr[j];
        else if (bias)
            for (long j = 0; j < nr; j++) yr[j] = tr[j] + bias[j];
        else
            for (long j = 0; j < nr; j++) yr[j] = tr[j];
    }
}

#endif
