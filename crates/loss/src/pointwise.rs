//! Per-pair losses and their derivatives. They work in `f64` whatever the model's
//! scalar type, so a batch's sums lose nothing to `f32` rounding.

/// Bounds an ESMM product probability is clipped to before its logloss, so that
/// `ln p̂` and `ln(1 − p̂)` stay finite.
pub const PROB_MIN: f64 = 1e-7;
/// See [`PROB_MIN`].
pub const PROB_MAX: f64 = 1.0 - 1e-7;

/// Numerically stable logloss of a logit `z` against label `y`, and d loss / d z.
#[inline]
pub fn logloss_with_logit(z: f64, y: f64) -> (f64, f64) {
    let loss = z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
    (loss, sigmoid(z) - y)
}

/// Logloss of a probability `p`, clipped to [`PROB_MIN`, `PROB_MAX`], against `y`, and
/// d loss / d p. Where the clip is active the derivative is 0: it is the derivative of
/// the clipped function, which keeps analytic and finite-difference gradients equal.
#[inline]
pub fn logloss_with_prob(p: f64, y: f64) -> (f64, f64) {
    let pc = p.clamp(PROB_MIN, PROB_MAX);
    let loss = -(y * pc.ln() + (1.0 - y) * (-pc).ln_1p());
    let d = if (PROB_MIN..=PROB_MAX).contains(&p) {
        (p - y) / (p * (1.0 - p))
    } else {
        0.0
    };
    (loss, d)
}

/// Squared error of a regression output `z` against `y`, and d loss / d z.
#[inline]
pub fn squared_error(z: f64, y: f64) -> (f64, f64) {
    let r = z - y;
    (r * r, 2.0 * r)
}

/// The logistic function, evaluated without overflow for either sign of `z`.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}
