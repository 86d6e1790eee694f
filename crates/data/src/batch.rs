//! A columnar batch: what the reader hands to training and evaluation.

/// The IDs of one multi-valued feature for every row of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultiColumn {
    /// n + 1 offsets into `ids`.
    pub offsets: Vec<u32>,
    pub ids: Vec<u64>,
}

/// Rows of one split. Row-major per block; `n` rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub n: usize,
    /// n × (single-valued embedded features), hashed IDs.
    pub single: Vec<u64>,
    /// One per multi-valued feature.
    pub multi: Vec<MultiColumn>,
    /// n × (numeric features), transformed.
    pub dense: Vec<f32>,
    /// n × behaviours; NaN = missing label (masked).
    pub labels: Vec<f32>,
    /// Facet cell per row.
    pub cells: Vec<u32>,
    /// GAUC group key per row (hash of the group column; 0 when none is configured).
    pub groups: Vec<u64>,
    /// 0-based data-row index over the files the pass reads (all sources, or the files a
    /// partition clause keeps).
    pub rows: Vec<u64>,
    /// Row weights (`data.weight_column`); empty when none is configured.
    pub weights: Vec<f32>,
}

impl Batch {
    pub fn with_layout(n_single: usize, n_multi: usize) -> Batch {
        let _ = n_single;
        Batch {
            multi: vec![
                MultiColumn {
                    offsets: vec![0],
                    ids: Vec::new()
                };
                n_multi
            ],
            ..Batch::default()
        }
    }

    /// An empty batch of the same layout, with room for as many rows as `self` has.
    pub fn empty_like(&self) -> Batch {
        Batch {
            n: 0,
            single: Vec::with_capacity(self.single.len()),
            multi: self
                .multi
                .iter()
                .map(|m| {
                    let mut offsets = Vec::with_capacity(m.offsets.len());
                    offsets.push(0);
                    MultiColumn {
                        offsets,
                        ids: Vec::with_capacity(m.ids.len()),
                    }
                })
                .collect(),
            dense: Vec::with_capacity(self.dense.len()),
            labels: Vec::with_capacity(self.labels.len()),
            cells: Vec::with_capacity(self.cells.len()),
            groups: Vec::with_capacity(self.groups.len()),
            rows: Vec::with_capacity(self.rows.len()),
            weights: Vec::with_capacity(self.weights.len()),
        }
    }

    /// Drops every row from `n` on (`n ≤ self.n`).
    pub fn truncate_rows(&mut self, n: usize) {
        if n >= self.n {
            return;
        }
        let w = |v: usize| v / self.n;
        let (ws, wd, wl) = (
            w(self.single.len()),
            w(self.dense.len()),
            w(self.labels.len()),
        );
        self.single.truncate(n * ws);
        self.dense.truncate(n * wd);
        self.labels.truncate(n * wl);
        self.cells.truncate(n);
        self.groups.truncate(n);
        self.rows.truncate(n);
        self.weights.truncate(n.min(self.weights.len()));
        for m in &mut self.multi {
            m.offsets.truncate(n + 1);
            m.ids.truncate(m.offsets[n] as usize);
        }
        self.n = n;
    }

    /// Removes everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.n = 0;
        self.single.clear();
        self.dense.clear();
        self.labels.clear();
        self.cells.clear();
        self.groups.clear();
        self.rows.clear();
        self.weights.clear();
        for m in &mut self.multi {
            m.offsets.clear();
            m.offsets.push(0);
            m.ids.clear();
        }
    }

    /// Appends rows `idx` of `src` (same layout) to `self`.
    pub fn extend_from(&mut self, src: &Batch, idx: &[usize]) {
        let w = |v: usize| v.checked_div(src.n).unwrap_or(0);
        let (ws, wd, wl) = (w(src.single.len()), w(src.dense.len()), w(src.labels.len()));
        for &i in idx {
            self.single
                .extend_from_slice(&src.single[i * ws..(i + 1) * ws]);
            self.dense
                .extend_from_slice(&src.dense[i * wd..(i + 1) * wd]);
            self.labels
                .extend_from_slice(&src.labels[i * wl..(i + 1) * wl]);
            self.cells.push(src.cells[i]);
            self.groups.push(src.groups[i]);
            self.rows.push(src.rows[i]);
            if !src.weights.is_empty() {
                self.weights.push(src.weights[i]);
            }
            for (dst, s) in self.multi.iter_mut().zip(&src.multi) {
                let (a, b) = (s.offsets[i] as usize, s.offsets[i + 1] as usize);
                dst.ids.extend_from_slice(&s.ids[a..b]);
                dst.offsets.push(dst.ids.len() as u32);
            }
        }
        self.n += idx.len();
    }
}
