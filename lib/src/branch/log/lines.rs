//! Lines of branch files, and git-annex's union merge.
//!
//! Readers split a file at any run of `\r`/`\n` (old Windows writers left `\r`s behind).
//! The union merge of several versions of one file, as git-annex computes it when it
//! merges git-annex branches, splits each version at `\n` only, takes the set of all lines
//! (duplicates removed) sorted bytewise, and writes each line followed by `\n`. When one
//! version's own sorted line set already equals the result, that version is used unchanged.

use std::collections::BTreeSet;

/// The lines of a log file for parsing: split at runs of `\r` and `\n`, empty pieces
/// dropped.
pub fn log_lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| !l.is_empty())
}

/// Lines as the union merge sees them: split at `\n`; a final `\n` ends the last line
/// rather than starting an empty one.
fn merge_lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let empty = content.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

/// Outcome of a union merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The version at this index already is the merge; git-annex reuses its blob as is.
    Reuse(usize),
    /// New content.
    New(Vec<u8>),
}

impl Merged {
    /// The merged bytes, given the versions that were merged.
    pub fn into_bytes(self, versions: &[&[u8]]) -> Vec<u8> {
        match self {
            Merged::Reuse(i) => versions[i].to_vec(),
            Merged::New(v) => v,
        }
    }
}

/// Union merge of the versions of one file that exist (absent versions are not passed).
/// With a single version, that version is the result.
pub fn union_merge(versions: &[&[u8]]) -> Merged {
    if versions.len() == 1 {
        return Merged::Reuse(0);
    }
    let all: BTreeSet<&[u8]> = versions.iter().flat_map(|v| merge_lines(v)).collect();
    for (i, v) in versions.iter().enumerate() {
        let own: BTreeSet<&[u8]> = merge_lines(v).collect();
        if own == all {
            return Merged::Reuse(i);
        }
    }
    Merged::New(unlines(all))
}

/// Union merge, giving the bytes directly.
pub fn union_merge_bytes(versions: &[&[u8]]) -> Vec<u8> {
    if versions.is_empty() {
        return Vec::new();
    }
    union_merge(versions).into_bytes(versions)
}

fn unlines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splitting() {
        let v: Vec<&[u8]> = log_lines(b"a\r\n\r\rb\n\nc").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(log_lines(b"").count(), 0);
    }

    #[test]
    fn union_merge_sorts_and_dedups() {
        let a = b"2 x\n1 y\n";
        let b = b"1 y\n0 z\n";
        assert_eq!(
            union_merge(&[a, b]),
            Merged::New(b"0 z\n1 y\n2 x\n".to_vec())
        );
        // A version that already holds every line is reused as it is (even unsorted).
        let c = b"b\na\n";
        let d = b"a\n";
        assert_eq!(union_merge(&[d, c]), Merged::Reuse(1));
        assert_eq!(union_merge_bytes(&[d, c]), b"b\na\n".to_vec());
        // Blank lines in the middle are lines too.
        assert_eq!(
            union_merge_bytes(&[b"a\n\nb\n", b"c\n"]),
            b"\na\nb\nc\n".to_vec()
        );
        // A missing final newline does not matter.
        assert_eq!(union_merge(&[b"a", b"a\n"]), Merged::Reuse(0));
    }

    proptest! {
        #[test]
        fn merge_laws(a in "[abc\n]{0,12}", b in "[abc\n]{0,12}", c in "[abc\n]{0,12}") {
            let set = |x: &[u8]| -> BTreeSet<Vec<u8>> { merge_lines(x).map(|l| l.to_vec()).collect() };
            let ab = union_merge_bytes(&[a.as_bytes(), b.as_bytes()]);
            let ba = union_merge_bytes(&[b.as_bytes(), a.as_bytes()]);
            prop_assert_eq!(set(&ab), set(&ba));
            let ab_c = union_merge_bytes(&[&ab, c.as_bytes()]);
            let bc = union_merge_bytes(&[b.as_bytes(), c.as_bytes()]);
            let a_bc = union_merge_bytes(&[a.as_bytes(), &bc]);
            prop_assert_eq!(set(&ab_c), set(&a_bc));
            let aa = union_merge_bytes(&[a.as_bytes(), a.as_bytes()]);
            prop_assert_eq!(aa, a.as_bytes().to_vec());
        }
    }
}
