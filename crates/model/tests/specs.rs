//! The table form of the specs: every flat model's JSON reads back and writes out
//! unchanged (the keys and order model folders have always held), the file's `type`
//! names map onto one unit spec each, and unknown keys are refused at every level.

use mfh_model::{build_model, FlatSpec, GridShape, ModelSpec, SharedBottomShape, UnitSpec};

const FLAT: [&str; 5] = [
    r#"{"type":"single","tower":[4],"batch_norm":false}"#,
    r#"{"type":"shared_bottom","bottom":[8,4],"tower":[2],"batch_norm":true}"#,
    r#"{"type":"mmoe","experts":3,"expert_layers":[5],"gate":"softmax","gate_hidden":[],"tower":[2],"batch_norm":false}"#,
    r#"{"type":"cgc","task_experts":1,"shared_experts":2,"expert_layers":[5],"gate":"sigmoid_over_n","gate_hidden":[3],"tower":[],"batch_norm":false}"#,
    r#"{"type":"ple","levels":2,"task_experts":1,"shared_experts":1,"expert_layers":[4],"gate":"softmax","gate_hidden":[],"tower":[3],"batch_norm":false}"#,
];

#[test]
fn flat_specs_write_back_the_json_they_were_read_from() {
    for json in FLAT {
        let spec: ModelSpec = serde_json::from_str(json).unwrap();
        assert!(matches!(spec, ModelSpec::Flat(_)), "{json}");
        spec.validate().unwrap();
        assert_eq!(serde_json::to_string(&spec).unwrap(), json);
    }
    let mfh = r#"{"type":"mfh","level1":{"type":"shared_bottom","layers":[6]},"level2":{"type":"ple","levels":2,"task_experts":1,"shared_experts":1,"expert_layers":[5],"gate":"softmax","gate_hidden":[]},"bottom":[],"fusion":"concat","condition":false,"tower":[4],"tower_overrides":{},"batch_norm":false,"routing":false}"#;
    let spec: ModelSpec = serde_json::from_str(mfh).unwrap();
    assert_eq!(serde_json::to_string(&spec).unwrap(), mfh);
}

#[test]
fn model_types_map_onto_unit_specs() {
    let sb: ModelSpec = serde_json::from_str(FLAT[1]).unwrap();
    let want = FlatSpec {
        switcher: UnitSpec::SharedBottom(SharedBottomShape { layers: vec![8, 4] }),
        tower: vec![2],
        batch_norm: true,
    };
    assert_eq!(sb, ModelSpec::Flat(want));
    let single: ModelSpec = serde_json::from_str(FLAT[0]).unwrap();
    let ModelSpec::Flat(f) = single else {
        panic!("single is flat")
    };
    assert_eq!(f.switcher, UnitSpec::Identity {});
    // The flat model's keys are its own: a unit table refuses them and vice versa.
    let unit = |s: &str| serde_json::from_str::<UnitSpec>(s);
    assert!(unit(r#"{"type":"shared_bottom","bottom":[8]}"#).is_err());
    assert!(unit(r#"{"type":"identity","tower":[2]}"#).is_err());
    assert!(unit(r#"{"type":"identity"}"#).is_ok());
    let model = |s: &str| serde_json::from_str::<ModelSpec>(s);
    assert!(model(r#"{"type":"shared_bottom","layers":[8],"tower":[]}"#).is_err());
    assert!(model(r#"{"type":"identity","tower":[2]}"#).is_err());
    let twice = r#"{"type":"single","tower":[2],"tower":[3]}"#;
    assert!(model(twice).unwrap_err().to_string().contains("duplicate"));
    let missing = model(r#"{"type":"mmoe","experts":2,"expert_layers":[3]}"#).unwrap_err();
    assert!(missing.to_string().contains("tower"), "{missing}");
    let typo = model(r#"{"type":"ple","level":2,"task_experts":1,"shared_experts":1,"expert_layers":[4],"tower":[]}"#)
        .unwrap_err();
    assert!(typo.to_string().contains("level"), "{typo}");
}

#[test]
fn a_tree_level_may_be_the_identity() {
    let spec: ModelSpec = toml::from_str(
        "type = \"hmtl\"\nsplit = \"user\"\ntower = [3]\nlevel1 = { type = \"identity\" }\n",
    )
    .unwrap();
    let g = GridShape {
        dims: vec![
            ("behaviour".into(), vec!["a".into(), "b".into()]),
            ("user".into(), vec!["new".into(), "old".into()]),
        ],
    };
    let mut net = build_model::<f64>(&spec, &g, 5, 1).unwrap();
    let text = net.describe();
    assert!(text.contains("level 1: identity → 2 outputs"), "{text}");
    let logits = net.forward(&[0.5; 15], &[0, 1, 1], 3, false);
    assert_eq!(logits.len(), 3 * 4);
}
