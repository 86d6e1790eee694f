//! The synthetic workloads: their shape (the inputs of MMoE-ref: 26 categorical fields ×
//! dim 16, 13 dense, batch 1024), task grid and model section, and their data as the
//! trainer sees it.

use mfh_config::TaskGrid;
use mfh_data::Batch;

/// Categorical fields per row.
pub const FIELDS: usize = 26;
/// Embedding width of every field.
pub const DIM: usize = 16;
/// Numeric inputs per row.
pub const DENSE: usize = 13;
/// Rows per batch.
pub const BATCH: usize = 1024;

/// A named synthetic workload: the inputs of MMoE-ref with a task grid and a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 4 tasks, MMoE with 8 experts 429→256→128, towers 128→64→1.
    MmoeRef,
    /// 3 behaviours × 4 user groups × 4 item groups (48 tasks, 16 cells), MFH.
    MfhRef,
    /// 3 behaviours × 2 user groups × 2 item groups (12 tasks, 4 cells), MFH.
    MfhRef2x2,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::MmoeRef, Workload::MfhRef, Workload::MfhRef2x2];

    /// The name on the command line (`--workload mfh-ref-2x2`).
    pub fn arg_name(self) -> &'static str {
        match self {
            Workload::MmoeRef => "mmoe-ref",
            Workload::MfhRef => "mfh-ref",
            Workload::MfhRef2x2 => "mfh-ref-2x2",
        }
    }

    /// One line on the tasks and the model, for `--help`.
    pub fn about(self) -> &'static str {
        match self {
            Workload::MmoeRef => "4 tasks, MMoE with 8 experts 429→256→128, towers 128→64→1",
            Workload::MfhRef => {
                "3 behaviours × 4 user groups × 4 item groups (48 tasks, 16 cells), MFH"
            }
            Workload::MfhRef2x2 => {
                "3 behaviours × 2 user groups × 2 item groups (12 tasks, 4 cells), MFH"
            }
        }
    }

    /// The name in the figures (`MFH-ref 2×2 training: …`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::MmoeRef => "MMoE-ref",
            Workload::MfhRef => "MFH-ref",
            Workload::MfhRef2x2 => "MFH-ref 2×2",
        }
    }

    /// (behaviours, user groups, item groups).
    pub fn grid(self) -> (usize, usize, usize) {
        match self {
            Workload::MmoeRef => (4, 1, 1),
            Workload::MfhRef => (3, 4, 4),
            Workload::MfhRef2x2 => (3, 2, 2),
        }
    }

    /// The model section of the workload (MFH-ref: CGC units with 2 task + 2 shared
    /// experts, 429→256→128 at level 1 and 128→128 at level 2).
    pub fn model(self, routing: bool) -> String {
        match self {
            Workload::MmoeRef => {
                "type = \"mmoe\"\nexperts = 8\nexpert_layers = [256, 128]\ntower = [64]\n".into()
            }
            _ => format!(
                "type = \"mfh\"\ntrees = \"auto\"\ntower = [64]\nrouting = {routing}\n\
                 level1 = {{ type = \"cgc\", task_experts = 2, shared_experts = 2, expert_layers = [256, 128] }}\n\
                 level2 = {{ type = \"cgc\", task_experts = 2, shared_experts = 2, expert_layers = [128] }}\n"
            ),
        }
    }
}

/// A workload's raw rows, batch after batch, in the layout of the MFHBENC2 file: what
/// both mfh and the PyTorch peers read.
#[derive(Clone, Debug, PartialEq)]
pub struct RawData {
    pub batches: usize,
    pub behaviours: usize,
    pub user_groups: usize,
    pub item_groups: usize,
    /// IDs per categorical field.
    pub vocab: u64,
    /// [rows × FIELDS], each below `vocab`.
    pub ids: Vec<u32>,
    /// [rows × DENSE].
    pub dense: Vec<f32>,
    /// [rows × behaviours], 0 or 1.
    pub labels: Vec<f32>,
    /// [rows], below `user_groups`.
    pub user: Vec<u32>,
    /// [rows], below `item_groups`.
    pub item: Vec<u32>,
}

impl RawData {
    /// No rows yet, the shape of workload `w`.
    pub(crate) fn empty(w: Workload, batches: usize, vocab: u64) -> RawData {
        let (behaviours, user_groups, item_groups) = w.grid();
        RawData {
            batches,
            behaviours,
            user_groups,
            item_groups,
            vocab,
            ids: Vec::new(),
            dense: Vec::new(),
            labels: Vec::new(),
            user: Vec::new(),
            item: Vec::new(),
        }
    }

    /// The task grid: behaviours × user × item (a facet with one value is left out).
    pub fn task_grid(&self) -> TaskGrid {
        let facet =
            |name: &str, k: usize| (name.to_string(), (0..k).map(|g| format!("g{g}")).collect());
        let mut facets = Vec::new();
        if self.user_groups > 1 {
            facets.push(facet("user", self.user_groups));
        }
        if self.item_groups > 1 {
            facets.push(facet("item", self.item_groups));
        }
        TaskGrid {
            behaviours: (0..self.behaviours).map(|t| format!("task{t}")).collect(),
            binary: vec![true; self.behaviours],
            facets,
        }
    }

    /// Batches for the trainer: each field's raw ID hashed as `field:id`; cell = user ·
    /// item groups + item.
    pub fn to_batches(&self) -> Vec<Batch> {
        let nb = self.behaviours;
        (0..self.batches)
            .map(|k| {
                let mut b = Batch::with_layout(FIELDS, 0);
                b.n = BATCH;
                for i in k * BATCH..(k + 1) * BATCH {
                    for f in 0..FIELDS {
                        b.single.push(id_hash(f, self.ids[i * FIELDS + f] as u64));
                    }
                    b.dense
                        .extend_from_slice(&self.dense[i * DENSE..(i + 1) * DENSE]);
                    b.labels
                        .extend_from_slice(&self.labels[i * nb..(i + 1) * nb]);
                    b.cells
                        .push(self.user[i] * self.item_groups as u32 + self.item[i]);
                    b.groups.push(0);
                    b.rows.push(i as u64);
                }
                b
            })
            .collect()
    }
}

/// The hashed ID of raw ID `id` of field `f` (`f:id`), as the trainer looks it up.
pub(crate) fn id_hash(f: usize, id: u64) -> u64 {
    mfh_data::hash_value(format!("{f}:{id}").as_bytes())
}
