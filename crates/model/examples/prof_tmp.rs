use mfh_model::{build, GateKind, ModelSpec};
use mfh_nn::{Adam, Module, Rng};
use std::time::Instant;
fn main() {
    let th: usize = std::env::var("MFH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    mfh_nn::init_thread_pool(th);
    mfh_nn::set_threads(th);
    let spec = ModelSpec::Mmoe { experts: 8, expert_layers: vec![256, 128], gate: GateKind::Softmax, gate_hidden: vec![], tower: vec![64], batch_norm: false };
    let mut net = build::<f32>(&spec, 429, 4, 42).unwrap();
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..1024 * 429).map(|_| rng.normal() as f32).collect();
    let d: Vec<f32> = (0..1024 * 4).map(|_| rng.normal() as f32 * 1e-3).collect();
    let mut adam = Adam::<f32>::default();
    let (mut tf, mut tb, mut ta, mut tz) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..30 {
        let t0 = Instant::now(); net.zero_grad(); let t1 = Instant::now();
        net.forward(&x, 1024, true); let t2 = Instant::now();
        net.backward(&x, &d, None, 1024); let t3 = Instant::now();
        adam.step(&mut net, 1e-4); let t4 = Instant::now();
        tz = tz.min((t1 - t0).as_secs_f64()); tf = tf.min((t2 - t1).as_secs_f64());
        tb = tb.min((t3 - t2).as_secs_f64()); ta = ta.min((t4 - t3).as_secs_f64());
    }
    parts();
    println!("threads {th}: best zero {:.2} fwd {:.2} bwd {:.2} adam {:.2} ms => {:.0} samples/s", tz*1e3, tf*1e3, tb*1e3, ta*1e3, 1024.0/(tz+tf+tb+ta));
}
#[allow(dead_code)]
fn best(mut f: impl FnMut()) -> f64 { let mut b = f64::MAX; for _ in 0..20 { let t = Instant::now(); f(); b = b.min(t.elapsed().as_secs_f64()); } b * 1e3 }
#[allow(dead_code)]
pub fn parts() {
    use mfh_nn::*;
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..1024 * 429).map(|_| rng.normal() as f32).collect();
    let mut bank = ExpertBank::<f32>::new(429, 8, &[256, 128], Activation::Relu, false, &mut rng);
    let mut dy = vec![0.01f32; 1024 * 1024];
    let f = best(|| { bank.forward(&x, 1024, true); });
    let b = best(|| { dy.fill(0.01); bank.backward(&x, &mut dy, None, 1024); });
    let mut gate = Gate::<f32>::new(429, &[], 8, GateActivation::Softmax, &mut rng);
    let dg = vec![0.01f32; 1024 * 8];
    let gf = best(|| { gate.forward(&x, 1024, true); });
    let gb = best(|| { gate.backward(&x, &dg, None, 1024); });
    let mut tower = Mlp::<f32>::new(128, &[64, 1], Activation::Identity, false, &mut rng);
    let h: Vec<f32> = (0..1024 * 128).map(|_| rng.normal() as f32).collect();
    let mut dh = vec![0.0f32; 1024 * 128];
    let tf = best(|| { tower.forward(&h, 1024, true); });
    let tb = best(|| { let mut d = vec![0.01f32; 1024]; tower.backward(&h, &mut d, Some(&mut dh), 1024); });
    let out = bank.forward(&x, 1024, true).to_vec();
    let g = vec![0.125f32; 1024 * 8];
    let mut o = vec![0.0f32; 1024 * 128];
    let mut dgs = vec![0.0f32; 1024 * 8];
    let mut dx = vec![0.0f32; 1024 * 1024];
    let sf = best(|| gated_sum_forward(&g, &out, 1024, 8, 128, &mut o));
    let sb = best(|| gated_sum_backward(&g, &out, &o, 1024, 8, 128, &mut dgs, &mut dx));
    println!("bank f {f:.2} b {b:.2} | gate f {gf:.2} b {gb:.2} | tower f {tf:.2} b {tb:.2} | gsum f {sf:.2} b {sb:.2}");
}
