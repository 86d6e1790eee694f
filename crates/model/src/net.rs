//! [`MultiTaskNet`]: a switcher with one output per task and one tower per task, each
//! tower ending in a single logit, optionally with AITM transfers between towers
//! ([`Towers`]).

use crate::switcher::Switcher;
use crate::towers::Towers;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{ensure_len, gather_rows, with_name, Float, Module, Rng};

/// Groups row indices by cell into `groups` (one list per cell of `n_cells`, buffers
/// reused); rows whose cell is out of range are in none.
pub(crate) fn rows_by_cell(cells: &[u32], n_cells: usize, groups: &mut Vec<Vec<usize>>) {
    groups.resize(n_cells, Vec::new());
    for r in groups.iter_mut() {
        r.clear();
    }
    for (i, &c) in cells.iter().enumerate() {
        if let Some(r) = groups.get_mut(c as usize) {
            r.push(i);
        }
    }
}

/// Multi-task network; shapes: x n × n_in → logits n × n_tasks (row-major).
pub struct MultiTaskNet<T: Float> {
    switcher: Box<dyn Switcher<T>>,
    towers: Towers<T>,
    logits: Vec<T>,
    /// One task's column of the logit gradient, n × 1.
    d_tower: Vec<T>,
    n: usize,
    /// Cells of the task grid (task t serves cell `t % n_cells`); 1 when unknown.
    n_cells: usize,
    /// Eval passes given cells run each tower on its cell's rows (default on).
    cell_towers: bool,
    /// The last forward ran each tower on its own cell's rows only.
    routed: bool,
    /// Per cell, its rows (that forward's); one task's tower input gathered.
    cell_rows: Vec<Vec<usize>>,
    gathered: Vec<T>,
}

impl<T: Float> MultiTaskNet<T> {
    /// One tower per switcher output: ReLU layers of widths `tower_hidden` (BatchNorm
    /// after each when `batch_norm`), then a linear map to one logit.
    pub fn new(
        switcher: Box<dyn Switcher<T>>,
        tower_hidden: &[usize],
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        Self::with_transfers(switcher, tower_hidden, batch_norm, &[], rng)
            .expect("towers without transfers cannot be refused")
    }

    /// [`MultiTaskNet::new`] plus AITM transfers between task pairs `(s, t)` (s → t, task
    /// indices; see [`Towers`]). Every row runs every tower, so a pair shares its rows.
    pub fn with_transfers(
        switcher: Box<dyn Switcher<T>>,
        tower_hidden: &[usize],
        batch_norm: bool,
        transfers: &[(usize, usize)],
        rng: &mut Rng,
    ) -> Result<Self, String> {
        let hidden = vec![tower_hidden.to_vec(); switcher.n_outputs()];
        let towers = Towers::new(
            switcher.out_dim(),
            &hidden,
            batch_norm,
            transfers,
            &|t| format!("task {t}"),
            rng,
        )?;
        Ok(MultiTaskNet {
            switcher,
            towers,
            logits: Vec::new(),
            d_tower: Vec::new(),
            n: 0,
            n_cells: 1,
            cell_towers: true,
            routed: false,
            cell_rows: Vec::new(),
            gathered: Vec::new(),
        })
    }

    /// Tells the network that task t serves cell `t % n_cells` of the grid, so that an
    /// eval pass given the rows' cells ([`MultiTaskNet::forward_cells`]) runs each tower
    /// on its own cell's rows only. Ignored unless `n_cells` divides the task count.
    pub fn with_cells(mut self, n_cells: usize) -> Self {
        if n_cells > 0 && self.n_tasks().is_multiple_of(n_cells) {
            self.n_cells = n_cells;
        }
        self
    }

    /// See [`MultiTaskModel::set_cell_towers`](crate::MultiTaskModel::set_cell_towers).
    pub fn set_cell_towers(&mut self, on: bool) {
        self.cell_towers = on;
    }

    pub fn cell_towers(&self) -> bool {
        self.cell_towers
    }

    /// Eval-mode logits (n × n_tasks) where a row needs only its own cell's tasks: the
    /// switcher on every row, then each task's tower on the rows of its cell (gathered),
    /// the other tasks' logits 0 — what scoring reads, with a tower's work cut to its
    /// cell's share of the rows. Rows whose cell is out of range get no logits. Without
    /// cells ([`MultiTaskNet::with_cells`] not given) it is [`MultiTaskNet::forward`].
    pub fn forward_cells(&mut self, x: &[T], cells: &[u32], n: usize) -> &[T] {
        let nc = self.n_cells;
        if nc <= 1 || cells.len() < n {
            return self.forward(x, n, false);
        }
        assert!(
            x.len() >= n * self.n_in(),
            "MultiTaskNet::forward_cells: input too short"
        );
        self.n = n;
        self.routed = true;
        let t_count = self.n_tasks();
        self.switcher.forward(x, n, false);
        rows_by_cell(&cells[..n], nc, &mut self.cell_rows);
        let d = self.switcher.out_dim();
        let MultiTaskNet {
            switcher,
            towers,
            logits,
            cell_rows,
            gathered,
            ..
        } = self;
        let logits = ensure_len(logits, n * t_count);
        logits.fill(T::zero());
        for j in 0..t_count {
            let t = towers.order()[j];
            let rows = &cell_rows[t % nc];
            let m = rows.len();
            if m == 0 {
                continue;
            }
            let out = switcher.output(t);
            let input = if m == n {
                &out[..n * d]
            } else {
                gather_rows(out, d, rows, ensure_len(gathered, m * d));
                &gathered[..m * d]
            };
            let y = towers.forward_task(t, input, m, false);
            for (&r, &v) in rows.iter().zip(y) {
                logits[r * t_count + t] = v;
            }
        }
        &self.logits[..n * t_count]
    }

    pub fn n_in(&self) -> usize {
        self.switcher.in_dim()
    }

    pub fn n_tasks(&self) -> usize {
        self.towers.n_tasks()
    }

    pub fn switcher(&self) -> &dyn Switcher<T> {
        self.switcher.as_ref()
    }

    pub fn towers(&self) -> &Towers<T> {
        &self.towers
    }

    /// Logits for `n` rows of `x` (n × n_in), as n × n_tasks.
    pub fn forward(&mut self, x: &[T], n: usize, train: bool) -> &[T] {
        assert!(
            x.len() >= n * self.n_in(),
            "MultiTaskNet::forward: input too short"
        );
        self.n = n;
        self.routed = false;
        let t_count = self.n_tasks();
        self.switcher.forward(x, n, train);
        let logits = ensure_len(&mut self.logits, n * t_count);
        for j in 0..t_count {
            let t = self.towers.order()[j];
            let y = self
                .towers
                .forward_task(t, self.switcher.output(t), n, train);
            for (i, &v) in y.iter().enumerate() {
                logits[i * t_count + t] = v;
            }
        }
        &self.logits[..n * t_count]
    }

    /// Backward from `d_logits` (n × n_tasks) for the last forward: parameter gradients
    /// and `dx` (n × n_in) accumulate. After [`MultiTaskNet::forward_cells`] the towers
    /// first run again on every row (eval mode), as the backward pass needs.
    pub fn backward(&mut self, x: &[T], d_logits: &[T], dx: Option<&mut [T]>, n: usize) {
        if self.routed {
            self.forward(x, n, false);
        }
        let t_count = self.n_tasks();
        assert!(
            d_logits.len() >= n * t_count,
            "MultiTaskNet::backward: d_logits too short"
        );
        debug_assert_eq!(
            n, self.n,
            "MultiTaskNet::backward: batch differs from forward"
        );
        // Receivers before their sources, so a source's representation gradient is whole.
        for j in (0..t_count).rev() {
            let t = self.towers.order()[j];
            let dy = ensure_len(&mut self.d_tower, n);
            for (i, d) in dy.iter_mut().enumerate() {
                *d = d_logits[i * t_count + t];
            }
            let (input, d_input) = self.switcher.output_and_grad(t);
            self.towers.backward_task(t, input, dy, d_input, n);
        }
        self.switcher.backward(x, n, dx);
    }

    /// Adds the eval-mode forward to `g` (see [`crate::export`]) for the input `x`
    /// (n × n_in); returns the logits tensor's name (n × n_tasks).
    pub fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<String, String> {
        let outs = g.scoped("switcher", |g| self.switcher.export(g, x))?;
        let logits = self.towers.export(g, &outs)?;
        let refs: Vec<&str> = logits.iter().map(String::as_str).collect();
        Ok(g.concat(&refs, 1))
    }

    /// Short text tree of the parts with parameter counts.
    pub fn describe(&self) -> String {
        let tower_params = self.towers.tower_param_count();
        let transfer_params = self.towers.transfer_param_count();
        let total = self.switcher.param_count() + tower_params + transfer_params;
        let mut s = format!(
            "MultiTaskNet: {} inputs → {} task logits ({total} params)\n",
            self.n_in(),
            self.n_tasks()
        );
        for (i, line) in self.switcher.describe().iter().enumerate() {
            let head = if i == 0 { "switcher: " } else { "" };
            s.push_str(&format!("  {head}{line}\n"));
        }
        if self.n_tasks() > 0 {
            let dims: Vec<String> = self.towers.dims(0).iter().map(|d| d.to_string()).collect();
            let bn = if self.towers.has_batch_norm() {
                ", batch norm"
            } else {
                ""
            };
            s.push_str(&format!(
                "  towers: {} × {}{bn} ({tower_params} params)\n",
                self.n_tasks(),
                dims.join("→")
            ));
        }
        let pairs = self.towers.transfers();
        if !pairs.is_empty() {
            let list: Vec<String> = pairs.iter().map(|(a, b)| format!("{a}→{b}")).collect();
            s.push_str(&format!(
                "  AITM transfers: {} ({transfer_params} params)\n",
                list.join(", ")
            ));
        }
        s
    }
}

impl<T: Float> Module<T> for MultiTaskNet<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        with_name(prefix, format_args!("switcher."), |p| {
            self.switcher.visit_params(p, f)
        });
        self.towers.visit_params(prefix, f);
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        with_name(prefix, format_args!("switcher."), |p| {
            self.switcher.visit_buffers(p, f)
        });
        self.towers.visit_buffers(prefix, f);
    }
}
