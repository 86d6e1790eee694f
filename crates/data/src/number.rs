//! Numbers in cells: the standard parser's reading, with a fast path for plain decimals.

/// Writes an integer in decimal, as `{x}` does.
#[inline]
#[cfg_attr(not(any(feature = "parquet", feature = "arrow")), allow(dead_code))]
pub(crate) fn write_int(out: &mut Vec<u8>, x: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = x.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if x < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// The integer `x` as an f64 when that is `x` itself (|x| ≤ 2^53): what a typed reader
/// gives in place of text (beyond, the text stays, so that a message shows the digits).
#[inline]
#[cfg_attr(not(any(feature = "parquet", feature = "arrow")), allow(dead_code))]
pub(crate) fn exact_int(x: i128) -> Option<f64> {
    (x.unsigned_abs() <= 1 << 53).then_some(x as f64)
}

/// A cell as a number, exactly as `str::parse::<f64>` reads it (`1e3`, `+2`, `inf`…),
/// with a fast path for plain decimals (`-12`, `3.25`).
#[inline]
pub(crate) fn parse_f64(v: &[u8]) -> Option<f64> {
    match plain_decimal(v) {
        Some(x) => Some(x),
        None => std::str::from_utf8(v).ok()?.parse().ok(),
    }
}

/// `-?D+(.D+)?` with at most 15 digits: m / 10^k with m < 2^53 and 10^k both exact, so
/// the one division rounds the decimal correctly, as the full parser does.
#[inline]
fn plain_decimal(v: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, digits) = match v.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let (mut m, mut dot) = (0u64, None);
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => m = m * 10 + (b - b'0') as u64,
            b'.' if dot.is_none() && i > 0 && i + 1 < digits.len() => dot = Some(i),
            _ => return None,
        }
    }
    let frac = dot.map_or(0, |i| digits.len() - 1 - i);
    if digits.len() - dot.is_some() as usize > 15 {
        return None;
    }
    let x = m as f64 / POW10[frac];
    Some(if neg { -x } else { x })
}

#[cfg(test)]
mod tests {
    use super::parse_f64;

    #[test]
    fn numbers_parse_as_the_standard_parser_does() {
        let cases = [
            "0",
            "-0",
            "7",
            "-12",
            "20220425",
            "1650812741436",
            "999999999999999",
            "9999999999999999",
            "12345678901234567890",
            "0.1",
            "-0.3",
            "3.25",
            "12.0",
            "0.000000000000001",
            "1.23456789012345",
            "123456789.012345",
            "5.",
            ".5",
            "-.5",
            "+5",
            "1e3",
            "-1E-2",
            "inf",
            "-inf",
            "NaN",
            "nan",
            "",
            "-",
            ".",
            "1.2.3",
            "1-2",
            "0x10",
            " 1",
            "1 ",
            "00012",
            "-00.50",
            "1,5",
            "٣",
        ];
        for c in cases {
            let want = c.parse::<f64>().ok();
            let got = parse_f64(c.as_bytes());
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "{c:?}: {got:?} vs {want:?}"
            );
        }
        // Every short decimal with up to 4 + 4 digits, both signs.
        let mut r = crate::SplitMix(7);
        for _ in 0..200_000 {
            let ip = r.below(100_000);
            let fp = r.below(100_000);
            let fd = r.below(6);
            let s = match (fd, r.below(2)) {
                (0, 0) => format!("{ip}"),
                (0, _) => format!("-{ip}"),
                (d, 0) => format!("{ip}.{fp:05}")[..format!("{ip}").len() + 1 + d].to_string(),
                (d, _) => format!("-{ip}.{fp:05}")[..format!("{ip}").len() + 2 + d].to_string(),
            };
            assert_eq!(
                parse_f64(s.as_bytes()).map(f64::to_bits),
                s.parse::<f64>().ok().map(f64::to_bits),
                "{s}"
            );
        }
    }
}
