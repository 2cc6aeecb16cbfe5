/* y = x W^T + b for a few rows of x (decoding: one row per sequence), fp32, AVX2 + FMA.
 *
 * Decoding reads every weight once per step for a handful of rows, so the product is bound by
 * streaming W, not by arithmetic. Each task takes two rows of W and multiplies them with six rows
 * of x at a time, 12 vector accumulators, W loaded once per 8 columns and reused across the six
 * x rows; the two W rows stay in L1 while further groups of six x rows pass over them.
 * Parallel over pairs of W rows with OpenMP (the same libgomp as torch: the loader reuses the one
 * already in the process by its soname).
 *
 * x: (M, K); w: (N, K); b: (N) or NULL; y: (M, N). A last group of fewer than six rows repeats
 * the last row (its products are discarded), so callers pass x as it is.
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

#define PREFETCH_AHEAD 128 /* floats: two cache-line pairs ahead of each weight stream; non-temporal so
                              * the weights, read once per step, do not evict what is reused (the
                              * context tokens that folded cross-attention reads at every layer) */

void openblip_small_linear(const float *x, const float *w, const float *b, float *y, int M, int N, int K,
                           int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int n = 0; n < N; n += 2) {
        const float *w0 = w + (size_t)n * K;
        const float *w1 = n + 1 < N ? w0 + K : w0;
        for (int m0 = 0; m0 < M; m0 += 6) {
            __m256 acc[6][2];
            const float *xr[6];
            for (int i = 0; i < 6; i++) {
                acc[i][0] = acc[i][1] = _mm256_setzero_ps();
                xr[i] = x + (size_t)(m0 + i < M ? m0 + i : M - 1) * K;
            }
            for (int k = 0; k < K; k += 8) {
                _mm_prefetch((const char *)(w0 + k + PREFETCH_AHEAD), _MM_HINT_NTA);
                _mm_prefetch((const char *)(w1 + k + PREFETCH_AHEAD), _MM_HINT_NTA);
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
                y[(size_t)(m0 + i) * N + n] = hsum(acc[i][0]) + b0;
                if (n + 1 < N) y[(size_t)(m0 + i) * N + n + 1] = hsum(acc[i][1]) + b1;
            }
        }
    }
}
