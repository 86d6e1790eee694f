//! Row gathers for cell routing: a part of a network that runs on some rows of a batch
//! only gathers those rows into a compact buffer ([`gather_rows`]) and adds its input
//! gradient back at the rows they came from ([`scatter_add_rows`]).
//!
//! Rows are `w` wide and row-major; `rows[j]` names the batch row behind compact row j.

use crate::Float;

/// `dst[j, :] = src[rows[j], :]` for rows of width `w`.
pub fn gather_rows<T: Float>(src: &[T], w: usize, rows: &[usize], dst: &mut [T]) {
    for (j, &r) in rows.iter().enumerate() {
        dst[j * w..(j + 1) * w].copy_from_slice(&src[r * w..(r + 1) * w]);
    }
}

/// `dst[rows[j], :] += src[j, :]` for rows of width `w`, in order of j.
pub fn scatter_add_rows<T: Float>(src: &[T], w: usize, rows: &[usize], dst: &mut [T]) {
    for (j, &r) in rows.iter().enumerate() {
        for (d, &s) in dst[r * w..(r + 1) * w]
            .iter_mut()
            .zip(&src[j * w..(j + 1) * w])
        {
            *d += s;
        }
    }
}
