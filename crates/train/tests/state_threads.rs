//! Scoring with row blocks on two threads after optimizer steps made through
//! `ModelState::net_mut` gives what the main network alone gives: the copies of the
//! network take the new parameters.

use mfh_artifact::{embedding_layer, ModelState};
use mfh_config::{EmbeddingOptConfig, TaskGrid};
use mfh_data::{Batch, FieldLayout};
use mfh_loss::{GridLoss, LossSpec};
use mfh_model::ModelSpec;
use mfh_nn::Adam;

const FIELDS: usize = 3;
const DENSE: usize = 2;

fn state() -> ModelState {
    let layout = FieldLayout {
        single: (0..FIELDS)
            .map(|f| (format!("c{f}"), format!("c{f}"), 4))
            .collect(),
        multi: vec![],
        dense: (0..DENSE).map(|d| format!("d{d}")).collect(),
    };
    let grid = TaskGrid {
        behaviours: vec!["click".into(), "like".into()],
        binary: vec![true, true],
        facets: vec![],
    };
    let spec: ModelSpec =
        toml::from_str("type = \"mmoe\"\nexperts = 3\nexpert_layers = [16, 8]\ntower = [4]\n")
            .unwrap();
    let emb = embedding_layer(&layout, &EmbeddingOptConfig::default(), 3).unwrap();
    let loss = GridLoss::new(LossSpec::new(1, vec![true; 2])).unwrap();
    ModelState::new(grid, spec, emb, DENSE, loss, 3).unwrap()
}

fn batch(n: usize, seed: u64) -> Batch {
    let mut b = Batch::with_layout(FIELDS, 0);
    b.n = n;
    for i in 0..n as u64 {
        let r = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
        b.single
            .extend((0..FIELDS as u64).map(|f| (r >> (8 * f)) % 50 + 100 * f));
        b.dense
            .extend([(r % 7) as f32 / 7.0, (r % 11) as f32 / 11.0]);
        b.labels
            .extend([(r % 2) as f32, r.is_multiple_of(3) as u8 as f32]);
        b.cells.push(0);
        b.groups.push(0);
        b.rows.push(i);
    }
    b
}

#[test]
fn two_thread_scoring_follows_optimizer_steps() {
    mfh_nn::init_thread_pool(2);
    mfh_nn::set_threads(2);
    let mut s = state();
    let mut adam = Adam::<f32>::new(0.9, 0.999, 1e-8, 0.0);
    let mut eval = batch(512, 99);
    for step in 1..=4u64 {
        // Score first (the copies then hold this step's parameters), train, then score
        // again: the second score must see the updated parameters.
        let _ = s.forward(&mut eval);
        s.net_mut().zero_grad();
        s.train_step(&mut batch(512, step), step);
        adam.step(s.net_mut(), 0.05);
        let split = s.forward(&mut eval).to_vec();
        mfh_nn::set_threads(1);
        let whole = s.forward(&mut eval).to_vec();
        mfh_nn::set_threads(2);
        assert_eq!(split.len(), whole.len());
        for (i, (a, b)) in split.iter().zip(&whole).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "step {step}, logit {i}: {a} vs {b}"
            );
        }
    }
}
