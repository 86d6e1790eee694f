//! `train.precision = "bf16"`: a run repeats bit for bit for a fixed seed, differs from
//! the f32 run (its products take bf16 operands) and reaches a similar validation AUC.
//! A test binary of its own: the precision is process-wide.

use mfh_train::train;

mod common;
use common::{opts, setup};

#[test]
fn bf16_runs_repeat_and_stay_near_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let f32s = setup(tmp.path(), "f32.toml", "epochs = 3");
    let bf16 = setup(tmp.path(), "bf16.toml", "epochs = 3\nprecision = \"bf16\"");
    assert_eq!(bf16.train.precision, mfh_config::Precision::Bf16);
    let run = |cfg: &mfh_config::Config, name: &str| {
        let out = tmp.path().join(name);
        let s = train(cfg, &opts(&out)).unwrap();
        assert_eq!(
            mfh_nn::precision(),
            mfh_train::precision(cfg.train.precision)
        );
        (std::fs::read(out.join("dense.bin")).unwrap(), s)
    };
    let (a, sa) = run(&bf16, "bf16-a");
    let (b, _) = run(&bf16, "bf16-b");
    let (f, sf) = run(&f32s, "f32");
    assert_eq!(a, b, "two bf16 runs with one seed differ");
    assert_ne!(a, f, "the bf16 run's weights equal the f32 run's");
    let (ab, fb) = (sa.best_value.unwrap(), sf.best_value.unwrap());
    println!("best validation AUC: bf16 {ab:.4}, f32 {fb:.4}");
    assert!((ab - fb).abs() < 0.05, "bf16 {ab} against f32 {fb}");
}
