//! `mfh bench train --threads 1,2,4`: one run's medians, and the runs side by side.

use crate::workload::Workload;

/// Milliseconds per training step by phase, in the order the step runs them.
pub(crate) type PhaseMs = Vec<(&'static str, f64)>;

/// One `bench train` run's medians.
#[derive(Default)]
pub(crate) struct Figures {
    pub threads: usize,
    /// Training samples/s (none with --infer-only).
    pub training: Option<f64>,
    /// Inference samples/s, batch 1024.
    pub inference: f64,
    /// Milliseconds per training step by phase.
    pub phases: PhaseMs,
}

/// The runs side by side: rates, their efficiency against the first run's rate per
/// thread, and each phase's milliseconds per step (a phase that does not fall as threads
/// rise is serial). `bench/compare.sh` reads this table.
pub(crate) fn scaling_table(w: Workload, figs: &[Figures]) {
    let base = &figs[0];
    let eff = |rate: f64, base_rate: f64, t: usize| {
        100.0 * rate / (base_rate * t as f64 / base.threads as f64)
    };
    outln!(
        "\n{} scaling (medians; efficiency = rate / (threads × first run's rate per thread)):",
        w.name()
    );
    let phase_names: Vec<&str> = base.phases.iter().map(|(n, _)| *n).collect();
    let mut head =
        "| threads | training samples/s | eff. | inference samples/s | eff. |".to_string();
    for n in &phase_names {
        head.push_str(&format!(" {n} ms |"));
    }
    outln!("{head}");
    outln!("|{}", "---:|".repeat(5 + phase_names.len()));
    for f in figs {
        let train = match (f.training, base.training) {
            (Some(r), Some(b)) => format!("{r:.0} | {:.0} %", eff(r, b, f.threads)),
            _ => "- | -".into(),
        };
        let mut line = format!(
            "| {} | {train} | {:.0} | {:.0} % |",
            f.threads,
            f.inference,
            eff(f.inference, base.inference, f.threads)
        );
        for n in &phase_names {
            match f.phases.iter().find(|(m, _)| m == n) {
                Some((_, ms)) => line.push_str(&format!(" {ms:.1} |")),
                None => line.push_str(" - |"),
            }
        }
        outln!("{line}");
    }
}
