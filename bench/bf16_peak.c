/* Peak rate of one core for 512-bit f32 FMA against AVX512-BF16 `vdpbf16ps` (two bf16
 * multiply-adds per f32 lane): 12 independent chains of each, in registers. On a CPU
 * where `vdpbf16ps` issues at half the FMA rate, the bf16 dot products do no more work
 * per cycle than f32 FMAs (issue 26's avx512bf16 path):
 *   gcc -O2 -mavx512f -mavx512bf16 bench/bf16_peak.c -o target/bf16_peak && target/bf16_peak */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const long iters = 50000000;
    for (int round = 0; round < 3; round++) {
        __m512 acc[12];
        for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
        const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
        double t0 = now();
        for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
        }
        double fma = now() - t0;
        float sink = 0;
        for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(acc[i]);
        const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80);
        for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
        t0 = now();
        for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbf16_ps(acc[i], x, x);
        }
        double dp = now() - t0;
        for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(acc[i]);
        /* 12 chains × 16 lanes × 2 FLOPs (FMA) or × 4 FLOPs (two multiply-adds). */
        printf("round %d: f32 FMA %.1f GFLOP/s, vdpbf16ps %.1f GFLOP/s, ratio %.2f (checksum %g)\n",
               round + 1, iters * 12.0 * 32.0 / fma / 1e9, iters * 12.0 * 64.0 / dp / 1e9,
               (iters * 12.0 * 64.0 / dp) / (iters * 12.0 * 32.0 / fma), sink);
    }
    return 0;
}
