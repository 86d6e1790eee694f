//! Finite-difference gradient checks (central differences) for modules and inputs,
//! used by the tests of this crate and of the model crates.

use crate::module::Module;

/// Mixed tolerance: `|a − b| ≤ atol + rtol·max(|a|, |b|)`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            atol: 1e-6,
            rtol: 1e-5,
        }
    }
}

/// Step of the central differences.
pub const EPS: f64 = 1e-6;

/// Compares analytic and numeric gradients; the error names the first mismatch.
pub fn compare(
    name: &str,
    analytic: &[f64],
    numeric: &[f64],
    tol: Tolerance,
) -> Result<(), String> {
    if analytic.len() != numeric.len() {
        return Err(format!(
            "{name}: {} analytic vs {} numeric",
            analytic.len(),
            numeric.len()
        ));
    }
    for (i, (&a, &b)) in analytic.iter().zip(numeric).enumerate() {
        // Written so that a NaN on either side fails the check.
        let within = (a - b).abs() <= tol.atol + tol.rtol * a.abs().max(b.abs());
        if !within {
            return Err(format!("{name}[{i}]: analytic {a:e} vs numeric {b:e}"));
        }
    }
    Ok(())
}

/// Central-difference gradient of `loss` w.r.t. every entry of `x`.
pub fn numeric_grad(x: &mut [f64], mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut g = vec![0.0; x.len()];
    for i in 0..x.len() {
        let orig = x[i];
        x[i] = orig + EPS;
        let lp = loss(x);
        x[i] = orig - EPS;
        let lm = loss(x);
        x[i] = orig;
        g[i] = (lp - lm) / (2.0 * EPS);
    }
    g
}

/// Adds `delta` to element `elem` of the `slice`-th parameter slice of `module`.
fn nudge<M: Module<f64> + ?Sized>(module: &mut M, slice: usize, elem: usize, delta: f64) {
    let mut k = 0;
    module.visit_params("", &mut |_, p, _| {
        if k == slice {
            p[elem] += delta;
        }
        k += 1;
    });
}

/// Checks the gradients currently accumulated in `module` (from one backward of
/// `loss`, after `zero_grad`) against central differences of `loss`, parameter by
/// parameter. `loss` must run a full forward and return the scalar.
pub fn check_module<M: Module<f64> + ?Sized>(
    module: &mut M,
    mut loss: impl FnMut(&mut M) -> f64,
    tol: Tolerance,
) -> Result<(), String> {
    let mut analytic: Vec<(String, Vec<f64>)> = Vec::new();
    module.visit_params("", &mut |name, _, g| {
        analytic.push((name.to_string(), g.to_vec()))
    });
    for (s, (name, grad)) in analytic.iter().enumerate() {
        let mut numeric = vec![0.0; grad.len()];
        for (j, num) in numeric.iter_mut().enumerate() {
            nudge(module, s, j, EPS);
            let lp = loss(module);
            nudge(module, s, j, -2.0 * EPS);
            let lm = loss(module);
            nudge(module, s, j, EPS);
            *num = (lp - lm) / (2.0 * EPS);
        }
        compare(name, grad, &numeric, tol)?;
    }
    Ok(())
}
