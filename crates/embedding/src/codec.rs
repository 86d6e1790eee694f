//! Little-endian streaming encoder/decoder that checksums everything it passes.

use std::io::{self, ErrorKind, Read, Write};
use xxhash_rust::xxh3::Xxh3Default;

/// Bytes buffered before a write to the sink; keeps the number of `dyn Write` calls
/// low when saving millions of small rows to an unbuffered file.
const FLUSH_AT: usize = 1 << 16;

/// Writes little-endian values into a local buffer, hashing them with xxh3-64 on the
/// way out; [`Encoder::finish`] appends the checksum (itself not hashed).
pub(crate) struct Encoder<'w> {
    sink: &'w mut dyn Write,
    hasher: Xxh3Default,
    buf: Vec<u8>,
}

impl<'w> Encoder<'w> {
    pub(crate) fn new(sink: &'w mut dyn Write) -> Self {
        Encoder {
            sink,
            hasher: Xxh3Default::new(),
            buf: Vec::with_capacity(FLUSH_AT + 4096),
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn f32(&mut self, v: f32) {
        self.bytes(&v.to_bits().to_le_bytes());
    }
    pub(crate) fn f32s(&mut self, vs: &[f32]) {
        for &v in vs {
            self.f32(v);
        }
    }
    /// Length-prefixed UTF-8 string.
    pub(crate) fn str(&mut self, s: &str) -> io::Result<()> {
        let len = u32::try_from(s.len())
            .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "string too long to save"))?;
        self.u32(len);
        self.bytes(s.as_bytes());
        Ok(())
    }

    /// Hands the buffer to the sink once it is large enough.
    pub(crate) fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.hasher.update(&self.buf);
        self.sink.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered, then the xxh3-64 of everything written.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.flush_buf()?;
        let sum = self.hasher.digest();
        self.sink.write_all(&sum.to_le_bytes())
    }
}

/// Reads little-endian values, hashing every byte so [`Decoder::finish`] can compare
/// against the stored checksum. Never reads past what it is asked for, so several
/// encoded objects can follow each other in one stream.
pub(crate) struct Decoder<'r> {
    source: &'r mut dyn Read,
    hasher: Xxh3Default,
    /// What is being read, for error messages ("embedding table 'user'").
    what: String,
}

impl<'r> Decoder<'r> {
    pub(crate) fn new(source: &'r mut dyn Read, what: impl Into<String>) -> Self {
        Decoder {
            source,
            hasher: Xxh3Default::new(),
            what: what.into(),
        }
    }

    pub(crate) fn set_what(&mut self, what: impl Into<String>) {
        self.what = what.into();
    }

    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    fn read_raw(&mut self, buf: &mut [u8], field: &str) -> Result<(), String> {
        self.source.read_exact(buf).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                format!(
                    "{}: file is truncated (ended while reading {field})",
                    self.what
                )
            } else {
                format!("{}: reading {field}: {e}", self.what)
            }
        })
    }

    /// Reads exactly `buf.len()` bytes and hashes them.
    pub(crate) fn bytes(&mut self, buf: &mut [u8], field: &str) -> Result<(), String> {
        self.read_raw(buf, field)?;
        self.hasher.update(buf);
        Ok(())
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.bytes(&mut b, field)?;
        Ok(b)
    }
    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.array::<1>(field)?[0])
    }
    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn f32(&mut self, field: &str) -> Result<f32, String> {
        Ok(f32::from_bits(u32::from_le_bytes(self.array(field)?)))
    }
    /// Length-prefixed UTF-8 string of at most `max_len` bytes; the cap stops a
    /// corrupted length from triggering a huge allocation.
    pub(crate) fn str(&mut self, field: &str, max_len: usize) -> Result<String, String> {
        let len = self.u32(field)? as usize;
        if len > max_len {
            return Err(format!(
                "{}: {field} length {len} exceeds the limit of {max_len} bytes (corrupted file?)",
                self.what
            ));
        }
        let mut b = vec![0u8; len];
        self.bytes(&mut b, field)?;
        String::from_utf8(b).map_err(|_| format!("{}: {field} is not valid UTF-8", self.what))
    }

    /// Reads the stored checksum and compares it with the hash of everything read.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        let computed = self.hasher.digest();
        let mut b = [0u8; 8];
        self.read_raw(&mut b, "checksum")?;
        let stored = u64::from_le_bytes(b);
        if stored != computed {
            return Err(format!(
                "{}: checksum mismatch: file says {stored:#018x} but its contents hash to \
                 {computed:#018x} (file corrupted)",
                self.what
            ));
        }
        Ok(())
    }
}
