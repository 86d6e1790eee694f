use mfh_nn::kernels::matmul;
use std::time::Instant;
fn t(name: &str, flops: f64, mut f: impl FnMut()) {
    f();
    let reps = 40;
    let mut best = f64::MAX; let mut tot = 0.0;
    for _ in 0..reps { let t0 = Instant::now(); f(); let s = t0.elapsed().as_secs_f64(); best = best.min(s); tot += s; }
    let s = tot / reps as f64;
    println!("{name:40} mean {:8.3} ms {:6.1} GF/s   best {:6.1} GF/s", s * 1e3, flops / s / 1e9, flops / best / 1e9);
}
fn main() {
    mfh_nn::init_thread_pool(2);
    let x = vec![0.5f32; 1024 * 429];
    let w = vec![0.1f32; 429 * 2048];
    let mut y = vec![0.0f32; 1024 * 2048];
    let mut dw = vec![0.0f32; 429 * 2048];
    let f0 = 2.0 * 1024.0 * 429.0 * 2048.0;
    for th in [1, 2] {
        mfh_nn::set_threads(th);
        t(&format!("t{th} fwd0 X·W 1024x2048x429"), f0, || matmul(1024, 2048, 429, 1.0, &x, 429, false, &w, 2048, false, 0.0, &mut y, 2048));
        t(&format!("t{th} dW0 Xt·D 429x2048x1024"), f0, || matmul(429, 2048, 1024, 1.0, &x, 429, true, &y, 2048, false, 1.0, &mut dw, 2048));
    }
    mfh_nn::set_threads(1);
    t("join rows fwd0", f0, || {
        let (a, b) = y.split_at_mut(512 * 2048);
        rayon::join(|| matmul(512, 2048, 429, 1.0, &x, 429, false, &w, 2048, false, 0.0, a, 2048),
                    || matmul(512, 2048, 429, 1.0, &x[512*429..], 429, false, &w, 2048, false, 0.0, b, 2048));
    });
    t("join cols dW0", f0, || {
        // columns split: two halves of 1024 columns each; dw rows have ld 2048
        let p = dw.as_mut_ptr() as usize;
        let yr = &y;
        rayon::join(|| { let d = unsafe { std::slice::from_raw_parts_mut(p as *mut f32, 429*2048) }; matmul(429, 1024, 1024, 1.0, &x, 429, true, yr, 2048, false, 1.0, d, 2048) },
                    || { let d = unsafe { std::slice::from_raw_parts_mut((p as *mut f32).add(1024), 429*2048-1024) }; matmul(429, 1024, 1024, 1.0, &x, 429, true, &yr[1024..], 2048, false, 1.0, d, 2048) });
    });
}
