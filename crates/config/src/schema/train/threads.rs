//! `train.threads`: how many threads a command computes with, `"auto"` or a count.

use serde::{Deserialize, Serialize};

/// How many threads a command computes with: `"auto"` or a count in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// The cores this process may use (affinity mask and cgroup quota).
    #[default]
    Auto,
    Count(usize),
}

impl Threads {
    /// The thread count to run with.
    pub fn resolve(self) -> usize {
        match self {
            Threads::Auto => mfh_cpu::available_threads(),
            Threads::Count(n) => n.max(1),
        }
    }
}

impl std::fmt::Display for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threads::Auto => f.write_str("auto"),
            Threads::Count(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for Threads {
    type Err = String;
    fn from_str(s: &str) -> Result<Threads, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Threads::Auto);
        }
        match s.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Threads::Count(n)),
            _ => Err(format!(
                "{s:?}: expected a thread count of at least 1, or \"auto\""
            )),
        }
    }
}

impl Serialize for Threads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Threads::Auto => s.serialize_str("auto"),
            Threads::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Threads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Threads, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Threads;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a thread count or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Threads, E> {
                usize::try_from(v)
                    .map(Threads::Count)
                    .map_err(|_| E::custom(format!("{v}: expected a thread count or \"auto\"")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Threads, E> {
                usize::try_from(v)
                    .map(Threads::Count)
                    .map_err(|_| E::custom(format!("{v}: too many threads")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Threads, E> {
                if v.eq_ignore_ascii_case("auto") {
                    Ok(Threads::Auto)
                } else {
                    Err(E::custom(format!(
                        "{v:?}: expected a thread count or \"auto\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}
