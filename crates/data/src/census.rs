//! `mfh prepare census`: the UCI Census-Income (KDD) benchmark of the MMoE and PLE papers
//! as an mfh config, with a fixed seeded 60 / 20 / 20 split written as row-index files so
//! that other tools (the peer scripts in `bench/peers/`) use the very same rows.
//!
//! Data: UCI Census-Income (KDD), CC BY 4.0; only the official test file (99,762 rows) is
//! available here, so the split is drawn from it.

use crate::error::DataError;
use crate::rows::{csv_error, csv_reader, open_maybe_gz};
use crate::SplitMix;
use mfh_config::CsvOptions;
use std::path::{Path, PathBuf};

pub const COLUMNS: [&str; 42] = [
    "age",
    "class_worker",
    "det_ind_code",
    "det_occ_code",
    "education",
    "wage_per_hour",
    "hs_college",
    "marital_stat",
    "major_ind_code",
    "major_occ_code",
    "race",
    "hisp_origin",
    "sex",
    "union_member",
    "unemp_reason",
    "full_or_part_emp",
    "capital_gains",
    "capital_losses",
    "stock_dividends",
    "tax_filer_stat",
    "region_prev_res",
    "state_prev_res",
    "det_hh_fam_stat",
    "det_hh_summ",
    "instance_weight",
    "mig_chg_msa",
    "mig_chg_reg",
    "mig_move_reg",
    "mig_same",
    "mig_prev_sunbelt",
    "num_emp",
    "fam_under_18",
    "country_father",
    "country_mother",
    "country_self",
    "citizenship",
    "own_or_self",
    "vet_question",
    "vet_benefits",
    "weeks_worked",
    "year",
    "income_50k",
];

const NUMERIC: [&str; 7] = [
    "age",
    "wage_per_hour",
    "capital_gains",
    "capital_losses",
    "stock_dividends",
    "num_emp",
    "weeks_worked",
];
/// Labels and the sampling weight: never inputs.
const NOT_INPUTS: [&str; 3] = ["marital_stat", "income_50k", "instance_weight"];

#[derive(Debug, Clone)]
pub struct CensusOptions {
    pub raw: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CensusReport {
    pub rows: u64,
    /// Rows in train, valid, test.
    pub split_rows: [usize; 3],
    pub config: PathBuf,
}

fn find_raw(dir: &Path) -> Result<PathBuf, DataError> {
    for name in ["census-income.test.gz", "census-income.test"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::file(
        dir,
        "io",
        "no census-income.test(.gz) in this folder",
    ))
}

pub fn prepare(opts: &CensusOptions) -> Result<CensusReport, DataError> {
    let raw = find_raw(&opts.raw)?;
    let csv = CsvOptions {
        header: false,
        columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
        trim: true,
        ..CsvOptions::default()
    };
    // Count rows (and check their width) to draw the split.
    let mut rdr = csv_reader(open_maybe_gz(&raw)?, &csv);
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(&raw, e)),
        }
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        if rec.len() != COLUMNS.len() {
            return Err(DataError {
                file: raw.clone(),
                line: rec.position().map(|p| p.line()),
                column: None,
                kind: "wrong column count",
                message: format!("{} cells, the Census file has {}", rec.len(), COLUMNS.len()),
            });
        }
        rows += 1;
    }
    let mut order: Vec<u64> = (0..rows).collect();
    let mut rng = SplitMix(opts.seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let n_train = order.len() * 6 / 10;
    let n_valid = order.len() * 2 / 10;
    let parts = [
        &order[..n_train],
        &order[n_train..n_train + n_valid],
        &order[n_train + n_valid..],
    ];
    std::fs::create_dir_all(&opts.out).map_err(|e| {
        DataError::file(
            &opts.out,
            "io",
            format!("cannot create the output folder: {e}"),
        )
    })?;
    for (name, part) in ["train", "valid", "test"].iter().zip(parts) {
        let mut sorted = part.to_vec();
        sorted.sort_unstable();
        let mut text = format!(
            "# {name} rows of census-income.test.gz (0-based), seed {}\n",
            opts.seed
        );
        for r in sorted {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        let p = opts.out.join(format!("{name}_rows.txt"));
        std::fs::write(&p, text)
            .map_err(|e| DataError::file(&p, "io", format!("cannot write: {e}")))?;
    }
    let data = opts.out.join("census-income.test.gz");
    if std::fs::canonicalize(&raw).ok() != std::fs::canonicalize(&data).ok() {
        std::fs::copy(&raw, &data)
            .map_err(|e| DataError::file(&data, "io", format!("cannot copy the data: {e}")))?;
    }
    let config = opts.out.join("census.toml");
    std::fs::write(&config, config_text())
        .map_err(|e| DataError::file(&config, "io", format!("cannot write: {e}")))?;
    Ok(CensusReport {
        rows,
        split_rows: [parts[0].len(), parts[1].len(), parts[2].len()],
        config,
    })
}

fn config_text() -> String {
    let mut s = String::from(
        "# UCI Census-Income (KDD), prepared by `mfh prepare census` (CC BY 4.0, UCI ML Repository).\n\
         # Tasks: income > 50K and never married (the MMoE paper's group 1); no facets.\n\
         # Splits: a fixed seeded 60/20/20 draw of rows, as row-index files beside this config.\n\n\
         [data]\nsources = [\"census-income.test.gz\"]\non_error = \"fail\"\n\n[data.csv]\nheader = false\ntrim = true\nmissing = [\"\", \"?\"]\ncolumns = [",
    );
    s.push_str(
        &COLUMNS
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str("]\n\n[splits]\ntrain = { rows = \"train_rows.txt\" }\nvalid = { rows = \"valid_rows.txt\" }\ntest = { rows = \"test_rows.txt\" }\n\n");
    for c in COLUMNS.iter().filter(|c| !NOT_INPUTS.contains(c)) {
        if NUMERIC.contains(c) {
            s.push_str(&format!("[[features]]\ntype = \"numeric\"\nname = \"{c}\"\ntransform = [\"log1p\", \"standardize\"]\n"));
        } else {
            s.push_str(&format!(
                "[[features]]\ntype = \"categorical\"\nname = \"{c}\"\ndim = 4\n"
            ));
        }
    }
    s.push_str(
        "\n[[behaviours]]\ntype = \"binary\"\nname = \"income\"\ncolumn = \"income_50k\"\npositive = [\"50000+.\"]\n\n\
         [[behaviours]]\ntype = \"binary\"\nname = \"marital\"\ncolumn = \"marital_stat\"\npositive = [\"Never married\"]\n\n\
         # Optional facet (a 2 × 2 grid): uncomment to split the tasks by sex.\n\
         # [[facets]]\n# name = \"sex\"\n# column = \"sex\"\n# groups = [{ name = \"female\", values = [\"Female\"] }]\n# default = \"male\"\n\n\
         [train]\nmodel = \"mmoe\"\nepochs = 10\nbatch_size = 1024\nlr = 0.001\nearly_stopping = { metric = \"auc\", patience = 2 }\n\n\
         # Sizes as in torch-rechub's Census examples.\n\
         [models.sb]\ntype = \"shared_bottom\"\nbottom = [16]\ntower = [8]\n\n\
         [models.mmoe]\ntype = \"mmoe\"\nexperts = 8\nexpert_layers = [16]\ntower = [8]\n\n\
         [models.ple]\ntype = \"ple\"\nlevels = 1\ntask_experts = 2\nshared_experts = 1\nexpert_layers = [16]\ntower = [8]\n",
    );
    s
}
