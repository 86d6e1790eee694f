//! `mfh tune`: random search with successive halving over a model section's `[tune.NAME]`
//! space, the budget counted in training steps, selected on the comparison's selection
//! split (never on the split it reports).
//!
//! `trials` settings are drawn from the space with the seed. Rung 0 trains every one for
//! `max_steps / eta^(rungs - 1)` steps; each later rung keeps the best `1/eta` (rounded
//! up) and trains them from scratch for `eta` times as many steps; the last rung trains
//! for `max_steps`. Early stopping still applies, so a run may stop before its rung's
//! steps; the budget counts the steps actually trained. Every (trial, rung) result is
//! appended to `OUT/trials.jsonl` as it finishes (synced), so a rerun with the same
//! settings skips what is done and continues an interrupted run from its checkpoint. At
//! the end `OUT/best.toml` holds the best trial's settings as dotted overrides (what `mfh
//! compare --tuned` reads), `OUT/best_section.toml` the model section with them applied (to
//! paste into a config), `OUT/trials.md` every trial's values and `OUT/tune.json` the
//! summary with the budget. Each trial's model folder is removed once its result is kept.

use crate::runs::protocol;
use anyhow::{bail, Context, Result};
use mfh_artifact::model_dir::write_atomic;
use mfh_config::{Config, Domain};
use mfh_data::SplitMix;
use mfh_train::{train, TrainOptions};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `mfh tune` runs.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub model: String,
    pub trials: usize,
    pub out: PathBuf,
    pub seed: u64,
    /// Steps of the last rung.
    pub max_steps: u64,
    /// Each rung keeps 1/eta of the trials and trains them eta times longer.
    pub eta: usize,
    pub rungs: usize,
    pub progress: bool,
}

/// One (trial, rung) result, as kept in `trials.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrialResult {
    pub trial: usize,
    pub rung: usize,
    /// The trial's settings, each value as TOML text.
    pub params: Vec<(String, String)>,
    pub max_steps: u64,
    /// Steps trained.
    pub steps: u64,
    /// The selection metric's best value (None: undefined, ranked last).
    pub value: Option<f64>,
}

/// The search's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TuneSummary {
    pub model: String,
    pub seed: u64,
    pub trials: usize,
    pub eta: usize,
    pub rungs: usize,
    pub rung_steps: Vec<u64>,
    pub select_split: String,
    pub metric: String,
    /// Steps trained over every (trial, rung).
    pub budget_steps: u64,
    pub best_trial: usize,
    pub best_value: Option<f64>,
    pub best: Vec<(String, String)>,
}

/// One value of `d`, from the seeded stream.
fn draw(rng: &mut SplitMix, d: &Domain) -> toml::Value {
    match d {
        Domain::Choice(v) => v[rng.below(v.len())].clone(),
        Domain::Uniform(lo, hi) => {
            toml::Value::Float(four_digits(lo + (hi - lo) * rng.uniform()).clamp(*lo, *hi))
        }
        Domain::LogUniform(lo, hi) => toml::Value::Float(
            four_digits((lo.ln() + (hi.ln() - lo.ln()) * rng.uniform()).exp()).clamp(*lo, *hi),
        ),
        Domain::IntUniform(lo, hi) => {
            toml::Value::Integer(lo + rng.below((hi - lo + 1) as usize) as i64)
        }
    }
}

/// `x` to four significant digits (settings that read well in tables and TOML).
fn four_digits(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    let r = (x * scale).round() / scale;
    // Through text, so the value is the shortest decimal of those digits.
    format!("{r:.6e}").parse().unwrap_or(r)
}

/// The steps of each rung, the last `max_steps`.
pub fn rung_steps(max_steps: u64, eta: usize, rungs: usize) -> Vec<u64> {
    (0..rungs)
        .map(|j| (max_steps / (eta as u64).pow((rungs - 1 - j) as u32)).max(1))
        .collect()
}

/// Higher is better except for `loss`; undefined values rank last; ties go to the lower
/// trial.
fn ranked<'a>(mut r: Vec<&'a TrialResult>, metric: &str) -> Vec<&'a TrialResult> {
    let key = |t: &TrialResult| match t.value {
        Some(v) if v.is_finite() => {
            if metric == "loss" {
                v
            } else {
                -v
            }
        }
        _ => f64::INFINITY,
    };
    r.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.trial.cmp(&b.trial)));
    r
}

fn read_results(path: &Path) -> Result<Vec<TrialResult>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // A last line cut by a crash is dropped (that result is recomputed).
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == text.lines().count() => {}
            Err(e) => bail!("{}:{}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

fn append_result(path: &Path, r: &TrialResult) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let mut line = serde_json::to_string(r)?;
    line.push('\n');
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// The settings as dotted overrides (values parsed back from their TOML text).
pub fn overrides(params: &[(String, String)]) -> Result<Vec<(String, toml::Value)>> {
    params
        .iter()
        .map(|(k, v)| {
            let t: toml::Table = toml::from_str(&format!("v = {v}"))
                .with_context(|| format!("`{k}`: the value `{v}` is not TOML"))?;
            Ok((k.clone(), t["v"].clone()))
        })
        .collect()
}

/// Reads `DIR/best.toml`'s overrides (written by [`tune`]).
pub fn read_best(path: &Path) -> Result<Vec<(String, toml::Value)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let t: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
    let Some(toml::Value::Table(o)) = t.get("overrides") else {
        bail!("{}: no [overrides] table", path.display());
    };
    Ok(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Runs the search; see the module docs.
pub fn tune(cfg: &Config, o: &TuneOptions) -> Result<TuneSummary> {
    cfg.model_section(Some(&o.model))?;
    let space = cfg.tune_space(&o.model)?;
    if space.is_empty() {
        bail!(
            "{}: no `[tune.{}]` search space (see docs/config.md)",
            cfg.source_file.display(),
            o.model
        );
    }
    if o.trials == 0 || o.eta < 2 || o.rungs == 0 || o.max_steps == 0 {
        bail!("--trials, --rungs and --max-steps must be positive and --eta at least 2");
    }
    let (select, _report) = protocol(cfg)?;
    let steps = rung_steps(o.max_steps, o.eta, o.rungs);
    // Every trial's settings, drawn in order from the seed.
    let mut rng = SplitMix(o.seed);
    let trials: Vec<Vec<(String, String)>> = (0..o.trials)
        .map(|_| {
            space
                .iter()
                .map(|(k, d)| (k.clone(), draw(&mut rng, d).to_string()))
                .collect()
        })
        .collect();
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("{}: cannot create", o.out.display()))?;
    let log = o.out.join("trials.jsonl");
    let mut done = read_results(&log)?;
    for r in &done {
        if trials.get(r.trial) != Some(&r.params) || steps.get(r.rung) != Some(&r.max_steps) {
            bail!(
                "{} holds a search with other settings (trial {}, rung {}); give another --out or the same --seed, --trials, --max-steps, --eta, --rungs and space",
                log.display(),
                r.trial,
                r.rung
            );
        }
    }
    let metric = cfg.train.early_stopping.metric.clone();
    eprintln!(
        "tuning `{}`: {} trials, rungs of {:?} steps (eta {}), selected by {metric} on `{select}`",
        o.model, o.trials, steps, o.eta
    );
    let mut alive: Vec<usize> = (0..o.trials).collect();
    for (rung, &rs) in steps.iter().enumerate() {
        for &t in &alive {
            if done.iter().any(|r| r.trial == t && r.rung == rung) {
                continue;
            }
            let mut c = cfg
                .with_overrides(&overrides(&trials[t])?)
                .with_context(|| format!("trial {t}"))?;
            c.train.valid_split = select.clone();
            c.train.max_steps = rs;
            let dir = o.out.join("runs").join(format!("trial{t}-rung{rung}"));
            let summary = train(
                &c,
                &TrainOptions {
                    hooks: Default::default(),
                    tensorboard: None,
                    publish: None,
                    follow: None,
                    model: Some(o.model.clone()),
                    out: dir.join("model"),
                    seed: Some(cfg.train.seed),
                    progress: o.progress,
                    keep_checkpoints: false,
                    resume: true,
                    init_from: None,
                },
            )
            .with_context(|| format!("trial {t}, rung {rung}"))?;
            let r = TrialResult {
                trial: t,
                rung,
                params: trials[t].clone(),
                max_steps: rs,
                steps: summary.steps,
                value: summary.best_value,
            };
            eprintln!(
                "trial {t} rung {rung}: {} steps, {metric} {}  ({})",
                r.steps,
                r.value.map_or("-".into(), |v| format!("{v:.5}")),
                r.params
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            append_result(&log, &r)?;
            done.push(r);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let here: Vec<&TrialResult> = done.iter().filter(|r| r.rung == rung).collect();
        let keep = alive.len().div_ceil(o.eta).max(1);
        alive = ranked(here, &metric)
            .into_iter()
            .filter(|r| alive.contains(&r.trial))
            .take(keep)
            .map(|r| r.trial)
            .collect();
    }
    let last: Vec<&TrialResult> = done.iter().filter(|r| r.rung == o.rungs - 1).collect();
    let best = ranked(last, &metric)[0].clone();
    let summary = TuneSummary {
        model: o.model.clone(),
        seed: o.seed,
        trials: o.trials,
        eta: o.eta,
        rungs: o.rungs,
        rung_steps: steps.clone(),
        select_split: select.clone(),
        metric: metric.clone(),
        budget_steps: done.iter().map(|r| r.steps).sum(),
        best_trial: best.trial,
        best_value: best.value,
        best: best.params.clone(),
    };
    write_outputs(&o.out, &summary, &done, &trials)?;
    write_section(cfg, &o.out, &summary)?;
    Ok(summary)
}

/// `OUT/best_section.toml`: the model section with the best settings applied, and the
/// tuned `train` keys — what to paste into a config.
fn write_section(cfg: &Config, out: &Path, s: &TuneSummary) -> Result<()> {
    let tuned = cfg.with_overrides(&overrides(&s.best)?)?;
    let mut doc = toml::Table::new();
    let mut models = toml::Table::new();
    models.insert(
        s.model.clone(),
        toml::Value::Table(tuned.models[&s.model].clone()),
    );
    doc.insert("models".into(), toml::Value::Table(models));
    for (k, v) in overrides(&s.best)? {
        if k.starts_with("train.") {
            mfh_config::set_dotted(&mut doc, &k, v).map_err(anyhow::Error::msg)?;
        }
    }
    let text = format!(
        "# mfh tune: `{}`'s best setting (trial {}), as a config section to paste.\n{}",
        s.model,
        s.best_trial,
        toml::to_string(&doc)?
    );
    write_atomic(out, "best_section.toml", text.as_bytes())
}

fn write_outputs(
    out: &Path,
    s: &TuneSummary,
    done: &[TrialResult],
    trials: &[Vec<(String, String)>],
) -> Result<()> {
    let mut best = format!(
        "# mfh tune: model `{}`, trial {} of {} (seed {}), {} {} on `{}`; budget {} training steps.\n# `mfh compare --tuned DIR` applies these overrides to `{}`'s runs.\n[overrides]\n",
        s.model,
        s.best_trial,
        s.trials,
        s.seed,
        s.metric,
        s.best_value.map_or("-".into(), |v| format!("{v:.5}")),
        s.select_split,
        s.budget_steps,
        s.model
    );
    for (k, v) in &s.best {
        best.push_str(&format!("{} = {v}\n", toml::Value::String(k.clone())));
    }
    write_atomic(out, "best.toml", best.as_bytes())?;
    let mut md = format!(
        "# Tuning `{}`: {} trials, rungs of {:?} steps, {} on `{}`; budget {} steps\n\n| trial | {} |",
        s.model,
        s.trials,
        s.rung_steps,
        s.metric,
        s.select_split,
        s.budget_steps,
        trials[0].iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(" | ")
    );
    for (j, n) in s.rung_steps.iter().enumerate() {
        md.push_str(&format!(" rung {j} ({n} steps) |"));
    }
    md.push_str(&format!(
        "\n|---|{}\n",
        "---|".repeat(trials[0].len() + s.rung_steps.len())
    ));
    for (t, params) in trials.iter().enumerate() {
        let mark = if t == s.best_trial { " **best**" } else { "" };
        md.push_str(&format!("| {t}{mark} | "));
        md.push_str(
            &params
                .iter()
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
                .join(" | "),
        );
        md.push_str(" |");
        for j in 0..s.rung_steps.len() {
            let cell =
                done.iter()
                    .find(|r| r.trial == t && r.rung == j)
                    .map_or(String::new(), |r| {
                        format!(
                            "{} ({} steps)",
                            r.value.map_or("-".into(), |v| format!("{v:.4}")),
                            r.steps
                        )
                    });
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    write_atomic(out, "trials.md", md.as_bytes())?;
    write_atomic(
        out,
        "tune.json",
        serde_json::to_string_pretty(s)?.as_bytes(),
    )?;
    Ok(())
}
