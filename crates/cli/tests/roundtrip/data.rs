//! The generated data (a gzip log, a side table of users, a row file for the test split)
//! and the config that reads it.

use std::io::Write;
use std::path::Path;

pub const ROWS: usize = 360;
const USERS: usize = 12;
pub const ITEMS: usize = 20;
/// Steps of training: fewer than two epochs of 240 train rows in batches of 16.
pub const MAX_STEPS: usize = 20;

fn mix(i: usize, salt: u64) -> u64 {
    // splitmix64
    let mut z = (i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One generated log row; `None` is an empty cell.
pub struct Row {
    pub uid: usize,
    pub item: usize,
    pub prev_item: usize,
    pub hist: Vec<usize>,
    pub tags: Vec<usize>,
    pub day: usize,
    pub price: Option<String>,
    pub watch: String,
    pub dur: Option<String>,
    pub clicked: u8,
    pub liked: Option<u8>,
}

pub const HEADER: &str = "uid,item,prev_item,hist,tags,day,price,watch,dur,clicked,liked";

impl Row {
    pub fn new(i: usize) -> Row {
        let item = (mix(i, 1) % ITEMS as u64) as usize;
        let hist = (0..mix(i, 3) % 4)
            .map(|k| (mix(i, 30 + k) % ITEMS as u64) as usize)
            .collect();
        let tags = (0..mix(i, 4) % 3)
            .map(|k| (mix(i, 40 + k) % 6) as usize)
            .collect();
        let price = (!mix(i, 5).is_multiple_of(10)).then(|| format!("{}.25", mix(i, 50) % 80));
        let cheap = price
            .as_deref()
            .is_some_and(|p| p.parse::<f64>().unwrap() < 20.0);
        let clicked =
            ((item < 8) as u8 + cheap as u8 + mix(i, 8).is_multiple_of(3) as u8 >= 2) as u8;
        Row {
            uid: i % USERS,
            item,
            prev_item: (mix(i, 2) % ITEMS as u64) as usize,
            hist,
            tags,
            day: 1 + (i / 4) % 3,
            price,
            watch: format!("{}", (mix(i, 6) % 50) as f64 * 0.5),
            dur: (!mix(i, 7).is_multiple_of(13)).then(|| format!("{}", 1 + mix(i, 70) % 900)),
            clicked,
            liked: (i % 7 != 3).then(|| (clicked == 1 && mix(i, 9).is_multiple_of(2)) as u8),
        }
    }

    pub fn hist_cell(&self) -> String {
        let v: Vec<String> = self.hist.iter().map(|h| format!("i{h}")).collect();
        v.join("|")
    }

    pub fn tags_cell(&self) -> String {
        let v: Vec<String> = self.tags.iter().map(|t| format!("t{t}")).collect();
        v.join(";")
    }

    pub fn csv_line(&self) -> String {
        [
            format!("u{}", self.uid),
            format!("i{}", self.item),
            format!("i{}", self.prev_item),
            self.hist_cell(),
            self.tags_cell(),
            self.day.to_string(),
            self.price.clone().unwrap_or_default(),
            self.watch.clone(),
            self.dur.clone().unwrap_or_default(),
            self.clicked.to_string(),
            self.liked.map(|l| l.to_string()).unwrap_or_default(),
        ]
        .join(",")
    }

    /// The facet cell mfh should put the row in (see `CONFIG`).
    pub fn cell(&self) -> String {
        let device = match device(self.uid) {
            None => "ios", // the facet's default
            Some("ios") => "ios",
            Some(_) => "android",
        };
        let band = match &self.price {
            None => "dear", // the facet's default
            Some(p) if p.parse::<f64>().unwrap() <= 20.0 => "cheap",
            Some(_) => "dear",
        };
        format!("device={device},price_band={band}")
    }
}

/// A user's device in the side table; the last user has none.
pub fn device(uid: usize) -> Option<&'static str> {
    (uid != USERS - 1).then(|| ["ios", "android", "other"][uid % 3])
}

const CONFIG: &str = r#"
[data]
sources = ["data/log.csv.gz"]
gauc_column = "uid"
[[data.side_tables]]
name = "user"
path = "data/users.csv"
key = "uid"

[splits]
train = { where = "day <= 2" }
valid = { where = "day == 3" }
all = { where = "day >= 1" }
test = { rows = "data/test_rows.txt" }

[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "categorical"
name = "item"
dim = 4
table = "items"
[[features]]
type = "categorical"
name = "prev_item"
dim = 4
table = "items"
[[features]]
type = "multi"
name = "hist"
dim = 4
table = "items"
separator = "|"
pooling = "sum"
[[features]]
type = "multi"
name = "tags"
dim = 3
separator = ";"
pooling = "mean"
[[features]]
type = "numeric"
name = "price"
fill = 1.5
[[features]]
type = "numeric"
name = "watch"
transform = ["log1p"]
[[features]]
type = "numeric"
name = "age"
transform = ["standardize"]
[[features]]
type = "numeric"
name = "dur"
transform = ["log1p", "standardize"]
[[features]]
type = "bucketized"
name = "price_q"
column = "price"
dim = 3
quantiles = 4
[[features]]
type = "bucketized"
name = "dur_b"
column = "dur"
dim = 3
boundaries = [5.0, 50.0, 500.0]
[[features]]
type = "bucketized"
name = "watch_b"
column = "watch"
dim = 2
boundaries = [1.0, 2.0, 3.0]
log1p = true

[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "binary"
name = "like"
column = "liked"

[[facets]]
name = "device"
column = "device"
groups = [{ name = "ios", values = ["ios"] }, { name = "android", values = ["android", "other"] }]
default = "ios"
[[facets]]
name = "price_band"
column = "price"
thresholds = [20.0]
names = ["cheap", "dear"]
default = "dear"

[models.rt]
type = "mfh"
trees = "auto"
level1 = { type = "cgc", task_experts = 1, shared_experts = 1, expert_layers = [8] }
level2 = { type = "cgc", task_experts = 1, shared_experts = 1, expert_layers = [8] }
tower = [4]

[train]
epochs = 2
max_steps = 20
batch_size = 16
threads = 1
seed = 3
"#;

pub const CELLS: [&str; 4] = [
    "device=ios,price_band=cheap",
    "device=ios,price_band=dear",
    "device=android,price_band=cheap",
    "device=android,price_band=dear",
];

/// Writes the data (gzip log, side table, row file) and the config under `work`.
pub fn write_inputs(work: &Path, rows: &[Row]) {
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut log = format!("{HEADER}\n");
    for r in rows {
        log.push_str(&r.csv_line());
        log.push('\n');
    }
    let f = std::fs::File::create(data.join("log.csv.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(log.as_bytes()).unwrap();
    gz.finish().unwrap();
    let mut users = String::from("uid,age,device\n");
    for u in 0..USERS {
        users.push_str(&format!(
            "u{u},{},{}\n",
            18 + 4 * u,
            device(u).unwrap_or_default()
        ));
    }
    std::fs::write(data.join("users.csv"), users).unwrap();
    let mut test_rows = String::from("# every ninth row\n");
    for i in (0..ROWS).step_by(9) {
        test_rows.push_str(&format!("{i}\n"));
    }
    std::fs::write(data.join("test_rows.txt"), test_rows).unwrap();
    std::fs::write(work.join("c.toml"), CONFIG).unwrap();
}

/// The splits are big enough and both behaviours have positives in train and valid.
pub fn check_split_sizes(rows: &[Row], valid: &[&Row]) {
    for (name, n) in [
        ("train", rows.iter().filter(|r| r.day <= 2).count()),
        ("valid", valid.len()),
    ] {
        assert!(n > 50, "{name}: {n} rows");
    }
    for label in [|r: &Row| Some(r.clicked), |r: &Row| r.liked] {
        let pos = |day: &dyn Fn(usize) -> bool| {
            rows.iter()
                .filter(|r| day(r.day) && label(r) == Some(1))
                .count()
        };
        assert!(pos(&|d| d <= 2) > 5 && pos(&|d| d == 3) > 5);
    }
}
