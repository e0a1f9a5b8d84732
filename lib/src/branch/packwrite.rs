//! Writing new objects as one git pack (version 2, whole objects, no deltas) with its
//! index (version 2), as `git index-pack` would leave them in `objects/pack/`.
//!
//! The recorder commits a batch of location changes as a few dozen new objects (log
//! blobs, the trees above them, a commit). Written as loose objects (what libgit2
//! does), each is a file of its own: a temporary file, a rename, often a new fan-out
//! directory, plus existence checks and a rescan of the pack directory per object,
//! which made most of a cluster gateway's CPU on small uploads. One pack per commit is
//! two files. [`PackBuilder`] collects the objects (compressing each as it comes) and
//! writes the pack: data first, renamed into place, then the index (git and libgit2
//! find packs by their index, so a reader never sees an index without its pack).
//!
//! Trees (names and binary ids, which deflate by a fifth at best; the root tree is tens
//! of KiB) and any object of [`STORE_FROM`] bytes or more go in as zlib streams of stored
//! blocks: a copy and a checksum, where deflating the root tree on every commit was a
//! third of a recorder's time. The others (log blobs, the commit) are deflated with a
//! small hash table, so starting each object costs little. `git repack` (which the
//! recorder starts once packs pile up) delta-compresses the trees across commits.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha1::{Digest, Sha1};

use super::pack::Kind;

/// New objects for one pack.
pub struct PackBuilder {
    deflater: Deflater,
    /// Object entries (header and compressed data), back to back, as in the pack after
    /// its 12-byte header.
    data: Vec<u8>,
    entries: Vec<Entry>,
    ids: HashSet<[u8; 20]>,
}

struct Entry {
    id: [u8; 20],
    /// Offset in the pack file (counting its header).
    offset: u64,
    crc: u32,
}

/// The id git gives an object of `kind` with `content`.
pub fn object_id(kind: Kind, content: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(kind_name(kind).as_bytes());
    h.update(b" ");
    h.update(content.len().to_string().as_bytes());
    h.update([0u8]);
    h.update(content);
    h.finalize().into()
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Commit => "commit",
        Kind::Tree => "tree",
        Kind::Blob => "blob",
        Kind::Tag => "tag",
    }
}

fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    }
}

impl Default for PackBuilder {
    fn default() -> Self {
        PackBuilder::new()
    }
}

impl PackBuilder {
    pub fn new() -> PackBuilder {
        PackBuilder {
            deflater: Deflater::new(),
            data: Vec::new(),
            entries: Vec::new(),
            ids: HashSet::new(),
        }
    }

    /// Add an object (once: adding the same object again does nothing); its id.
    pub fn add(&mut self, kind: Kind, content: &[u8]) -> io::Result<[u8; 20]> {
        self.add_hashed(kind, object_id(kind, content), content)
    }

    /// [`Self::add`] for an object whose id the caller already computed with
    /// [`object_id`] (it is not checked again).
    pub fn add_hashed(&mut self, kind: Kind, id: [u8; 20], content: &[u8]) -> io::Result<[u8; 20]> {
        if !self.ids.insert(id) {
            return Ok(id);
        }
        let start = self.data.len();
        // Type and size: 3 type bits and the low 4 size bits, then 7 size bits a byte,
        // the top bit saying another byte follows.
        let mut size = content.len() as u64;
        let mut byte = (kind_code(kind) << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size > 0 {
            self.data.push(byte | 0x80);
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        self.data.push(byte);
        if content.len() >= STORE_FROM || kind == Kind::Tree {
            stored_zlib(content, &mut self.data);
        } else {
            self.deflater.deflate(content, &mut self.data)?;
        }
        let crc = crc32(&self.data[start..]);
        self.entries.push(Entry {
            id,
            offset: 12 + start as u64,
            crc,
        });
        Ok(id)
    }

    /// How many objects were added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the pack and its index into `objects_dir/pack` and start over empty.
    /// Returns the index's path (`None` if there was nothing to write).
    pub fn write(&mut self, objects_dir: &Path) -> io::Result<Option<PathBuf>> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let dir = objects_dir.join("pack");
        fs::create_dir_all(&dir)?;
        let mut entries = std::mem::take(&mut self.entries);
        let data = std::mem::take(&mut self.data);
        self.ids.clear();

        let mut header = Vec::with_capacity(12);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        let mut h = Sha1::new();
        h.update(&header);
        h.update(&data);
        let pack_sum: [u8; 20] = h.finalize().into();

        entries.sort_unstable_by_key(|e| e.id);
        let mut idx = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
        idx.extend_from_slice(b"\xfftOc");
        idx.extend_from_slice(&2u32.to_be_bytes());
        let mut counts = [0u32; 256];
        for e in &entries {
            counts[e.id[0] as usize] += 1;
        }
        let mut total = 0u32;
        for c in counts {
            total += c;
            idx.extend_from_slice(&total.to_be_bytes());
        }
        for e in &entries {
            idx.extend_from_slice(&e.id);
        }
        for e in &entries {
            idx.extend_from_slice(&e.crc.to_be_bytes());
        }
        let mut large: Vec<u64> = Vec::new();
        for e in &entries {
            if e.offset < 0x8000_0000 {
                idx.extend_from_slice(&(e.offset as u32).to_be_bytes());
            } else {
                idx.extend_from_slice(&(0x8000_0000 | large.len() as u32).to_be_bytes());
                large.push(e.offset);
            }
        }
        for o in large {
            idx.extend_from_slice(&o.to_be_bytes());
        }
        idx.extend_from_slice(&pack_sum);
        let idx_sum: [u8; 20] = Sha1::digest(&idx).into();
        idx.extend_from_slice(&idx_sum);

        let name = hex(&pack_sum);
        let pack_path = dir.join(format!("pack-{name}.pack"));
        let idx_path = dir.join(format!("pack-{name}.idx"));
        put_file(&dir, &pack_path, &[&header, &data, &pack_sum])?;
        put_file(&dir, &idx_path, &[&idx])?;
        Ok(Some(idx_path))
    }
}

/// Write `parts` to a new temporary file in `dir`, read-only as git makes pack files,
/// and rename it to `path` (an existing file of that name has the same content: its
/// name is the checksum of it).
fn put_file(dir: &Path, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        "tmp_annexgate_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        f.set_permissions(fs::Permissions::from_mode(0o444))?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn crc32(b: &[u8]) -> u32 {
    let mut crc: libz_sys::uLong = 0;
    for chunk in b.chunks(u32::MAX as usize) {
        // SAFETY: zlib reads `chunk.len()` bytes from a live slice.
        crc = unsafe { libz_sys::crc32(crc, chunk.as_ptr(), chunk.len() as libz_sys::uInt) };
    }
    crc as u32
}

/// A reusable zlib deflate stream (fastest level: these are small text files, and any
/// level is a valid pack).
/// Objects this big or bigger (and all trees) are stored, not deflated (see the module
/// notes).
pub const STORE_FROM: usize = 2048;

/// Append `input` to `out` as a zlib stream of stored (uncompressed) deflate blocks:
/// the two-byte header, blocks of at most 65535 bytes (a block-type byte, the length
/// and its complement, little-endian, then the bytes), and the Adler-32 of the input.
pub fn stored_zlib(input: &[u8], out: &mut Vec<u8>) {
    const BLOCK: usize = 65535;
    let blocks = input.len().div_ceil(BLOCK).max(1);
    out.reserve(2 + blocks * 5 + input.len() + 4);
    // CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (fastest level, no dictionary; the
    // header is a multiple of 31 as required).
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = input.chunks(BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler32(input).to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    let mut a: libz_sys::uLong = 1;
    for piece in data.chunks(1 << 30) {
        // SAFETY: zlib reads exactly `piece.len()` bytes of a live slice.
        a = unsafe { libz_sys::adler32(a, piece.as_ptr(), piece.len() as libz_sys::uInt) };
    }
    a as u32
}

struct Deflater {
    strm: Box<libz_sys::z_stream>,
    ok: bool,
}

impl Deflater {
    fn new() -> Deflater {
        let mut strm = super::pack::new_z_stream();
        // SAFETY: a fully initialised z_stream with our allocators; zlib's version string
        // and the struct size let it check the ABI. Memory level 1: a 512-byte hash table
        // to clear per object (level 8's is 64 KiB, most of the time for a small blob).
        let rc = unsafe {
            libz_sys::deflateInit2_(
                &mut *strm,
                libz_sys::Z_BEST_SPEED,
                libz_sys::Z_DEFLATED,
                15,
                1,
                libz_sys::Z_DEFAULT_STRATEGY,
                libz_sys::zlibVersion(),
                std::mem::size_of::<libz_sys::z_stream>() as libc::c_int,
            )
        };
        Deflater {
            strm,
            ok: rc == libz_sys::Z_OK,
        }
    }

    /// Append the zlib stream of `input` to `out`.
    fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let fail = |what: &str| io::Error::other(format!("zlib: {what}"));
        if !self.ok {
            return Err(fail("cannot start a deflate stream"));
        }
        if input.len() > u32::MAX as usize / 2 {
            return Err(fail("object too big for one deflate call"));
        }
        let s = &mut *self.strm;
        // SAFETY: the stream was initialised; next_in/avail_in describe a live slice that
        // zlib only reads; next_out/avail_out the spare capacity of `out` (reserved to
        // deflateBound, enough for one Z_FINISH call), which zlib writes at most
        // avail_out bytes into; `out`'s length is moved over exactly what it wrote.
        unsafe {
            if libz_sys::deflateReset(s) != libz_sys::Z_OK {
                return Err(fail("cannot reset the deflate stream"));
            }
            let bound = libz_sys::deflateBound(s, input.len() as libz_sys::uLong) as usize;
            out.reserve(bound);
            let start = out.len();
            s.next_in = input.as_ptr() as *mut u8;
            s.avail_in = input.len() as libz_sys::uInt;
            s.next_out = out.as_mut_ptr().add(start);
            s.avail_out = bound as libz_sys::uInt;
            let rc = libz_sys::deflate(s, libz_sys::Z_FINISH);
            if rc != libz_sys::Z_STREAM_END {
                return Err(fail("deflate did not finish"));
            }
            out.set_len(start + s.total_out as usize);
        }
        Ok(())
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        if self.ok {
            // SAFETY: ending the stream we initialised.
            unsafe {
                libz_sys::deflateEnd(&mut *self.strm);
            }
        }
    }
}

#[cfg(test)]
#[path = "packwrite_tests.rs"]
mod tests;
