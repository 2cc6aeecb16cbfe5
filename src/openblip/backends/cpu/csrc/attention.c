/* Unmasked multi-head self-attention of the vision encoder, fp32, AVX2 + FMA:
 * out = softmax(q k^T * scale) v per image and head, read straight from the fused qkv projection
 * and written straight into the merged-heads layout the output projection reads.
 *
 * One task per (image, head), shared among the threads. A task packs its keys into panels of 16
 * keys and its values into panels of 16 channels (both k-major, in L2), then for each group of 6
 * queries: scores with the shared 6 x 16 tile (tile.h), a row softmax with a vectorised exp,
 * and the probability-weighted values with the same tile reading the rows in place; the scores
 * never leave L1/L2.
 *
 * qkv: (B, N, 3, H, hd) contiguous; out: (B, N, H * hd); hd % 16 == 0 (checked by the caller).
 * Returns 0, or -1 when the buffers cannot be allocated (out untouched).
 */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>

#include "tile.h"

/* exp for x <= 0 (scores minus their row maximum), Cephes' single-precision polynomial:
 * x = n ln2 + r, |r| <= ln2 / 2, exp(r) to ~1 ulp, times 2^n built in the exponent bits. */
static inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

int openblip_attention(const float *qkv, float *out, long B, long N, long H, long hd, float scale, int threads) {
    long D = H * hd, row = 3 * D; /* floats per token in qkv */
    long panels = (N + NR - 1) / NR, np = panels * NR, vpanels = hd / NR;
    if (threads < 1) threads = 1;
    /* per thread: keys, values (k-major panels), 6 packed queries, 6 x np scores / probabilities,
     * 6 x hd outputs */
    long per = np * hd + np * hd + MR * hd + MR * np + MR * hd;
    per = (per + 15) / 16 * 16;
    float *buf = aligned_alloc(64, sizeof(float) * per * threads);
    if (!buf) return -1;
#pragma omp parallel num_threads(threads)
    {
        float *kp = buf + per * omp_get_thread_num();
        float *vp = kp + np * hd, *qp = vp + np * hd, *s = qp + MR * hd, *o = s + MR * np;
#pragma omp for schedule(dynamic)
        for (long task = 0; task < B * H; task++) {
            long b = task / H, h = task % H;
            const float *base = qkv + b * N * row + h * hd; /* q of token 0; k at +D, v at +2D */
            for (long p = 0; p < panels; p++)     /* keys: kp[p][d][0:16] */
                for (long j = 0; j < NR; j++) {
                    long n = p * NR + j;
                    for (long d = 0; d < hd; d++) kp[(p * hd + d) * NR + j] = n < N ? base[n * row + D + d] : 0.0f;
                }
            for (long j = 0; j < vpanels; j++) /* values: vp[j][n][0:16], zero rows past N */
                for (long n = 0; n < np; n++)
                    for (long c = 0; c < NR; c++) vp[(j * np + n) * NR + c] = n < N ? base[n * row + 2 * D + j * NR + c] : 0.0f;
            for (long m0 = 0; m0 < N; m0 += MR) {
                long mr = N - m0 < MR ? N - m0 : MR;
                for (long d = 0; d < hd; d++) /* queries, scaled: qp[d][0:6] */
                    for (long i = 0; i < MR; i++) qp[d * MR + i] = i < mr ? base[(m0 + i) * row + d] * scale : 0.0f;
                for (long p = 0; p < panels; p++) /* scores: packed queries x key panels */
                    tile(hd, qp, 1, MR, kp + p * hd * NR, s + p * NR, np, MR, NR, 1, NULL);
                float inv[MR];
                for (long i = 0; i < MR; i++) {
                    float *si = s + i * np;
                    __m256 mx = _mm256_set1_ps(-INFINITY);
                    long n = 0;
                    for (; n + 8 <= N; n += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(si + n));
                    float m = -INFINITY, t[8];
                    _mm256_storeu_ps(t, mx);
                    for (int l = 0; l < 8; l++) m = t[l] > m ? t[l] : m;
                    for (; n < N; n++) m = si[n] > m ? si[n] : m;
                    __m256 vm = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
                    for (n = 0; n + 8 <= N; n += 8) {
                        __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(si + n), vm));
                        _mm256_storeu_ps(si + n, e);
                        sum = _mm256_add_ps(sum, e);
                    }
                    _mm256_storeu_ps(t, sum);
                    float total = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
                    if (n < N) { /* the tail through the same exp, on a padded vector */
                        float tail[8] = {0};
                        for (long l = n; l < N; l++) tail[l - n] = si[l] - m;
                        for (long l = N - n; l < 8; l++) tail[l] = -INFINITY;
                        _mm256_storeu_ps(tail, exp_nonpositive(_mm256_loadu_ps(tail)));
                        for (long l = n; l < N; l++) si[l] = tail[l - n], total += tail[l - n];
                    }
                    inv[i] = 1.0f / total;
                }
                for (long i = 0; i < MR; i++) /* padded key slots hold raw scores: zero them */
                    for (long n = N; n < np; n++) s[i * np + n] = 0.0f;
                for (long j = 0; j < vpanels; j++) /* probabilities read in place, row-major */
                    tile(np, s, np, 1, vp + j * np * NR, o + j * NR, hd, MR, NR, 1, NULL);
                for (long i = 0; i < mr; i++) {
                    float *dst = out + (b * N + m0 + i) * D + h * hd;
                    for (long d = 0; d < hd; d++) dst[d] = o[i * hd + d] * inv[i];
                }
            }
        }
    }
    free(buf);
    return 0;
}
