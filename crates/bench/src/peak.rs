//! `mfh bench sgemm --peak`: the core's own ceiling for the two AVX-512 multiply-add
//! instructions mfh's products are built from, on one thread: `vfmadd231ps` (f32, 32
//! flops per 512-bit instruction) and `vdpbf16ps` (bf16 pairs summed in f32, 64 flops
//! per instruction). Twelve independent accumulators per loop hide the latency, so each
//! loop runs at the instruction's throughput; no memory is touched. The ratio of the two
//! rates bounds what an AVX512-BF16 register-tile product can gain over the f32 one on
//! this CPU, before any packing cost.

use crate::print::summary;
use std::time::Instant;

/// Prints the median (min–max over `repeats` windows) GFLOP/s of each instruction on one
/// thread, and their ratio; says why when the CPU lacks one.
pub fn peak(repeats: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let f = mfh_cpu::features();
        if !f.avx512 {
            outln!("peak: no AVX-512 on this CPU (the probe times 512-bit instructions)");
            return;
        }
        const ITERS: u64 = 20_000_000;
        let time = |run: &dyn Fn() -> f32, flops_per_iter: f64| -> Vec<f64> {
            std::hint::black_box(run());
            (0..repeats.max(1))
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(run());
                    flops_per_iter * ITERS as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .collect()
        };
        // SAFETY: AVX-512 F was detected above.
        let fma = time(&|| unsafe { x86::fma_loop(ITERS) }, 12.0 * 32.0);
        summary("vfmadd231ps zmm, 1 thread", "GFLOP/s", fma.clone());
        if !f.avx512_bf16 {
            outln!("peak: no AVX512-BF16 on this CPU");
            return;
        }
        // SAFETY: AVX512-BF16 was detected above.
        let dp = time(&|| unsafe { x86::dp_loop(ITERS) }, 12.0 * 64.0);
        summary("vdpbf16ps zmm, 1 thread", "GFLOP/s", dp.clone());
        let med = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        outln!(
            "peak: vdpbf16ps / vfmadd231ps flops: {:.2}x (the most an AVX512-BF16 register tile can gain over f32 here)",
            med(&dp) / med(&fma)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (repeats, summary, Instant::now);
        outln!("peak: an x86-64 probe; this is another architecture");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `iters` × 12 independent `vfmadd231ps`; returns a lane so the work is kept.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_loop(iters: u64) -> f32 {
        let (x, y) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        total(&acc)
    }

    /// The sum of every lane of `acc` (keeps the loops' work from being optimised away).
    #[target_feature(enable = "avx512f")]
    unsafe fn total(acc: &[__m512]) -> f32 {
        let mut s = _mm512_setzero_ps();
        for a in acc {
            s = _mm512_add_ps(s, *a);
        }
        _mm512_reduce_add_ps(s)
    }

    /// `iters` × 12 independent `vdpbf16ps`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dp_loop(iters: u64) -> f32 {
        // bf16 pairs of 1.0 (0x3f80) and 1e-3-ish (0x3a83): small sums, no overflow.
        let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(0x3f80_3f80));
        let y: __m512bh = std::mem::transmute(_mm512_set1_epi32(0x3a83_3a83));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm512_dpbf16_ps(*a, x, y);
            }
        }
        total(&acc)
    }
}
