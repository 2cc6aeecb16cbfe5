/* The two products of cross-attention with folded projections (text.py, attend_folded), for a
 * few query rows per context, fp32, AVX2 + FMA:
 *   scores[c] = q[c] t[c]^T   (R x N)    then, after the softmax (done by torch),
 *   ctx[c]    = p[c] t[c]     (R x D)
 * for every context c, where t[c] (N, D) are the context's tokens. Both stream the tokens, which
 * every layer shares (and so stay in the last-level cache), rather than per-layer keys/values.
 *
 * q: (C, R, D); t: (C, N, D); scores: (C, R, N); p: (C, R, N); ctx: (C, R, D); D % 16 == 0
 * (checked by the caller). A last group of fewer than six rows repeats the last row (discarded).
 */
#include <immintrin.h>
#include <stddef.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 h = _mm_movehdup_ps(s);
    s = _mm_add_ps(s, h);
    h = _mm_movehl_ps(h, s);
    return _mm_cvtss_f32(_mm_add_ss(s, h));
}

/* scores: one task per (context, pair of tokens); 6 query rows x 2 tokens of accumulators. */
void openblip_folded_scores(const float *q, const float *t, float *scores, int C, int R, int N, int D, int threads) {
    int pairs = (N + 1) / 2;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int c = 0; c < C; c++) {
        for (int j = 0; j < pairs; j++) {
            int n = 2 * j, second = n + 1 < N;
            const float *t0 = t + ((size_t)c * N + n) * D;
            const float *t1 = second ? t0 + D : t0;
            const float *qc = q + (size_t)c * R * D;
            float *sc = scores + (size_t)c * R * N;
            for (int m0 = 0; m0 < R; m0 += 6) {
                __m256 acc[6][2];
                const float *qr[6];
                for (int i = 0; i < 6; i++) {
                    acc[i][0] = acc[i][1] = _mm256_setzero_ps();
                    qr[i] = qc + (size_t)(m0 + i < R ? m0 + i : R - 1) * D;
                }
                for (int k = 0; k < D; k += 8) {
                    __m256 v0 = _mm256_loadu_ps(t0 + k), v1 = _mm256_loadu_ps(t1 + k);
#pragma GCC unroll 6
                    for (int i = 0; i < 6; i++) {
                        __m256 x = _mm256_loadu_ps(qr[i] + k);
                        acc[i][0] = _mm256_fmadd_ps(x, v0, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(x, v1, acc[i][1]);
                    }
                }
                for (int i = 0; i < 6 && m0 + i < R; i++) {
                    sc[(size_t)(m0 + i) * N + n] = hsum(acc[i][0]);
                    if (second) sc[(size_t)(m0 + i) * N + n + 1] = hsum(acc[i][1]);
                }
            }
        }
    }
}

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
