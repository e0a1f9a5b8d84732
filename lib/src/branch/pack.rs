//! A reader of git pack files, for reading a whole git-annex branch quickly (part of the
//! git layer: only [`super::repo`] uses it, and falls back to libgit2 for any object it
//! does not find here, such as loose objects).
//!
//! Formats (git's `Documentation/gitformat-pack.txt`):
//! * `pack-*.idx`, version 2: `\377tOc`, version 2, a fan-out table of 256 cumulative
//!   counts by first id byte, the N sorted 20-byte ids, N CRCs, N 4-byte offsets (the top
//!   bit set: an index into a table of 8-byte offsets that follows), then checksums.
//! * `pack-*.pack`: `PACK`, version, count, then objects. An object starts with a header
//!   (type in bits 4-6 of the first byte, the size in 4 + 7·k bits, little-endian groups,
//!   high bit = more), then for an offset delta (type 6) the distance back to its base
//!   (big-endian 7-bit groups, each continuation adding one), for a reference delta
//!   (type 7) the base's id, then zlib data: the object, or the delta.
//! * A delta: the base's size and the result's size (little-endian 7-bit groups), then
//!   instructions: a byte with the high bit set copies from the base (bits 0-3 say which
//!   offset bytes follow, bits 4-6 which size bytes; size 0 means 0x10000), a byte 1-127
//!   inserts that many following bytes.
//!
//! Pack and index files are memory-mapped read-only (git never rewrites them in place;
//! a repack writes new ones and deletes the old, which stay readable while mapped).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Errors reading packs.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: damaged pack data at offset {offset}: {what}")]
    Damaged {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
    #[error("no pack number {pack} (a position from other packs)")]
    NoSuchPack { pack: usize },
}

/// A read-only memory mapping of a whole file.
struct Mmap {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and never changes while mapped; sharing its bytes
// between threads is sharing an immutable slice.
unsafe impl Send for Mmap {}
unsafe impl Sync for Mmap {}

impl Mmap {
    fn open(path: &Path) -> Result<Mmap, PackError> {
        let io = |source| PackError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len() as usize;
        if len == 0 {
            return Ok(Mmap {
                ptr: std::ptr::null(),
                len: 0,
            });
        }
        // SAFETY: mapping a file we opened for reading, read-only and private; the pointer
        // is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io(io::Error::last_os_error()));
        }
        Ok(Mmap {
            ptr: ptr as *const u8,
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr..ptr+len is our live mapping.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping we made; no slice outlives self.
            unsafe {
                libc::munmap(self.ptr as *mut libc::c_void, self.len);
            }
        }
    }
}

/// One pack and its index.
struct Pack {
    path: PathBuf,
    idx: Mmap,
    pack: Mmap,
    count: usize,
}

const IDX_HEADER: usize = 8 + 256 * 4;

impl Pack {
    fn open(idx_path: &Path) -> Result<Option<Pack>, PackError> {
        let pack_path = idx_path.with_extension("pack");
        let idx = Mmap::open(idx_path)?;
        let b = idx.bytes();
        if b.len() < IDX_HEADER + 40 || b[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
            // Version 1 indexes (and anything odd) are left to libgit2.
            return Ok(None);
        }
        let count = be32(&b[8 + 255 * 4..]) as usize;
        if b.len() < IDX_HEADER + count * 28 + 40 {
            return Ok(None);
        }
        let pack = Mmap::open(&pack_path)?;
        // `PACK`, version 2 or 3, and the index's object count.
        let pb = pack.bytes();
        if pb.len() < 32
            || &pb[..4] != b"PACK"
            || !matches!(be32(&pb[4..]), 2 | 3)
            || be32(&pb[8..]) as usize != count
        {
            return Ok(None);
        }
        Ok(Some(Pack {
            path: pack_path,
            idx,
            pack,
            count,
        }))
    }

    /// The offset of an object in this pack.
    fn find(&self, id: &[u8; 20]) -> Option<u64> {
        let b = self.idx.bytes();
        let first = id[0] as usize;
        let lo = if first == 0 {
            0
        } else {
            be32(&b[8 + (first - 1) * 4..]) as usize
        };
        let hi = be32(&b[8 + first * 4..]) as usize;
        let ids = &b[IDX_HEADER..IDX_HEADER + self.count * 20];
        // Compare the first 8 bytes as one number; the rest only when those are equal.
        let head = |x: &[u8]| u64::from_be_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let want = head(id);
        let (mut lo, mut hi) = (lo, hi.min(self.count));
        // Object ids are uniformly spread: guess where in the bucket this one lies from
        // its next bytes and search a small window around the guess (a page or so of
        // the index, not a dozen probes across it); fall back to the whole bucket when
        // the id is not inside the window.
        // (A damaged fan-out table may give lo > hi: then nothing is searched.)
        let n = hi.saturating_sub(lo);
        if n > 64 {
            let frac = u64::from(u32::from_be_bytes([id[1], id[2], id[3], id[4]]));
            let guess = lo + ((n as u64 * frac) >> 32) as usize;
            let margin = 16 + 2 * n.isqrt();
            let (wlo, whi) = (
                guess.saturating_sub(margin).max(lo),
                (guess + margin).min(hi),
            );
            let cmp_at = |i: usize| {
                let at = &ids[i * 20..i * 20 + 20];
                head(at).cmp(&want).then_with(|| at[8..].cmp(&id[8..]))
            };
            let below = wlo == lo || cmp_at(wlo - 1).is_lt();
            let above = whi == hi || cmp_at(whi).is_gt();
            if below && above {
                (lo, hi) = (wlo, whi);
            }
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            let at = &ids[mid * 20..mid * 20 + 20];
            let order = head(at).cmp(&want).then_with(|| at[8..].cmp(&id[8..]));
            match order {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.offset_at(mid)),
            }
        }
        None
    }

    fn offset_at(&self, i: usize) -> u64 {
        let b = self.idx.bytes();
        let offsets = IDX_HEADER + self.count * 24;
        let o = be32(&b[offsets + i * 4..]);
        if o & 0x8000_0000 == 0 {
            return u64::from(o);
        }
        let large = offsets + self.count * 4 + (o & 0x7fff_ffff) as usize * 8;
        match b.get(large..large + 8) {
            Some(v) => u64::from_be_bytes(v.try_into().expect("8 bytes")),
            None => u64::MAX,
        }
    }

    fn damaged(&self, offset: u64, what: &'static str) -> PackError {
        PackError::Damaged {
            path: self.path.clone(),
            offset,
            what,
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The kinds of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Commit,
    Tree,
    Blob,
    Tag,
}

/// Every version-2 pack of an object directory.
pub struct Packs {
    packs: Vec<Pack>,
}

impl std::fmt::Debug for Packs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packs({})", self.packs.len())
    }
}

impl Packs {
    /// Map the packs in `objects/pack` (none if there is no such directory).
    pub fn open(objects_dir: &Path) -> Result<Packs, PackError> {
        let dir = objects_dir.join("pack");
        let mut packs = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Packs { packs }),
            Err(source) => return Err(PackError::Io { path: dir, source }),
        };
        let mut idxs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "idx"))
            .collect();
        idxs.sort();
        for idx in idxs {
            // A pack being written or removed right now, or one we cannot read, is left
            // to libgit2.
            match Pack::open(&idx) {
                Ok(Some(p)) => packs.push(p),
                Ok(None) => tracing::debug!("{}: not a version 2 index", idx.display()),
                Err(e) => tracing::debug!("{e}"),
            }
        }
        Ok(Packs { packs })
    }

    /// Where an object lies: (pack number, offset), for reading many objects in the order
    /// they lie in the packs (so that delta bases come before the deltas built on them).
    pub fn position(&self, id: &[u8; 20]) -> Option<(usize, u64)> {
        self.packs
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.find(id).map(|o| (i, o)))
    }

    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }

    /// A reader (one per thread: it keeps a zlib stream and recent delta bases).
    pub fn reader(&self) -> PackReader<'_> {
        PackReader {
            packs: self,
            z: Inflater::new(),
            bases: HashMap::new(),
            bases_bytes: 0,
            last_pack: 0,
        }
    }
}

/// Reads objects from [`Packs`].
pub struct PackReader<'p> {
    packs: &'p Packs,
    z: Inflater,
    /// Recently resolved delta bases by (pack, offset).
    bases: HashMap<(usize, u64), (Kind, Rc<Vec<u8>>)>,
    /// Their total size, kept under [`MAX_BASE_BYTES`].
    bases_bytes: usize,
    last_pack: usize,
}

/// Delta bases kept per reader (objects read in pack order then mostly find their base
/// here instead of inflating its chain again).
const MAX_BASE_BYTES: usize = 32 << 20;
/// Longer delta chains than git ever writes (its `pack.depth` is at most 4095) are taken
/// for damage.
const MAX_DELTA_DEPTH: usize = 10_000;
/// zlib cannot expand data more than about 1032 times; a larger size in an object's
/// header is damage, and is refused before anything is allocated for it.
const MAX_INFLATE_RATIO: usize = 1100;

/// One entry of a pack, its data inflated.
enum Entry {
    Whole(Kind, Vec<u8>),
    Delta {
        base_pack: usize,
        base_offset: u64,
        delta: Vec<u8>,
    },
}

impl PackReader<'_> {
    /// The object `id`, or `None` when no pack has it.
    pub fn read(&mut self, id: &[u8; 20]) -> Result<Option<(Kind, Vec<u8>)>, PackError> {
        let n = self.packs.packs.len();
        for i in 0..n {
            // Objects read together tend to sit in the same pack.
            let p = (self.last_pack + i) % n;
            if let Some(off) = self.packs.packs[p].find(id) {
                self.last_pack = p;
                let (kind, data) = self.read_at(p, off)?;
                return Ok(Some((kind, Rc::unwrap_or_clone(data))));
            }
        }
        Ok(None)
    }

    /// The object at a position [`Packs::position`] gave (no index lookup again).
    pub fn read_positioned(&mut self, p: usize, offset: u64) -> Result<(Kind, Vec<u8>), PackError> {
        if p >= self.packs.packs.len() {
            return Err(PackError::NoSuchPack { pack: p });
        }
        self.last_pack = p;
        let (kind, data) = self.read_at(p, offset)?;
        Ok((kind, Rc::unwrap_or_clone(data)))
    }

    /// The object at `offset` of pack `p`: follows its chain of deltas down to a whole
    /// object (or a base read recently), then applies the deltas back up.
    fn read_at(&mut self, p: usize, offset: u64) -> Result<(Kind, Rc<Vec<u8>>), PackError> {
        let mut chain: Vec<(usize, u64, Vec<u8>)> = Vec::new();
        let (mut at_pack, mut at) = (p, offset);
        let (kind, mut data) = loop {
            if !chain.is_empty() {
                if let Some((k, b)) = self.bases.get(&(at_pack, at)) {
                    break (*k, b.clone());
                }
            }
            if chain.len() > MAX_DELTA_DEPTH {
                return Err(self.packs.packs[p].damaged(offset, "delta chain too long"));
            }
            match self.entry(at_pack, at)? {
                Entry::Whole(kind, data) => break (kind, Rc::new(data)),
                Entry::Delta {
                    base_pack,
                    base_offset,
                    delta,
                } => {
                    chain.push((at_pack, at, delta));
                    (at_pack, at) = (base_pack, base_offset);
                }
            }
        };
        while let Some((dp, doff, delta)) = chain.pop() {
            // `data` is the object at (at_pack, at), the base of this delta: keep it for
            // the objects that share it.
            if let std::collections::hash_map::Entry::Vacant(e) = self.bases.entry((at_pack, at)) {
                e.insert((kind, data.clone()));
                self.bases_bytes += data.len() + 64;
                if self.bases_bytes > MAX_BASE_BYTES {
                    self.bases.clear();
                    self.bases_bytes = 0;
                }
            }
            let out = apply_delta(&data, &delta)
                .ok_or_else(|| self.packs.packs[dp].damaged(doff, "bad delta"))?;
            data = Rc::new(out);
            (at_pack, at) = (dp, doff);
        }
        Ok((kind, data))
    }

    /// Parse the entry at `offset` of pack `p` and inflate its data.
    fn entry(&mut self, p: usize, offset: u64) -> Result<Entry, PackError> {
        let pack = &self.packs.packs[p];
        let bytes = pack.pack.bytes();
        // Entries lie between the 12-byte header and the 20-byte trailing checksum.
        let data = bytes.get(..bytes.len().saturating_sub(20)).unwrap_or(&[]);
        let bad = |what| pack.damaged(offset, what);
        let mut i = usize::try_from(offset).map_err(|_| bad("offset past the end"))?;
        if i < 12 {
            return Err(bad("offset inside the pack header"));
        }
        let next = |i: &mut usize, what| -> Result<u8, PackError> {
            let c = *data.get(*i).ok_or_else(|| bad(what))?;
            *i += 1;
            Ok(c)
        };
        let mut c = next(&mut i, "offset past the end")?;
        let ty = (c >> 4) & 7;
        let mut size = u64::from(c & 15);
        let mut shift = 4;
        while c & 0x80 != 0 {
            c = next(&mut i, "truncated header")?;
            if shift > 57 {
                return Err(bad("size too large"));
            }
            size |= u64::from(c & 0x7f) << shift;
            shift += 7;
        }
        let size = usize::try_from(size).map_err(|_| bad("size too large"))?;
        let kind = match ty {
            1 => Some(Kind::Commit),
            2 => Some(Kind::Tree),
            3 => Some(Kind::Blob),
            4 => Some(Kind::Tag),
            6 | 7 => None,
            _ => return Err(bad("unknown object type")),
        };
        let base = match kind {
            Some(_) => None,
            // An offset delta: the distance back to its base, in big-endian 7-bit groups
            // where each continuation also adds one.
            None if ty == 6 => {
                let mut c = next(&mut i, "truncated delta header")?;
                let mut back = u64::from(c & 0x7f);
                while c & 0x80 != 0 {
                    c = next(&mut i, "truncated delta header")?;
                    back = back
                        .checked_add(1)
                        .and_then(|b| b.checked_mul(128))
                        .ok_or_else(|| bad("delta offset too large"))?
                        | u64::from(c & 0x7f);
                }
                if back == 0 {
                    return Err(bad("delta based on itself"));
                }
                let base = offset
                    .checked_sub(back)
                    .ok_or_else(|| bad("delta base before the pack"))?;
                Some((p, base))
            }
            // A reference delta: the base's id, which may be in any pack.
            None => {
                let id: [u8; 20] = data
                    .get(i..i + 20)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| bad("truncated delta header"))?;
                i += 20;
                let found = (0..self.packs.packs.len())
                    .find_map(|q| self.packs.packs[q].find(&id).map(|o| (q, o)));
                Some(found.ok_or_else(|| bad("delta base is not in a pack"))?)
            }
        };
        let input = data.get(i..).unwrap_or(&[]);
        if size > input.len().saturating_mul(MAX_INFLATE_RATIO).max(64) {
            return Err(bad("size larger than its data can hold"));
        }
        let out = self
            .z
            .inflate(input, size)
            .ok_or_else(|| bad("bad zlib data"))?;
        Ok(match (kind, base) {
            (Some(kind), _) => Entry::Whole(kind, out),
            (None, Some((base_pack, base_offset))) => Entry::Delta {
                base_pack,
                base_offset,
                delta: out,
            },
            (None, None) => return Err(bad("unknown object type")),
        })
    }
}

fn delta_size(d: &[u8], i: &mut usize) -> Option<usize> {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let c = *d.get(*i)?;
        *i += 1;
        if shift > 60 {
            return None;
        }
        n |= u64::from(c & 0x7f) << shift;
        shift += 7;
        if c & 0x80 == 0 {
            return usize::try_from(n).ok();
        }
    }
}

/// Apply a git delta to its base.
fn apply_delta(base: &[u8], d: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0;
    if delta_size(d, &mut i)? != base.len() {
        return None;
    }
    let size = delta_size(d, &mut i)?;
    // Each delta byte yields at most 0x10000 bytes (a copy): a larger result is damage.
    if size > d.len().saturating_mul(0x10000) {
        return None;
    }
    let mut out = Vec::with_capacity(size);
    while i < d.len() {
        let cmd = d[i];
        i += 1;
        if cmd & 0x80 != 0 {
            let mut off: usize = 0;
            let mut len: usize = 0;
            for bit in 0..4 {
                if cmd & (1 << bit) != 0 {
                    off |= usize::from(*d.get(i)?) << (8 * bit);
                    i += 1;
                }
            }
            for bit in 0..3 {
                if cmd & (0x10 << bit) != 0 {
                    len |= usize::from(*d.get(i)?) << (8 * bit);
                    i += 1;
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            out.extend_from_slice(base.get(off..off.checked_add(len)?)?);
            if out.len() > size {
                return None;
            }
        } else if cmd != 0 {
            let n = usize::from(cmd);
            out.extend_from_slice(d.get(i..i.checked_add(n)?)?);
            i += n;
            if out.len() > size {
                return None;
            }
        } else {
            return None;
        }
    }
    (out.len() == size).then_some(out)
}

/// A reusable zlib inflate stream.
pub(super) struct Inflater {
    strm: Box<libz_sys::z_stream>,
    ok: bool,
}

unsafe extern "C" fn z_alloc(
    _: libz_sys::voidpf,
    items: libz_sys::uInt,
    size: libz_sys::uInt,
) -> libz_sys::voidpf {
    // SAFETY: calloc with the sizes zlib asks for; zlib checks for null.
    unsafe { libc::calloc(items as libc::size_t, size as libc::size_t) }
}

unsafe extern "C" fn z_free(_: libz_sys::voidpf, p: libz_sys::voidpf) {
    // SAFETY: p came from z_alloc (calloc).
    unsafe { libc::free(p) }
}

/// A zlib stream not yet initialised, with our allocators (for inflateInit/deflateInit).
pub(super) fn new_z_stream() -> Box<libz_sys::z_stream> {
    Box::new(libz_sys::z_stream {
        next_in: std::ptr::null_mut(),
        avail_in: 0,
        total_in: 0,
        next_out: std::ptr::null_mut(),
        avail_out: 0,
        total_out: 0,
        msg: std::ptr::null_mut(),
        state: std::ptr::null_mut(),
        zalloc: z_alloc,
        zfree: z_free,
        opaque: std::ptr::null_mut(),
        data_type: 0,
        adler: 0,
        reserved: 0,
    })
}

impl Inflater {
    pub(super) fn new() -> Inflater {
        let mut strm = new_z_stream();
        // SAFETY: a fully initialised z_stream with our allocators; zlib's version string
        // and the struct size let it check the ABI.
        let rc = unsafe {
            libz_sys::inflateInit_(
                &mut *strm,
                libz_sys::zlibVersion(),
                std::mem::size_of::<libz_sys::z_stream>() as libc::c_int,
            )
        };
        Inflater {
            strm,
            ok: rc == libz_sys::Z_OK,
        }
    }

    /// Inflate the zlib stream at the start of `input`, which must give exactly `size`
    /// bytes.
    pub(super) fn inflate(&mut self, input: &[u8], size: usize) -> Option<Vec<u8>> {
        if !self.ok {
            return None;
        }
        let mut out: Vec<u8> = Vec::with_capacity(size.max(1));
        let s = &mut *self.strm;
        // SAFETY: the stream was initialised; next_in/avail_in describe a live slice that
        // zlib only reads; next_out/avail_out the spare capacity of `out`, which zlib
        // writes at most avail_out bytes into.
        unsafe {
            if libz_sys::inflateReset(s) != libz_sys::Z_OK {
                return None;
            }
            s.next_in = input.as_ptr() as *mut u8;
            s.avail_in = input.len().min(u32::MAX as usize) as libz_sys::uInt;
            s.next_out = out.as_mut_ptr();
            s.avail_out = size.max(1).min(u32::MAX as usize) as libz_sys::uInt;
            let rc = libz_sys::inflate(s, libz_sys::Z_FINISH);
            let produced = s.total_out as usize;
            if rc != libz_sys::Z_STREAM_END || produced != size {
                return None;
            }
            out.set_len(produced);
        }
        Some(out)
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        if self.ok {
            // SAFETY: ending the stream we initialised.
            unsafe {
                libz_sys::inflateEnd(&mut *self.strm);
            }
        }
    }
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;
