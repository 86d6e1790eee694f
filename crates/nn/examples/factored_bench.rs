//! One first-layer product (500 rows × 206 inputs × 1024 outputs, 144 inputs shared by
//! every row) plain and with the shared columns factored out.
fn main() {
    mfh_nn::use_threads(1);
    let (m, k, n) = (500, 206, 1024);
    let mut x = vec![0f32; m * k];
    for i in 0..m {
        for j in 0..k {
            x[i * k + j] = if j < 144 {
                (j as f32).sin()
            } else {
                ((i * 7 + j) as f32).cos()
            };
        }
    }
    let w: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.37).sin()).collect();
    let bias = vec![0.1f32; n];
    let mut c = vec![0f32; m * n];
    let prod = |c: &mut [f32]| {
        mfh_nn::product::matmul_bias_act(
            m,
            n,
            k,
            1.0,
            &x,
            k,
            false,
            &w,
            n,
            false,
            0.0,
            c,
            n,
            Some(&bias),
            true,
        )
    };
    for round in 0..3 {
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            prod(&mut c);
        }
        let plain = t0.elapsed().as_secs_f64() / 20.0 * 1e3;
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            mfh_nn::product::with_factored_input(|| prod(&mut c));
        }
        let fact = t0.elapsed().as_secs_f64() / 20.0 * 1e3;
        println!("round {round}: plain {plain:.3} ms, factored {fact:.3} ms");
    }
}
