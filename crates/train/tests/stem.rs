//! STEM trained end to end: with the loss on one behaviour only, every embedding row's
//! other behaviours' blocks stay exactly as they were created, while the shared block
//! and the trained behaviour's block move; a warm start takes the trained model back.

use mfh_embedding::{EmbeddingTable, TableSpec};
use mfh_train::train;

mod common;
use common::{opts, setup};

const STEM: &str = "\n[models.stem]\ntype = \"stem\"\ntower = [6]\n";

#[test]
fn a_loss_on_one_behaviour_leaves_the_others_specific_embeddings_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    // click's loss only: like's weight 0 (behaviours click, like: blocks shared, click, like).
    let cfg = setup(
        tmp.path(),
        "stem.toml",
        &format!("epochs = 2\nmodel = \"stem\"\nloss = {{ weights = {{ like = 0.0 }} }}{STEM}"),
    );
    let out = tmp.path().join("stem");
    let mut o = opts(&out);
    o.model = Some("stem".into());
    train(&cfg, &o).unwrap();
    let m = mfh_artifact::load_model(&out).unwrap();
    let mut checked = 0;
    let (mut shared_moved, mut click_moved) = (0, 0);
    for t in m.state.emb.tables() {
        let spec: &TableSpec = t.spec();
        let d = t.dim() / 3;
        assert_eq!(t.dim(), 3 * d, "{}: three blocks", t.name());
        // The rows as created: a fresh table of the same spec, the same ids looked up.
        let mut fresh = EmbeddingTable::new(spec.clone()).unwrap();
        for (id, slot) in t.ids() {
            let mut s = Vec::new();
            fresh.lookup_train(&[id], &mut s);
            let (now, then) = (t.row(slot), fresh.row(s[0]));
            assert_eq!(
                now[2 * d..],
                then[2 * d..],
                "{} id {id}: like's block moved",
                t.name()
            );
            shared_moved += (now[..d] != then[..d]) as usize;
            click_moved += (now[d..2 * d] != then[d..2 * d]) as usize;
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked} rows");
    assert!(
        shared_moved > checked / 2,
        "shared blocks moved in {shared_moved} of {checked} rows"
    );
    assert!(
        click_moved > checked / 2,
        "click blocks moved in {click_moved} of {checked} rows"
    );

    // The trained model warm-starts a second run of the same section.
    let cfg2 = setup(
        tmp.path(),
        "stem2.toml",
        &format!("epochs = 1\nmodel = \"stem\"{STEM}"),
    );
    let mut o2 = opts(&tmp.path().join("stem-warm"));
    o2.model = Some("stem".into());
    o2.init_from = Some(out.clone());
    train(&cfg2, &o2).unwrap();
}
