//! Every cross-key check's key and message, word for word: the schema's checks live in
//! one module per section, and users (and `crates/cli/tests/errors.rs`) read these texts.

use super::{err_of, GOOD};

/// GOOD with `new` in place of the first `old`, which must be there.
fn with(old: &str, new: &str) -> String {
    assert!(GOOD.contains(old), "GOOD has no {old:?}");
    GOOD.replacen(old, new, 1)
}

/// GOOD with the text from the first `from` up to (not including) the next `to` removed.
fn without(from: &str, to: &str) -> String {
    let a = GOOD.find(from).expect("start");
    let b = a + GOOD[a..].find(to).expect("end");
    format!("{}{}", &GOOD[..a], &GOOD[b..])
}

fn more(extra: &str) -> String {
    format!("{GOOD}\n{extra}\n")
}

const GAUC: &str = "gauc_column = \"user_id\"";
const SPLITS: &str = "\n[splits]";
const CLICK: &str = "column = \"is_click\"";
const DAYS: &str = "[[features]]\ntype = \"numeric\"";

fn cases() -> Vec<(String, &'static str)> {
    vec![
        (with("sources = [\"log.csv.gz\"]", "sources = []"), "t.toml: key `data.sources`: names no file"),
        (with(GAUC, "gauc_column = \"user_id\"\ncsv = { delimiter = \";;\" }"), "t.toml: key `data.delimiter`: must be a single byte character"),
        (with(GAUC, "gauc_column = \"user_id\"\ncsv = { header = false }"), "t.toml: key `data.columns`: a headerless file (header = false) needs its column names"),
        (with("key = \"user_id\"", "key = \"user_id\"\ncsv = { delimiter = \"ab\" }"), "t.toml: key `data.side_tables[0].delimiter`: must be a single byte character"),
        (with(SPLITS, "[[data.side_tables]]\nname = \"user\"\npath = \"u.csv\"\nkey = \"k\"\n[splits]"), "t.toml: key `data.side_tables[1].name`: side table `user` is defined twice"),
        (with("test = { rows", "test = { where = \"a == 1\", rows"), "t.toml: key `splits.test`: give either `where` or `rows`, not both"),
        (with("test = { rows = \"test_rows.txt\" }", "test = {}"), "t.toml: key `splits.test`: needs `where` (a predicate) or `rows` (a file)"),
        (with("train = {", "tr = {"), "t.toml: key `train.train_split`: names split `train`, but [splits] defines: test, tr, valid"),
        (more("[compare]\nselect = \"nope\""), "t.toml: key `compare.select`: names split `nope`, but [splits] defines: test, train, valid"),
        (more("[train.embedding]\nl1 = -1.0"), "t.toml: key `train.embedding.l1`: -1 is not a finite non-negative number"),
        (more("[train.embedding]\nftrl_beta = nan"), "t.toml: key `train.embedding.ftrl_beta`: NaN is not a finite non-negative number"),
        (more("[train.embedding]\nevict_every = 0\nmax_rows = 5"), "t.toml: key `train.embedding.evict_every`: must be at least 1 when ttl_steps or max_rows is set"),
        (with(CLICK, "column = \"is_click\"\nnegative_rate = 0.0"), "t.toml: key `behaviours[0].negative_rate`: 0 is not in (0, 1]"),
        (with("name = \"days\"", "name = \"user_id\""), "t.toml: key `features[1].name`: feature `user_id` is defined twice"),
        (with("dim = 8", "dim = 0"), "t.toml: key `features[0].dim`: must be at least 1"),
        (with(DAYS, "[[features]]\ntype = \"categorical\"\nname = \"u2\"\ntable = \"user_id\"\ndim = 4\n[[features]]\ntype = \"numeric\""), "t.toml: key `features[1].dim`: table `user_id` is shared with dim 8, this feature says 4"),
        (with(DAYS, "[[features]]\ntype = \"multi\"\nname = \"tags\"\ndim = 4\nseparator = \";;\"\n[[features]]\ntype = \"numeric\""), "t.toml: key `features[1].separator`: must be a single byte character"),
        (with("transform = [", "fill = inf\ntransform = ["), "t.toml: key `features[1].fill`: must be a finite number"),
        (with(DAYS, "[[features]]\ntype = \"bucketized\"\nname = \"b\"\ndim = 4\n[[features]]\ntype = \"numeric\""), "t.toml: key `features[1]`: needs `boundaries` or `quantiles`"),
        (with(DAYS, "[[features]]\ntype = \"bucketized\"\nname = \"b\"\ndim = 4\nquantiles = 4\nboundaries = [1.0]\n[[features]]\ntype = \"numeric\""), "t.toml: key `features[1]`: give either `boundaries` or `quantiles`, not both"),
        (with(DAYS, "[[features]]\ntype = \"bucketized\"\nname = \"b\"\ndim = 4\nquantiles = 1\n[[features]]\ntype = \"numeric\""), "t.toml: key `features[1].quantiles`: must be at least 2"),
        (with(DAYS, "[[features]]\ntype = \"bucketized\"\nname = \"b\"\ndim = 4\nboundaries = [2.0, 1.0]\n[[features]]\ntype = \"numeric\""), "t.toml: key `features[1].boundaries`: must be finite and strictly increasing"),
        (without("[[features]]", "[[behaviours]]"), "t.toml: key `features`: the config defines no feature"),
        (format!("behaviours = []\n{}", without("[[behaviours]]", "[[facets]]")), "t.toml: key `behaviours`: the config defines no behaviour"),
        (with("name = \"watch\"", "name = \"click\""), "t.toml: key `behaviours[1].name`: behaviour name `click` is empty or defined twice"),
        (with("name = \"watch\"", "name = \"\""), "t.toml: key `behaviours[1].name`: behaviour name `` is empty or defined twice"),
        (with("expr = \"play_time_ms / duration_ms\"", "expr = \"play_time_ms / \""), "t.toml: key `behaviours[1].expr`: expression ends too early"),
        (with("clip = [0.0, 3.0]", "clip = [3.0, 0.0]"), "t.toml: key `behaviours[1].clip`: must be [low, high] with low < high"),
        (more("[train.loss]\nuncertainty = true"), "t.toml: key `train.loss.uncertainty`: uncertainty weighting weighs each task's mean loss: set `reduction = \"task_mean\"`"),
        (more("[[train.loss.funnels]]\nkind = \"esmm\"\nfrom = \"view\"\nto = \"click\""), "t.toml: key `train.loss.funnels[0].from`: names no behaviour: `view`"),
        (more("[[train.loss.funnels]]\nkind = \"esmm\"\nfrom = \"click\"\nto = \"watch\""), "t.toml: key `train.loss.funnels[0].to`: `watch` is not a binary behaviour"),
        (more("[[train.loss.funnels]]\nkind = \"esmm\"\nfrom = \"click\"\nto = \"click\""), "t.toml: key `train.loss.funnels[0].to`: `click` is the end of another funnel, or of itself"),
        (more("[train.loss]\nweights = { like = 2.0 }"), "t.toml: key `train.loss.weights.like`: names no behaviour"),
        (with("name = \"item\"", "name = \"user\""), "t.toml: key `facets[1].name`: facet `user` is defined twice"),
        (with("thresholds = [9]\nnames = [\"tail\", \"head\"]", ""), "t.toml: key `facets[1].thresholds`: a facet needs either `thresholds` with `names`, or `groups`"),
        (with("names = [\"tail\", \"head\"]", "names = [\"tail\", \"head\"]\ndefault = \"mid\""), "t.toml: key `facets[1].default`: `mid` is not one of the names"),
        (with("thresholds = [9]\nnames = [\"tail\", \"head\"]", "groups = [{ name = \"a\", values = [\"1\"] }, { name = \"b\", values = [\"1\"] }]"), "t.toml: key `facets[1].groups`: value `1` is in both `a` and `b`"),
        (with("names = [\"tail\", \"head\"]", "names = [\"tail\", \"tail\"]"), "t.toml: key `facets[1].names`: value names must be non-empty and distinct"),
        (with("thresholds = [9]\nnames = [\"tail\", \"head\"]", "groups = [{ name = \"a\", values = [\"1\"] }]"), "t.toml: key `facets[1].names`: a facet needs at least two values"),
        (more("[train.early_stopping]\nmetric = \"like.auc\""), "t.toml: key `train.early_stopping.metric`: `like.auc` is not `auc`, `loss` or `<behaviour>.<auc|gauc|logloss|mse>` with a behaviour of: click, watch"),
        (more("[train]\nbatch_size = 0"), "t.toml: key `train.batch_size`: must be at least 1"),
        (more("[train]\nthreads = 0"), "t.toml: key `train.threads`: must be at least 1, or \"auto\" for the cores this process may use"),
        (more("[train]\nlr = 0.0"), "t.toml: key `train.lr`: must be a positive number"),
        (more("[train.embedding]\nlr = -1.0"), "t.toml: key `train.embedding.lr`: must be a positive number"),
        (more("[train]\nepochs = 0"), "t.toml: key `train.epochs`: must be at least 1"),
        (more("[train.schedule]\nkind = \"step\"\nstep_size = 0"), "t.toml: key `train.schedule.step_size`: must be at least 1"),
        (more("[models.ple]\nlevels = 2"), "t.toml: key `models.ple.type`: missing (e.g. \"mmoe\" or \"shared_bottom\")"),
    ]
}

#[test]
fn every_check_names_its_key_with_its_message() {
    let mut wrong = Vec::new();
    for (i, (text, want)) in cases().into_iter().enumerate() {
        let got = err_of(&text);
        if got != want {
            wrong.push(format!("case {i}: {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
