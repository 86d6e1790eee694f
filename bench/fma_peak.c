/* Peak f32 FMA throughput of one core: 12 independent 8-lane FMA chains (what a GEMM
 * micro-kernel can at best sustain). Run one copy per core to see the all-core figure:
 *   gcc -O2 -mavx2 -mfma bench/fma_peak.c -o target/fma_peak && target/fma_peak
 *   (target/fma_peak & target/fma_peak; wait)                                      */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

int main(void) {
    __m256 acc[12];
    const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    const long iters = 400000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    float sink = 0, lanes[8];
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(lanes, acc[i]);
        sink += lanes[0];
    }
    /* 12 chains × 8 lanes × 2 FLOPs per FMA. */
    printf("%.1f GFLOP/s on one core (checksum %g)\n", iters * 12.0 * 16.0 / s / 1e9, sink);
    return 0;
}
