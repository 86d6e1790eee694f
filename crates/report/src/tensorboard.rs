//! TensorBoard event files: scalars (tag, step, value) written as TFRecord-framed `Event`
//! protocol buffers, which TensorBoard reads from any folder named with `--logdir`.
//! Hand-encoded: the few fields a scalar needs do not justify a protobuf dependency.
//!
//! Framing per record: u64 length, masked CRC-32C of the length, the bytes, masked CRC-32C
//! of the bytes (all little-endian). Event: wall_time (1, double), step (2, int64),
//! file_version (3, string) or summary (5) → value (1) → tag (1, string), simple_value
//! (2, float).

use std::io::Write;
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli), bitwise: event files are small.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
    varint((field << 3) | wire, out);
}

fn bytes_field(field: u64, b: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut e);
    varint(step as u64, &mut e);
    body(&mut e);
    e
}

/// Appends scalars to one event file.
pub struct EventWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<seconds>.mfh` (and `dir`).
    pub fn create(dir: &Path) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let path = dir.join(format!("events.out.tfevents.{}.mfh", now.as_secs()));
        let mut w = EventWriter {
            file: std::io::BufWriter::new(std::fs::File::create(&path)?),
            path,
        };
        let first = event(now.as_secs_f64(), 0, |e| {
            bytes_field(3, b"brain.Event:2", e)
        });
        w.record(&first)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.file.write_all(&len)?;
        self.file.write_all(&masked(crc32c(&len)).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked(crc32c(data)).to_le_bytes())
    }

    /// One scalar at a training step.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> std::io::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut v = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut v);
        key(2, 5, &mut v);
        v.extend_from_slice(&value.to_le_bytes());
        let mut summary = Vec::new();
        bytes_field(1, &v, &mut summary);
        let e = event(now.as_secs_f64(), step, |e| bytes_field(5, &summary, e));
        self.record(&e)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()
    }
}

/// Reads back the scalars of an event file (tag, step, value), checking every CRC: what
/// the tests use to prove the files are well-formed.
pub fn read_scalars(path: &Path) -> Result<Vec<(String, i64, f32)>, String> {
    let b = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut pos = 0;
    let mut out = Vec::new();
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = b.get(*pos..*pos + n).ok_or("truncated record")?;
        *pos += n;
        Ok(s)
    };
    while pos < b.len() {
        let len_bytes = take(&mut pos, 8)?;
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap());
        if crc != masked(crc32c(len_bytes)) {
            return Err("length CRC mismatch".into());
        }
        let data = take(&mut pos, len)?;
        let crc = u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap());
        if crc != masked(crc32c(data)) {
            return Err("data CRC mismatch".into());
        }
        if let Some(s) = parse_event(data)? {
            out.push(s);
        }
    }
    Ok(out)
}

fn read_varint(d: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *d.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// One field of a message: number, wire type, payload byte range, varint value.
type Field = (u64, u64, usize, usize, u64);

/// Every field of a message.
fn fields(d: &[u8]) -> Result<Vec<Field>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < d.len() {
        let k = read_varint(d, &mut pos)?;
        let (field, wire) = (k >> 3, k & 7);
        match wire {
            0 => {
                let v = read_varint(d, &mut pos)?;
                out.push((field, wire, 0, 0, v));
            }
            1 => {
                out.push((field, wire, pos, pos + 8, 0));
                pos += 8;
            }
            2 => {
                let n = read_varint(d, &mut pos)? as usize;
                out.push((field, wire, pos, pos + n, 0));
                pos += n;
            }
            5 => {
                out.push((field, wire, pos, pos + 4, 0));
                pos += 4;
            }
            w => return Err(format!("unsupported wire type {w}")),
        }
        if pos > d.len() {
            return Err("truncated field".into());
        }
    }
    Ok(out)
}

fn parse_event(d: &[u8]) -> Result<Option<(String, i64, f32)>, String> {
    let mut step = 0i64;
    let mut scalar = None;
    for (field, _, a, b, v) in fields(d)? {
        match field {
            2 => step = v as i64,
            5 => {
                for (f, _, va, vb, _) in fields(&d[a..b])? {
                    if f == 1 {
                        let (mut tag, mut value) = (String::new(), 0f32);
                        for (g, _, x, y, _) in fields(&d[a..b][va..vb])? {
                            let bytes = &d[a..b][va..vb][x..y];
                            match g {
                                1 => tag = String::from_utf8_lossy(bytes).into_owned(),
                                2 => {
                                    value = f32::from_le_bytes(
                                        bytes.try_into().map_err(|_| "bad float")?,
                                    )
                                }
                                _ => {}
                            }
                        }
                        scalar = Some((tag, value));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(scalar.map(|(t, v)| (t, step, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C check value of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn scalars_round_trip_through_an_event_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalar("valid/auc/all", 125, 0.75).unwrap();
        w.scalar("valid/auc/user=new", 250, 0.7125).unwrap();
        w.flush().unwrap();
        let s = read_scalars(w.path()).unwrap();
        assert_eq!(
            s,
            vec![
                ("valid/auc/all".into(), 125, 0.75),
                ("valid/auc/user=new".into(), 250, 0.7125)
            ]
        );
        let mut bytes = std::fs::read(w.path()).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(w.path(), bytes).unwrap();
        assert!(read_scalars(w.path()).is_err());
    }
}
