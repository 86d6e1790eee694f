//! Printing the figures: lines on stdout that end the program quietly on a closed pipe,
//! and the one summary line every timed measurement ends with.

use std::io::Write as _;

/// Writes one line to stdout; a closed pipe exits with status 0, any other write error
/// with status 1 (a benchmark has nothing to clean up).
pub(crate) fn line(args: std::fmt::Arguments) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o
        .write_fmt(args)
        .and_then(|_| o.write_all(b"\n"))
        .and_then(|_| o.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `NAME: median M UNIT (min A, max B, K windows)` over the windows' figures.
pub(crate) fn summary(name: &str, unit: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    outln!(
        "{name}: median {med:.0} {unit} (min {:.0}, max {:.0}, {} windows)",
        v[0],
        v[v.len() - 1],
        v.len()
    );
}
