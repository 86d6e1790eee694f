//! Which instruction set mfh's loops run with, chosen at run time from the CPU.
//!
//! One release binary (built for x86-64-v3, see the README) runs on AVX2 and on AVX-512
//! machines at the speed each has: every hot loop exists in a few versions compiled for
//! different instruction sets, and [`path`] says which one runs. The choice comes from
//! the CPU's features (checked once), never from the machine that built the binary.
//!
//! - [`Path::Amx`]: [`Path::Avx512`] for f32, and bf16 products on AMX tiles (AMX-TILE
//!   and AMX-BF16, with the tile state granted by Linux, see [`amx_usable`]).
//! - [`Path::Avx512Bf16`]: [`Path::Avx512`] for f32, and bf16 products by AVX512-BF16 dot
//!   products.
//! - [`Path::Avx512`]: AVX-512 F/BW/DQ/VL (x86-64-v4) with AVX2 and FMA.
//! - [`Path::Avx2`]: AVX2 and FMA (x86-64-v3).
//! - [`Path::Portable`]: no instruction set picked by mfh: loops as compiled for the
//!   build's baseline, and matrix products from the `gemm` crate (which picks its own).
//!
//! Every path runs f32 loops and products alike on the three AVX-512 levels (the bf16
//! levels differ only in how bf16 products run; on the others a bf16 product is the
//! portable reference: operands rounded to bf16, f32 arithmetic). See `mfh-nn`'s
//! `product::bf16`.
//!
//! `MFH_KERNEL=amx|avx512bf16|avx512|avx2|portable` forces a path for the whole process (tests and
//! measurements); `auto` or unset takes [`best`]: the widest path, except where the
//! CPU's 512-bit units are half width (AMD Zen 4), where it takes avx2. A path the CPU
//! lacks is an error ([`check_env`]), never an illegal instruction. [`with_path`] forces
//! one on the calling thread only, for tests that compare paths side by side.
//!
//! Results: elementwise loops give the same bits on every path (no reordered sums, no
//! fused multiply-adds the source does not ask for). The matrix products of the
//! AVX-512 and AVX2 kernels are equal bit for bit too (the same sums in the same order);
//! the `gemm` crate's products differ from them by float rounding.
//!
//! Not here: the kernels themselves (`mfh-nn`'s `product` and `kernels` modules, the
//! embedding crate's gathers and row optimisers).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// An instruction-set level a loop can run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    Amx,
    Avx512Bf16,
    Avx512,
    Avx2,
    Portable,
}

impl Path {
    /// Every path, best first.
    pub const ALL: [Path; 5] = [
        Path::Amx,
        Path::Avx512Bf16,
        Path::Avx512,
        Path::Avx2,
        Path::Portable,
    ];

    /// Whether f32 loops run their AVX-512 versions on it (every AVX-512 level).
    pub fn avx512(self) -> bool {
        matches!(self, Path::Amx | Path::Avx512Bf16 | Path::Avx512)
    }

    /// The name `MFH_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Path::Amx => "amx",
            Path::Avx512Bf16 => "avx512bf16",
            Path::Avx512 => "avx512",
            Path::Avx2 => "avx2",
            Path::Portable => "portable",
        }
    }

    /// Whether this CPU runs it.
    pub fn supported(self) -> bool {
        match self {
            Path::Amx => features().avx512 && features().amx_bf16 && amx_usable(),
            Path::Avx512Bf16 => features().avx512 && features().avx512_bf16,
            Path::Avx512 => features().avx512,
            Path::Avx2 => features().avx2,
            Path::Portable => true,
        }
    }

    fn code(self) -> u8 {
        match self {
            Path::Avx512 => 1,
            Path::Avx2 => 2,
            Path::Portable => 3,
            Path::Avx512Bf16 => 4,
            Path::Amx => 5,
        }
    }

    fn from_code(c: u8) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.code() == c)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Path {
    type Err = String;
    fn from_str(s: &str) -> Result<Path, String> {
        Path::ALL
            .into_iter()
            .find(|p| p.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "unknown kernel path {s:?}: expected amx, avx512bf16, avx512, avx2, portable or auto"
                )
            })
    }
}

/// The CPU features that decide the paths, detected once.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// AVX2 and FMA.
    pub avx2: bool,
    /// AVX-512 F, BW, DQ and VL (with AVX2 and FMA).
    pub avx512: bool,
    /// AVX512-BF16 ([`Path::Avx512Bf16`]).
    pub avx512_bf16: bool,
    /// AMX-TILE and AMX-BF16 as the CPU reports them ([`Path::Amx`] also needs
    /// [`amx_usable`]).
    pub amx_bf16: bool,
    /// A CPU whose 512-bit operations run as two 256-bit halves (AMD family 19h, Zen 4).
    pub half_width_512: bool,
    /// A CPU with AVX512-BF16 whose `vdpbf16ps` does more multiply-adds per cycle than its
    /// f32 FMAs: AMD family 1Ah (Zen 5) and later, where `mfh bench sgemm --peak` measured
    /// 1.83× the FMA's flops (Intel's measured 0.48×; see [`best`]).
    pub fast_bf16_dot: bool,
}

/// This CPU's features.
pub fn features() -> Features {
    static F: OnceLock<Features> = OnceLock::new();
    *F.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Features {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma");
    Features {
        avx2,
        avx512: avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl"),
        avx512_bf16: has!("avx512bf16"),
        amx_bf16: amx_bf16(),
        half_width_512: amd_family() == Some(0x19),
        fast_bf16_dot: has!("avx512bf16") && amd_family().is_some_and(|f| f >= 0x1a),
    }
}

/// The family of an AMD CPU (CPUID leaf 1, base plus extended family); `None` for other
/// vendors.
#[cfg(target_arch = "x86_64")]
fn amd_family() -> Option<u32> {
    use std::arch::x86_64::__cpuid;
    let v = __cpuid(0);
    let vendor = [v.ebx, v.edx, v.ecx].map(u32::to_le_bytes).concat();
    if vendor != b"AuthenticAMD" {
        return None;
    }
    let eax = __cpuid(1).eax;
    let base = (eax >> 8) & 0xf;
    Some(if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    })
}

/// CPUID leaf 7, EDX bits 22 (AMX-BF16) and 24 (AMX-TILE): what the CPU has, as
/// `/proc/cpuinfo` lists it (the standard library detects AMX on nightly only). Using
/// the tiles also needs the OS's leave: [`amx_usable`].
#[cfg(target_arch = "x86_64")]
fn amx_bf16() -> bool {
    // CPUID exists on every x86-64 CPU; leaf 7 is read only when the max leaf is ≥ 7.
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    (edx >> 22) & 1 == 1 && (edx >> 24) & 1 == 1
}

/// Whether this process may use the AMX tiles, asked once: the OS saves tile state
/// (XCR0 bits 17 and 18, read by XGETBV when CPUID says OSXSAVE), and on Linux the
/// process has asked for it with `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`
/// (Linux ≥ 5.16; without that leave the first tile instruction faults). The request is
/// made here, for the whole process, the first time anything asks.
pub fn amx_usable() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| features().amx_bf16 && request_amx())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_amx() -> bool {
    use std::arch::x86_64::__cpuid;
    // OSXSAVE (CPUID.1:ECX bit 27): XGETBV is there to read XCR0.
    if (__cpuid(1).ecx >> 27) & 1 == 0 {
        return false;
    }
    let xcr0: u64;
    // SAFETY: XGETBV with ECX = 0 reads XCR0; OSXSAVE is set, so the instruction exists.
    unsafe {
        let (lo, hi): (u32, u32);
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
        xcr0 = (u64::from(hi) << 32) | u64::from(lo);
    }
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return false;
    }
    const SYS_ARCH_PRCTL: u64 = 158;
    const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
    const XFEATURE_XTILEDATA: u64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with a request code and a feature number; it
    // reads and writes no memory of ours. `syscall` clobbers rcx and r11.
    unsafe {
        std::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL as i64 => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_amx() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Features {
    Features {
        avx2: false,
        avx512: false,
        avx512_bf16: false,
        amx_bf16: false,
        half_width_512: false,
        fast_bf16_dot: false,
    }
}

/// The path `auto` takes: the widest this CPU runs, except on AMD family 19h (Zen 4),
/// whose AVX-512 units execute each 512-bit operation as two 256-bit halves. There the
/// AVX-512 tile does no more multiply-adds per cycle than the AVX2 tile, and MMoE-ref
/// training measured 3–8 % faster on avx2 (bench/RESULTS.md). Both give equal bits, so
/// this choice changes speed only. `MFH_KERNEL=avx512` still forces AVX-512 there.
///
/// Among the AVX-512 levels it takes AMX where the process may use it, then avx512bf16
/// where the CPU's `vdpbf16ps` is fast ([`Features::fast_bf16_dot`]), else plain AVX-512:
/// their f32 loops are the same, so the level decides only how bf16 products run. The
/// bf16 dot product's speed differs by vendor, so the choice does too (both measured with
/// `mfh bench sgemm --peak --bf16`, bench/RESULTS.md): on the 2-core Xeon with AMX each
/// `vdpbf16ps` issued at a quarter of the two FMA ports' rate (0.48× their flops), and
/// the reference (rounded operands through the f32 tile) was faster than it; on a 2-core
/// AMD EPYC of family 1Ah (Zen 5) it did 1.83× the FMA's flops and the bf16 product ran
/// at 2.0× the f32 one. Intel CPUs with AVX512-BF16 and no AMX (Cooper Lake) and AMD
/// family 19h (Zen 4, which takes avx2 for its half-width units) were not measured and
/// keep avx512 or avx2; `MFH_KERNEL=avx512bf16` forces the path on any CPU that has it.
pub fn best() -> Path {
    if features().avx512 && !features().half_width_512 {
        return if Path::Amx.supported() {
            Path::Amx
        } else if features().fast_bf16_dot {
            Path::Avx512Bf16
        } else {
            Path::Avx512
        };
    }
    Path::ALL
        .into_iter()
        .filter(|p| !p.avx512())
        .find(|p| p.supported())
        .unwrap_or(Path::Portable)
}

/// The paths this CPU runs, widest first (what tests iterate over).
pub fn supported() -> Vec<Path> {
    Path::ALL.into_iter().filter(|p| p.supported()).collect()
}

/// `MFH_KERNEL` read: `Ok(None)` when unset, empty or `auto`; an error names a value that
/// is not a path or a path this CPU lacks.
pub fn env_path() -> Result<Option<Path>, String> {
    let Ok(v) = std::env::var("MFH_KERNEL") else {
        return Ok(None);
    };
    if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let p: Path = v.parse().map_err(|e| format!("MFH_KERNEL: {e}"))?;
    if !p.supported() {
        return Err(format!(
            "MFH_KERNEL={v}: this CPU does not have {p} (it runs: {})",
            names(&supported())
        ));
    }
    Ok(Some(p))
}

/// Checks `MFH_KERNEL` (commands call it at start, so a bad value is an error there and
/// not a silent fallback later).
pub fn check_env() -> Result<Path, String> {
    Ok(env_path()?.unwrap_or_else(best))
}

/// 0: not chosen yet; otherwise a [`Path`] code.
static GLOBAL: AtomicU8 = AtomicU8::new(0);

thread_local! {
    static OVERRIDE: Cell<u8> = const { Cell::new(0) };
}

/// The path loops on this thread run: the thread's [`with_path`], else the process's
/// (`MFH_KERNEL`, else [`best`]). A bad `MFH_KERNEL` falls back to
/// [`best`] with one warning on stderr (commands reject it first through [`check_env`]).
#[inline]
pub fn path() -> Path {
    let t = OVERRIDE.with(Cell::get);
    if let Some(p) = Path::from_code(t) {
        return p;
    }
    if let Some(p) = Path::from_code(GLOBAL.load(Ordering::Relaxed)) {
        return p;
    }
    let p = match env_path() {
        Ok(p) => p.unwrap_or_else(best),
        Err(e) => {
            eprintln!("warning: {e}; using {}", best());
            best()
        }
    };
    // Whoever stores first wins, so every thread sees one choice.
    let _ = GLOBAL.compare_exchange(0, p.code(), Ordering::Relaxed, Ordering::Relaxed);
    Path::from_code(GLOBAL.load(Ordering::Relaxed)).unwrap_or(p)
}

/// Runs `f` with loops on the calling thread forced to `p` (work that `f` hands to other
/// threads takes the path its kernels capture at entry, which they do). Panics when the
/// CPU lacks `p`: a test's mistake.
pub fn with_path<R>(p: Path, f: impl FnOnce() -> R) -> R {
    assert!(p.supported(), "this CPU does not have {p}");
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(p.code())));
    f()
}

/// The threads this process may run at once: the CPUs in its affinity mask, lowered to
/// its cgroup CPU quota (v1 or v2) when that is smaller; 1 when neither can be read. The
/// default for every `threads` setting (`std::thread::available_parallelism`, which
/// reads both on Linux).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn names(paths: &[Path]) -> String {
    paths
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line for logs and benchmarks: the path in use and the CPU features behind it.
pub fn describe() -> String {
    let f = features();
    let flag = |on: bool, name: &str| {
        if on {
            name.to_string()
        } else {
            format!("no {name}")
        }
    };
    format!(
        "kernel path {} (CPU: {}, {}{}, {}, {}; runs {}; auto takes {})",
        path(),
        flag(f.avx2, "avx2+fma"),
        flag(f.avx512, "avx512f/bw/dq/vl"),
        if f.half_width_512 {
            " in 256-bit halves"
        } else {
            ""
        },
        flag(f.avx512_bf16, "avx512_bf16"),
        match (f.amx_bf16, amx_usable()) {
            (false, _) => "no amx_bf16",
            (true, true) => "amx_bf16 (tile state granted)",
            (true, false) => "amx_bf16 (tile state not granted by the OS)",
        },
        names(&supported()),
        best()
    )
}

/// Evaluates `$call` (a call of a function or method) compiled for the instruction set of
/// `$path` (a [`Path`]). The function called is `#[inline(always)]` (generic or not): it is
/// inlined into a copy of the call made for each path, so the compiler vectorises its
/// loops for that path. Whatever it calls without inlining runs as compiled for the
/// build's baseline.
///
/// ```
/// #[inline(always)]
/// fn scale(x: &mut [f32], s: f32) {
///     x.iter_mut().for_each(|v| *v *= s);
/// }
/// let mut x = vec![1.0f32; 100];
/// mfh_cpu::dispatch!(mfh_cpu::path(), scale(&mut x, 2.0));
/// assert!(x.iter().all(|&v| v == 2.0));
/// ```
#[macro_export]
macro_rules! dispatch {
    ($path:expr, $($call:tt)+) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            unsafe fn on_avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn on_avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            match $path {
                // SAFETY: a path is only ever chosen when the CPU supports it
                // (`Path::supported`, checked by `path` and `with_path`).
                $crate::Path::Amx | $crate::Path::Avx512Bf16 | $crate::Path::Avx512 => unsafe {
                    on_avx512(|| $($call)+)
                }
                $crate::Path::Avx2 => unsafe { on_avx2(|| $($call)+) },
                $crate::Path::Portable => $($call)+,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $path;
            $($call)+
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_threads_is_within_the_machine() {
        let n = available_threads();
        assert!(n >= 1);
        // Never more than the CPUs the kernel lists as online.
        if let Ok(online) = std::fs::read_to_string("/sys/devices/system/cpu/online") {
            let count: usize = online
                .trim()
                .split(',')
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                    None => 1,
                })
                .sum();
            assert!(n <= count, "{n} threads but {count} CPUs online");
        }
    }

    #[test]
    fn names_round_trip_and_bad_names_are_errors() {
        for p in Path::ALL {
            assert_eq!(p.name().parse::<Path>().unwrap(), p);
        }
        assert_eq!("AVX2".parse::<Path>().unwrap(), Path::Avx2);
        let e = "sse9".parse::<Path>().unwrap_err();
        assert!(e.contains("sse9") && e.contains("avx512"), "{e}");
    }

    #[test]
    fn supported_paths_include_portable_and_best_comes_first() {
        let s = supported();
        assert_eq!(s.last(), Some(&Path::Portable));
        assert!(s.contains(&best()));
        let f = features();
        if f.avx512 {
            assert!(f.avx2, "AVX-512 path implies AVX2");
            assert_eq!(best().avx512(), !f.half_width_512);
            if !f.half_width_512 {
                assert_eq!(best() == Path::Amx, amx_usable());
                assert_eq!(best() == Path::Avx512Bf16, !amx_usable() && f.fast_bf16_dot);
                assert!(!f.fast_bf16_dot || f.avx512_bf16);
            }
        } else if f.avx2 {
            assert_eq!(best(), Path::Avx2);
        }
        println!("{}", describe());
    }

    #[test]
    fn with_path_overrides_this_thread_only_and_restores() {
        let before = path();
        for p in supported() {
            with_path(p, || {
                assert_eq!(path(), p);
                let other = std::thread::spawn(path).join().unwrap();
                assert_eq!(other, before, "another thread sees the process path");
            });
            assert_eq!(path(), before);
        }
    }

    #[inline(always)]
    fn sum_sq(x: &[f32]) -> f32 {
        x.iter().map(|v| v * v).sum()
    }

    #[test]
    fn dispatch_gives_the_same_bits_on_every_path() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let want = sum_sq(&x);
        for p in supported() {
            assert_eq!(dispatch!(p, sum_sq(&x)).to_bits(), want.to_bits(), "{p}");
        }
    }
}
