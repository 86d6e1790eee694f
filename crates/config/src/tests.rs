use super::*;
use std::path::Path;

mod limits;
mod messages;

const GOOD: &str = r#"
[data]
sources = ["log.csv.gz"]
gauc_column = "user_id"
[[data.side_tables]]
name = "user"
path = "/abs/users.csv"
key = "user_id"

[splits]
train = { where = "date >= 20220428 and date <= 20220504" }
valid = { where = "date >= 20220505 && date <= 20220506" }
test = { rows = "test_rows.txt" }

[[features]]
type = "categorical"
name = "user_id"
dim = 8
[[features]]
type = "numeric"
name = "days"
column = "user.register_days"
transform = ["log1p", "standardize"]

[[behaviours]]
type = "binary"
name = "click"
column = "is_click"
[[behaviours]]
type = "regression"
name = "watch"
expr = "play_time_ms / duration_ms"
clip = [0.0, 3.0]

[[facets]]
name = "user"
column = "user.register_days"
thresholds = [365]
names = ["new", "old"]
[[facets]]
name = "item"
column = "prior_impressions"
thresholds = [9]
names = ["tail", "head"]

[models.mmoe]
type = "mmoe"
experts = 4
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("t.toml"), Path::new("/base"))
}

#[test]
fn good_config_parses_with_defaults_and_resolved_paths() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.data.sources[0], Path::new("/base/log.csv.gz"));
    assert_eq!(c.data.side_tables[0].path, Path::new("/abs/users.csv"));
    assert_eq!(
        c.splits["test"].rows.as_deref(),
        Some(Path::new("/base/test_rows.txt"))
    );
    assert_eq!(c.train.batch_size, 1024);
    // An object URL is not a path under the config's folder.
    let s3 = parse(&GOOD.replace("\"log.csv.gz\"", "\"s3://logs/day=1/*.csv.gz\"")).unwrap();
    assert_eq!(s3.data.sources[0], Path::new("s3://logs/day=1/*.csv.gz"));
    assert_eq!(c.train.embedding.optimizer, RowOptimizerKind::Adagrad);
    assert!(c.data.csv.header);
    assert_eq!(c.model_section(None).unwrap().0, "mmoe");
    let g = c.grid();
    assert_eq!(g.n_cells(), 4);
    assert_eq!(g.n_tasks(), 8);
    assert_eq!(g.cell_name(1), "user=new,item=head");
    assert_eq!(g.cell_values(2), vec![1, 0]);
    assert_eq!(g.cell_index(&[1, 0]), 2);
    assert_eq!(g.task_name(g.task(1, 3)), "watch[user=old,item=head]");
}

#[test]
fn resolved_config_round_trips_through_toml() {
    let c = parse(GOOD).unwrap();
    let text = c.to_toml_string();
    let back = Config::from_toml_str(&text, Path::new("x.toml"), Path::new("/elsewhere")).unwrap();
    assert_eq!(back.data, c.data);
    assert_eq!(back.features, c.features);
    assert_eq!(back.train, c.train);
    assert_eq!(back.models, c.models);
}

#[test]
fn zero_facets_is_one_cell() {
    let text = GOOD.split("[[facets]]").next().unwrap().to_string()
        + "[models.sb]\ntype='shared_bottom'\n[train]\nmodel='sb'\n";
    let c = parse(&text).unwrap();
    let g = c.grid();
    assert_eq!(g.n_cells(), 1);
    assert_eq!(g.n_tasks(), 2);
    assert_eq!(g.cell_name(0), "any");
}

fn err_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_key_is_named() {
    let e = err_of(&GOOD.replace("gauc_column", "gauc_colum"));
    assert!(e.contains("gauc_colum"), "{e}");
    assert!(e.contains("t.toml"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = err_of(&GOOD.replace("dim = 8", "dim = \"eight\""));
    assert!(e.contains("dim") || e.contains("line"), "{e}");
}

#[test]
fn overlapping_thresholds_are_refused() {
    let e = err_of(&GOOD.replace("thresholds = [9]", "thresholds = [9, 9]\nnames2=1"));
    assert!(e.contains("names2"), "{e}");
    let e = err_of(&GOOD.replace(
        "thresholds = [9]\nnames = [\"tail\", \"head\"]",
        "thresholds = [9, 5]\nnames = [\"a\", \"b\", \"c\"]",
    ));
    assert!(
        e.contains("facets[1].thresholds") && e.contains("increasing"),
        "{e}"
    );
}

#[test]
fn facet_names_must_match_thresholds() {
    let e = err_of(&GOOD.replace("names = [\"tail\", \"head\"]", "names = [\"tail\"]"));
    assert!(e.contains("facets[1].names"), "{e}");
}

#[test]
fn bad_split_predicate_is_named() {
    let e = err_of(&GOOD.replace("date >= 20220428 and", "date >>= 20220428 and"));
    assert!(e.contains("splits.train.where"), "{e}");
}

#[test]
fn missing_valid_split_is_named() {
    let e = err_of(&GOOD.replace("valid = {", "other = {"));
    assert!(e.contains("train.valid_split"), "{e}");
}

#[test]
fn bad_early_stopping_metric_is_named() {
    let e = err_of(&(GOOD.to_string() + "[train.early_stopping]\nmetric = \"like.auc\"\n"));
    assert!(e.contains("train.early_stopping.metric"), "{e}");
}

#[test]
fn unknown_model_section_is_named() {
    let c = parse(GOOD).unwrap();
    let e = c.model_section(Some("ple")).unwrap_err().to_string();
    assert!(e.contains("models.ple") && e.contains("mmoe"), "{e}");
}

#[test]
fn predicates_parse() {
    let p = Predicate::parse("date >= 20220428 and tab == \"a b\" && x != 3").unwrap();
    assert_eq!(p.clauses.len(), 3);
    assert_eq!(p.clauses[0].op, CmpOp::Ge);
    assert_eq!(p.clauses[1].value, Literal::Str("a b".into()));
    assert!(Predicate::parse("date").is_err());
    assert!(Predicate::parse("date >= ").is_err());
    assert!(Predicate::parse("a >= 1 and").is_err());
}

#[test]
fn expressions_evaluate() {
    let e = Expr::parse("play / (dur - 1) * 2 + -1").unwrap();
    let v = e.eval(&|c| if c == "play" { 6.0 } else { 4.0 });
    assert_eq!(v, 3.0);
    assert_eq!(e.columns(), vec!["play".to_string(), "dur".to_string()]);
    assert!(Expr::parse("a +").is_err());
    assert!(Expr::parse("(a").is_err());
    assert!(Expr::parse("a $ b").is_err());
    assert!(Expr::parse("a / 0").unwrap().eval(&|_| 1.0).is_infinite());
}

#[test]
fn threads_are_auto_by_default_a_count_or_auto_and_round_trip() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.train.threads, Threads::Auto);
    assert!(c.train.threads.resolve() >= 1);
    for (value, want) in [
        ("3", Threads::Count(3)),
        ("\"auto\"", Threads::Auto),
        ("\"AUTO\"", Threads::Auto),
    ] {
        let c = parse(&format!("{GOOD}\n[train]\nthreads = {value}\n")).unwrap();
        assert_eq!(c.train.threads, want, "{value}");
        let back = Config::from_toml_str(&c.to_toml_string(), Path::new("x.toml"), Path::new("/b"))
            .unwrap();
        assert_eq!(back.train.threads, want, "{value} after a round trip");
    }
    assert_eq!(Threads::Count(3).resolve(), 3);
    for bad in ["0", "-1", "\"many\"", "1.5"] {
        let e = err_of(&format!("{GOOD}\n[train]\nthreads = {bad}\n"));
        assert!(e.contains("threads"), "{bad}: {e}");
    }
    assert_eq!("auto".parse::<Threads>(), Ok(Threads::Auto));
    assert_eq!("4".parse::<Threads>(), Ok(Threads::Count(4)));
    assert!("0".parse::<Threads>().is_err() && "x".parse::<Threads>().is_err());
}

#[test]
fn relative_paths_resolve_to_absolute_ones() {
    // A config loaded from a relative folder names its files absolutely, so the copy a
    // model folder stores reads the same files from any working directory.
    let c = Config::from_toml_str(GOOD, Path::new("t.toml"), Path::new("runs/a")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert!(!c.data.sources.is_empty());
    for p in &c.data.sources {
        assert!(p.is_absolute(), "{}", p.display());
        assert!(p.starts_with(cwd.join("runs/a")), "{}", p.display());
    }
    for t in &c.data.side_tables {
        assert!(t.path.is_absolute(), "{}", t.path.display());
    }
    let back = Config::from_toml_str(&c.to_toml_string(), Path::new("x.toml"), Path::new("/else"))
        .unwrap();
    assert_eq!(back.data.sources, c.data.sources);
}

#[test]
fn side_table_names_are_file_names() {
    // A side table's name names its copy in the model folder (`tables/NAME.csv`).
    for bad in ["a/b", "/abs", "a\\b", "a.b", ""] {
        let text = GOOD.replacen("name = \"user\"", &format!("name = {bad:?}"), 1);
        assert!(text.contains(&format!("name = {bad:?}")), "{bad}");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("data.side_tables[0].name"), "{bad}: {e}");
    }
}

#[test]
fn partitions_are_typed_named_and_round_trip() {
    let with = |parts: &str| {
        GOOD.replacen(
            "gauc_column = \"user_id\"",
            &format!("gauc_column = \"user_id\"\npartitions = {parts}"),
            1,
        )
    };
    let c = parse(&with(
        r#"{ date = "int", scene = "string", score = "float" }"#,
    ))
    .unwrap();
    assert_eq!(c.data.partitions.len(), 3);
    assert_eq!(c.data.partitions["date"], PartitionType::Int);
    let back =
        Config::from_toml_str(&c.to_toml_string(), Path::new("x.toml"), Path::new("/b")).unwrap();
    assert_eq!(back.data.partitions, c.data.partitions);
    assert!(PartitionType::Int.admits("20220428") && !PartitionType::Int.admits("2022-04-28"));
    assert!(PartitionType::Float.admits("0.5") && !PartitionType::Float.admits("inf"));
    let e = parse(&with(r#"{ date = "day" }"#)).unwrap_err().to_string();
    assert!(e.contains("date"), "{e}");
    for bad in ["a=b", "a/b", "a.b"] {
        let e = parse(&with(&format!("{{ {bad:?} = \"int\" }}")))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("data.partitions.{bad}")), "{bad}: {e}");
    }
}

#[test]
fn precision_is_f32_by_default_bf16_when_asked_and_round_trips() {
    assert_eq!(parse(GOOD).unwrap().train.precision, Precision::F32);
    let c = parse(&format!("{GOOD}\n[train]\nprecision = \"bf16\"\n")).unwrap();
    assert_eq!(c.train.precision, Precision::Bf16);
    let back =
        Config::from_toml_str(&c.to_toml_string(), Path::new("x.toml"), Path::new("/b")).unwrap();
    assert_eq!(back.train.precision, Precision::Bf16);
    let e = err_of(&format!("{GOOD}\n[train]\nprecision = \"fp8\"\n"));
    assert!(e.contains("precision") && e.contains("fp8"), "{e}");
}
