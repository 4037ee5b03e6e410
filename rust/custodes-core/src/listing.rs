//! Listing a content-addressed tree of objects: `<folder>/ab/cd/<digest>`.
//!
//! The local store keeps each object under two levels of folders named by its
//! digest's first four hex digits. A listing of 20,000 objects opens some
//! 17,500 folders: in Python each `scandir`, sort and check of its one file
//! cost more than re-hashing the object. Here the folders are read in
//! parallel (the first level's folders shared out over the cores): whether an
//! entry is a folder or a link comes from the directory listing itself, and a
//! file's mode from one `fstatat` on the folder being listed (the store keeps
//! objects read-only; a widened mode is a finding of the caller's), and a
//! folder's the same way: a folder whose mode or owner differs from the tree's
//! own folder is listed (others could replace objects in a folder they may
//! write), which is none in a store kept as it was made.
//!
//! The listing says only where things are; what they mean (a stray object, a
//! misplaced file, a link) is the caller's to decide. A folder it cannot read
//! is an entry of its own, never passed over in silence: the objects in it
//! would only look missing.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

use rayon::prelude::*;

/// One entry of a digest tree, in the tree's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntry {
    /// An entry (not a folder) named by a digest, in the folder its name belongs in: the digest, and what the
    /// listing says it is.
    Object { digest: String, kind: ObjectKind },
    /// Anything else that is not a folder (a file at the wrong depth or under the wrong folder, a name that is
    /// no digest, a socket): its path below the tree's folder.
    Elsewhere(PathBuf),
    /// A folder that could not be read (its path below the tree's folder, empty for the tree's own), and why.
    Unreadable { path: PathBuf, error: String },
    /// A folder whose permission bits or owner differ from the tree's own folder's (its path below the tree's
    /// folder, and what they are): listed before what it holds. Whether that is wrong is the caller's to say.
    Folder { path: PathBuf, protection: Protection },
}

/// What an entry at an object's place is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A regular file: the object, as far as a listing can tell, with its permission bits, owner and names
    /// (None when it was gone by the time it was looked at).
    File(Option<ObjectFile>),
    /// A symbolic link (never followed).
    Link,
    /// Neither: a FIFO, a socket or a device, named (reading one could hang or never end).
    Special(&'static str),
}

/// What a listing reads of an object file's protection: its permission bits (`mode & 0o7777`) and its owner.
/// The store judges them (another account that owns the file can make it writable and change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    pub mode: u32,
    pub uid: u32,
}

/// What a listing reads of an object file: its protection, and how many names it has (its link count). A file
/// the store made has one; more, and its bytes are shared with a name elsewhere (a hard link), through which they
/// can be changed, and a change of its mode there is a change of the object's (the store judges it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectFile {
    pub protection: Protection,
    pub names: u64,
}

/// The digests the listing keeps: `low <= digest < high` (no `high`: no upper bound).
#[derive(Debug, Clone, Default)]
pub struct DigestRange {
    pub low: String,
    pub high: Option<String>,
}

impl DigestRange {
    fn holds(&self, digest: &str) -> bool {
        digest >= self.low.as_str() && self.high.as_deref().is_none_or(|h| digest < h)
    }

    /// A folder whose objects' digests all start with `prefix` holds none within the range. A prefix that is
    /// not hex is never outside: such a folder is listed, and what is in it is elsewhere.
    fn excludes(&self, prefix: &str) -> bool {
        if prefix.is_empty() || prefix.len() >= DIGEST_HEX || !is_lower_hex(prefix) {
            return false;
        }
        let highest = format!("{prefix:f<DIGEST_HEX$}");
        let lowest = format!("{prefix:0<DIGEST_HEX$}");
        highest.as_str() < self.low.as_str() || self.high.as_deref().is_some_and(|h| lowest.as_str() >= h)
    }
}

/// Hex digits of a SHA-256 digest, the objects' names.
const DIGEST_HEX: usize = 64;

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every entry under `folder/below` that is not a folder, depth first, each folder's entries in byte order,
/// named by its path below `folder`; objects outside `range` left out, and folders that can hold none of them
/// not read (`below` itself included). A folder that cannot be read is passed over (its objects are then not
/// listed, which the caller sees as missing). Symbolic links are never followed. `below` empty: the whole tree;
/// a first-level folder: a 256th of it, so that a caller streaming a tree of millions of objects holds one
/// such part at a time. The entries of `below` are shared out over the cores. A folder below `below` whose
/// protection is not `like` (the tree's own folder's: [`tree_protection`]) is listed as [`TreeEntry::Folder`].
pub fn list_digest_tree(folder: &Path, below: &Path, range: &DigestRange, like: Option<Protection>) -> Vec<TreeEntry> {
    if excluded(below, range) {
        return Vec::new();
    }
    let entries = match sorted_entries(&folder.join(below)) {
        Ok(entries) => entries,
        Err(e) => return vec![unreadable(below, &e)],
    };
    let parts: Vec<Vec<TreeEntry>> = entries
        .par_iter()
        .map(|(name, kind)| {
            let mut out = Vec::new();
            visit(folder, below.join(name), *kind, range, like, &mut out);
            out
        })
        .collect();
    parts.into_iter().flatten().collect()
}

/// [`list_digest_tree`] of the whole tree, streamed: a thread of its own lists the tree's first-level folders
/// in order (each across the cores) and sends each one's entries as one part, at most `ahead` parts waiting, so
/// that the caller works on one part while the next is read and holds a bounded share of a listing of millions
/// of objects. Entries at the top of the tree that are not folders come as parts of their own. The thread stops
/// when the receiver is dropped.
pub fn stream_digest_tree(folder: PathBuf, range: DigestRange, ahead: usize) -> Receiver<Vec<TreeEntry>> {
    let (parts, received) = sync_channel(ahead.max(1));
    std::thread::spawn(move || {
        let like = tree_protection(&folder);
        let top = match sorted_entries(&folder) {
            Ok(top) => top,
            Err(e) => {
                let _ = parts.send(vec![unreadable(Path::new(""), &e)]);
                return;
            }
        };
        for (name, kind) in top {
            let part = if let Kind::Folder(seen) = kind {
                let mut part = Vec::new();
                if !excluded(Path::new(&name), &range) {
                    part.extend(unlike(Path::new(&name), seen, like));
                }
                part.extend(list_digest_tree(&folder, Path::new(&name), &range, like));
                part
            } else {
                let mut out = Vec::new();
                visit(&folder, PathBuf::from(name), kind, &range, like, &mut out);
                out
            };
            if !part.is_empty() && parts.send(part).is_err() {
                return; // nobody is listening any more
            }
        }
    });
    received
}

/// Whether the folder at `relative` can hold no object of the range: its path's names, joined, are the start
/// of every digest it may hold.
fn excluded(relative: &Path, range: &DigestRange) -> bool {
    let prefix: Option<String> = relative.iter().map(|c| c.to_str()).collect();
    prefix.is_some_and(|p| range.excludes(&p))
}

/// The permission bits and owner of a tree's own folder (links followed: the store's folder may be named
/// through one), what its folders are compared with; None when it cannot be read (nothing is compared).
pub fn tree_protection(folder: &Path) -> Option<Protection> {
    fs::metadata(folder).ok().map(|m| Protection { mode: m.permissions().mode() & 0o7777, uid: m.uid() })
}

/// A folder's entry when its protection (`seen`) is known and not `like`.
fn unlike(relative: &Path, seen: Option<Protection>, like: Option<Protection>) -> Option<TreeEntry> {
    match (seen, like) {
        (Some(seen), Some(like)) if seen != like => {
            Some(TreeEntry::Folder { path: relative.to_owned(), protection: seen })
        }
        _ => None,
    }
}

/// One entry at `relative` below `root`: a folder is read (unless the range rules it out), and listed first when
/// its protection is not `like`; anything else is classified.
fn visit(
    root: &Path,
    relative: PathBuf,
    kind: Kind,
    range: &DigestRange,
    like: Option<Protection>,
    out: &mut Vec<TreeEntry>,
) {
    if let Kind::Folder(seen) = kind {
        if excluded(&relative, range) {
            return;
        }
        out.extend(unlike(&relative, seen, like));
        match sorted_entries(&root.join(&relative)) {
            Ok(entries) => {
                for (name, kind) in entries {
                    visit(root, relative.join(name), kind, range, like, out);
                }
            }
            Err(e) => out.push(unreadable(&relative, &e)),
        }
        return;
    }
    match object_at_its_place(&relative) {
        Some(digest) if range.holds(digest) => {
            let kind = match kind {
                Kind::Link => ObjectKind::Link,
                Kind::Special(what) => ObjectKind::Special(what),
                Kind::File(file) => ObjectKind::File(file),
                Kind::Folder(_) => ObjectKind::File(None),
            };
            out.push(TreeEntry::Object { digest: digest.to_owned(), kind });
        }
        Some(_) => {} // an object outside the range
        None => out.push(TreeEntry::Elsewhere(relative)),
    }
}

/// The digest of an entry at `ab/cd/<digest>` whose folders are its digest's first hex digits; None for
/// anything else.
fn object_at_its_place(relative: &Path) -> Option<&str> {
    let parts: Vec<&str> = relative.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
    let [first, second, name] = parts.as_slice() else { return None };
    let at_place = name.len() == DIGEST_HEX && is_lower_hex(name) && name[..2] == **first && name[2..4] == **second;
    at_place.then_some(*name)
}

/// What a folder's listing says an entry is (a link to a folder is a link, never a folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A file or folder with its permission bits and owner, read relative to the folder being listed (`fstatat`,
    /// no path walked again; None when it was gone by then).
    Folder(Option<Protection>),
    Link,
    File(Option<ObjectFile>),
    Special(&'static str),
}

fn unreadable(relative: &Path, error: &io::Error) -> TreeEntry {
    TreeEntry::Unreadable { path: relative.to_owned(), error: error.to_string() }
}

/// A folder's entries in byte order, each with its kind (from the listing itself: no `stat` unless the file
/// system leaves the type out), or why the folder cannot be read.
fn sorted_entries(folder: &Path) -> io::Result<Vec<(OsString, Kind)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let protection = |m: &fs::Metadata| Protection { mode: m.permissions().mode() & 0o7777, uid: m.uid() };
        let kind = match entry.file_type() {
            Ok(t) if t.is_dir() => Kind::Folder(entry.metadata().ok().map(|m| protection(&m))),
            Ok(t) if t.is_symlink() => Kind::Link,
            Ok(t) if t.is_file() => {
                Kind::File(entry.metadata().ok().map(|m| ObjectFile { protection: protection(&m), names: m.nlink() }))
            }
            Ok(t) if t.is_fifo() => Kind::Special("a FIFO"),
            Ok(t) if t.is_socket() => Kind::Special("a socket"),
            Ok(t) if t.is_char_device() => Kind::Special("a character device"),
            Ok(t) if t.is_block_device() => Kind::Special("a block device"),
            _ => Kind::Special("of a type this listing cannot tell"),
        };
        entries.push((entry.file_name(), kind));
    }
    entries.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn digest(first: char) -> String {
        let mut d = String::new();
        for _ in 0..DIGEST_HEX {
            d.push(first);
        }
        d
    }

    fn place(root: &Path, d: &str) -> PathBuf {
        let folder = root.join(&d[..2]).join(&d[2..4]);
        fs::create_dir_all(&folder).unwrap();
        folder.join(d)
    }

    fn objects(entries: &[TreeEntry]) -> Vec<(String, bool)> {
        entries
            .iter()
            .filter_map(|e| match e {
                TreeEntry::Object { digest, kind } => Some((digest.clone(), *kind == ObjectKind::Link)),
                _ => None,
            })
            .collect()
    }

    fn elsewhere(entries: &[TreeEntry]) -> Vec<String> {
        entries
            .iter()
            .filter_map(|e| match e {
                TreeEntry::Elsewhere(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn objects_in_digest_order_and_everything_else_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (a, b, c) = (digest('a'), digest('b'), digest('0'));
        for d in [&b, &a, &c] {
            fs::write(place(root, d), b"x").unwrap();
        }
        // A link at an object's place, a digest in the wrong folder, a stray name, a file at the top.
        let e = digest('e');
        symlink("/etc/hostname", place(root, &e)).unwrap();
        fs::write(root.join("aa").join(&b), b"x").unwrap();
        fs::write(root.join("bb").join("bb").join("notes.txt"), b"x").unwrap();
        fs::write(root.join("top"), b"x").unwrap();
        let got = list_digest_tree(root, Path::new(""), &DigestRange::default(), None);
        assert_eq!(objects(&got), vec![(c.clone(), false), (a.clone(), false), (b.clone(), false), (e, true)]);
        assert_eq!(elsewhere(&got), vec![format!("aa/{b}"), "bb/bb/notes.txt".to_owned(), "top".to_owned()]);
    }

    #[test]
    fn a_range_keeps_its_objects_and_skips_folders_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let all: Vec<String> = "0123456789abcdef".chars().map(digest).collect();
        for d in &all {
            fs::write(place(root, d), b"x").unwrap();
        }
        // A misplaced file in a folder the range rules out is not seen (the folder is not read); one in a
        // folder the range reaches is.
        fs::write(root.join("11").join("11").join("stray"), b"x").unwrap();
        fs::write(root.join("88").join("88").join("stray"), b"x").unwrap();
        let range = DigestRange { low: all[5].clone(), high: Some(all[9].clone()) };
        let got = list_digest_tree(root, Path::new(""), &range, None);
        let digests: Vec<String> = objects(&got).into_iter().map(|(d, _)| d).collect();
        assert_eq!(digests, all[5..9].to_vec());
        assert_eq!(elsewhere(&got), vec!["88/88/stray".to_owned()]);
    }

    #[test]
    fn the_tree_listed_part_by_part_is_the_tree_listed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in "0123456789abcdef".chars().map(digest) {
            fs::write(place(root, &d), b"x").unwrap();
        }
        fs::write(root.join("33").join("stray"), b"x").unwrap();
        let range = DigestRange { low: digest('2'), high: Some(digest('c')) };
        // Folders unlike the tree's own (whatever the umask made the others): each listed before what it holds.
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(root.join("55"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(root.join("99").join("99"), fs::Permissions::from_mode(0o750)).unwrap();
        let like = tree_protection(root);
        let whole = list_digest_tree(root, Path::new(""), &range, like);
        let mut parts = Vec::new();
        for (name, kind) in sorted_entries(root).unwrap() {
            let Kind::Folder(seen) = kind else { panic!("{name:?} is not a folder") };
            if !excluded(Path::new(&name), &range) {
                parts.extend(unlike(Path::new(&name), seen, like));
            }
            parts.extend(list_digest_tree(root, Path::new(&name), &range, like));
        }
        assert_eq!(parts, whole);
        assert_eq!(objects(&whole).len(), 10);
        // A part the range rules out is not read at all.
        assert!(list_digest_tree(root, Path::new("ff"), &range, like).is_empty());
        fs::write(root.join("at the top"), b"x").unwrap();
        let streamed: Vec<TreeEntry> =
            stream_digest_tree(root.to_owned(), range.clone(), 2).into_iter().flatten().collect();
        let whole = list_digest_tree(root, Path::new(""), &range, like);
        assert_eq!(streamed, whole);
        assert!(streamed.iter().any(|e| matches!(e, TreeEntry::Folder { .. })));
        assert_eq!(elsewhere(&streamed), vec!["33/stray".to_owned(), "at the top".to_owned()]);
    }

    #[test]
    fn links_to_folders_are_not_followed_and_unreadable_folders_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = digest('a');
        fs::write(place(root, &a), b"x").unwrap();
        symlink(root, root.join("loop")).unwrap();
        let got = list_digest_tree(root, Path::new(""), &DigestRange::default(), None);
        assert_eq!(objects(&got), vec![(a, false)]);
        assert_eq!(elsewhere(&got), vec!["loop".to_owned()]);
        let gone = list_digest_tree(&root.join("no such folder"), Path::new(""), &DigestRange::default(), None);
        assert!(
            matches!(gone.as_slice(), [TreeEntry::Unreadable { path, error }] if path.as_os_str().is_empty() && error.contains("No such file"))
        );
    }

    #[test]
    fn a_fifo_at_an_object_s_place_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = digest('a');
        let place = place(root, &a);
        let made = std::process::Command::new("mkfifo").arg(&place).status().unwrap();
        assert!(made.success());
        let got = list_digest_tree(root, Path::new(""), &DigestRange::default(), None);
        assert_eq!(got, vec![TreeEntry::Object { digest: a, kind: ObjectKind::Special("a FIFO") }]);
    }

    fn file(mode: u32, uid: u32, names: u64) -> ObjectKind {
        ObjectKind::File(Some(ObjectFile { protection: Protection { mode, uid }, names }))
    }

    #[test]
    fn an_object_with_a_second_name_is_listed_with_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = digest('a');
        fs::write(place(root, &a), b"x").unwrap();
        fs::set_permissions(place(root, &a), fs::Permissions::from_mode(0o400)).unwrap();
        fs::hard_link(place(root, &a), dir.path().join("elsewhere")).unwrap(); // a name outside the tree
        let me = fs::metadata(root).unwrap().uid();
        let got = list_digest_tree(root, Path::new(""), &DigestRange::default(), None);
        assert_eq!(got[0], TreeEntry::Object { digest: a, kind: file(0o400, me, 2) });
    }

    #[test]
    fn an_object_s_mode_is_listed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (a, b) = (digest('a'), digest('b'));
        for (d, mode) in [(&a, 0o400), (&b, 0o644)] {
            fs::write(place(root, d), b"x").unwrap();
            fs::set_permissions(place(root, d), fs::Permissions::from_mode(mode)).unwrap();
        }
        let got = list_digest_tree(root, Path::new(""), &DigestRange::default(), None);
        let me = fs::metadata(root).unwrap().uid(); // (the files' owner: whoever runs the test made them)
        assert_eq!(
            got,
            vec![
                TreeEntry::Object { digest: a, kind: file(0o400, me, 1) },
                TreeEntry::Object { digest: b, kind: file(0o644, me, 1) },
            ]
        );
    }

    #[test]
    fn a_folder_unlike_the_tree_s_own_is_listed_before_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (a, b) = (digest('a'), digest('b'));
        for d in [&a, &b] {
            fs::write(place(root, d), b"x").unwrap();
            fs::set_permissions(place(root, d), fs::Permissions::from_mode(0o400)).unwrap();
            for folder in [root.join(&d[..2]), root.join(&d[..2]).join(&d[2..4])] {
                fs::set_permissions(folder, fs::Permissions::from_mode(0o700)).unwrap();
            }
        }
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).unwrap();
        let like = tree_protection(root);
        assert!(!list_digest_tree(root, Path::new(""), &DigestRange::default(), like)
            .iter()
            .any(|e| matches!(e, TreeEntry::Folder { .. })));
        // bb/bb made writable by everyone: listed, with its mode and owner, just before the object in it.
        let widened = root.join("bb").join("bb");
        fs::set_permissions(&widened, fs::Permissions::from_mode(0o777)).unwrap();
        let me = fs::metadata(root).unwrap().uid();
        let streamed: Vec<TreeEntry> =
            stream_digest_tree(root.to_owned(), DigestRange::default(), 2).into_iter().flatten().collect();
        assert_eq!(
            streamed[1..],
            [
                TreeEntry::Folder { path: PathBuf::from("bb/bb"), protection: Protection { mode: 0o777, uid: me } },
                TreeEntry::Object { digest: b, kind: file(0o400, me, 1) },
            ]
        );
        // A first-level folder as well; none when nothing is compared.
        fs::set_permissions(root.join("aa"), fs::Permissions::from_mode(0o755)).unwrap();
        let got = list_digest_tree(root, Path::new(""), &DigestRange::default(), like);
        assert_eq!(
            got[0],
            TreeEntry::Folder { path: PathBuf::from("aa"), protection: Protection { mode: 0o755, uid: me } }
        );
        assert!(!list_digest_tree(root, Path::new(""), &DigestRange::default(), None)
            .iter()
            .any(|e| matches!(e, TreeEntry::Folder { .. })));
    }
}
