//! The contract every [`Node`] keeps, as a test suite: each implementation (memory, a local
//! repository, a directory, a repository behind P2P, ...) runs [`run`] with a factory of
//! fresh, empty nodes, and must pass every case that applies to its [`Caps`].
//!
//! What the cases check, in the [`Node`] trait's own terms:
//! * content stored through [`PutSink`] is present, reads back byte for byte (from any
//!   offset, past the end included), and is gone after a removal; storing it again is
//!   `AlreadyHave`; absent content is absent everywhere (no download, no lock, removal
//!   succeeds);
//! * content that does not match its key is never stored and leaves no partial upload
//!   (sent as valid, and sent as invalid);
//! * an upload that ends early is resumed from where it stopped (`Caps::resume`);
//! * a held lock keeps content from removal until released (`Caps::lock`);
//! * a removal deadline at or before the node's clock is refused, a later one honoured;
//!   the clock never goes back;
//! * `data_present` of absent content stores nothing;
//! * operations run concurrently on one node, a held lock included, without blocking
//!   each other.
//!
//! Every case runs on its own fresh node with a time limit, so a hang is a failure, not a
//! stuck test run. Failures come back as text; the caller decides how to report them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{Node, PutStart, Stored, Validity};
use crate::types::backend::{hash_hex, HashKind};
use crate::types::{AssociatedFile, Key};

type CaseFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One check of the contract.
pub struct Case {
    pub name: &'static str,
    /// When it applies (by the node's capabilities).
    needs: Need,
    run: fn(Arc<dyn Node>) -> CaseFuture,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    Lock,
    Resume,
}

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The time limit of one case. Default 120 s.
    pub case_timeout: Duration,
    /// Cases not to run, by name, with the reason (reported as skipped).
    pub skip: Vec<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            case_timeout: Duration::from_secs(120),
            skip: Vec::new(),
        }
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: Vec<&'static str>,
    pub skipped: Vec<(&'static str, String)>,
    pub failed: Vec<(&'static str, String)>,
}

impl Report {
    /// `Err` listing every failure, else the report.
    pub fn into_result(self) -> Result<Report, String> {
        if self.failed.is_empty() {
            Ok(self)
        } else {
            let lines: Vec<String> = self
                .failed
                .iter()
                .map(|(c, m)| format!("  {c}: {m}"))
                .collect();
            Err(format!(
                "{} of {} conformance cases failed:\n{}",
                self.failed.len(),
                self.failed.len() + self.passed.len(),
                lines.join("\n")
            ))
        }
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Every case.
pub fn cases() -> Vec<Case> {
    macro_rules! case {
        ($name:ident, $needs:expr) => {
            Case {
                name: stringify!($name),
                needs: $needs,
                run: |n| Box::pin($name(n)),
            }
        };
    }
    vec![
        case!(round_trip, Need::Nothing),
        case!(large_round_trip, Need::Nothing),
        case!(absent_content, Need::Nothing),
        case!(get_from_offsets, Need::Nothing),
        case!(empty_content, Need::Nothing),
        case!(already_have, Need::Nothing),
        case!(verification_failure_leaves_nothing, Need::Nothing),
        case!(invalid_upload_leaves_nothing, Need::Nothing),
        case!(resume_after_abort, Need::Resume),
        case!(data_present_of_absent_content, Need::Nothing),
        case!(lock_blocks_removal, Need::Lock),
        case!(remove_before_deadline, Need::Nothing),
        case!(timestamps_never_go_back, Need::Nothing),
        case!(concurrent_operations, Need::Nothing),
        case!(lock_and_remove_concurrently, Need::Lock),
    ]
}

/// Run every case that applies, each on a node from `fresh`.
pub async fn run(fresh: &(dyn Fn() -> Arc<dyn Node> + Sync), options: &Options) -> Report {
    let mut report = Report::default();
    for case in cases() {
        if let Some((_, why)) = options.skip.iter().find(|(n, _)| *n == case.name) {
            report.skipped.push((case.name, why.to_string()));
            continue;
        }
        let node = fresh();
        let caps = node.caps();
        let missing = match case.needs {
            Need::Lock if !caps.lock => Some("the node cannot lock content"),
            Need::Resume if !caps.resume => Some("the node does not resume uploads"),
            _ => None,
        };
        if let Some(why) = missing {
            report.skipped.push((case.name, why.to_string()));
            continue;
        }
        let outcome = tokio::time::timeout(options.case_timeout, (case.run)(node)).await;
        match outcome {
            Ok(Ok(())) => report.passed.push(case.name),
            Ok(Err(m)) => report.failed.push((case.name, m)),
            Err(_) => report.failed.push((
                case.name,
                format!("did not finish within {:?}", options.case_timeout),
            )),
        }
    }
    report
}

// ---- helpers ----

/// Deterministic bytes for a case: not all alike, so misplaced chunks show.
pub fn test_data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// The SHA256E key of `data`, with extension `.bin`.
pub fn key_for(data: &[u8]) -> Key {
    let text = format!(
        "SHA256E-s{}--{}.bin",
        data.len(),
        hash_hex(HashKind::Sha2_256, data)
    );
    Key::from_str(&text).expect("a SHA256E key built from its parts parses")
}

fn af() -> AssociatedFile {
    AssociatedFile::new("conformance/file.bin")
}

fn show<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Upload all of `data` (from whatever offset the node asks), in chunks of `chunk` bytes.
pub async fn store_chunked(
    node: &dyn Node,
    key: &Key,
    data: &[u8],
    validity: Validity,
    chunk: usize,
) -> Result<Stored, String> {
    match node.put(key, &af()).await.map_err(show("put"))? {
        PutStart::AlreadyHave { .. } => Err("put: AlreadyHave for new content".into()),
        PutStart::Accept(mut sink) => {
            let from = sink.offset() as usize;
            ensure!(
                from <= data.len(),
                "put: offset {from} beyond the content's {} bytes",
                data.len()
            );
            sink.begin((data.len() - from) as u64)
                .await
                .map_err(show("begin"))?;
            for c in data[from..].chunks(chunk.max(1)) {
                sink.write(c).await.map_err(show("write"))?;
            }
            sink.finish(validity).await.map_err(show("finish"))
        }
    }
}

/// Upload `data` and require that it was stored.
pub async fn store(node: &dyn Node, key: &Key, data: &[u8]) -> Result<(), String> {
    let s = store_chunked(node, key, data, Validity::Valid, 64 * 1024).await?;
    ensure!(s.stored, "the node did not store {key}");
    Ok(())
}

/// Download from `offset`; `None` when absent.
pub async fn fetch(
    node: &dyn Node,
    key: &Key,
    offset: u64,
) -> Result<Option<(Vec<u8>, Validity)>, String> {
    let Some(mut c) = node.get(key, offset, &af()).await.map_err(show("get"))? else {
        return Ok(None);
    };
    let len = c.len();
    let mut out = Vec::with_capacity(len as usize);
    let mut buf = vec![0u8; 100_000];
    loop {
        let n = c.read(&mut buf).await.map_err(show("read"))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        ensure!(
            out.len() as u64 <= len,
            "read more than the {len} bytes announced"
        );
    }
    ensure!(
        out.len() as u64 == len,
        "read {} of the {len} bytes announced",
        out.len()
    );
    let v = c.validity().await.map_err(show("validity"))?;
    c.done(true).await.map_err(show("done"))?;
    Ok(Some((out, v)))
}

async fn present(node: &dyn Node, key: &Key) -> Result<bool, String> {
    node.check_present(key).await.map_err(show("check_present"))
}

fn same(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    Err(format!(
        "content differs: {} bytes read, {} expected, first difference at {:?}",
        got.len(),
        want.len(),
        first
    ))
}

async fn round_trip_of(node: &dyn Node, data: &[u8], chunk: usize) -> Result<(), String> {
    let key = key_for(data);
    ensure!(!present(node, &key).await?, "a fresh node has {key}");
    let s = store_chunked(node, &key, data, Validity::Valid, chunk).await?;
    ensure!(s.stored, "not stored: {s:?}");
    ensure!(present(node, &key).await?, "stored content is not present");
    let (got, v) = fetch(node, &key, 0)
        .await?
        .ok_or("stored content cannot be downloaded")?;
    same(&got, data)?;
    ensure!(
        v != Validity::Invalid,
        "unchanged content was sent as INVALID"
    );
    let r = node.remove(&key, None).await.map_err(show("remove"))?;
    ensure!(r.removed, "removal failed: {r:?}");
    ensure!(!present(node, &key).await?, "removed content is present");
    ensure!(
        fetch(node, &key, 0).await?.is_none(),
        "removed content can be downloaded"
    );
    Ok(())
}

// ---- the cases ----

async fn round_trip(node: Arc<dyn Node>) -> Result<(), String> {
    round_trip_of(&*node, b"hello conformance\n", 5).await
}

async fn large_round_trip(node: Arc<dyn Node>) -> Result<(), String> {
    // Larger than pipe and socket buffers, in uneven chunks.
    round_trip_of(&*node, &test_data(3 * 1024 * 1024 + 17, 1), 100_003).await
}

async fn absent_content(node: Arc<dyn Node>) -> Result<(), String> {
    let key = key_for(&test_data(1000, 2));
    ensure!(!present(&*node, &key).await?, "absent content is present");
    for offset in [0, 10] {
        ensure!(
            fetch(&*node, &key, offset).await?.is_none(),
            "absent content can be downloaded from {offset}"
        );
    }
    let lock = node.lock_content(&key).await.map_err(show("lock"))?;
    ensure!(lock.is_none(), "absent content was locked");
    let r = node.remove(&key, None).await.map_err(show("remove"))?;
    ensure!(r.removed, "removing absent content must succeed: {r:?}");
    Ok(())
}

async fn get_from_offsets(node: Arc<dyn Node>) -> Result<(), String> {
    let data = test_data(70_000, 3);
    let key = key_for(&data);
    store(&*node, &key, &data).await?;
    let n = data.len() as u64;
    for offset in [0, 1, 4096, n - 1, n, n + 5] {
        let (got, v) = fetch(&*node, &key, offset)
            .await?
            .ok_or_else(|| format!("no download from offset {offset}"))?;
        let want = &data[(offset.min(n) as usize)..];
        same(&got, want).map_err(|e| format!("from offset {offset}: {e}"))?;
        ensure!(
            v != Validity::Invalid,
            "from offset {offset}: unchanged content sent as INVALID"
        );
    }
    Ok(())
}

async fn empty_content(node: Arc<dyn Node>) -> Result<(), String> {
    let key = key_for(b"");
    store(&*node, &key, b"").await?;
    ensure!(
        present(&*node, &key).await?,
        "stored empty content is absent"
    );
    let (got, _) = fetch(&*node, &key, 0)
        .await?
        .ok_or("stored empty content cannot be downloaded")?;
    ensure!(got.is_empty(), "empty content read as {} bytes", got.len());
    Ok(())
}

async fn already_have(node: Arc<dyn Node>) -> Result<(), String> {
    let data = test_data(5000, 4);
    let key = key_for(&data);
    store(&*node, &key, &data).await?;
    match node.put(&key, &af()).await.map_err(show("put"))? {
        PutStart::AlreadyHave { .. } => Ok(()),
        PutStart::Accept(s) => {
            let offset = s.offset();
            s.abort().await;
            Err(format!(
                "a second upload of stored content was accepted (offset {offset})"
            ))
        }
    }
}

async fn verification_failure_leaves_nothing(node: Arc<dyn Node>) -> Result<(), String> {
    wrong_bytes_leave_nothing(node, Validity::Valid).await
}

/// Apart from [`verification_failure_leaves_nothing`] because p2phttp cannot keep this
/// part of the contract: its only way to say INVALID is a body one byte short, which a
/// server cannot tell from an interrupted upload, so it keeps those bytes for a resume
/// (git-annex's server as ours).
async fn invalid_upload_leaves_nothing(node: Arc<dyn Node>) -> Result<(), String> {
    wrong_bytes_leave_nothing(node, Validity::Invalid).await
}

async fn wrong_bytes_leave_nothing(node: Arc<dyn Node>, v: Validity) -> Result<(), String> {
    let data = test_data(20_000, 5);
    let key = key_for(&data);
    let mut wrong = data.clone();
    wrong[12_345] ^= 0x55;
    let stored = match store_chunked(&*node, &key, &wrong, v, 7000).await {
        Ok(s) => s.stored,
        Err(_) => false,
    };
    ensure!(!stored, "wrong bytes sent as {v:?} were stored");
    ensure!(
        !present(&*node, &key).await?,
        "wrong bytes sent as {v:?} made the content present"
    );
    ensure!(
        fetch(&*node, &key, 0).await?.is_none(),
        "wrong bytes sent as {v:?} can be downloaded"
    );
    match node.put(&key, &af()).await.map_err(show("put"))? {
        PutStart::AlreadyHave { .. } => {
            return Err(format!("after wrong bytes ({v:?}): AlreadyHave"))
        }
        PutStart::Accept(s) => {
            let offset = s.offset();
            s.abort().await;
            ensure!(
                offset == 0,
                "after wrong bytes ({v:?}) an upload resumes at {offset}: the bad partial was kept"
            );
        }
    }
    // The right bytes are still welcome.
    store(&*node, &key, &data).await?;
    let (got, _) = fetch(&*node, &key, 0).await?.ok_or("not stored")?;
    same(&got, &data)
}

async fn resume_after_abort(node: Arc<dyn Node>) -> Result<(), String> {
    let data = test_data(300_000, 6);
    let key = key_for(&data);
    let half = 123_456usize;
    match node.put(&key, &af()).await.map_err(show("put"))? {
        PutStart::AlreadyHave { .. } => return Err("AlreadyHave on a fresh node".into()),
        PutStart::Accept(mut sink) => {
            ensure!(
                sink.offset() == 0,
                "fresh upload offered at {}",
                sink.offset()
            );
            sink.begin(data.len() as u64).await.map_err(show("begin"))?;
            sink.write(&data[..half]).await.map_err(show("write"))?;
            sink.abort().await;
        }
    }
    ensure!(
        !present(&*node, &key).await?,
        "an aborted upload is present"
    );
    // A node may take a moment to settle the aborted upload (a server process seeing
    // its input end); ask again until it offers the resume point.
    let mut last = String::new();
    for _ in 0..50 {
        match node.put(&key, &af()).await {
            Ok(PutStart::Accept(mut sink)) if sink.offset() == half as u64 => {
                sink.begin((data.len() - half) as u64)
                    .await
                    .map_err(show("begin"))?;
                sink.write(&data[half..]).await.map_err(show("write"))?;
                let s = sink.finish(Validity::Valid).await.map_err(show("finish"))?;
                ensure!(s.stored, "the resumed upload was not stored");
                let (got, _) = fetch(&*node, &key, 0).await?.ok_or("not stored")?;
                return same(&got, &data);
            }
            Ok(PutStart::Accept(sink)) => {
                last = format!("offered offset {}", sink.offset());
                sink.abort().await;
            }
            Ok(PutStart::AlreadyHave { .. }) => return Err("AlreadyHave after an abort".into()),
            Err(e) => last = format!("put failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the upload did not resume at byte {half} ({last})"))
}

async fn data_present_of_absent_content(node: Arc<dyn Node>) -> Result<(), String> {
    let data = test_data(4000, 7);
    let key = key_for(&data);
    match node.put(&key, &af()).await.map_err(show("put"))? {
        PutStart::AlreadyHave { .. } => return Err("AlreadyHave on a fresh node".into()),
        PutStart::Accept(sink) => {
            let stored = match sink.data_present().await {
                Ok(s) => s.stored,
                Err(_) => false,
            };
            ensure!(!stored, "DATA-PRESENT of absent content claimed it stored");
        }
    }
    ensure!(
        !present(&*node, &key).await?,
        "DATA-PRESENT made content present"
    );
    // The node still works normally afterwards.
    store(&*node, &key, &data).await
}

/// A removal that must not happen: refused (`removed: false`) or failed with an error
/// (real git-annex-shell ends the session when content is locked), and the content stays.
async fn refused_removal(
    node: &dyn Node,
    key: &Key,
    deadline: Option<u64>,
    why: &str,
) -> Result<(), String> {
    if let Ok(r) = node.remove(key, deadline).await {
        ensure!(!r.removed, "{why}: removed anyway");
    }
    ensure!(present(node, key).await?, "{why}: the content vanished");
    Ok(())
}

/// Remove until it succeeds (a lock may be released asynchronously), for up to 5 s.
async fn remove_eventually(node: &dyn Node, key: &Key) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..50 {
        match node.remove(key, None).await {
            Ok(r) if r.removed => return Ok(()),
            Ok(r) => last = format!("{r:?}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "removal kept failing after the lock was released: {last}"
    ))
}

async fn lock_blocks_removal(node: Arc<dyn Node>) -> Result<(), String> {
    let data = test_data(3000, 8);
    let key = key_for(&data);
    store(&*node, &key, &data).await?;
    let lock = node
        .lock_content(&key)
        .await
        .map_err(show("lock"))?
        .ok_or("present content could not be locked")?;
    refused_removal(&*node, &key, None, "locked content").await?;
    // Reads go on while locked.
    let (got, _) = fetch(&*node, &key, 0)
        .await?
        .ok_or("locked content unreadable")?;
    same(&got, &data)?;
    lock.unlock().await.map_err(show("unlock"))?;
    remove_eventually(&*node, &key).await?;
    ensure!(!present(&*node, &key).await?, "removed content is present");
    Ok(())
}

async fn remove_before_deadline(node: Arc<dyn Node>) -> Result<(), String> {
    let data = test_data(2000, 9);
    let key = key_for(&data);
    store(&*node, &key, &data).await?;
    let now = node.timestamp().await.map_err(show("timestamp"))?;
    for past in [now, now.saturating_sub(5)] {
        let why = format!("removal after its deadline {past} (clock {now})");
        refused_removal(&*node, &key, Some(past), &why).await?;
    }
    let r = node
        .remove(&key, Some(now + 600))
        .await
        .map_err(show("remove before"))?;
    ensure!(r.removed, "removal before a future deadline failed: {r:?}");
    ensure!(!present(&*node, &key).await?, "removed content is present");
    Ok(())
}

async fn timestamps_never_go_back(node: Arc<dyn Node>) -> Result<(), String> {
    let mut last = node.timestamp().await.map_err(show("timestamp"))?;
    for _ in 0..5 {
        let t = node.timestamp().await.map_err(show("timestamp"))?;
        ensure!(t >= last, "the clock went back from {last} to {t}");
        last = t;
    }
    Ok(())
}

async fn concurrent_operations(node: Arc<dyn Node>) -> Result<(), String> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4u8 {
        let node = node.clone();
        tasks.spawn(async move {
            let data = test_data(200_000 + usize::from(i) * 1000, 20 + i);
            let key = key_for(&data);
            store(&*node, &key, &data).await?;
            ensure!(
                present(&*node, &key).await?,
                "task {i}: stored content absent"
            );
            let (got, _) = fetch(&*node, &key, 0).await?.ok_or("not stored")?;
            same(&got, &data).map_err(|e| format!("task {i}: {e}"))?;
            let t = node.timestamp().await.map_err(show("timestamp"))?;
            let r = node
                .remove(&key, Some(t + 600))
                .await
                .map_err(show("remove"))?;
            ensure!(r.removed, "task {i}: removal failed: {r:?}");
            Ok::<(), String>(())
        });
    }
    let mut errors = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task failed: {e}")),
        }
    }
    ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(())
}

async fn lock_and_remove_concurrently(node: Arc<dyn Node>) -> Result<(), String> {
    let a = test_data(1500, 30);
    let b = test_data(1600, 31);
    let (ka, kb) = (key_for(&a), key_for(&b));
    store(&*node, &ka, &a).await?;
    store(&*node, &kb, &b).await?;
    // While one key is locked, everything else on the node goes on: the other key is
    // read, removed and stored again, and a second lock is taken.
    let lock_a = node
        .lock_content(&ka)
        .await
        .map_err(show("lock"))?
        .ok_or("could not lock")?;
    let (got, _) = fetch(&*node, &kb, 0).await?.ok_or("unreadable")?;
    same(&got, &b)?;
    let lock_b = node
        .lock_content(&kb)
        .await
        .map_err(show("second lock"))?
        .ok_or("could not take a second lock")?;
    refused_removal(&*node, &kb, None, "content under the second lock").await?;
    lock_b.unlock().await.map_err(show("unlock"))?;
    remove_eventually(&*node, &kb).await?;
    refused_removal(&*node, &ka, None, "content under the first lock").await?;
    store(&*node, &kb, &b).await?;
    lock_a.unlock().await.map_err(show("unlock"))?;
    remove_eventually(&*node, &ka).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
