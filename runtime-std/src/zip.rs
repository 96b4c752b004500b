//! A small zip writer: the sandbox's sample bundles and configurations (docs/PROTOCOL.md §4), and
//! the test fixtures that need a real zip.
//!
//! Hand-written rather than the `zip` crate: that crate would bring a large dependency tree
//! into a binary whose size is a feature, and all that is needed here is to write a few small
//! entries, stored or deflated, from memory. The deflater is miniz_oxide's (raw deflate, level
//! 6), the CRC-32 crc32fast's: core already links both to read bundles.
//!
//! What is written is what [`lockstep_core::archive`] reads, and what Info-ZIP and Python's
//! `zipfile` test clean: for each entry a local header with its CRC-32 and sizes (no data
//! descriptor), then its data; then the central directory and the end record, without a
//! comment. Every entry carries the same DOS timestamp, 1980-01-01 00:00, and nothing else that
//! varies, so the same entries always give the same bytes, and so the same digest: a sample
//! bundle's id is stable across runs. Entries are made by Unix (version made by 3) with mode
//! `0644`, or `0755` for an [executable](Entry::executable) one, so that a start script is
//! runnable once extracted.
//!
//! Refused, each with its own [`ZipError`], before anything of the entry is written (so the
//! writer stays usable): a name that is not a relative path of plain components, a name given
//! twice, and whatever would need ZIP64: 65,535 entries or more, or an entry, offset or central
//! directory of 4 GiB or more (`0xFFFF` and `0xFFFF_FFFF` are ZIP64's marker values, which
//! readers, core's included, take to mean ZIP64).

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Write};

use lockstep_core::bundle::Digest;
use sha2::{Digest as _, Sha256};

const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const END_SIGNATURE: u32 = 0x0605_4b50;
const LOCAL_LEN: usize = 30;
const CENTRAL_LEN: usize = 46;
const END_LEN: usize = 22;

/// 1980-01-01 00:00:00, the earliest DOS time: day 1, month 1, year 1980 + 0.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;
/// General-purpose flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;
/// Made by Unix (3, so the external attributes hold a mode), zip specification 2.0.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
/// Mode bits of a regular file, as a Unix `st_mode`.
const MODE_FILE: u32 = 0o100_644;
const MODE_EXECUTABLE: u32 = 0o100_755;

/// The most entries an archive without ZIP64 may hold (`0xFFFF` is ZIP64's marker).
pub const MAX_ENTRIES: usize = 0xFFFF - 1;
/// The largest size or offset an archive without ZIP64 may hold (`0xFFFF_FFFF` is ZIP64's
/// marker).
pub const MAX_SIZE: u64 = 0xFFFF_FFFF - 1;
/// The longest entry name, in bytes.
pub const MAX_NAME_LEN: usize = 0xFFFF;
/// The deflate level: miniz_oxide's default, zlib's 6.
const DEFLATE_LEVEL: u8 = 6;

/// How an entry's data is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// As is (method 0).
    Stored,
    /// Raw deflate, level 6 (method 8).
    Deflated,
}

impl Method {
    const fn code(self) -> u16 {
        match self {
            Self::Stored => 0,
            Self::Deflated => 8,
        }
    }

    /// The zip specification version needed to extract: 1.0 stored, 2.0 deflated.
    const fn version_needed(self) -> u16 {
        match self {
            Self::Stored => 10,
            Self::Deflated => 20,
        }
    }
}

/// One file of an archive: its name (a relative path with `/` separators), its content and how
/// to write it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path inside the archive, `/`-separated: `visualizer-1.0.0/bundle.conf`.
    pub name: &'a str,
    /// The content.
    pub data: &'a [u8],
    /// Stored or deflated.
    pub method: Method,
    /// Whether the file is extracted executable (mode `0755` rather than `0644`).
    pub executable: bool,
}

impl<'a> Entry<'a> {
    /// A stored, non-executable entry.
    pub const fn stored(name: &'a str, data: &'a [u8]) -> Self {
        Self {
            name,
            data,
            method: Method::Stored,
            executable: false,
        }
    }

    /// A deflated, non-executable entry.
    pub const fn deflated(name: &'a str, data: &'a [u8]) -> Self {
        Self {
            name,
            data,
            method: Method::Deflated,
            executable: false,
        }
    }

    /// The same entry, extracted executable.
    #[must_use]
    pub const fn executable(self) -> Self {
        Self {
            executable: true,
            ..self
        }
    }
}

impl fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("len", &self.data.len())
            .field("method", &self.method)
            .field("executable", &self.executable)
            .finish()
    }
}

/// Why an archive could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum ZipError {
    /// The output failed; what was written is incomplete.
    Io(io::Error),
    /// A name that is not a relative path of plain components: empty, longer than
    /// [`MAX_NAME_LEN`], starting with `/`, holding `\` or NUL, or with an empty, `.` or `..`
    /// component (which also refuses directory entries, `dir/`: directories are implied).
    BadName,
    /// The same name twice.
    DuplicateName,
    /// More than [`MAX_ENTRIES`]: the archive would need ZIP64.
    TooManyEntries,
    /// An entry, an offset or the central directory over [`MAX_SIZE`] bytes: the archive would
    /// need ZIP64.
    TooLarge,
    /// An earlier write to the output failed: the archive cannot be completed.
    Failed,
}

impl fmt::Display for ZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "writing the zip: {e}"),
            Self::BadName => f.write_str(
                "a zip entry name must be a relative path of plain components \
                 (no leading `/`, no `\\`, NUL, empty, `.` or `..` component)",
            ),
            Self::DuplicateName => f.write_str("two zip entries with the same name"),
            Self::TooManyEntries => {
                write!(
                    f,
                    "more than {MAX_ENTRIES} zip entries (ZIP64 is not written)"
                )
            }
            Self::TooLarge => f.write_str("a zip of 4 GiB or more (ZIP64 is not written)"),
            Self::Failed => f.write_str("an earlier write of the zip failed"),
        }
    }
}

impl std::error::Error for ZipError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ZipError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The digest of a zip file (docs/PROTOCOL.md §4): its SHA-256, which names a bundle or a
/// configuration.
pub fn digest(zip: &[u8]) -> Digest {
    Digest::from_bytes(Sha256::digest(zip).into())
}

/// Writes `entries`, in order, as a zip into a new `Vec`.
pub fn to_vec(entries: &[Entry<'_>]) -> Result<Vec<u8>, ZipError> {
    write(Vec::new(), entries)
}

/// Writes `entries`, in order, as a zip to `out`, and hands `out` back.
pub fn write<W: Write>(out: W, entries: &[Entry<'_>]) -> Result<W, ZipError> {
    let mut zip = ZipWriter::new(out);
    for entry in entries {
        zip.add(entry)?;
    }
    zip.finish()
}

/// A zip being written to `W`: [`add`](Self::add) each entry, then [`finish`](Self::finish).
///
/// Each entry's data is written as it is added; the central directory is kept in memory (46
/// bytes plus the name per entry) until `finish`. Nothing is buffered: give it a
/// `BufWriter` when `W` is a file.
pub struct ZipWriter<W> {
    out: W,
    /// Bytes written so far: the offset of the next local header.
    offset: u64,
    /// The central directory's headers so far.
    central: Vec<u8>,
    names: HashSet<String>,
    failed: bool,
}

impl<W> fmt::Debug for ZipWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZipWriter")
            .field("offset", &self.offset)
            .field("entries", &self.names.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ZipWriter<W> {
    /// A writer that starts the archive at the current position of `out`, taken as offset 0
    /// (offsets in a zip count from the start of the file).
    pub fn new(out: W) -> Self {
        Self {
            out,
            offset: 0,
            central: Vec::new(),
            names: HashSet::new(),
            failed: false,
        }
    }

    /// Writes `entry`'s local header and data.
    ///
    /// Everything is checked before the first byte is written: an entry refused for its name or
    /// size leaves the archive as it was. After an I/O error, every call fails with
    /// [`ZipError::Failed`].
    pub fn add(&mut self, entry: &Entry<'_>) -> Result<(), ZipError> {
        if self.failed {
            return Err(ZipError::Failed);
        }
        check_name(entry.name)?;
        if self.names.contains(entry.name) {
            return Err(ZipError::DuplicateName);
        }
        if self.names.len() >= MAX_ENTRIES {
            return Err(ZipError::TooManyEntries);
        }
        let size = fits(entry.data.len())?;
        let deflated;
        let data = match entry.method {
            Method::Stored => entry.data,
            Method::Deflated => {
                deflated = miniz_oxide::deflate::compress_to_vec(entry.data, DEFLATE_LEVEL);
                &deflated
            }
        };
        let compressed_size = fits(data.len())?;
        let name = entry.name.as_bytes();
        // `check_name` bounds the name to 0xFFFF bytes.
        let name_len = u16::try_from(name.len()).map_err(|_| ZipError::BadName)?;
        let local_offset = u32::try_from(self.offset)
            .ok()
            .filter(|&o| u64::from(o) <= MAX_SIZE)
            .ok_or(ZipError::TooLarge)?;
        // Where the central directory would start, and how long it would be, with this entry:
        // both must stay below ZIP64's markers, so that `finish` cannot fail on them.
        let end_of_data = [LOCAL_LEN as u64, name.len() as u64, data.len() as u64]
            .iter()
            .try_fold(self.offset, |acc, &n| acc.checked_add(n))
            .filter(|&e| e <= MAX_SIZE)
            .ok_or(ZipError::TooLarge)?;
        let central_len = [self.central.len(), CENTRAL_LEN, name.len()]
            .iter()
            .try_fold(0usize, |acc, &n| acc.checked_add(n))
            .ok_or(ZipError::TooLarge)?;
        fits(central_len)?;

        let crc = crc32fast::hash(entry.data);
        let flags = if entry.name.is_ascii() { 0 } else { FLAG_UTF8 };
        let mode = if entry.executable {
            MODE_EXECUTABLE
        } else {
            MODE_FILE
        };
        let common = Common {
            version_needed: entry.method.version_needed(),
            flags,
            method: entry.method.code(),
            crc,
            compressed_size,
            size,
            name_len,
        };

        let mut local = Vec::with_capacity(LOCAL_LEN + name.len());
        put32(&mut local, LOCAL_SIGNATURE);
        common.put(&mut local);
        put16(&mut local, 0); // extra field length
        local.extend_from_slice(name);
        if let Err(e) = self
            .out
            .write_all(&local)
            .and_then(|()| self.out.write_all(data))
        {
            self.failed = true;
            return Err(ZipError::Io(e));
        }
        self.offset = end_of_data;

        put32(&mut self.central, CENTRAL_SIGNATURE);
        put16(&mut self.central, VERSION_MADE_BY);
        common.put(&mut self.central);
        put16(&mut self.central, 0); // extra field length
        put16(&mut self.central, 0); // comment length
        put16(&mut self.central, 0); // disk number start
        put16(&mut self.central, 0); // internal attributes
        put32(&mut self.central, mode << 16);
        put32(&mut self.central, local_offset);
        self.central.extend_from_slice(name);
        self.names.insert(entry.name.to_owned());
        Ok(())
    }

    /// Writes the central directory and the end record, flushes, and hands the output back.
    pub fn finish(mut self) -> Result<W, ZipError> {
        if self.failed {
            return Err(ZipError::Failed);
        }
        // `add` kept the count, the directory's offset and its length within bounds.
        let entries = u16::try_from(self.names.len()).map_err(|_| ZipError::TooManyEntries)?;
        let directory_offset = u32::try_from(self.offset).map_err(|_| ZipError::TooLarge)?;
        let directory_len = u32::try_from(self.central.len()).map_err(|_| ZipError::TooLarge)?;
        let mut end = Vec::with_capacity(END_LEN);
        put32(&mut end, END_SIGNATURE);
        put16(&mut end, 0); // this disk
        put16(&mut end, 0); // the directory's disk
        put16(&mut end, entries); // on this disk
        put16(&mut end, entries); // in all
        put32(&mut end, directory_len);
        put32(&mut end, directory_offset);
        put16(&mut end, 0); // comment length
        self.out.write_all(&self.central)?;
        self.out.write_all(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The fields a local header and a central header share, from "version needed" to "extra
/// field length" (exclusive).
struct Common {
    version_needed: u16,
    flags: u16,
    method: u16,
    crc: u32,
    compressed_size: u32,
    size: u32,
    name_len: u16,
}

impl Common {
    fn put(&self, out: &mut Vec<u8>) {
        put16(out, self.version_needed);
        put16(out, self.flags);
        put16(out, self.method);
        put16(out, DOS_TIME);
        put16(out, DOS_DATE);
        put32(out, self.crc);
        put32(out, self.compressed_size);
        put32(out, self.size);
        put16(out, self.name_len);
    }
}

fn check_name(name: &str) -> Result<(), ZipError> {
    let plain = |c: &str| !c.is_empty() && c != "." && c != "..";
    if name.len() > MAX_NAME_LEN || name.contains(['\\', '\0']) || !name.split('/').all(plain) {
        return Err(ZipError::BadName);
    }
    Ok(())
}

/// A length as a zip's 32-bit field, below ZIP64's marker.
fn fits(len: usize) -> Result<u32, ZipError> {
    u32::try_from(len)
        .ok()
        .filter(|&n| u64::from(n) <= MAX_SIZE)
        .ok_or(ZipError::TooLarge)
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    use lockstep_core::archive::{Archive, Inflater, read_bundle_conf};

    use super::*;

    /// Reads the zip's first `*bundle.conf` through core's reader.
    pub(crate) fn read_conf(zip: &[u8]) -> Vec<u8> {
        let mut reader: &[u8] = zip;
        let mut out = vec![0; 64 * 1024];
        let mut inflater = Box::new(Inflater::new());
        read_bundle_conf(&mut reader, &mut inflater, &mut out)
            .unwrap()
            .to_vec()
    }

    /// Tests `zip` with every external tool there is, `unzip -t` and Python's `zipfile`, and
    /// fails when there is neither: a check that silently skips proves nothing.
    pub(crate) fn assert_external_tools_accept(zip: &[u8]) {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path: PathBuf = std::env::temp_dir().join(format!(
            "lockstep-zip-test-{}-{}.zip",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, zip).unwrap();
        let mut runs = Vec::new();
        if std::path::Path::new("/usr/bin/unzip").exists() {
            let out = Command::new("/usr/bin/unzip").arg("-t").arg(&path).output();
            runs.push(("unzip -t", out.unwrap()));
        }
        // testzip() reads every entry and checks its CRC-32; None means all are good.
        let script = "import sys, zipfile\n\
                      z = zipfile.ZipFile(sys.argv[1])\n\
                      bad = z.testzip()\n\
                      sys.exit('bad entry: %s' % bad if bad else 0)";
        if let Ok(out) = Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
        {
            runs.push(("python3 zipfile", out));
        }
        // Removed before any assertion can fail.
        std::fs::remove_file(&path).unwrap();
        assert!(
            !runs.is_empty(),
            "neither /usr/bin/unzip nor python3 is installed: cannot check the zip independently"
        );
        for (tool, out) in runs {
            assert!(
                out.status.success(),
                "{tool}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    const CONF: &[u8] = b"version = \"1\"\nname = \"visualizer\"\n";

    fn sample(method: Method) -> Vec<u8> {
        to_vec(&[
            Entry::stored("visualizer-1/README.md", b"# readme\n"),
            Entry {
                method,
                ..Entry::stored("visualizer-1/bundle.conf", CONF)
            },
            Entry::deflated("visualizer-1/visualizer/bin/visualizer", b"#!/bin/sh\n").executable(),
        ])
        .unwrap()
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn test_write_reads_back_through_core() {
        for method in [Method::Stored, Method::Deflated] {
            let zip = sample(method);
            assert_eq!(read_conf(&zip), CONF, "{method:?}");
            let mut reader: &[u8] = &zip;
            let archive = Archive::open(&mut reader).unwrap();
            assert_eq!(archive.entry_count(), 3);
            assert_eq!(archive.comment_len(), 0);
        }
    }

    #[test]
    fn test_write_accepted_by_external_tools() {
        for method in [Method::Stored, Method::Deflated] {
            assert_external_tools_accept(&sample(method));
        }
        // An empty entry of each method, a UTF-8 name, a larger deflated entry (several
        // deflate blocks).
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let zip = to_vec(&[
            Entry::stored("empty-stored", b""),
            Entry::deflated("empty-deflated", b""),
            Entry::deflated("dir/naïve.txt", "ça va\n".as_bytes()),
            Entry::deflated("dir/big.bin", &big),
        ])
        .unwrap();
        assert_external_tools_accept(&zip);
    }

    #[test]
    fn test_write_is_deterministic() {
        assert_eq!(sample(Method::Deflated), sample(Method::Deflated));
        assert_ne!(sample(Method::Deflated), sample(Method::Stored));
    }

    #[test]
    fn test_write_layout() {
        let zip = sample(Method::Stored);
        // First local header: signature, version needed 1.0, no flags, stored, 1980-01-01 00:00.
        assert_eq!(u32_at(&zip, 0), LOCAL_SIGNATURE);
        assert_eq!(
            [u16_at(&zip, 4), u16_at(&zip, 6), u16_at(&zip, 8)],
            [10, 0, 0]
        );
        assert_eq!([u16_at(&zip, 10), u16_at(&zip, 12)], [0x0000, 0x0021]);
        assert_eq!(u32_at(&zip, 14), crc32fast::hash(b"# readme\n"));
        // The end record: 3 entries, no comment, the directory right before it.
        let end = zip.len() - END_LEN;
        assert_eq!(u32_at(&zip, end), END_SIGNATURE);
        assert_eq!([u16_at(&zip, end + 8), u16_at(&zip, end + 10)], [3, 3]);
        let directory = u32_at(&zip, end + 16) as usize;
        assert_eq!(directory + u32_at(&zip, end + 12) as usize, end);
        assert_eq!(u16_at(&zip, end + 20), 0);
        // The modes, in the external attributes of each central header.
        let mut at = directory;
        let mut modes = Vec::new();
        while at < end {
            assert_eq!(u32_at(&zip, at), CENTRAL_SIGNATURE);
            assert_eq!(u16_at(&zip, at + 4), VERSION_MADE_BY);
            modes.push(u32_at(&zip, at + 38) >> 16);
            at += CENTRAL_LEN + usize::from(u16_at(&zip, at + 28));
        }
        assert_eq!(modes, [0o100_644, 0o100_644, 0o100_755]);
    }

    // FIPS 180-4's examples.
    #[test]
    fn test_digest_vectors() {
        assert_eq!(
            digest(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn test_write_empty_archive() {
        // Only the end record (`unzip -t` warns that it is empty, and fails).
        let zip = to_vec(&[]).unwrap();
        assert_eq!(zip.len(), END_LEN);
        assert_eq!(read_entry_count(&zip), 0);
    }

    #[test]
    fn test_write_utf8_flag() {
        let zip = to_vec(&[Entry::stored("naïve", b"")]).unwrap();
        assert_eq!(u16_at(&zip, 6), FLAG_UTF8);
    }

    #[test]
    fn test_reject_bad_names() {
        for name in [
            "", "/abs", "a//b", "a/", "./a", "a/./b", "../a", "a/..", "a\\b", "a\0b",
        ] {
            let mut zip = ZipWriter::new(Vec::new());
            assert!(
                matches!(zip.add(&Entry::stored(name, b"x")), Err(ZipError::BadName)),
                "{name:?}"
            );
            // Nothing was written: the writer is still usable.
            zip.add(&Entry::stored("ok", b"x")).unwrap();
            assert_eq!(read_entry_count(&zip.finish().unwrap()), 1);
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            to_vec(&[Entry::stored(&long, b"")]),
            Err(ZipError::BadName)
        ));
        assert!(to_vec(&[Entry::stored("...", b""), Entry::stored(".a/b..", b"")]).is_ok());
    }

    fn read_entry_count(zip: &[u8]) -> u16 {
        let mut reader: &[u8] = zip;
        Archive::open(&mut reader).unwrap().entry_count()
    }

    #[test]
    fn test_reject_duplicate_names() {
        let e = to_vec(&[Entry::stored("a", b"1"), Entry::deflated("a", b"2")]).unwrap_err();
        assert!(matches!(e, ZipError::DuplicateName));
    }

    #[test]
    fn test_reject_too_many_entries() {
        let mut zip = ZipWriter::new(io::sink());
        for i in 0..MAX_ENTRIES {
            zip.add(&Entry::stored(&i.to_string(), b"")).unwrap();
        }
        let e = zip.add(&Entry::stored("one-more", b"")).unwrap_err();
        assert!(matches!(e, ZipError::TooManyEntries));
        zip.finish().unwrap();
    }

    #[test]
    fn test_reject_zip64_sizes() {
        // An archive already just under 4 GiB (its earlier entries written elsewhere).
        let mut zip = ZipWriter::new(Vec::new());
        zip.offset = MAX_SIZE - 40;
        assert!(matches!(
            zip.add(&Entry::stored("a", &[0; 20])),
            Err(ZipError::TooLarge)
        ));
        zip.add(&Entry::stored("a", &[0; 9])).unwrap();
        assert_eq!(zip.offset, MAX_SIZE);
        // No room is left for another entry, not even an empty one.
        assert!(matches!(
            zip.add(&Entry::stored("b", b"")),
            Err(ZipError::TooLarge)
        ));
        // The size check itself, without allocating 4 GiB.
        assert_eq!(fits(0xFFFF_FFFE).unwrap(), 0xFFFF_FFFE);
        assert!(matches!(fits(0xFFFF_FFFF), Err(ZipError::TooLarge)));
        assert!(matches!(fits(usize::MAX), Err(ZipError::TooLarge)));
    }

    /// An output that fails after `left` bytes.
    #[derive(Debug)]
    struct Failing {
        left: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn test_reject_after_io_error() {
        let mut zip = ZipWriter::new(Failing { left: 10 });
        let e = zip.add(&Entry::stored("a", b"hello")).unwrap_err();
        assert_eq!(e.to_string(), "writing the zip: disk full");
        assert!(std::error::Error::source(&e).is_some());
        assert!(matches!(
            zip.add(&Entry::stored("b", b"")),
            Err(ZipError::Failed)
        ));
        assert!(matches!(zip.finish(), Err(ZipError::Failed)));
        // Failing in the directory.
        let e = write(Failing { left: 40 }, &[Entry::stored("a", b"")]).unwrap_err();
        assert!(matches!(e, ZipError::Io(_)));
    }

    #[test]
    fn test_error_messages_are_one_line() {
        let errors = [
            ZipError::Io(io::Error::other("x")),
            ZipError::BadName,
            ZipError::DuplicateName,
            ZipError::TooManyEntries,
            ZipError::TooLarge,
            ZipError::Failed,
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
    }
}
