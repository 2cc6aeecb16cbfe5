/* y = x W^T + b for many rows of x (the vision encoder, prompts, cross-attention keys/values),
 * fp32, AVX2 + FMA.
 *
 * Compute-bound, so the aim is to keep both FMA pipes busy: a packed, blocked product in the
 * Goto / BLIS structure. The register tile is 6 rows x 16 columns (12 vector accumulators, two
 * weight vectors and one broadcast live: 15 of the 16 ymm registers). W (N, K) is first packed,
 * in parallel, into panels of 16 output columns laid out k-major (wp[p][k][0:16]), so the tile
 * reads 16 consecutive floats per k; x is packed per block of MC rows x KC columns into panels of
 * 6 rows (also k-major), a block that stays in L2 while every weight panel passes over it, each
 * weight panel (KC x 16 floats, 16 KiB) staying in L1 across the block's row panels.
 * Threads split the rows and, when rows are too few to go round, the weight panels too; none
 * writes another's output.
 * The packed weight lives only for the call (no second copy of the model is kept).
 *
 * x: (M, K); w: (N, K); b: (N) or NULL; y: (M, N); all row-major and contiguous, M, N, K >= 1.
 * Returns 0, or -1 when the packing buffers cannot be allocated (y untouched).
 */
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>

#include "tile.h"

#define KC 256
#define MC 144 /* a multiple of MR */

static void pack_weight(const float *w, float *wp, long N, long K) {
    long panels = (N + NR - 1) / NR;
#pragma omp for schedule(static)
    for (long p = 0; p < panels; p++) {
        float *dst = wp + p * K * NR;
        for (long j = 0; j < NR; j++) {
            long n = p * NR + j;
            if (n < N)
                for (long k = 0; k < K; k++) dst[k * NR + j] = w[n * K + k];
            else
                for (long k = 0; k < K; k++) dst[k * NR + j] = 0.0f;
        }
    }
}

/* rows [m0, m0 + mc) and columns [k0, k0 + kc) of x -> panels of MR rows, k-major, zero past M. */
static void pack_rows(const float *x, long K, long M, long m0, long mc, long k0, long kc, float *xp) {
    for (long i = 0; i < mc; i += MR) {
        float *dst = xp + i * kc;
        for (long r = 0; r < MR; r++) {
            long m = m0 + i + r;
            if (m < M)
                for (long k = 0; k < kc; k++) dst[k * MR + r] = x[m * K + k0 + k];
            else
                for (long k = 0; k < kc; k++) dst[k * MR + r] = 0.0f;
        }
    }
}

static long min_l(long a, long b) { return a < b ? a : b; }

int openblip_blocked_linear(const float *x, const float *w, const float *b, float *y, long M, long N, long K,
                            int threads) {
    long row_panels = (M + MR - 1) / MR, col_panels = (N + NR - 1) / NR;
    if (threads < 1) threads = 1;
    float *wp = aligned_alloc(64, sizeof(float) * NR * K * col_panels);
    float *xp = aligned_alloc(64, sizeof(float) * MC * KC * threads);
    if (!wp || !xp) {
        free(wp);
        free(xp);
        return -1;
    }
#pragma omp parallel num_threads(threads)
    {
        pack_weight(w, wp, N, K); /* ends with the barrier of `omp for` */
        /* Threads form a grid: as many row groups as there are rows for (>= 8 row panels each,
         * so each thread's packed rows pay for themselves), the rest split the columns. */
        long t = omp_get_thread_num(), nt = omp_get_num_threads();
        long tm = min_l(nt, row_panels / 8 > 0 ? row_panels / 8 : 1);
        while (nt % tm) tm--;
        long tn = nt / tm, ti = t / tn, tj = t % tn;
        long r0 = row_panels * ti / tm, r1 = row_panels * (ti + 1) / tm;
        long p0 = col_panels * tj / tn, p1 = col_panels * (tj + 1) / tn;
        float *mine = xp + t * MC * KC;
        long m_end = min_l(r1 * MR, M);
        for (long m0 = r0 * MR; m0 < m_end; m0 += MC) {
            long mc = min_l(MC, r1 * MR - m0);
            for (long k0 = 0; k0 < K; k0 += KC) {
                long kc = min_l(KC, K - k0);
                pack_rows(x, K, M, m0, mc, k0, kc, mine);
                for (long p = p0; p < p1; p++) {
                    long n0 = p * NR, nr = min_l(NR, N - n0);
                    const float *panel = wp + p * K * NR + k0 * NR;
                    for (long i = 0; i < mc && m0 + i < M; i += MR)
                        tile(kc, mine + i * kc, 1, MR, panel, y + (m0 + i) * N + n0, N, min_l(MR, M - m0 - i), nr,
                             k0 == 0, b ? b + n0 : NULL);
                }
            }
        }
    }
    free(wp);
    free(xp);
    return 0;
}
