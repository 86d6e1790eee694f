//! Fusion: how a task's leaves from several trees become its tower's input. The leaves
//! are summed, or concatenated side by side, and with cell conditioning the row's cell
//! follows as a one-hot vector: `z = fuse(leaf_1, …, leaf_F) ⊕ one_hot(cell)`.
//! [`Fusion`] is the choice a tree model's spec makes; [`Fuse`] runs it.

use mfh_nn::Float;
use serde::{Deserialize, Serialize};

/// How a task's leaves from several trees are combined.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    #[default]
    Sum,
    Concat,
}

/// One task's tower input from its leaves; shapes: leaf i m × `widths[i]` → z m × z_dim.
#[derive(Clone, Debug)]
pub struct Fuse {
    fusion: Fusion,
    /// Per leaf: its width and its first column in z (0 for every leaf when summed).
    widths: Vec<usize>,
    offsets: Vec<usize>,
    /// Width of the fused leaves, then the cell one-hot when conditioning on `n_cells`.
    fused: usize,
    n_cells: Option<usize>,
}

impl Fuse {
    /// Fusion of leaves of these widths, with the cell one-hot of `n_cells` cells
    /// appended when `condition`. Summing needs leaves of one width.
    pub fn new(
        fusion: Fusion,
        widths: &[usize],
        condition: bool,
        n_cells: usize,
    ) -> Result<Self, String> {
        let first = widths.first().copied().unwrap_or(0);
        let (offsets, fused) = match fusion {
            Fusion::Sum => {
                if widths.iter().any(|&w| w != first) {
                    return Err(format!(
                        "the trees' leaves have different widths {widths:?}; sum fusion needs equal widths (use fusion = \"concat\")"
                    ));
                }
                (vec![0; widths.len()], first)
            }
            Fusion::Concat => {
                let offsets = widths.iter().scan(0, |at, &w| {
                    *at += w;
                    Some(*at - w)
                });
                (offsets.collect(), widths.iter().sum())
            }
        };
        Ok(Fuse {
            fusion,
            widths: widths.to_vec(),
            offsets,
            fused,
            n_cells: condition.then_some(n_cells),
        })
    }

    pub fn fusion(&self) -> Fusion {
        self.fusion
    }

    /// Whether the cell one-hot follows the fused leaves.
    pub fn conditions(&self) -> bool {
        self.n_cells.is_some()
    }

    /// Width of the tower input.
    pub fn z_dim(&self) -> usize {
        self.fused + self.n_cells.unwrap_or(0)
    }

    /// `z` (m × z_dim, overwritten) from the task's leaves, one per tree in order (each
    /// m × its width), and the cells of its m rows: leaves added into their columns in
    /// tree order, then the one-hot.
    pub fn forward<'a, T: Float>(
        &self,
        leaves: impl Iterator<Item = &'a [T]>,
        cells: impl Iterator<Item = u32>,
        m: usize,
        z: &mut [T],
    ) {
        let zd = self.z_dim();
        let z = &mut z[..m * zd];
        z.fill(T::zero());
        for ((leaf, &w), &at) in leaves.zip(&self.widths).zip(&self.offsets) {
            for j in 0..m {
                let dst = &mut z[j * zd + at..j * zd + at + w];
                for (d, &s) in dst.iter_mut().zip(&leaf[j * w..(j + 1) * w]) {
                    *d += s;
                }
            }
        }
        if self.n_cells.is_some() {
            for (j, c) in cells.take(m).enumerate() {
                z[j * zd + self.fused + c as usize] = T::one();
            }
        }
    }

    /// Adds leaf i's share of `dz` (m × z_dim) into its gradient `d_leaf` (m × width).
    pub fn backward<T: Float>(&self, i: usize, dz: &[T], m: usize, d_leaf: &mut [T]) {
        let (zd, w, at) = (self.z_dim(), self.widths[i], self.offsets[i]);
        for j in 0..m {
            let src = &dz[j * zd + at..j * zd + at + w];
            for (d, &s) in d_leaf[j * w..(j + 1) * w].iter_mut().zip(src) {
                *d += s;
            }
        }
    }
}
