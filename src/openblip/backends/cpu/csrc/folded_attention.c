/* The second product of cross-attention with folded projections (text.py, attend_folded), for
 * a few query rows per context, fp32, AVX2 + FMA: after the scores q[c] t[c]^T (small_linear.c
 * with C contexts) and the softmax (torch), ctx[c] = p[c] t[c] (R x D) for every context c,
 * where t[c] (N, D) are its tokens, which every layer shares (and so stay in the last-level
 * cache), rather than per-layer keys/values.
 *
 * p: (C, R, N); t: (C, N, D); ctx: (C, R, D); D % 16 == 0 (checked by the caller). A last group
 * of fewer than six rows repeats the last row (discarded).
 */
#include <immintrin.h>
#include <stddef.h>

/* ctx: one task per (context, block of 16 columns); 6 rows x 16 columns of accumulators. */
void openblip_folded_context(const float *p, const float *t, float *ctx, int C, int R, int N, int D, int threads) {
    int blocks = D / 16;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int c = 0; c < C; c++) {
        for (int j = 0; j < blocks; j++) {
            const float *tc = t + (size_t)c * N * D + 16 * j;
            const float *pc = p + (size_t)c * R * N;
            float *out = ctx + (size_t)c * R * D + 16 * j;
            for (int m0 = 0; m0 < R; m0 += 6) {
                __m256 acc[6][2];
                const float *pr[6];
                for (int i = 0; i < 6; i++) {
                    acc[i][0] = acc[i][1] = _mm256_setzero_ps();
                    pr[i] = pc + (size_t)(m0 + i < R ? m0 + i : R - 1) * N;
                }
                for (int k = 0; k < N; k++) {
                    __m256 b0 = _mm256_loadu_ps(tc + (size_t)k * D), b1 = _mm256_loadu_ps(tc + (size_t)k * D + 8);
#pragma GCC unroll 6
                    for (int i = 0; i < 6; i++) {
                        __m256 a = _mm256_broadcast_ss(pr[i] + k);
                        acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
                    }
                }
                for (int i = 0; i < 6 && m0 + i < R; i++) {
                    _mm256_storeu_ps(out + (size_t)(m0 + i) * D, acc[i][0]);
                    _mm256_storeu_ps(out + (size_t)(m0 + i) * D + 8, acc[i][1]);
                }
            }
        }
    }
}
