//! Data parallelism inside one process: with T product threads, a training batch is cut
//! into T row blocks and each block runs through its own copy of the dense network on
//! its own thread, with unthreaded kernels ([`mfh_nn::kernels::serial`]). The threads
//! then meet once per pass instead of at every product and elementwise loop, and no
//! operand is packed twice. The copies take the main network's parameters before a pass
//! whenever the owner has said they may have changed ([`DataParallel::params_changed`])
//! or a copy is new, and their gradients are added into the main network after the
//! backward pass, in block order, so a run stays deterministic for a fixed thread count.
//!
//! Only valid for networks whose training forward treats rows independently: a network
//! with buffers (batch-norm statistics) is never split.

use crate::model::MultiTaskModel;
use mfh_nn::Float;
use rayon::prelude::*;

/// Fewest rows a block gets; smaller batches run on the main network alone.
pub const MIN_BLOCK_ROWS: usize = 64;

/// One parameter tensor of a network: its values and gradient, `len` elements each.
/// Raw pointers, so that pieces of the same tensor in two networks can be handled on
/// different threads; only valid while the network stays borrowed.
#[derive(Clone, Copy)]
struct Tensor<T> {
    p: *mut T,
    g: *mut T,
    len: usize,
}
// SAFETY: the pointers are dereferenced only inside `DataParallel`'s methods, while the
// networks they point into are mutably borrowed, on disjoint element ranges.
unsafe impl<T> Send for Tensor<T> {}
unsafe impl<T> Sync for Tensor<T> {}

fn tensors<T: Float>(net: &mut dyn MultiTaskModel<T>) -> Vec<Tensor<T>> {
    let mut out = Vec::new();
    net.visit_params("", &mut |_, p, g| {
        out.push(Tensor {
            p: p.as_mut_ptr(),
            g: g.as_mut_ptr(),
            len: p.len().min(g.len()),
        })
    });
    out
}

/// Calls `f(tensor, lo, len)` over pieces of at most 2¹⁶ elements covering every
/// tensor, in parallel.
fn for_pieces<T: Float>(ts: &[Tensor<T>], f: impl Fn(usize, usize, usize) + Sync) {
    const PIECE: usize = 1 << 16;
    let pieces: Vec<(usize, usize, usize)> = ts
        .iter()
        .enumerate()
        .flat_map(|(t, x)| {
            (0..x.len.div_ceil(PIECE)).map(move |k| (t, k * PIECE, PIECE.min(x.len - k * PIECE)))
        })
        .collect();
    pieces
        .into_par_iter()
        .for_each(|(t, lo, len)| f(t, lo, len));
}

/// The extra copies of a network and the buffers of a split pass.
pub struct DataParallel<T: Float> {
    copies: Vec<Box<dyn MultiTaskModel<T>>>,
    /// Whether the network may be split (no buffers), decided on first use.
    splittable: Option<bool>,
    logits: Vec<T>,
    /// Row blocks of the last forward (1 = the main network ran alone).
    blocks: usize,
    /// Leading copies whose parameters equal the main network's.
    synced: usize,
}

impl<T: Float> Default for DataParallel<T> {
    fn default() -> Self {
        DataParallel {
            copies: Vec::new(),
            splittable: None,
            logits: Vec::new(),
            blocks: 1,
            synced: 0,
        }
    }
}

impl<T: Float> DataParallel<T> {
    /// Says the main network's parameters may have changed since the last pass: every
    /// copy takes them again before its next one. Whoever changes the parameters (an
    /// optimizer step, a load) must call this before the next forward.
    pub fn params_changed(&mut self) {
        self.synced = 0;
    }

    /// Row blocks for a batch of `n` rows on `main` with `t` threads (usually
    /// [`mfh_nn::kernels::threads`]): one per thread, each at least [`MIN_BLOCK_ROWS`];
    /// 1 when the network cannot be split.
    pub fn blocks_for(&mut self, main: &mut dyn MultiTaskModel<T>, n: usize, t: usize) -> usize {
        if t < 2 || n < 2 * MIN_BLOCK_ROWS {
            return 1;
        }
        let splittable = *self.splittable.get_or_insert_with(|| {
            let mut buffers = 0;
            main.visit_buffers("", &mut |_, _| buffers += 1);
            buffers == 0
        });
        if splittable {
            t.min(n / MIN_BLOCK_ROWS)
        } else {
            1
        }
    }

    /// Forward of `n` rows in `blocks` row blocks (from [`Self::blocks_for`]); `build`
    /// makes a network of the same architecture when a copy is missing. Returns the
    /// logits, `n × n_tasks`. Should `build` fail (it builds what already built `main`,
    /// so it should not), the main network runs the whole batch alone.
    #[allow(clippy::too_many_arguments)] // the model's forward plus the split
    pub fn forward<'a>(
        &'a mut self,
        main: &'a mut dyn MultiTaskModel<T>,
        build: &dyn Fn() -> Result<Box<dyn MultiTaskModel<T>>, String>,
        x: &[T],
        cells: &[u32],
        n: usize,
        train: bool,
        blocks: usize,
    ) -> &'a [T] {
        self.blocks = 1;
        while self.copies.len() < blocks.saturating_sub(1) {
            match build() {
                Ok(c) => self.copies.push(c),
                Err(_) => return main.forward(x, cells, n, train),
            }
        }
        if blocks <= 1 {
            return main.forward(x, cells, n, train);
        }
        self.blocks = blocks;
        // Copies not known to hold the main network's parameters take them.
        if self.synced < blocks - 1 {
            let main_t = tensors(main);
            let copies_t: Vec<Vec<Tensor<T>>> = self.copies[self.synced..blocks - 1]
                .iter_mut()
                .map(|c| tensors(c.as_mut()))
                .collect();
            for_pieces(&main_t, |t, lo, len| {
                for c in &copies_t {
                    // SAFETY: both networks are borrowed for this call and have the same
                    // architecture, so tensor t has the same length in each; pieces are
                    // disjoint ranges and the main network is only read here.
                    unsafe {
                        std::ptr::copy_nonoverlapping(main_t[t].p.add(lo), c[t].p.add(lo), len)
                    };
                }
            });
            self.synced = blocks - 1;
        }
        let (ni, nt) = (main.n_in(), main.n_tasks());
        let chunk = n.div_ceil(blocks);
        self.logits.resize(n * nt, T::zero());
        let mut nets: Vec<&mut dyn MultiTaskModel<T>> = Vec::with_capacity(blocks);
        nets.push(main);
        for c in self.copies.iter_mut() {
            nets.push(c.as_mut());
        }
        let work: Vec<_> = nets
            .into_iter()
            .zip(x[..n * ni].chunks(chunk * ni))
            .zip(cells[..n].chunks(chunk))
            .zip(self.logits.chunks_mut(chunk * nt))
            .collect();
        work.into_par_iter().for_each(|(((net, x), cells), out)| {
            let rows = cells.len();
            mfh_nn::kernels::serial(|| out.copy_from_slice(net.forward(x, cells, rows, train)));
        });
        &self.logits
    }

    /// Backward for the last [`Self::forward`]: parameter gradients accumulate in
    /// `main` (the copies' are added in block order), `dx` (n × n_in) accumulates.
    pub fn backward(
        &mut self,
        main: &mut dyn MultiTaskModel<T>,
        x: &[T],
        cells: &[u32],
        d_logits: &[T],
        dx: Option<&mut [T]>,
        n: usize,
    ) {
        let blocks = self.blocks;
        if blocks <= 1 {
            main.backward(x, cells, d_logits, dx, n);
            return;
        }
        let (ni, nt) = (main.n_in(), main.n_tasks());
        let chunk = n.div_ceil(blocks);
        let mut dxs: Vec<Option<&mut [T]>> = match dx {
            Some(d) => d[..n * ni].chunks_mut(chunk * ni).map(Some).collect(),
            None => (0..blocks).map(|_| None).collect(),
        };
        let main_ptr: &mut dyn MultiTaskModel<T> = main;
        let copies = &mut self.copies[..blocks - 1];
        {
            let mut nets: Vec<(&mut dyn MultiTaskModel<T>, bool)> = Vec::with_capacity(blocks);
            nets.push((&mut *main_ptr, false));
            for c in copies.iter_mut() {
                nets.push((c.as_mut(), true));
            }
            let work: Vec<_> = nets
                .into_iter()
                .zip(x[..n * ni].chunks(chunk * ni))
                .zip(cells[..n].chunks(chunk))
                .zip(d_logits[..n * nt].chunks(chunk * nt))
                .zip(dxs.iter_mut())
                .collect();
            work.into_par_iter()
                .for_each(|(((((net, copy), x), cells), dl), dx)| {
                    let rows = cells.len();
                    mfh_nn::kernels::serial(|| {
                        if copy {
                            net.zero_grad();
                        }
                        net.backward(x, cells, dl, dx.as_deref_mut(), rows)
                    });
                });
        }
        // Block order: main (block 0) already holds its gradients; add the others.
        let main_t = tensors(main_ptr);
        let copies_t: Vec<Vec<Tensor<T>>> =
            copies.iter_mut().map(|c| tensors(c.as_mut())).collect();
        for_pieces(&main_t, |t, lo, len| {
            // SAFETY: as in `forward`; pieces are disjoint, the copies only read.
            let dst = unsafe { std::slice::from_raw_parts_mut(main_t[t].g.add(lo), len) };
            for c in &copies_t {
                let src = unsafe { std::slice::from_raw_parts(c[t].g.add(lo), len) };
                for (a, &b) in dst.iter_mut().zip(src) {
                    *a += b;
                }
            }
        });
    }
}
