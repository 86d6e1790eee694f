//! The [`Module`] trait: uniform access to a model's parameters, gradients and
//! non-trained buffers, used by optimisers, checkpoints and gradient checks.

use crate::Float;
use std::fmt::Write;

/// Something with trainable parameters.
///
/// Names are dotted paths (`"experts.3.layer1.w"`); `prefix` is either empty or ends
/// with `'.'`, and each module appends its own parts. Visit order is deterministic and
/// is the order optimiser state is kept in.
pub trait Module<T: Float> {
    /// Calls `f(name, params, grads)` for every parameter slice.
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T]));

    /// Calls `f(name, values)` for every non-trained state slice (e.g. batch-norm
    /// running statistics). None by default.
    fn visit_buffers(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut [T])) {}

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        self.visit_params("", &mut |_, _, g| g.fill(T::zero()));
    }

    /// Total number of trainable scalars.
    fn num_params(&mut self) -> usize {
        let mut total = 0;
        self.visit_params("", &mut |_, p, _| total += p.len());
        total
    }
}

/// Calls `f(prefix + suffix)` building the name in a stack buffer when it fits, so the
/// per-step parameter walks of the optimiser do not allocate.
pub fn with_name<R>(prefix: &str, suffix: std::fmt::Arguments<'_>, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = StackStr {
        bytes: [0; 160],
        len: 0,
    };
    if buf.write_str(prefix).is_ok() && buf.write_fmt(suffix).is_ok() {
        // Only whole `&str`s were copied in, so the bytes are valid UTF-8.
        let s = std::str::from_utf8(&buf.bytes[..buf.len]).unwrap_or_default();
        f(s)
    } else {
        f(&format!("{prefix}{suffix}"))
    }
}

struct StackStr {
    bytes: [u8; 160],
    len: usize,
}

impl Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
