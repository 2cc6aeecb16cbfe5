/* y = x W^T + b for a few rows of x (decoding: one row per sequence), fp32, AVX2 + FMA.
 *
 * Decoding reads every weight once per step for a handful of rows, so the product is bound by
 * streaming W, not by arithmetic. Each task takes two rows of W and multiplies them with six rows
 * of x at a time, 12 vector accumulators, W loaded once per 8 columns and reused across the six
 * x rows; the two W rows stay in L1 while further groups of six x rows pass over them.
 * Parallel over (product, pair of W rows) with OpenMP (the same libgomp as torch: the loader reuses the one
 * already in the process by its soname).
 *
 * C independent products at once (C = 1 for a linear layer; C contexts for the scores of folded
 * cross-attention, q[c] t[c]^T, model/text.py attend_folded): x: (C, M, K); w: (C, N, K);
 * b: (N) or NULL; y: (C, M, N). A last group of fewer than six rows repeats the last row (its
 * products are discarded), so callers pass x as it is.
 * Requires K % 8 == 0 (checked by the caller); an odd N repeats the last row of W (discarded).
 * All row-major and contiguous.
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

#define PREFETCH_AHEAD 128 /* floats: two cache-line pairs ahead of each weight stream; non-temporal
                              * unless keep_w, so weights read once per step do not evict what is
                              * reused (the context tokens folded cross-attention reads at every
                              * layer, which are w here for its scores: keep_w) */

void openblip_small_linear(const float *x, const float *w, const float *b, float *y, int C, int M, int N, int K,
                           int keep_w, int threads) {
    int pairs = (N + 1) / 2;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int c = 0; c < C; c++) {
        for (int j = 0; j < pairs; j++) {
            int n = 2 * j;
            const float *w0 = w + ((size_t)c * N + n) * K;
            const float *w1 = n + 1 < N ? w0 + K : w0;
            const float *xc = x + (size_t)c * M * K;
            float *yc = y + (size_t)c * M * N;
            for (int m0 = 0; m0 < M; m0 += 6) {
                __m256 acc[6][2];
                const float *xr[6];
                for (int i = 0; i < 6; i++) {
                    acc[i][0] = acc[i][1] = _mm256_setzero_ps();
                    xr[i] = xc + (size_t)(m0 + i < M ? m0 + i : M - 1) * K;
                }
                for (int k = 0; k < K; k += 8) {
                    if (keep_w) {
                        _mm_prefetch((const char *)(w0 + k + PREFETCH_AHEAD), _MM_HINT_T0);
                        _mm_prefetch((const char *)(w1 + k + PREFETCH_AHEAD), _MM_HINT_T0);
                    } else {
                        _mm_prefetch((const char *)(w0 + k + PREFETCH_AHEAD), _MM_HINT_NTA);
                        _mm_prefetch((const char *)(w1 + k + PREFETCH_AHEAD), _MM_HINT_NTA);
                    }
                    __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
#pragma GCC unroll 6
                    for (int i = 0; i < 6; i++) {
                        __m256 xv = _mm256_loadu_ps(xr[i] + k);
                        acc[i][0] = _mm256_fmadd_ps(xv, v0, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(xv, v1, acc[i][1]);
                    }
                }
                float b0 = b ? b[n] : 0.0f, b1 = b && n + 1 < N ? b[n + 1] : 0.0f;
                for (int i = 0; i < 6 && m0 + i < M; i++) {
                    yc[(size_t)(m0 + i) * N + n] = hsum(acc[i][0]) + b0;
                    if (n + 1 < N) yc[(size_t)(m0 + i) * N + n + 1] = hsum(acc[i][1]) + b1;
                }
            }
        }
    }
}
