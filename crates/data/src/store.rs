//! Where data files live: a local path, or — with the cargo feature `s3` — an object named
//! `s3://bucket/key` (docs/config.md, "Object storage"). Every file the reader opens,
//! lists or probes goes through here, so that both kinds take the same globs, partitions,
//! formats and errors.
//!
//! Objects are streamed, never downloaded first: a CSV (plain or gzip) is one GET read as
//! it arrives; a Parquet file is read by ranges (its footer, then each column chunk it
//! needs). A connection that breaks mid-object is taken up again at the next unread byte
//! with a ranged GET that must match the object's ETag (an object replaced meanwhile is an
//! error, not a silent mix of two versions), up to [`TRIES`] times in a row; every byte
//! is handed on once, in order. Credentials and endpoint come from the usual `AWS_*`
//! variables (`AmazonS3Builder::from_env`).

use crate::error::DataError;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use mfh_config::is_object_url;

/// Consecutive failed tries of one read before it is an error.
pub const TRIES: u32 = 6;

/// For a command to call before it starts any thread, with every path it will read:
/// when one is an S3 object, glibc's malloc keeps one arena for the whole process (as
/// `MALLOC_ARENA_MAX=1` does). Without it, the object-store runtime's thread allocates
/// the GETs' bodies in an arena of its own and the reader frees them there; the peak RSS
/// of training from S3 was 179 MiB against 151–153 MiB with one arena on a 2 M-row log
/// (at the same speed), and a 20 M-row run's 1.20× a 2 M-row run's against 1.02×
/// (bench/RESULTS.md "Issue 25, second and third passes"). Threads started before the
/// call keep the arenas they have, so it must come first: made when the S3 runtime
/// started instead, it left the peak at 179 MiB.
pub fn before_threads<'a>(paths: impl IntoIterator<Item = &'a Path>) {
    #[cfg(all(feature = "s3", target_os = "linux", target_env = "gnu"))]
    if paths.into_iter().any(is_object_url) {
        // SAFETY: mallopt only sets an allocator parameter; any value is valid to pass.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
    #[cfg(not(all(feature = "s3", target_os = "linux", target_env = "gnu")))]
    let _ = paths;
}

/// Opens a file (or object) for reading, from its first byte.
pub(crate) fn open(path: &Path) -> Result<Box<dyn Read + Send>, DataError> {
    if is_object_url(path) {
        #[cfg(feature = "s3")]
        return Ok(Box::new(remote::open(path)?));
        #[cfg(not(feature = "s3"))]
        return Err(no_s3(path));
    }
    let io = |e: std::io::Error| DataError::file(path, "io", format!("cannot open: {e}"));
    if std::fs::metadata(path).map_err(io)?.is_dir() {
        return Err(DataError::file(
            path,
            "io",
            "is a directory, expected a data file",
        ));
    }
    Ok(Box::new(std::fs::File::open(path).map_err(io)?))
}

/// The whole of a file (or object).
pub fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    open(path)?
        .read_to_end(&mut out)
        .map_err(|e| DataError::file(path, "io", format!("cannot read: {e}")))?;
    Ok(out)
}

/// Whether a file (or object) exists and starts with `magic`.
pub(crate) fn starts_with(path: &Path, magic: &[u8]) -> bool {
    if is_object_url(path) {
        #[cfg(feature = "s3")]
        return remote::first_bytes(path, magic.len() as u64).is_ok_and(|b| b[..] == *magic);
        #[cfg(not(feature = "s3"))]
        return false;
    }
    let mut head = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == magic
}

/// Whether `path` names an existing file (or object).
pub fn is_file(path: &Path) -> bool {
    if is_object_url(path) {
        #[cfg(feature = "s3")]
        return remote::Object::head(path).is_ok();
        #[cfg(not(feature = "s3"))]
        return false;
    }
    path.is_file()
}

/// The objects under `prefix` (an `s3://bucket/…` folder, any depth) in key order, each
/// with the folders between `prefix` and its name; `None` for a local path.
pub(crate) fn list_objects(prefix: &Path) -> Option<Result<Vec<PathBuf>, DataError>> {
    if !is_object_url(prefix) {
        return None;
    }
    #[cfg(feature = "s3")]
    return Some(remote::list(prefix));
    #[cfg(not(feature = "s3"))]
    return Some(Err(no_s3(prefix)));
}

#[cfg(not(feature = "s3"))]
pub(crate) fn no_s3(path: &Path) -> DataError {
    DataError::file(
        path,
        "io",
        "is an object-store URL, but this mfh was built without S3 support (build with `--features s3`)",
    )
}

/// Reads bytes `start..end` from a source of chunks that can be asked again from any
/// offset, as one stream of bytes that survives broken connections: each failure (an
/// error, or the chunks ending before `end`) starts a new stream at the first byte not
/// yet handed on.
/// Failures of kind `NotFound` or `InvalidData` (the object is gone or was replaced) end
/// the read at once.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) struct Resuming<F: Fetch> {
    fetch: F,
    /// What errors and warnings name.
    name: String,
    pos: u64,
    end: u64,
    chunks: Option<F::Chunks>,
    chunk: bytes::Bytes,
    failed: u32,
    /// Streams started again so far.
    pub retries: u32,
    pause: std::time::Duration,
}

/// A source of the chunks of bytes `start..end`.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) trait Fetch: Send {
    type Chunks: Iterator<Item = std::io::Result<bytes::Bytes>> + Send;
    fn from(&mut self, start: u64, end: u64) -> std::io::Result<Self::Chunks>;
}

#[cfg_attr(not(feature = "s3"), allow(dead_code))]
impl<F: Fetch> Resuming<F> {
    pub fn new(fetch: F, name: String, start: u64, end: u64) -> Resuming<F> {
        Resuming {
            fetch,
            name,
            pos: start,
            end,
            chunks: None,
            chunk: bytes::Bytes::new(),
            failed: 0,
            retries: 0,
            pause: std::time::Duration::from_millis(100),
        }
    }

    /// The pause before the first retry (doubled for each further one in a row).
    #[cfg(test)]
    fn pausing(mut self, pause: std::time::Duration) -> Self {
        self.pause = pause;
        self
    }
}

impl<F: Fetch> Read for Resuming<F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        loop {
            if !self.chunk.is_empty() || out.is_empty() {
                let n = self.chunk.len().min(out.len());
                out[..n].copy_from_slice(&self.chunk.split_to(n));
                self.pos += n as u64;
                return Ok(n);
            }
            if self.pos >= self.end {
                return Ok(0);
            }
            let got = match &mut self.chunks {
                Some(c) => c.next(),
                None => match self.fetch.from(self.pos, self.end) {
                    Ok(c) => {
                        self.chunks = Some(c);
                        continue;
                    }
                    Err(e) => Some(Err(e)),
                },
            };
            let why = match got {
                Some(Ok(b)) if b.len() as u64 > self.end - self.pos => {
                    return Err(Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "bytes past {} came (was it replaced while being read?)",
                            self.end
                        ),
                    ));
                }
                Some(Ok(b)) => {
                    if !b.is_empty() {
                        self.failed = 0;
                    }
                    self.chunk = b;
                    continue;
                }
                Some(Err(e))
                    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) =>
                {
                    return Err(e)
                }
                Some(Err(e)) => e.to_string(),
                None => "the stream ended early".to_string(),
            };
            self.chunks = None;
            self.failed += 1;
            if self.failed >= TRIES {
                return Err(Error::other(format!(
                    "at byte {} of {}: {why} ({TRIES} tries in a row)",
                    self.pos, self.end
                )));
            }
            self.retries += 1;
            eprintln!(
                "{}: {why} at byte {} of {}; reading on from there (try {} of {TRIES})",
                self.name,
                self.pos,
                self.end,
                self.failed + 1
            );
            std::thread::sleep(self.pause * (1 << (self.failed - 1).min(6)));
        }
    }
}

#[cfg(feature = "s3")]
pub(crate) mod remote {
    //! S3 objects through `object_store`, on one background Tokio runtime; the reader's
    //! threads wait on it (never from inside another runtime: the futures are spawned).

    use super::{Fetch, Resuming, TRIES};
    use crate::error::DataError;
    use bytes::Bytes;
    use futures_util::stream::BoxStream;
    use futures_util::StreamExt;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as Key;
    use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
    use std::collections::HashMap;
    use std::io::{Error, ErrorKind};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, OnceLock};

    fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
        static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("mfh-s3")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the S3 client's runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// Runs `f` on the runtime and waits for it.
    fn run<T: Send + 'static>(
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime()?.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| "the S3 client's runtime stopped".to_string())
    }

    /// `s3://bucket/key` split; the key without leading or doubled slashes.
    fn split(url: &Path) -> Result<(String, Key), String> {
        let s = url.to_str().unwrap_or_default();
        let rest = s.strip_prefix("s3://").unwrap_or(s);
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("no bucket: write s3://BUCKET/KEY".into());
        }
        let key = Key::parse(key).map_err(|e| format!("not a valid object key: {e}"))?;
        Ok((bucket.to_string(), key))
    }

    type Stores = Mutex<HashMap<String, Arc<dyn ObjectStore>>>;

    fn stores() -> std::sync::MutexGuard<'static, HashMap<String, Arc<dyn ObjectStore>>> {
        static STORES: OnceLock<Stores> = OnceLock::new();
        STORES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// `url`'s bucket, its store and the key.
    fn locate(url: &Path) -> Result<(String, Arc<dyn ObjectStore>, Key), DataError> {
        let err = |m: String| DataError::file(url, "io", m);
        let (bucket, key) = split(url).map_err(err)?;
        let store = store(&bucket).map_err(err)?;
        Ok((bucket, store, key))
    }

    /// The store of `bucket`, made once (its connections are kept).
    fn store(bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let mut stores = stores();
        if let Some(s) = stores.get(bucket) {
            return Ok(s.clone());
        }
        // reqwest is built without a default TLS provider (ring instead of aws-lc: no
        // cmake); a second install fails harmlessly. (rustls marks ring's provider
        // deprecated for lacking post-quantum key exchange.)
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s: Arc<dyn ObjectStore> = Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| format!("cannot set up the S3 client (AWS_* variables): {e}"))?,
        );
        stores.insert(bucket.to_string(), s.clone());
        Ok(s)
    }

    /// Tests: `s3://bucket/…` served by `store` (an in-memory one).
    #[cfg(test)]
    pub fn register(bucket: &str, store: Arc<dyn ObjectStore>) {
        stores().insert(bucket.to_string(), store);
    }

    /// Tests: puts `bytes` at `s3://bucket/key` of a registered store.
    #[cfg(test)]
    pub fn put(bucket: &str, key: &str, bytes: Vec<u8>) {
        let s = store(bucket).unwrap();
        let key = Key::parse(key).unwrap();
        run(async move { s.put(&key, bytes.into()).await })
            .unwrap()
            .unwrap();
    }

    fn io_error(e: object_store::Error) -> Error {
        let kind = match e {
            object_store::Error::NotFound { .. } => ErrorKind::NotFound,
            object_store::Error::Precondition { .. } => ErrorKind::InvalidData,
            _ => ErrorKind::Other,
        };
        Error::new(kind, e.to_string())
    }

    /// One object, as listed when it was opened.
    #[derive(Clone)]
    pub(crate) struct Object {
        url: PathBuf,
        store: Arc<dyn ObjectStore>,
        key: Key,
        pub size: u64,
        etag: Option<String>,
    }

    impl std::fmt::Debug for Object {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.url.display())
        }
    }

    impl Object {
        pub fn head(url: &Path) -> Result<Object, DataError> {
            let err = |m: String| DataError::file(url, "io", m);
            let (_, store, key) = locate(url)?;
            let (s, k) = (store.clone(), key.clone());
            let meta = run(async move { s.head(&k).await })
                .map_err(err)?
                .map_err(|e| err(format!("cannot open: {e}")))?;
            Ok(Object {
                url: url.to_path_buf(),
                store,
                key,
                size: meta.size,
                etag: meta.e_tag,
            })
        }

        pub fn error(&self, e: Error) -> DataError {
            DataError::file(&self.url, "io", format!("cannot read: {e}"))
        }

        /// Its bytes from `start` on, streamed.
        pub fn reader(&self, start: u64) -> Resuming<Object> {
            Resuming::new(
                self.clone(),
                self.url.display().to_string(),
                start,
                self.size,
            )
        }

        /// `len` bytes from `start` (retried whole, as [`Resuming`] retries).
        #[cfg(feature = "parquet")]
        pub fn range(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
            let mut out = Vec::with_capacity(len);
            let mut r = Resuming::new(
                self.clone(),
                self.url.display().to_string(),
                start,
                (start + len as u64).min(self.size),
            );
            std::io::Read::read_to_end(&mut r, &mut out)?;
            if out.len() != len {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "bytes {start}..{} past the end ({})",
                        start + len as u64,
                        self.size
                    ),
                ));
            }
            Ok(out.into())
        }
    }

    /// Bytes fetched ahead by [`Ranges`]: a Parquet reader asks for each column chunk of a
    /// row group in turn, and they lie side by side.
    #[cfg(feature = "parquet")]
    const WINDOW: u64 = 8 << 20;
    /// The tail fetched for a footer (the reader asks for its last 8 bytes, then the
    /// metadata before them).
    #[cfg(feature = "parquet")]
    const TAIL: u64 = 64 << 10;

    /// An object read by ranges, each request served from one window of bytes fetched
    /// ahead (at most [`WINDOW`] bytes beyond a request, or the object's last [`TAIL`]
    /// bytes for a request that ends at its end): a few requests per row group instead of
    /// one per column chunk, with a store's latency per request in the tens of
    /// milliseconds. Memory: one window per open object.
    #[cfg(feature = "parquet")]
    pub(crate) struct Ranges {
        obj: Object,
        window: Mutex<(u64, Bytes)>,
        /// Requests made (tests).
        pub fetches: Arc<std::sync::atomic::AtomicU32>,
    }

    #[cfg(feature = "parquet")]
    impl Ranges {
        pub fn new(obj: Object) -> Ranges {
            Ranges {
                obj,
                window: Mutex::new((0, Bytes::new())),
                fetches: Default::default(),
            }
        }

        pub fn object(&self) -> &Object {
            &self.obj
        }

        /// Bytes `start..start + len`.
        pub fn get(&self, start: u64, len: usize) -> std::io::Result<Bytes> {
            let (size, end) = (self.obj.size, start + len as u64);
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let (at, bytes) = &*w;
            if *at <= start && end <= at + bytes.len() as u64 {
                return Ok(bytes.slice((start - at) as usize..(end - at) as usize));
            }
            if end > size {
                // As the object is: the read below says so.
                return self.obj.range(start, len);
            }
            let (a, b) = if end == size {
                (size - (len as u64).max(TAIL).min(size), size)
            } else {
                (start, size.min(start + (len as u64).max(WINDOW)))
            };
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let got = self.obj.range(a, (b - a) as usize)?;
            *w = (a, got);
            Ok(w.1.slice((start - a) as usize..(end - a) as usize))
        }
    }

    /// Bytes from an offset on, read through [`Ranges`]' window (a Parquet reader reads
    /// page headers this way: a few bytes at a time, near the chunks it fetches).
    #[cfg(feature = "parquet")]
    pub(crate) struct RangeReader {
        ranges: Arc<Ranges>,
        pos: u64,
    }

    #[cfg(feature = "parquet")]
    impl RangeReader {
        pub fn new(ranges: Arc<Ranges>, pos: u64) -> RangeReader {
            RangeReader { ranges, pos }
        }
    }

    #[cfg(feature = "parquet")]
    impl std::io::Read for RangeReader {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let left = self.ranges.obj.size.saturating_sub(self.pos);
            let n = (out.len() as u64).min(left).min(64 << 10) as usize;
            if n == 0 {
                return Ok(0);
            }
            out[..n].copy_from_slice(&self.ranges.get(self.pos, n)?);
            self.pos += n as u64;
            Ok(n)
        }
    }

    /// The chunks of a GET, handed over from the runtime through a small queue.
    pub(crate) struct Chunks(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

    impl Iterator for Chunks {
        type Item = std::io::Result<Bytes>;
        fn next(&mut self) -> Option<Self::Item> {
            wait(self.0.recv())
        }
    }

    /// Polls `f` on this thread until it is ready, parking in between (unlike Tokio's
    /// `blocking_recv`, also from inside another runtime, e.g. a server loading a model).
    fn wait<F: std::future::Future>(f: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Arc::new(Unpark(std::thread::current())).into();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    /// The chunks of a GET's stream (`get`: the request, then its stream), forwarded on
    /// the runtime.
    fn forward<F>(get: F) -> std::io::Result<Chunks>
    where
        F: std::future::Future<
                Output = object_store::Result<BoxStream<'static, object_store::Result<Bytes>>>,
            > + Send
            + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        runtime().map_err(Error::other)?.spawn(async move {
            let mut stream = match get.await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(io_error(e))).await;
                    return;
                }
            };
            while let Some(c) = stream.next().await {
                let failed = c.is_err();
                // The reader gone (dropped mid-file): stop fetching.
                if tx.send(c.map_err(io_error)).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Chunks(rx))
    }

    impl Fetch for Object {
        type Chunks = Chunks;
        fn from(&mut self, start: u64, end: u64) -> std::io::Result<Chunks> {
            let opts = GetOptions {
                if_match: self.etag.clone(),
                range: Some(GetRange::Bounded(start..end)),
                ..Default::default()
            };
            let (store, key) = (self.store.clone(), self.key.clone());
            forward(async move { Ok(store.get_opts(&key, opts).await?.into_stream()) })
        }
    }

    /// Opens `url` with one GET of the whole object, read as it arrives: its size and
    /// ETag come with the answer (no HEAD first; one request per file and pass counts
    /// over hourly partitions).
    pub fn open(url: &Path) -> Result<Resuming<Object>, DataError> {
        let err = |m: String| DataError::file(url, "io", m);
        let (_, store, key) = locate(url)?;
        let (s, k) = (store.clone(), key.clone());
        let got = run(async move { s.get_opts(&k, GetOptions::default()).await })
            .map_err(err)?
            .map_err(|e| err(format!("cannot open: {e}")))?;
        let obj = Object {
            url: url.to_path_buf(),
            store,
            key,
            size: got.meta.size,
            etag: got.meta.e_tag.clone(),
        };
        let stream = got.into_stream();
        let mut r = obj.reader(0);
        r.chunks = Some(forward(async move { Ok(stream) }).map_err(|e| obj.error(e))?);
        Ok(r)
    }

    /// The first `n` bytes of `url` (fewer for a shorter object), one ranged GET.
    pub fn first_bytes(url: &Path, n: u64) -> Result<Bytes, DataError> {
        let err = |m: String| DataError::file(url, "io", m);
        let (_, store, key) = locate(url)?;
        let opts = GetOptions {
            range: Some(GetRange::Bounded(0..n)),
            ..Default::default()
        };
        run(async move { store.get_opts(&key, opts).await?.bytes().await })
            .map_err(err)?
            .map_err(|e| err(format!("cannot read: {e}")))
    }

    /// The objects under the folder `prefix`, any depth, in key order, as URLs.
    pub fn list(prefix: &Path) -> Result<Vec<PathBuf>, DataError> {
        let err = |m: String| DataError::file(prefix, "io", m);
        let (bucket, store, key) = locate(prefix)?;
        let mut tries = 0;
        let metas = loop {
            let (s, k) = (store.clone(), key.clone());
            let got = run(async move {
                let prefix = (!k.as_ref().is_empty()).then_some(&k);
                s.list(prefix)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(err)?;
            match got {
                Ok(m) => break m,
                Err(e) if tries + 1 < TRIES => {
                    tries += 1;
                    eprintln!("{}: listing failed ({e}); again", prefix.display());
                    std::thread::sleep(std::time::Duration::from_millis(100 << tries));
                }
                Err(e) => return Err(err(format!("cannot list: {e}"))),
            }
        };
        let mut urls: Vec<PathBuf> = metas
            .into_iter()
            .map(|m| PathBuf::from(format!("s3://{bucket}/{}", m.location)))
            .collect();
        urls.sort();
        Ok(urls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    /// A fetch over fixed bytes whose streams break as scripted: each stream gives
    /// `chunk`-byte pieces and then fails (or just ends) after `breaks[k]` pieces.
    struct Flaky {
        data: Vec<u8>,
        chunk: usize,
        breaks: Vec<(usize, bool)>,
        starts: Vec<u64>,
        gone_after: Option<usize>,
    }

    impl Fetch for &mut Flaky {
        type Chunks = std::vec::IntoIter<std::io::Result<bytes::Bytes>>;
        fn from(&mut self, start: u64, _end: u64) -> std::io::Result<Self::Chunks> {
            let k = self.starts.len();
            self.starts.push(start);
            if self.gone_after.is_some_and(|g| k >= g) {
                return Err(Error::new(ErrorKind::InvalidData, "precondition failed"));
            }
            let rest = &self.data[start as usize..];
            let mut out: Vec<_> = rest
                .chunks(self.chunk)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            if let Some(&(after, error)) = self.breaks.get(k) {
                out.truncate(after);
                if error {
                    out.push(Err(Error::other("connection reset")));
                }
            }
            Ok(out.into_iter())
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_broken_stream_is_taken_up_at_the_next_byte() {
        let mut f = Flaky {
            data: data(10_000),
            chunk: 999,
            // An error after 3 pieces, a silent early end after 2, an error at once, then whole.
            breaks: vec![(3, true), (2, false), (0, true)],
            starts: vec![],
            gone_after: None,
        };
        let mut got = Vec::new();
        let mut r = Resuming::new(&mut f, "t".into(), 0, 10_000).pausing(Default::default());
        r.read_to_end(&mut got).unwrap();
        assert_eq!(r.retries, 3);
        drop(r);
        assert_eq!(got.len(), 10_000);
        assert!(got == f.data, "every byte once, in order");
        assert_eq!(f.starts, vec![0, 2997, 4995, 4995]);
    }

    #[test]
    fn too_many_failures_in_a_row_or_a_replaced_object_are_errors() {
        let mut f = Flaky {
            data: data(5_000),
            chunk: 1000,
            breaks: vec![
                (1, true),
                (0, true),
                (0, true),
                (0, false),
                (0, true),
                (0, true),
            ],
            starts: vec![],
            gone_after: None,
        };
        let mut r = Resuming::new(&mut f, "t".into(), 0, 5_000).pausing(Default::default());
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("at byte 1000 of 5000"), "{e}");
        assert!(e.to_string().contains("6 tries in a row"), "{e}");

        let mut g = Flaky {
            data: data(5_000),
            chunk: 1000,
            breaks: vec![(2, true)],
            starts: vec![],
            gone_after: Some(1),
        };
        let mut r = Resuming::new(&mut g, "t".into(), 0, 5_000).pausing(Default::default());
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
        assert_eq!(r.retries, 1, "no retry after the object changed");
    }

    #[test]
    fn a_read_from_an_offset_and_an_object_longer_than_listed() {
        let mut f = Flaky {
            data: data(3_000),
            chunk: 512,
            breaks: vec![],
            starts: vec![],
            gone_after: None,
        };
        let mut got = Vec::new();
        Resuming::new(&mut f, "t".into(), 1_000, 3_000)
            .read_to_end(&mut got)
            .unwrap();
        assert!(got[..] == f.data[1_000..]);
        // Listed shorter than it is: the first piece that overruns is an error.
        let mut r = Resuming::new(&mut f, "t".into(), 0, 700);
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("bytes past 700 came"), "{e}");
    }
}
