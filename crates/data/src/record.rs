//! The fast CSV reader behind [`crate::rows::RowReader`]: whole chunks of decompressed
//! text in one buffer, lines found with `memchr`, and the cells of a line without quotes
//! split eight bytes at a time. A line with a quote or a lone `\r` goes through
//! `csv_core`, so quoting (`"a,b"`, `""` escapes, newlines inside quotes) behaves exactly
//! as the csv crate's reader.
//!
//! What the reader guarantees, as the csv crate did: CRLF line ends count as one line end
//! (and a CRLF inside quotes becomes `\n`); a lone `\r` ends a record without starting a
//! new line; blank lines are skipped; a UTF-8 byte-order mark at the start of a file is
//! dropped; `trim` strips ASCII whitespace around every cell. Each record carries the
//! 1-based line it starts on.

use mfh_config::CsvOptions;
use std::io::{ErrorKind, Read};
use std::ops::Index;

/// One row's cells as raw bytes, and the line it started on.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Record {
    data: Vec<u8>,
    /// End offset of each cell in `data`.
    ends: Vec<usize>,
    /// Bytes between one cell's end and the next one's start: 1 when `data` is the line
    /// as read (delimiters included), 0 when it holds the cells alone.
    gap: usize,
    /// Every byte is ASCII (so every cell is valid UTF-8).
    ascii: bool,
    line: u64,
    /// Per cell, the number a typed source (a Parquet integer or double column that a pass
    /// reads only as a number) gave in place of text: such a cell's text is empty. Empty
    /// for text sources; shorter than the cells when only the first ones are typed.
    nums: Vec<Option<f64>>,
}

/// How a pass reads a column of the main table: not at all, only as a number (numeric
/// and bucketised features, weights, regression labels, binary labels without positive
/// tokens, threshold facets, numeric split clauses), or as text (anything hashed or
/// compared as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ColumnUse {
    Unused,
    Number,
    Text,
}

impl Record {
    pub fn new() -> Record {
        Record {
            ascii: true,
            ..Record::default()
        }
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.gap = 0;
        self.ascii = true;
        self.nums.clear();
    }

    /// The number a typed source put in cell `i` in place of text, if any.
    #[inline]
    pub fn num(&self, i: usize) -> Option<f64> {
        self.nums.get(i).copied().flatten()
    }

    /// Gives cell `i` (already pushed, with empty text) the number `x`.
    #[inline]
    pub fn set_num(&mut self, i: usize, x: f64) {
        if self.nums.len() <= i {
            self.nums.resize(i + 1, None);
        }
        self.nums[i] = Some(x);
    }

    /// Whether every cell is ASCII: then no cell needs a UTF-8 check.
    #[inline]
    pub fn is_ascii(&self) -> bool {
        self.ascii
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The 1-based line (or, for Parquet, row number) the record starts on.
    #[inline]
    pub fn line(&self) -> u64 {
        self.line
    }

    #[cfg_attr(not(feature = "parquet"), allow(dead_code))]
    pub fn set_line(&mut self, line: u64) {
        self.line = line;
    }

    /// Appends a cell (after the delimiter a record read as a whole line keeps between
    /// cells).
    pub fn push_field(&mut self, field: &[u8]) {
        self.ascii &= field.is_ascii();
        if self.gap == 1 && !self.ends.is_empty() {
            self.data.push(b',');
        }
        self.data.extend_from_slice(field);
        self.ends.push(self.data.len());
    }

    /// Appends a cell whose ASCII-ness the caller knows (a column block checked once), in a
    /// record built cell by cell (no delimiter between cells).
    #[cfg(feature = "parquet")]
    #[inline]
    pub fn push_cell(&mut self, field: &[u8], ascii: bool) {
        debug_assert!(self.gap == 0 && ascii == field.is_ascii());
        self.ascii &= ascii;
        self.data.extend_from_slice(field);
        self.ends.push(self.data.len());
    }

    /// Appends an empty cell (a column nothing reads, or one a typed source gives as a
    /// number).
    #[inline]
    pub fn push_empty(&mut self) {
        debug_assert!(self.gap == 0);
        self.ends.push(self.data.len());
    }

    /// Appends a cell written by `f` straight into the record's buffer.
    pub fn push_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let start = self.data.len();
        f(&mut self.data);
        self.ascii &= self.data[start..].is_ascii();
        self.ends.push(self.data.len());
    }

    /// Makes `self` a copy of `other`, reusing `self`'s buffers.
    pub fn copy_from(&mut self, other: &Record) {
        self.data.clone_from(&other.data);
        self.ends.clone_from(&other.ends);
        self.gap = other.gap;
        self.ascii = other.ascii;
        self.line = other.line;
        self.nums.clone_from(&other.nums);
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(move |i| &self[i])
    }

    /// Strips ASCII whitespace around every cell (as the csv crate's `Trim::All`).
    fn trim(&mut self) {
        let (mut w, mut start) = (0, 0);
        for k in 0..self.ends.len() {
            let end = self.ends[k];
            let cell = self.data[start..end].trim_ascii();
            let (a, n) = (
                cell.as_ptr() as usize - self.data.as_ptr() as usize,
                cell.len(),
            );
            self.data.copy_within(a..a + n, w);
            w += n;
            self.ends[k] = w;
            start = end + self.gap;
        }
        self.data.truncate(w);
        self.gap = 0;
    }
}

impl Index<usize> for Record {
    type Output = [u8];
    #[inline]
    fn index(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.ends[i - 1] + self.gap
        };
        &self.data[start..self.ends[i]]
    }
}

/// Bytes read from the source at a time.
const CHUNK: usize = 1 << 20;

/// Reads CSV records from a byte stream (already decompressed).
pub(crate) struct CsvSource {
    src: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    eof: bool,
    started: bool,
    /// Line of `buf[pos]`.
    line: u64,
    delimiter: u8,
    trim: bool,
    /// For records with quotes or lone `\r`.
    core: csv_core::Reader,
}

impl CsvSource {
    pub fn new(src: Box<dyn Read + Send>, opts: &CsvOptions) -> CsvSource {
        let delimiter = opts.delimiter.as_bytes()[0];
        let mut core = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        // The core is only ever started at a record's first byte; a first call on a blank
        // line turns off its byte-order-mark stripping (done here, at the file start).
        let _ = core.read_record(b"\n", &mut [0u8; 1], &mut [0usize; 1]);
        CsvSource {
            src,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
            started: false,
            line: 1,
            delimiter,
            trim: opts.trim,
            core,
        }
    }

    /// Reads more input after the unread bytes (moved to the buffer's front). `Ok(false)`
    /// when the source is exhausted and nothing was added.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let start = self.end;
        loop {
            if self.end == self.buf.len() {
                let n = (self.buf.len() * 2).max(CHUNK);
                self.buf.resize(n, 0);
            }
            let n = match self.src.read(&mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            self.end += n;
            // The file's first three bytes may be a byte-order mark: read them whole.
            if !self.started && self.end < 3 {
                continue;
            }
            // A `\r` at the end may be the first half of a CRLF: read on to see.
            if self.buf[self.end - 1] != b'\r' {
                break;
            }
        }
        if !self.started {
            // Nothing was read before: `start` is the file's first byte.
            self.started = true;
            if self.buf[..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.pos = 3;
            }
        }
        self.crlf_to_lf(start);
        Ok(self.end > start)
    }

    /// Turns each CRLF in `buf[from..end]` into LF, in place.
    fn crlf_to_lf(&mut self, from: usize) {
        let Some(k) = memchr::memchr(b'\r', &self.buf[from..self.end]) else {
            return;
        };
        let (mut r, mut w) = (from + k, from + k);
        while r < self.end {
            // buf[r] is a `\r`.
            if !(r + 1 < self.end && self.buf[r + 1] == b'\n') {
                self.buf[w] = b'\r';
                w += 1;
            }
            r += 1;
            let next = memchr::memchr(b'\r', &self.buf[r..self.end]).map_or(self.end, |k| r + k);
            self.buf.copy_within(r..next, w);
            w += next - r;
            r = next;
        }
        self.end = w;
    }

    /// Reads the next record into `rec`. `Ok(false)` at the end of the input.
    pub fn read_record(&mut self, rec: &mut Record) -> std::io::Result<bool> {
        rec.clear();
        // Blank lines (record terminators where a record would start) are skipped.
        loop {
            while self.pos < self.end {
                match self.buf[self.pos] {
                    b'\n' => self.line += 1,
                    b'\r' => {}
                    _ => break,
                }
                self.pos += 1;
            }
            if self.pos < self.end {
                break;
            }
            if !self.fill()? {
                return Ok(false);
            }
        }
        rec.line = self.line;
        let mut scanned = self.pos;
        let nl = loop {
            if let Some(k) = memchr::memchr(b'\n', &self.buf[scanned..self.end]) {
                break Some(scanned + k);
            }
            let have = self.end - self.pos;
            if !self.fill()? {
                break None;
            }
            scanned = have;
        };
        let line_end = nl.unwrap_or(self.end);
        if split_plain(&self.buf[self.pos..line_end], self.delimiter, rec) {
            match nl {
                Some(n) => {
                    self.pos = n + 1;
                    self.line += 1;
                }
                None => self.pos = self.end,
            }
        } else {
            rec.clear();
            self.read_quoted(rec)?;
        }
        if self.trim {
            rec.trim();
        }
        Ok(true)
    }

    /// One record through `csv_core`, from a record's first byte.
    fn read_quoted(&mut self, rec: &mut Record) -> std::io::Result<()> {
        use csv_core::ReadRecordResult::*;
        rec.data.resize(rec.data.capacity().max(256), 0);
        rec.ends.resize(rec.ends.capacity().max(32), 0);
        let (mut nout, mut nend) = (0, 0);
        loop {
            let input = &self.buf[self.pos..self.end];
            let (res, i, o, e) =
                self.core
                    .read_record(input, &mut rec.data[nout..], &mut rec.ends[nend..]);
            self.line += input[..i].iter().filter(|&&b| b == b'\n').count() as u64;
            self.pos += i;
            nout += o;
            nend += e;
            match res {
                InputEmpty => {
                    // At the end of the input `csv_core` is called with nothing, and ends
                    // the record.
                    self.fill()?;
                }
                OutputFull => {
                    let n = rec.data.len() * 2;
                    rec.data.resize(n, 0);
                }
                OutputEndsFull => {
                    let n = rec.ends.len() * 2;
                    rec.ends.resize(n, 0);
                }
                Record | End => {
                    rec.data.truncate(nout);
                    rec.ends.truncate(nend);
                    rec.ascii = rec.data.is_ascii();
                    return Ok(());
                }
            }
        }
    }
}

/// A byte repeated in every lane of a u64.
const fn splat(b: u8) -> u64 {
    b as u64 * 0x0101_0101_0101_0101
}

/// 0x80 in each byte lane of `x` that is zero, 0 elsewhere (exact, no borrow between lanes).
#[inline(always)]
fn zero_lanes(x: u64) -> u64 {
    const L: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    !(((x & L).wrapping_add(L)) | x | L)
}

/// Splits a line without quotes or `\r` at the delimiter into an empty `rec` (the line as
/// is, delimiters included, and where each cell ends). `false` (and `rec` in an
/// unspecified state) when the line has a quote or a `\r`: it needs the full parser.
#[inline]
fn split_plain(line: &[u8], delimiter: u8, rec: &mut Record) -> bool {
    let (d, q, r) = (splat(delimiter), splat(b'"'), splat(b'\r'));
    let mut high = 0u64;
    debug_assert!(rec.data.is_empty() && rec.ends.is_empty());
    let mut chunks = line.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap());
        high |= w;
        if zero_lanes(w ^ q) | zero_lanes(w ^ r) != 0 {
            return false;
        }
        let mut m = zero_lanes(w ^ d);
        while m != 0 {
            rec.ends.push(at + (m.trailing_zeros() / 8) as usize);
            m &= m - 1;
        }
        at += 8;
    }
    for &b in chunks.remainder() {
        high |= b as u64;
        if b == b'"' || b == b'\r' {
            return false;
        }
        if b == delimiter {
            rec.ends.push(at);
        }
        at += 1;
    }
    rec.ends.push(at);
    rec.data.extend_from_slice(line);
    rec.gap = 1;
    rec.ascii = high & splat(0x80) == 0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record the csv crate (with CRLF turned into LF first, as before) reads.
    fn reference(text: &[u8], trim: bool) -> Vec<Vec<Vec<u8>>> {
        let mut t = text.to_vec();
        // The old reader: CRLF → LF, BOM dropped by csv_core, blank lines skipped.
        let mut i = 0;
        while i + 1 < t.len() {
            if t[i] == b'\r' && t[i + 1] == b'\n' {
                t.remove(i);
            } else {
                i += 1;
            }
        }
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(if trim {
                csv::Trim::All
            } else {
                csv::Trim::None
            })
            .from_reader(t.as_slice());
        let mut out = Vec::new();
        for r in rdr.byte_records() {
            out.push(r.unwrap().iter().map(|f| f.to_vec()).collect());
        }
        out
    }

    fn ours(text: &[u8], trim: bool, chunk: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
        let opts = CsvOptions {
            trim,
            ..CsvOptions::default()
        };
        let src = Dribble(text.to_vec(), 0, chunk);
        let mut r = CsvSource::new(Box::new(src), &opts);
        let mut rec = Record::new();
        let mut out = Vec::new();
        while r.read_record(&mut rec).unwrap() {
            out.push((rec.line(), rec.iter().map(|f| f.to_vec()).collect()));
        }
        out
    }

    /// A reader that hands out at most `.2` bytes per call.
    struct Dribble(Vec<u8>, usize, usize);
    impl Read for Dribble {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(self.2).min(self.0.len() - self.1);
            out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    const CASES: &[&[u8]] = &[
        b"a,b,c\n1,2,3\n",
        b"a,b,c\r\n1,2,3\r\n4,5,6",
        b"\xEF\xBB\xBFa,b\n1,2\n",
        b"a,b\n\n\n1,2\n\r\n3,4\n\n",
        b"a,\"b,c\",d\n\"x\"\"y\",2,\"multi\nline\"\n5,6,7\n",
        b"a,\"b\r\nc\",d\r\nlong_cell_number_one,long_cell_number_two,3\r\n",
        b"a,b\rc,d\n e , f ,g\n",
        b"ab\"c,d\n\"q\"tail,x\n",
        b",,\n,\n\"\"\n   \n",
        b"0123456789,0123456789abcdef,x,y,z,0123456789012345678901234567890\n1,2",
        b"only\r",
        b"",
        b"\n\n",
        b"a,b\n\"unterminated,c\nd\n",
    ];

    #[test]
    fn same_cells_as_the_csv_crate_at_any_chunk_size() {
        for text in CASES {
            for trim in [false, true] {
                let want = reference(text, trim);
                for chunk in [1, 2, 3, 7, 64, 1 << 20] {
                    let got: Vec<_> = ours(text, trim, chunk).into_iter().map(|r| r.1).collect();
                    assert_eq!(
                        got,
                        want,
                        "{:?} trim {trim} chunk {chunk}",
                        String::from_utf8_lossy(text)
                    );
                }
            }
        }
    }

    #[test]
    fn records_carry_their_first_line() {
        let lines = |t: &[u8]| -> Vec<u64> { ours(t, false, 3).iter().map(|r| r.0).collect() };
        assert_eq!(lines(b"a\nb\r\nc\n"), [1, 2, 3]);
        assert_eq!(lines(b"a\n\n\nb\n"), [1, 4]);
        assert_eq!(lines(b"\"x\ny\",1\nb\n"), [1, 3]);
        assert_eq!(lines(b"a\rb\nc"), [1, 1, 2]);
    }

    #[test]
    fn ascii_flag_follows_the_bytes() {
        let opts = CsvOptions::default();
        let text =
            "plain,ascii,line,of,some,length\nnot,ascii,é,here,at,all\n\"q\",é\n\"q\",x\nab,é\n";
        let mut r = CsvSource::new(Box::new(text.as_bytes()), &opts);
        let mut rec = Record::new();
        let mut got = Vec::new();
        while r.read_record(&mut rec).unwrap() {
            got.push(rec.is_ascii());
        }
        assert_eq!(got, [true, false, false, true, false]);
    }

    #[test]
    fn a_cell_pushed_after_a_whole_line_is_its_own() {
        let mut r = CsvSource::new(Box::new(&b"a,bc,\n"[..]), &CsvOptions::default());
        let mut rec = Record::new();
        assert!(r.read_record(&mut rec).unwrap());
        rec.push_field(b"20220428");
        rec.push_field(b"");
        let cells: Vec<&[u8]> = rec.iter().collect();
        assert_eq!(cells, [&b"a"[..], b"bc", b"", b"20220428", b""]);
    }

    #[test]
    fn trim_strips_every_cell() {
        let mut r = Record::new();
        for c in [&b" a "[..], b"", b"\tb", b"c  "] {
            r.push_field(c);
        }
        r.trim();
        assert_eq!(r.iter().collect::<Vec<_>>(), [&b"a"[..], b"", b"b", b"c"]);
    }
}
