//! The learning-rate schedule: linear warm-up, then constant, step decay or cosine.

use mfh_config::{ScheduleConfig, ScheduleKind};

/// Learning rate at `step` (0-based) for base rate `base` over `total` steps.
pub fn learning_rate(s: &ScheduleConfig, base: f64, step: u64, total: u64) -> f64 {
    if step < s.warmup_steps {
        return base * (step + 1) as f64 / s.warmup_steps as f64;
    }
    let after = step - s.warmup_steps;
    match s.kind {
        ScheduleKind::Constant => base,
        ScheduleKind::Step => base * s.gamma.powi((after / s.step_size.max(1)) as i32),
        ScheduleKind::Cosine => {
            let span = total.saturating_sub(s.warmup_steps).max(1);
            let t = (after as f64 / span as f64).min(1.0);
            let min = base * s.min_lr_ratio;
            min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn warmup_then_kinds() {
        let mut s = ScheduleConfig {
            warmup_steps: 4,
            ..Default::default()
        };
        assert_eq!(learning_rate(&s, 1.0, 0, 100), 0.25);
        assert_eq!(learning_rate(&s, 1.0, 3, 100), 1.0);
        assert_eq!(learning_rate(&s, 1.0, 50, 100), 1.0);
        s.kind = ScheduleKind::Step;
        s.step_size = 10;
        s.gamma = 0.5;
        assert_eq!(learning_rate(&s, 1.0, 4 + 25, 100), 0.25);
        s.kind = ScheduleKind::Cosine;
        s.min_lr_ratio = 0.1;
        assert!((learning_rate(&s, 1.0, 4, 104) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 54, 104) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 104, 104) - 0.1).abs() < 1e-12);
    }
}
