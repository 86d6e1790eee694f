//! The config loader: bytes are a config file's text, parsed and checked by
//! `Config::from_toml_str` (what `Config::load` runs), then, when accepted, given to what
//! `mfh check --count` runs (`mfh_train::check`: open the sources and side tables, resolve
//! every column, compile splits, labels and facets, build every model section's spec, read
//! every split). The data are small fixed files written next to the config (`log.csv`,
//! `users.csv`, `rows.txt`), so that a config naming them gets past the file checks.
//!
//! Properties beyond "no panic": an accepted config serialises (`to_toml_string`) and the
//! result loads again to the same config, which is what a model folder relies on.

use mfh_config::Config;
use std::path::Path;

pub const LOG: &str = "uid,item,day,tags,price,clicked,liked\n\
u1,i1,1,t1|t2,1.5,1,0\n\
u2,i2,1,,0.5,0,0\n\
u3,i1,2,t2,20,1,1\n\
u1,i3,2,t3,0,0,1\n\
u4,i2,3,t1,3.25,1,0\n\
u2,i1,3,t1|t3,,0,1\n";
pub const USERS: &str = "uid,age,segment\nu1,18,a\nu2,30,b\nu3,,a\nu4,45,c\n";
pub const ROWS: &str = "0\n2\n4\n";

/// Writes the data files into `dir` (once per folder is enough; cheap to repeat).
pub fn write_data(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("log.csv"), LOG)?;
    std::fs::write(dir.join("users.csv"), USERS)?;
    std::fs::write(dir.join("rows.txt"), ROWS)
}

/// Loads `data` as a config in `dir`; `Err` is the loader's (or the check's) message.
pub fn run(dir: &Path, data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    if !dir.join("log.csv").exists() {
        write_data(dir).map_err(|e| e.to_string())?;
    }
    let file = dir.join("fuzz.toml");
    let cfg = Config::from_toml_str(text, &file, dir).map_err(|e| e.to_string())?;
    let _ = cfg.grid();
    let _ = cfg.model_section(None);
    let saved = cfg.to_toml_string();
    let again = Config::from_toml_str(&saved, &file, dir).unwrap_or_else(|e| {
        panic!("an accepted config does not load back from its own TOML: {e}\n{saved}")
    });
    assert_eq!(
        again.to_toml_string(),
        saved,
        "an accepted config changes when saved and loaded again"
    );
    mfh_train::check(&cfg, true).map_err(|e| format!("{e:#}"))?;
    Ok(())
}
