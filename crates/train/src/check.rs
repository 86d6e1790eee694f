//! `mfh check`: a config read against its data without training, and the model
//! section parsed into a spec.

use anyhow::{anyhow, Context, Result};
use mfh_config::Config;
use mfh_data::Pipeline;
use mfh_model::ModelSpec;

/// What `mfh check` prints: the resolved grid, features and splits.
pub struct CheckSummary {
    pub text: String,
}

/// Parses the model section `name` (or the default) into a spec.
pub fn model_spec(cfg: &Config, name: Option<&str>) -> Result<(String, ModelSpec)> {
    let (name, table) = cfg.model_section(name)?;
    let spec: ModelSpec =
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                anyhow!(
                    "{}: key `models.{name}`: {}",
                    cfg.source_file.display(),
                    e.message()
                )
            })?;
    let mut spec = spec;
    if let ModelSpec::Pepnet(p) = &mut spec {
        if p.priors.is_none() {
            p.priors = Some(id_features(cfg));
        }
    }
    Ok((name.to_string(), spec))
}

/// The categorical features read from the column a side table is joined on (the user
/// and item IDs of a log with user and item tables): PEPNet's default priors.
pub fn id_features(cfg: &Config) -> Vec<String> {
    let keys: Vec<&str> = cfg
        .data
        .side_tables
        .iter()
        .map(|t| t.join_column())
        .collect();
    cfg.features
        .iter()
        .filter_map(|f| match f {
            mfh_config::FeatureConfig::Categorical { name, column, .. } => {
                let col = column.as_deref().unwrap_or(name);
                keys.contains(&col).then(|| name.clone())
            }
            _ => None,
        })
        .collect()
}

/// Validates a config against its data without training.
pub fn check(cfg: &Config, count_rows: bool) -> Result<CheckSummary> {
    let mut p = Pipeline::new(cfg)?;
    let grid = cfg.grid();
    let mut s = String::new();
    use std::fmt::Write;
    writeln!(s, "config: {}", cfg.source_file.display())?;
    writeln!(
        s,
        "sources: {}",
        cfg.data
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    {
        let (_, all) = p.split_file_count(&cfg.train.train_split)?;
        let mut line = format!("  {all} source files");
        if !cfg.data.partitions.is_empty() {
            let parts: Vec<String> = cfg
                .data
                .partitions
                .iter()
                .map(|(k, t)| format!("{k} ({})", format!("{t:?}").to_lowercase()))
                .collect();
            line.push_str(&format!("; partition columns: {}", parts.join(", ")));
            for split in p.split_names() {
                let (n, _) = p.split_file_count(&split)?;
                if n < all {
                    line.push_str(&format!("; `{split}` reads {n}"));
                }
            }
        }
        writeln!(s, "{line}")?;
    }
    for t in &cfg.data.side_tables {
        writeln!(
            s,
            "side table `{}`: {} joined on {} = {}",
            t.name,
            t.path.display(),
            t.join_column(),
            t.key
        )?;
    }
    writeln!(
        s,
        "task grid: {} behaviours × {} cells = {} tasks",
        grid.n_behaviours(),
        grid.n_cells(),
        grid.n_tasks()
    )?;
    for (b, bin) in grid.behaviours.iter().zip(&grid.binary) {
        writeln!(
            s,
            "  behaviour {b} ({})",
            if *bin {
                "binary, logloss"
            } else {
                "regression, MSE"
            }
        )?;
    }
    for (f, vals) in &grid.facets {
        writeln!(s, "  facet {f}: {}", vals.join(" | "))?;
    }
    writeln!(s, "  cells: {}", grid.cell_names().join("; "))?;
    let l = p.layout();
    let emb_width: usize =
        l.single.iter().map(|f| f.2).sum::<usize>() + l.multi.iter().map(|f| f.2).sum::<usize>();
    writeln!(
        s,
        "features: {} embedded ({} multi-valued), {} numeric; network input width {}",
        l.single.len() + l.multi.len(),
        l.multi.len(),
        l.dense.len(),
        emb_width + l.dense.len()
    )?;
    for f in &cfg.features {
        let what = match f {
            mfh_config::FeatureConfig::Categorical { dim, .. } => format!("categorical, dim {dim}"),
            mfh_config::FeatureConfig::Multi {
                dim,
                separator,
                pooling,
                ..
            } => {
                format!("multi-valued (`{separator}`), {pooling:?} pooling, dim {dim}")
            }
            mfh_config::FeatureConfig::Numeric { transform, .. } => {
                format!("numeric {transform:?}")
            }
            mfh_config::FeatureConfig::Bucketized { dim, .. } => format!("bucketized, dim {dim}"),
        };
        writeln!(s, "  {} ← {}: {what}", f.name(), f.column())?;
    }
    for name in cfg.models.keys() {
        let (_, mut spec) = model_spec(cfg, Some(name))?;
        writeln!(s, "model `{name}`: {spec:?}")?;
        let copies = spec.embedding_copies(&mfh_artifact::grid_shape(&grid));
        // What the section names in the input (PEPNet's priors) must exist: bound as
        // training binds it, against the (empty) tables it would build.
        let emb = mfh_artifact::embedding_layer_wide(l, &cfg.train.embedding, 0, copies)?;
        mfh_artifact::bind_spec(&mut spec, &emb)
            .map_err(|e| anyhow!("{}: key `models.{name}`: {e:#}", cfg.source_file.display()))?;
        if copies > 1 {
            writeln!(
                s,
                "  embedding tables {copies} × their dim wide (shared + specific blocks): network input width {}",
                emb.width() + l.dense.len()
            )?;
        }
    }
    for (name, sp) in &cfg.splits {
        let how = sp
            .predicate
            .clone()
            .unwrap_or_else(|| format!("rows from {}", sp.rows.as_ref().unwrap().display()));
        if count_rows {
            let stats = p
                .fit(name)
                .with_context(|| format!("reading split `{name}`"))?;
            writeln!(s, "split {name}: {how}: {} rows", stats.rows_used)?;
            if stats.skipped.total() > 0 {
                write!(s, "{}", stats.skipped.report())?;
            }
        } else {
            writeln!(s, "split {name}: {how}")?;
        }
    }
    Ok(CheckSummary { text: s })
}
