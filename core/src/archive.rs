//! The bundle.conf inside a bundle zip (docs/PROTOCOL.md §4: the FIRST entry whose name ends with
//! `bundle.conf`), read through a [`RandomAccess`] reader so that a bundle of many megabytes is
//! never held in memory: only its end record, its central directory (header by header) and the
//! one entry's data are read, in small pieces.
//!
//! [`read_bundle_conf`] does it all; [`Archive`] does it step by step ([`Archive::open`],
//! [`Archive::find`], [`Archive::read`]) for a caller that wants the located [`Entry`] too.
//!
//! Supported: zips as Info-ZIP and Python's `zipfile` write them (the test vectors); entries
//! stored (method 0) or deflated (method 8); data descriptors, as Java's `ZipOutputStream` and
//! a streaming Info-ZIP write them (general-purpose flag bit 3: sizes and CRC-32 are taken from
//! the central directory, never from the local header); an archive comment. Refused, each with its own [`ArchiveError`]: ZIP64 (a ZIP64
//! locator before the end record, or any field saturated at `0xFFFF` / `0xFFFF_FFFF`);
//! archives split over several disks; encrypted entries (flag bit 0 or 6); other methods; an
//! end record that is not followed by exactly its comment (bytes appended to the zip); data
//! prepended to the zip (a self-extractor), since offsets are taken from the start of the file;
//! any offset, length or count that points outside the region it belongs to; output larger or
//! smaller than the central directory declares; a wrong CRC-32.
//!
//! Bounds: the end record is searched for over at most the last 22 + 65,535 bytes; no more than
//! the declared number of central headers are visited, never past the directory's declared
//! bytes; the entry's data is read only up to its declared compressed size, inflated only up to
//! its declared uncompressed size, and only if that size fits the caller's buffer, which is
//! checked before any of the data is read. Whatever is returned is a prefix of that buffer.
//!
//! Memory: nothing is allocated. The inflate state (miniz_oxide's `DecompressorOxide`, 10,500
//! bytes on thumbv7em, 10,504 on x86_64) is the caller's [`Inflater`]: a microcontroller keeps it
//! in a static or in a deployment's buffer set, and reuses it, instead of finding 11 KB of stack
//! for every read. What is left on the stack is small: a 256-byte window while searching for the
//! end record, a 46-byte header and a 16-byte name window while walking the directory, a 30-byte
//! local header and a 512-byte input chunk while inflating. Measured on thumbv7em (release,
//! opt-level `s` and `z`, `-Z emit-stack-sizes`): 680 bytes for [`read_bundle_conf`] with all of
//! this module inlined into it, plus at most 424 in miniz_oxide's `decompress_with_limit` and
//! `init_tree` beneath it: 1.1 KiB in all.

use core::fmt;

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use crate::text::{len_u64, min_len};

/// The name suffix of the entry a bundle is read for (docs/PROTOCOL.md §4).
pub const BUNDLE_CONF: &[u8] = b"bundle.conf";

const END_SIGNATURE: [u8; 4] = 0x0605_4b50_u32.to_le_bytes();
const END_LEN: usize = 22;
const MAX_COMMENT_LEN: u64 = 0xFFFF;
const ZIP64_LOCATOR_SIGNATURE: [u8; 4] = 0x0706_4b50_u32.to_le_bytes();
const ZIP64_LOCATOR_LEN: u64 = 20;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const LOCAL_LEN: usize = 30;

/// Flag bit 0 (traditional encryption) and bit 6 (strong encryption).
const ENCRYPTED_FLAGS: u16 = 0x0001 | 0x0040;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;

/// Bytes read at a time while searching backwards for the end record.
const SCAN_CHUNK: usize = 256;
/// Bytes of a name compared at a time with the suffix searched for.
const NAME_CHUNK: usize = 16;
/// Compressed bytes fed to the inflater at a time.
const INPUT_CHUNK: usize = 512;

// ---------------------------------------------------------------------------------------------
// The reader
// ---------------------------------------------------------------------------------------------

/// Random read access to a zip file: a slice, a file, flash.
///
/// Synchronous on purpose: every read is small (at most 512 bytes, except a stored entry's data,
/// which is read whole into the caller's buffer) and local, because the runtime has already
/// downloaded the bundle to its store; an async trait would only add a state machine per read.
pub trait RandomAccess {
    /// Why a read failed.
    type Error;

    /// The length of the file, in bytes.
    fn len(&self) -> u64;

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`, or fails; a read that would
    /// pass the end of the file fails.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

impl<R: RandomAccess + ?Sized> RandomAccess for &mut R {
    type Error = R::Error;

    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read_exact_at(offset, buf)
    }
}

/// A zip held in memory.
impl RandomAccess for &[u8] {
    type Error = OutOfBounds;

    fn len(&self) -> u64 {
        len_u64(<[u8]>::len(self))
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        let start = usize::try_from(offset).map_err(|_| OutOfBounds)?;
        let end = start.checked_add(buf.len()).ok_or(OutOfBounds)?;
        let bytes = self.get(start..end).ok_or(OutOfBounds)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// A read past the end of a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OutOfBounds;

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("read past the end of the data")
    }
}

impl core::error::Error for OutOfBounds {}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why the bundle.conf (or another entry) could not be read from a zip. `E` is the reader's
/// error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ArchiveError<E> {
    /// The reader failed.
    Read(E),
    /// No end-of-central-directory record followed by exactly its comment: not a zip, a
    /// truncated one, or one with bytes appended.
    NoEndRecord,
    /// A ZIP64 archive or entry: a ZIP64 locator before the end record, or a field at its
    /// ZIP64 marker value (`0xFFFF`, `0xFFFF_FFFF`).
    Zip64,
    /// An archive split over several disks.
    MultiDisk,
    /// The central directory does not lie within the file, before the end record.
    DirectoryOutOfBounds,
    /// A central header, or its name, extra field or comment, runs past the end of the
    /// directory (more entries declared than the directory holds, or a lying length).
    DirectoryOverrun,
    /// A central directory header without its signature.
    BadCentralSignature,
    /// No entry's name ends with the suffix searched for.
    NotFound,
    /// The entry is encrypted.
    Encrypted,
    /// A compression method other than stored (0) and deflate (8).
    UnsupportedMethod(u16),
    /// A stored entry whose compressed and uncompressed sizes differ.
    StoredSizeMismatch,
    /// The declared uncompressed size is larger than the output buffer.
    TooLarge {
        /// The size the central directory declares.
        declared: u32,
    },
    /// The entry's local header would not lie before the central directory.
    BadOffset,
    /// A local header without its signature.
    BadLocalSignature,
    /// The local header disagrees with the central directory on the method or encryption.
    LocalMismatch,
    /// The entry's data runs past the start of the central directory.
    Truncated,
    /// Inflating would produce more than the declared uncompressed size: a zip bomb, or a lying
    /// directory.
    Bomb,
    /// The deflate stream is invalid.
    Corrupt,
    /// The deflate stream ends before the entry's compressed data does.
    TrailingInput,
    /// The entry's compressed data ends before the deflate stream does.
    Unterminated,
    /// The deflate stream ends with less output than the declared uncompressed size.
    ShortOutput,
    /// The CRC-32 of the content is not the one the central directory declares.
    BadCrc,
}

impl<E: fmt::Display> fmt::Display for ArchiveError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "reading the zip: {e}"),
            Self::NoEndRecord => f.write_str("not a zip: no end of central directory record"),
            Self::Zip64 => f.write_str("ZIP64 archives are not supported"),
            Self::MultiDisk => f.write_str("multi-disk archives are not supported"),
            Self::DirectoryOutOfBounds => f.write_str("the central directory lies outside the zip"),
            Self::DirectoryOverrun => {
                f.write_str("a central directory header runs past the end of the directory")
            }
            Self::BadCentralSignature => f.write_str("bad central directory header signature"),
            Self::NotFound => f.write_str("no bundle.conf in the zip"),
            Self::Encrypted => f.write_str("the entry is encrypted"),
            Self::UnsupportedMethod(m) => write!(f, "unsupported compression method {m}"),
            Self::StoredSizeMismatch => {
                f.write_str("a stored entry's compressed and uncompressed sizes differ")
            }
            Self::TooLarge { declared } => {
                write!(
                    f,
                    "the entry declares {declared} bytes, more than the buffer"
                )
            }
            Self::BadOffset => f.write_str("the entry's local header lies outside the zip data"),
            Self::BadLocalSignature => f.write_str("bad local header signature"),
            Self::LocalMismatch => {
                f.write_str("the local header disagrees with the central directory")
            }
            Self::Truncated => f.write_str("the entry's data runs into the central directory"),
            Self::Bomb => f.write_str("the entry inflates to more than its declared size"),
            Self::Corrupt => f.write_str("invalid deflate data"),
            Self::TrailingInput => f.write_str("the deflate stream ends before the entry's data"),
            Self::Unterminated => f.write_str("the entry's data ends inside the deflate stream"),
            Self::ShortOutput => f.write_str("the entry inflates to less than its declared size"),
            Self::BadCrc => f.write_str("the entry's CRC-32 does not match"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for ArchiveError<E> {}

// ---------------------------------------------------------------------------------------------
// The archive
// ---------------------------------------------------------------------------------------------

/// Reads the first entry of `zip` whose name ends with [`BUNDLE_CONF`] into `out`, and returns
/// the prefix of `out` it fills; `inflater` is the scratch state for a deflated entry.
pub fn read_bundle_conf<'b, R: RandomAccess + ?Sized>(
    zip: &mut R,
    inflater: &mut Inflater,
    out: &'b mut [u8],
) -> Result<&'b [u8], ArchiveError<R::Error>> {
    let mut archive = Archive::open(zip)?;
    let entry = archive.find(BUNDLE_CONF)?;
    archive.read(&entry, inflater, out)
}

/// A zip whose end record has been found and checked: call [`find`](Self::find), then
/// [`read`](Self::read).
pub struct Archive<R> {
    zip: R,
    directory_start: u64,
    directory_end: u64,
    entry_count: u16,
    comment_len: u16,
}

impl<R> fmt::Debug for Archive<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Archive")
            .field("directory_start", &self.directory_start)
            .field("directory_end", &self.directory_end)
            .field("entry_count", &self.entry_count)
            .field("comment_len", &self.comment_len)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<R> defmt::Format for Archive<R> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Archive {{ directory: {=u64}..{=u64}, entries: {=u16} }}",
            self.directory_start,
            self.directory_end,
            self.entry_count
        );
    }
}

impl<R: RandomAccess> Archive<R> {
    /// Finds the end of central directory record and checks it: one disk, no ZIP64, the central
    /// directory within the file before the record.
    ///
    /// The record searched for is the last one whose comment reaches exactly the end of the
    /// file. (A comment may itself hold a record that satisfies this: every zip reader has to
    /// pick one, and the last is what the others pick too.)
    pub fn open(mut zip: R) -> Result<Self, ArchiveError<R::Error>> {
        let len = zip.len();
        let (at, end) = find_end_record(&mut zip, len)?;
        if [end.disk, end.directory_disk, end.disk_entries, end.entries].contains(&0xFFFF)
            || end.directory_len == u32::MAX
            || end.directory_offset == u32::MAX
        {
            return Err(ArchiveError::Zip64);
        }
        if let Some(locator) = at.checked_sub(ZIP64_LOCATOR_LEN) {
            let mut signature = [0; 4];
            zip.read_exact_at(locator, &mut signature)
                .map_err(ArchiveError::Read)?;
            if signature == ZIP64_LOCATOR_SIGNATURE {
                return Err(ArchiveError::Zip64);
            }
        }
        if end.disk != 0 || end.directory_disk != 0 || end.disk_entries != end.entries {
            return Err(ArchiveError::MultiDisk);
        }
        let directory_start = u64::from(end.directory_offset);
        let directory_end = directory_start
            .checked_add(u64::from(end.directory_len))
            .filter(|&e| e <= at)
            .ok_or(ArchiveError::DirectoryOutOfBounds)?;
        Ok(Self {
            zip,
            directory_start,
            directory_end,
            entry_count: end.entries,
            comment_len: end.comment_len,
        })
    }

    /// The number of entries the end record declares.
    pub const fn entry_count(&self) -> u16 {
        self.entry_count
    }

    /// The length of the archive comment.
    pub const fn comment_len(&self) -> u16 {
        self.comment_len
    }

    /// The first entry, in central directory order, whose name ends with `suffix` (compared
    /// byte for byte; an empty suffix matches the first entry), checked to be readable: not
    /// encrypted, stored or deflated, not ZIP64.
    ///
    /// Visits at most [`entry_count`](Self::entry_count) headers, never past the directory.
    pub fn find(&mut self, suffix: &[u8]) -> Result<Entry, ArchiveError<R::Error>> {
        let suffix_len = u64::try_from(suffix.len()).map_err(|_| ArchiveError::NotFound)?;
        let mut at = self.directory_start;
        for index in 0..self.entry_count {
            let header_end = at
                .checked_add(CENTRAL_LEN as u64)
                .filter(|&e| e <= self.directory_end)
                .ok_or(ArchiveError::DirectoryOverrun)?;
            let mut bytes = [0; CENTRAL_LEN];
            self.zip
                .read_exact_at(at, &mut bytes)
                .map_err(ArchiveError::Read)?;
            let header = CentralHeader::parse(&bytes);
            if header.signature != CENTRAL_SIGNATURE {
                return Err(ArchiveError::BadCentralSignature);
            }
            let name_end = header_end
                .checked_add(u64::from(header.name_len))
                .ok_or(ArchiveError::DirectoryOverrun)?;
            let next = name_end
                .checked_add(u64::from(header.extra_len))
                .and_then(|e| e.checked_add(u64::from(header.comment_len)))
                .filter(|&e| e <= self.directory_end)
                .ok_or(ArchiveError::DirectoryOverrun)?;
            if let Some(suffix_start) = name_end
                .checked_sub(suffix_len)
                .filter(|&s| s >= header_end)
                && self.holds_at(suffix_start, suffix)?
            {
                return Entry::new(index, &header);
            }
            at = next;
        }
        Err(ArchiveError::NotFound)
    }

    /// Reads `entry`'s content into `out` and returns the prefix of `out` it fills, after
    /// checking its size (before reading anything), its local header, its bounds and its CRC-32.
    /// `inflater` is only used for a deflated entry.
    pub fn read<'b>(
        &mut self,
        entry: &Entry,
        inflater: &mut Inflater,
        out: &'b mut [u8],
    ) -> Result<&'b [u8], ArchiveError<R::Error>> {
        let declared = entry.uncompressed_size;
        let out = usize::try_from(declared)
            .ok()
            .and_then(|size| out.get_mut(..size))
            .ok_or(ArchiveError::TooLarge { declared })?;
        let data = self.data_offset(entry)?;
        match entry.method {
            Method::Stored => self
                .zip
                .read_exact_at(data, out)
                .map_err(ArchiveError::Read)?,
            Method::Deflated => inflate(
                &mut self.zip,
                data,
                entry.compressed_size,
                &mut inflater.0,
                out,
            )?,
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(out);
        if crc.finalize() != entry.crc32 {
            return Err(ArchiveError::BadCrc);
        }
        Ok(out)
    }

    /// Whether the file holds `expected` at `offset`, read a few bytes at a time.
    fn holds_at(
        &mut self,
        mut offset: u64,
        expected: &[u8],
    ) -> Result<bool, ArchiveError<R::Error>> {
        let mut window = [0; NAME_CHUNK];
        for part in expected.chunks(NAME_CHUNK) {
            // `chunks` cuts parts of at most NAME_CHUNK bytes: the split is within the window.
            let (window, _) = window.split_at_mut(part.len());
            self.zip
                .read_exact_at(offset, window)
                .map_err(ArchiveError::Read)?;
            if window != part {
                return Ok(false);
            }
            offset = offset
                .checked_add(NAME_CHUNK as u64)
                .ok_or(ArchiveError::DirectoryOverrun)?;
        }
        Ok(true)
    }

    /// Checks the entry's local header and returns the offset of its data, which lies with all
    /// of its compressed size before the central directory.
    fn data_offset(&mut self, entry: &Entry) -> Result<u64, ArchiveError<R::Error>> {
        let at = u64::from(entry.local_header_offset);
        let header_end = at
            .checked_add(LOCAL_LEN as u64)
            .filter(|&e| e <= self.directory_start)
            .ok_or(ArchiveError::BadOffset)?;
        let mut bytes = [0; LOCAL_LEN];
        self.zip
            .read_exact_at(at, &mut bytes)
            .map_err(ArchiveError::Read)?;
        let fields = Fields(&bytes);
        if fields.le32::<0>() != LOCAL_SIGNATURE {
            return Err(ArchiveError::BadLocalSignature);
        }
        let (flags, method) = (fields.le16::<6>(), fields.le16::<8>());
        if flags & ENCRYPTED_FLAGS != 0 || method != entry.method.code() {
            return Err(ArchiveError::LocalMismatch);
        }
        let data = header_end
            .checked_add(u64::from(fields.le16::<26>()))
            .and_then(|d| d.checked_add(u64::from(fields.le16::<28>())))
            .ok_or(ArchiveError::Truncated)?;
        data.checked_add(u64::from(entry.compressed_size))
            .filter(|&e| e <= self.directory_start)
            .ok_or(ArchiveError::Truncated)?;
        Ok(data)
    }
}

/// The end of central directory record's fields.
struct EndRecord {
    disk: u16,
    directory_disk: u16,
    disk_entries: u16,
    entries: u16,
    directory_len: u32,
    directory_offset: u32,
    comment_len: u16,
}

/// Searches the last 22 + 65,535 bytes backwards, `SCAN_CHUNK` bytes at a time, for the last
/// end record whose comment ends exactly at `len`; returns its offset and fields.
fn find_end_record<R: RandomAccess>(
    zip: &mut R,
    len: u64,
) -> Result<(u64, EndRecord), ArchiveError<R::Error>> {
    const SIGNATURE_LEN: u64 = END_SIGNATURE.len() as u64;
    // Candidates per pass: the window holds their signatures.
    const STEP: u64 = SCAN_CHUNK as u64 - SIGNATURE_LEN;
    let last = len
        .checked_sub(END_LEN as u64)
        .ok_or(ArchiveError::NoEndRecord)?;
    let lowest = last.saturating_sub(MAX_COMMENT_LEN);
    let mut window = [0; SCAN_CHUNK];
    // Candidate offsets still to look at: lowest..=highest. Each pass reads the bytes of the
    // signatures of candidates lo..=highest and moves below lo, so it ends after at most
    // 65,558 / 253 passes.
    let mut highest = last;
    loop {
        let lo = highest.saturating_sub(STEP).max(lowest);
        let window_len = highest
            .checked_sub(lo)
            .and_then(|n| n.checked_add(SIGNATURE_LEN))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(ArchiveError::NoEndRecord)?;
        let window = window
            .get_mut(..window_len)
            .ok_or(ArchiveError::NoEndRecord)?;
        zip.read_exact_at(lo, window).map_err(ArchiveError::Read)?;
        for (i, candidate) in window.windows(END_SIGNATURE.len()).enumerate().rev() {
            if candidate != END_SIGNATURE {
                continue;
            }
            let at = u64::try_from(i)
                .ok()
                .and_then(|i| lo.checked_add(i))
                .ok_or(ArchiveError::NoEndRecord)?;
            let mut bytes = [0; END_LEN];
            zip.read_exact_at(at, &mut bytes)
                .map_err(ArchiveError::Read)?;
            let fields = Fields(&bytes);
            let record = EndRecord {
                disk: fields.le16::<4>(),
                directory_disk: fields.le16::<6>(),
                disk_entries: fields.le16::<8>(),
                entries: fields.le16::<10>(),
                directory_len: fields.le32::<12>(),
                directory_offset: fields.le32::<16>(),
                comment_len: fields.le16::<20>(),
            };
            let record_end = at
                .checked_add(END_LEN as u64)
                .and_then(|e| e.checked_add(u64::from(record.comment_len)));
            if record_end == Some(len) {
                return Ok((at, record));
            }
        }
        highest = match lo.checked_sub(1) {
            Some(below) if lo > lowest => below,
            _ => return Err(ArchiveError::NoEndRecord),
        };
    }
}

/// The fields of a central directory header that matter here.
struct CentralHeader {
    signature: u32,
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u32,
    uncompressed_size: u32,
    name_len: u16,
    extra_len: u16,
    comment_len: u16,
    disk: u16,
    local_header_offset: u32,
}

impl CentralHeader {
    fn parse(bytes: &[u8; CENTRAL_LEN]) -> Self {
        let fields = Fields(bytes);
        Self {
            signature: fields.le32::<0>(),
            flags: fields.le16::<8>(),
            method: fields.le16::<10>(),
            crc32: fields.le32::<16>(),
            compressed_size: fields.le32::<20>(),
            uncompressed_size: fields.le32::<24>(),
            name_len: fields.le16::<28>(),
            extra_len: fields.le16::<30>(),
            comment_len: fields.le16::<32>(),
            disk: fields.le16::<34>(),
            local_header_offset: fields.le32::<42>(),
        }
    }
}

/// A fixed-size zip record, read at offsets that are checked against its size at compile time.
struct Fields<'a, const N: usize>(&'a [u8; N]);

impl<const N: usize> Fields<'_, N> {
    /// The `W` bytes at `AT`.
    fn at<const AT: usize, const W: usize>(&self) -> [u8; W] {
        const { assert!(matches!(AT.checked_add(W), Some(end) if end <= N)) };
        // Within the record (asserted above): the zeros are never read.
        self.0
            .get(AT..)
            .and_then(<[u8]>::first_chunk)
            .map_or([0; W], |bytes| *bytes)
    }

    /// The little-endian `u16` at `AT`.
    fn le16<const AT: usize>(&self) -> u16 {
        u16::from_le_bytes(self.at::<AT, 2>())
    }

    /// The little-endian `u32` at `AT`.
    fn le32<const AT: usize>(&self) -> u32 {
        u32::from_le_bytes(self.at::<AT, 4>())
    }
}

// ---------------------------------------------------------------------------------------------
// The entry
// ---------------------------------------------------------------------------------------------

/// How an entry's content is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method {
    /// Method 0: the bytes as they are.
    Stored,
    /// Method 8: raw deflate (RFC 1951).
    Deflated,
}

impl Method {
    /// The method's number in a zip header.
    pub const fn code(self) -> u16 {
        match self {
            Self::Stored => METHOD_STORED,
            Self::Deflated => METHOD_DEFLATED,
        }
    }
}

/// An entry located in the central directory, known to be readable: not encrypted, stored or
/// deflated, not ZIP64, a stored one with equal sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry {
    index: u16,
    name_len: u16,
    method: Method,
    crc32: u32,
    compressed_size: u32,
    uncompressed_size: u32,
    local_header_offset: u32,
}

impl Entry {
    fn new<E>(index: u16, header: &CentralHeader) -> Result<Self, ArchiveError<E>> {
        if header.flags & ENCRYPTED_FLAGS != 0 {
            return Err(ArchiveError::Encrypted);
        }
        let method = match header.method {
            METHOD_STORED => Method::Stored,
            METHOD_DEFLATED => Method::Deflated,
            other => return Err(ArchiveError::UnsupportedMethod(other)),
        };
        if [
            header.compressed_size,
            header.uncompressed_size,
            header.local_header_offset,
        ]
        .contains(&u32::MAX)
            || header.disk == 0xFFFF
        {
            return Err(ArchiveError::Zip64);
        }
        if header.disk != 0 {
            return Err(ArchiveError::MultiDisk);
        }
        if method == Method::Stored && header.compressed_size != header.uncompressed_size {
            return Err(ArchiveError::StoredSizeMismatch);
        }
        Ok(Self {
            index,
            name_len: header.name_len,
            method,
            crc32: header.crc32,
            compressed_size: header.compressed_size,
            uncompressed_size: header.uncompressed_size,
            local_header_offset: header.local_header_offset,
        })
    }

    /// The entry's position in the central directory, from 0.
    pub const fn index(&self) -> u16 {
        self.index
    }

    /// The length of the entry's name, in bytes.
    pub const fn name_len(&self) -> u16 {
        self.name_len
    }

    /// How the content is stored.
    pub const fn method(&self) -> Method {
        self.method
    }

    /// The CRC-32 the central directory declares for the content.
    pub const fn crc32(&self) -> u32 {
        self.crc32
    }

    /// The size of the data in the zip.
    pub const fn compressed_size(&self) -> u32 {
        self.compressed_size
    }

    /// The size of the content: what [`Archive::read`] returns, and the buffer it needs.
    pub const fn uncompressed_size(&self) -> u32 {
        self.uncompressed_size
    }

    /// Where the entry's local header starts.
    pub const fn local_header_offset(&self) -> u32 {
        self.local_header_offset
    }
}

// ---------------------------------------------------------------------------------------------
// Inflating
// ---------------------------------------------------------------------------------------------

/// The state of the inflater (miniz_oxide's `DecompressorOxide`: 10,500 bytes on thumbv7em,
/// 10,504 on x86_64), taken from the caller so that it need not fit on the stack.
///
/// Make one and reuse it for every read: each read starts from a clean state. Build it where it
/// will live, e.g. `StaticCell::init_with(Inflater::new)` or as a field of a deployment's buffer
/// set: [`Inflater::new`] is always inlined, so an optimised build writes the state in place
/// (measured on thumbv7em: no stack beyond the caller's 8 bytes), whereas unoptimised builds
/// pass it through temporaries of tens of KB. miniz_oxide has no `const` constructor, so it
/// cannot be a plain `static`.
pub struct Inflater(DecompressorOxide);

impl Inflater {
    /// A fresh state.
    // miniz_oxide's `default` is `#[inline(always)]`: inlined here, and this into the caller, it
    // writes the state in place. Its `new` is not inlined and returns through a 10.5 KB temporary.
    #[inline(always)]
    pub fn new() -> Self {
        Self(DecompressorOxide::default())
    }
}

impl Default for Inflater {
    #[inline(always)]
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inflater(..)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Inflater {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Inflater(..)");
    }
}

/// Inflates the `compressed` bytes at `at` into exactly `out`, `INPUT_CHUNK` bytes at a time.
///
/// Ends after at most one pass per chunk read plus one: a pass that does not end the stream has
/// consumed all its input, so the next one reads a new chunk.
fn inflate<R: RandomAccess>(
    zip: &mut R,
    mut at: u64,
    compressed: u32,
    state: &mut DecompressorOxide,
    out: &mut [u8],
) -> Result<(), ArchiveError<R::Error>> {
    state.init();
    let mut chunk = [0; INPUT_CHUNK];
    // Compressed bytes not yet read from the zip; `chunk[used..filled]` is read but not consumed.
    let mut left = u64::from(compressed);
    let (mut used, mut filled, mut written) = (0usize, 0usize, 0usize);
    loop {
        if used == filled && left > 0 {
            let n = min_len(left, INPUT_CHUNK);
            let input = chunk.get_mut(..n).ok_or(ArchiveError::Corrupt)?;
            zip.read_exact_at(at, input).map_err(ArchiveError::Read)?;
            let n64 = u64::try_from(n).map_err(|_| ArchiveError::Corrupt)?;
            at = at.checked_add(n64).ok_or(ArchiveError::Corrupt)?;
            left = left.checked_sub(n64).ok_or(ArchiveError::Corrupt)?;
            (used, filled) = (0, n);
        }
        let input = chunk.get(used..filled).ok_or(ArchiveError::Corrupt)?;
        let more = if left > 0 {
            inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
        } else {
            0
        };
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF | more;
        let (status, consumed, produced) = decompress(state, input, out, written, flags);
        used = used
            .checked_add(consumed)
            .filter(|&u| u <= filled)
            .ok_or(ArchiveError::Corrupt)?;
        written = written
            .checked_add(produced)
            .filter(|&w| w <= out.len())
            .ok_or(ArchiveError::Bomb)?;
        let input_drained = used == filled;
        match status {
            TINFLStatus::Done if !input_drained || left > 0 => {
                return Err(ArchiveError::TrailingInput);
            }
            TINFLStatus::Done if written < out.len() => return Err(ArchiveError::ShortOutput),
            TINFLStatus::Done => return Ok(()),
            // With the output full, miniz_oxide reports a need for more input as more output:
            // the rest of the stream may still be just its end. Only output that is pending
            // while input is left is more than declared.
            TINFLStatus::HasMoreOutput | TINFLStatus::NeedsMoreInput
                if input_drained && left > 0 => {}
            TINFLStatus::HasMoreOutput => return Err(ArchiveError::Bomb),
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                return Err(ArchiveError::Unterminated);
            }
            _ => return Err(ArchiveError::Corrupt),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    type Error = ArchiveError<OutOfBounds>;

    // The vectors and the commands that made them: core/tests/data/archive/README.txt.
    macro_rules! vector {
        ($name:literal) => {
            include_bytes!(concat!("../tests/data/archive/", $name))
        };
    }

    // docs/PROTOCOL.md §4's example bundle.conf, the content of visualizer-v1/bundle.conf.
    const CONF: &[u8] = vector!("bundle.conf");
    // Info-ZIP `zip -X -0`: app.jar, bundle.conf, bin/visualizer, all stored.
    const STORED: &[u8] = vector!("stored.zip");
    // Info-ZIP `zip -X -9`: the same files, bundle.conf deflated.
    const DEFLATED: &[u8] = vector!("deflated.zip");
    // Info-ZIP `zip -X -9 -` to a pipe: data descriptors, zero sizes in the local headers.
    const STREAMED: &[u8] = vector!("streamed.zip");
    // CPython 3.11 `zipfile.ZipFile(.., ZIP_DEFLATED)`: app.jar and bundle.conf.
    const PYTHON: &[u8] = vector!("python.zip");
    // Info-ZIP `zip -X -9 -z`: DEFLATED's files and a 44-byte archive comment.
    const COMMENT: &[u8] = vector!("comment.zip");
    // Info-ZIP: app.jar, bundle.conf.orig, other/bundle.conf, visualizer-v1/bundle.conf.
    const TWO: &[u8] = vector!("two.zip");
    // Info-ZIP: app.jar, bin/visualizer, bundle.conf.orig; no name ends with bundle.conf.
    const NO_BUNDLE: &[u8] = vector!("nobundle.zip");
    // Info-ZIP `zip -X -9 -P secret`: traditional PKWARE encryption.
    const ENCRYPTED: &[u8] = vector!("encrypted.zip");
    // Info-ZIP `zip -X -0 -fz`: forced ZIP64 (locator, ZIP64 end record, 0xFFFFFFFF offset).
    const ZIP64: &[u8] = vector!("zip64.zip");
    // Info-ZIP `zip -X -9`: bomb/bundle.conf, 4 MiB of spaces deflated to 4 KiB.
    const BOMB: &[u8] = vector!("bomb.zip");
    // BOMB with its central directory's uncompressed size patched to 1000.
    const BOMB_LYING: &[u8] = vector!("bomb-lying.zip");

    const NAME: &str = "visualizer-v1/bundle.conf";

    fn read_conf(zip: &[u8], out_len: usize) -> Result<Vec<u8>, Error> {
        let mut out = vec![0; out_len];
        let mut inflater = Inflater::new();
        read_bundle_conf(&mut { zip }, &mut inflater, &mut out).map(<[u8]>::to_vec)
    }

    fn conf(zip: &[u8]) -> Result<Vec<u8>, Error> {
        read_conf(zip, 64 * 1024)
    }

    fn entry(zip: &[u8], suffix: &str) -> Result<Entry, Error> {
        Archive::open(zip)?.find(suffix.as_bytes())
    }

    fn crc(bytes: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(bytes);
        h.finalize()
    }

    // ---- test-side zip layout, found independently of the code under test ----------------

    fn u16_at(zip: &[u8], at: usize) -> usize {
        usize::from(u16::from_le_bytes([zip[at], zip[at + 1]]))
    }

    fn u32_at(zip: &[u8], at: usize) -> usize {
        u32::from_le_bytes(zip[at..at + 4].try_into().unwrap()) as usize
    }

    fn put16(zip: &mut [u8], at: usize, value: u16) {
        zip[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn put32(zip: &mut [u8], at: usize, value: u32) {
        zip[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// The offset of the end record: the last `PK\5\6` (none of the vectors' comments has one).
    fn end_record(zip: &[u8]) -> usize {
        zip.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap()
    }

    /// The offset of the central header of `name`.
    fn central(zip: &[u8], name: &str) -> usize {
        let end = end_record(zip);
        let mut at = u32_at(zip, end + 16);
        loop {
            assert_eq!(&zip[at..at + 4], b"PK\x01\x02");
            let n = u16_at(zip, at + 28);
            if &zip[at + 46..at + 46 + n] == name.as_bytes() {
                return at;
            }
            at += 46 + n + u16_at(zip, at + 30) + u16_at(zip, at + 32);
        }
    }

    /// The offset of the local header of `name`.
    fn local(zip: &[u8], name: &str) -> usize {
        u32_at(zip, central(zip, name) + 42)
    }

    /// The offset of the data of `name`.
    fn data(zip: &[u8], name: &str) -> usize {
        let at = local(zip, name);
        at + 30 + u16_at(zip, at + 26) + u16_at(zip, at + 28)
    }

    /// `zip` with `patch` applied to a copy.
    fn patched(zip: &[u8], patch: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut copy = zip.to_vec();
        patch(&mut copy);
        copy
    }

    /// A one-entry zip around `data` as `method`, declaring `size` and `crc`: local header,
    /// data, central header, end record, all as APPNOTE 4.3 lays them out.
    fn one_entry_zip(name: &str, method: u16, data: &[u8], size: u32, crc: u32) -> Vec<u8> {
        let fields = |zip: &mut Vec<u8>| {
            zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
            zip.extend_from_slice(&0u16.to_le_bytes()); // flags
            zip.extend_from_slice(&method.to_le_bytes());
            zip.extend_from_slice(&[0; 4]); // time, date
            zip.extend_from_slice(&crc.to_le_bytes());
            zip.extend_from_slice(&(data.len() as u32).to_le_bytes());
            zip.extend_from_slice(&size.to_le_bytes());
            zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        let mut zip = b"PK\x03\x04".to_vec();
        fields(&mut zip);
        zip.extend_from_slice(name.as_bytes());
        zip.extend_from_slice(data);
        let directory = zip.len();
        zip.extend_from_slice(b"PK\x01\x02\x14\x00");
        fields(&mut zip);
        zip.extend_from_slice(&[0; 10]); // comment, disk, attributes
        zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        zip.extend_from_slice(name.as_bytes());
        let directory_len = zip.len() - directory;
        zip.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\x00\x01\x00");
        zip.extend_from_slice(&(directory_len as u32).to_le_bytes());
        zip.extend_from_slice(&(directory as u32).to_le_bytes());
        zip.extend_from_slice(&[0; 2]);
        zip
    }

    /// A reader that fails its `fail_at`-th read (from 0) and records the size of every read.
    struct Probe<'a> {
        data: &'a [u8],
        fail_at: Option<usize>,
        reads: Vec<usize>,
    }

    impl<'a> Probe<'a> {
        fn new(data: &'a [u8]) -> Self {
            Self {
                data,
                fail_at: None,
                reads: Vec::new(),
            }
        }
    }

    impl RandomAccess for Probe<'_> {
        type Error = &'static str;

        fn len(&self) -> u64 {
            self.data.len() as u64
        }

        fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), &'static str> {
            if self.fail_at == Some(self.reads.len()) {
                return Err("injected");
            }
            self.reads.push(buf.len());
            let mut data = self.data;
            data.read_exact_at(offset, buf).map_err(|_| "out of bounds")
        }
    }

    // ---- real zips ------------------------------------------------------------------------

    #[test]
    fn test_read_stored() {
        assert_eq!(conf(STORED).unwrap(), CONF);
        let e = entry(STORED, "bundle.conf").unwrap();
        assert_eq!(e.index(), 1);
        assert_eq!(usize::from(e.name_len()), NAME.len());
        assert_eq!(e.method(), Method::Stored);
        assert_eq!(e.uncompressed_size() as usize, CONF.len());
        assert_eq!(e.compressed_size(), e.uncompressed_size());
        assert_eq!(e.crc32(), crc(CONF));
        assert_eq!(e.local_header_offset() as usize, local(STORED, NAME));
    }

    #[test]
    fn test_read_deflated() {
        assert_eq!(conf(DEFLATED).unwrap(), CONF);
        let e = entry(DEFLATED, "bundle.conf").unwrap();
        assert_eq!((e.index(), e.method()), (1, Method::Deflated));
        assert_eq!(e.uncompressed_size() as usize, CONF.len());
        assert!(e.compressed_size() < e.uncompressed_size());
        assert_eq!(e.method().code(), 8);
    }

    #[test]
    fn test_read_streamed_data_descriptors() {
        // The local header's sizes and CRC are zero; the central directory's are used.
        let at = local(STREAMED, NAME);
        assert_eq!(u16_at(STREAMED, at + 6) & 8, 8);
        assert_eq!(u32_at(STREAMED, at + 18), 0);
        assert_eq!(conf(STREAMED).unwrap(), CONF);
    }

    #[test]
    fn test_read_python_zipfile() {
        assert_eq!(conf(PYTHON).unwrap(), CONF);
    }

    #[test]
    fn test_read_with_comment() {
        assert_eq!(conf(COMMENT).unwrap(), CONF);
        let archive = Archive::open(COMMENT).unwrap();
        assert_eq!((archive.entry_count(), archive.comment_len()), (3, 44));
    }

    #[test]
    fn test_read_first_of_two_bundle_confs() {
        // bundle.conf.orig does not end with bundle.conf; other/bundle.conf comes first.
        assert_eq!(conf(TWO).unwrap(), b"name = \"other\"\n");
        let e = entry(TWO, "bundle.conf").unwrap();
        assert_eq!((e.index(), e.name_len()), (2, 17));
        assert_eq!(entry(TWO, NAME).unwrap().index(), 3);
    }

    #[test]
    fn test_read_other_entries_by_suffix() {
        let mut archive = Archive::open(STORED).unwrap();
        let mut inflater = Inflater::default();
        let jar = archive.find(b"app.jar").unwrap();
        assert_eq!((jar.index(), jar.uncompressed_size()), (0, 1024));
        let mut out = [0; 1024];
        let bytes = archive.read(&jar, &mut inflater, &mut out).unwrap();
        assert_eq!(crc(bytes), jar.crc32());
        // Longer than one 16-byte name window; the whole name; the empty suffix.
        assert_eq!(
            archive.find(b"isualizer-v1/bundle.conf").unwrap().index(),
            1
        );
        assert_eq!(archive.find(NAME.as_bytes()).unwrap().index(), 1);
        assert_eq!(archive.find(b"").unwrap().index(), 0);
        assert_eq!(archive.find(b"bin/visualizer").unwrap().index(), 2);
        // Longer than every name, or differing in the first window only.
        let long = format!("x{NAME}");
        assert_eq!(archive.find(long.as_bytes()), Err(Error::NotFound));
        assert_eq!(
            archive.find(b"Xisualizer-v1/bundle.conf"),
            Err(Error::NotFound)
        );
    }

    #[test]
    fn test_read_empty_zip() {
        // Python `zipfile.ZipFile(f, "w").close()`: just an end record.
        let empty = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        assert_eq!(Archive::open(&empty[..]).unwrap().entry_count(), 0);
        assert_eq!(conf(empty), Err(Error::NotFound));
    }

    #[test]
    fn test_read_inflater_reused() {
        let corrupt = patched(DEFLATED, |z| {
            let at = data(z, NAME);
            z[at] = 0x07;
        });
        let mut inflater = Inflater::new();
        let mut out = [0; 1024];
        for zip in [DEFLATED, &corrupt, BOMB_LYING, DEFLATED] {
            let result = read_bundle_conf(&mut { zip }, &mut inflater, &mut out).map(<[u8]>::len);
            if zip == DEFLATED {
                assert_eq!(result, Ok(CONF.len()));
            } else {
                assert!(result.is_err());
            }
        }
    }

    #[test]
    fn test_read_exact_buffer_size() {
        for zip in [STORED, DEFLATED] {
            assert_eq!(read_conf(zip, CONF.len()).unwrap(), CONF);
            let declared = CONF.len() as u32;
            assert_eq!(
                read_conf(zip, CONF.len() - 1),
                Err(Error::TooLarge { declared })
            );
        }
    }

    #[test]
    fn test_read_reads_are_small() {
        // Deflated: nothing larger than the 512-byte input chunk is ever read.
        let mut probe = Probe::new(DEFLATED);
        let mut out = [0; 1024];
        read_bundle_conf(&mut probe, &mut Inflater::new(), &mut out).unwrap();
        assert!(
            probe.reads.iter().all(|&n| n <= INPUT_CHUNK),
            "{:?}",
            probe.reads
        );
        // The bomb's 4 KiB of data is never read when it does not fit the buffer.
        let mut probe = Probe::new(BOMB);
        let result = read_bundle_conf(&mut probe, &mut Inflater::new(), &mut out);
        assert!(matches!(result, Err(ArchiveError::TooLarge { .. })));
        assert!(probe.reads.iter().sum::<usize>() < 400, "{:?}", probe.reads);
    }

    #[test]
    fn test_read_output_full_at_input_chunk_boundary() {
        // Hand-made raw deflate (RFC 1951): a non-final stored block that ends exactly at the
        // first 512-byte input chunk, then a final fixed-Huffman block holding only its end
        // code. The output is full before the second chunk is read, which miniz_oxide reports
        // as "more output": it must not be mistaken for a bomb.
        let content: Vec<u8> = (0..507u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut stream = vec![0x00];
        stream.extend_from_slice(&507u16.to_le_bytes());
        stream.extend_from_slice(&(!507u16).to_le_bytes());
        stream.extend_from_slice(&content);
        assert_eq!(stream.len(), INPUT_CHUNK);
        stream.extend_from_slice(&[0x03, 0x00]);
        let zip = one_entry_zip("bundle.conf", 8, &stream, 507, crc(&content));
        assert_eq!(read_conf(&zip, 507).unwrap(), content);
        assert_eq!(read_conf(&zip, 4096).unwrap(), content);
        // One more literal after the stored block: a bomb, also across the chunk boundary.
        let mut bomb = stream[..INPUT_CHUNK].to_vec();
        bomb.extend_from_slice(&[0x63, 0x00, 0x00]); // final fixed block: 0x00, end
        let zip = one_entry_zip("bundle.conf", 8, &bomb, 507, crc(&content));
        assert_eq!(read_conf(&zip, 4096), Err(Error::Bomb));
        let zip = one_entry_zip("bundle.conf", 8, &bomb, 508, 0);
        assert_eq!(read_conf(&zip, 4096), Err(Error::BadCrc));
    }

    #[test]
    fn test_read_empty_entries() {
        // An empty stored entry, and an empty deflated one (a final fixed block: end code only).
        let empty_crc = crc(b"");
        assert_eq!(
            conf(&one_entry_zip("bundle.conf", 0, b"", 0, empty_crc)).unwrap(),
            b""
        );
        let zip = one_entry_zip("bundle.conf", 8, &[0x03, 0x00], 0, empty_crc);
        assert_eq!(read_conf(&zip, 0).unwrap(), b"");
    }

    // ---- refusals of real zips ------------------------------------------------------------

    #[test]
    fn test_reject_not_found() {
        assert_eq!(conf(NO_BUNDLE), Err(Error::NotFound));
    }

    #[test]
    fn test_reject_encrypted() {
        assert_eq!(conf(ENCRYPTED), Err(Error::Encrypted));
        // Strong encryption, flag bit 6 alone.
        let strong = patched(STORED, |z| {
            let at = central(z, NAME);
            put16(z, at + 8, 0x40);
        });
        assert_eq!(conf(&strong), Err(Error::Encrypted));
    }

    #[test]
    fn test_reject_zip64() {
        assert_eq!(conf(ZIP64), Err(Error::Zip64));
        // A ZIP64 locator's signature just before an otherwise ordinary end record.
        let locator = patched(STORED, |z| {
            let end = end_record(z);
            let mut locator = b"PK\x06\x07".to_vec();
            locator.resize(20, 0);
            z.splice(end..end, locator);
        });
        assert_eq!(conf(&locator), Err(Error::Zip64));
        // Marker values in the end record, and in the entry's sizes and offset.
        for field in [8, 10] {
            let z = patched(STORED, |z| put16(z, end_record(STORED) + field, 0xFFFF));
            assert_eq!(conf(&z), Err(Error::Zip64), "end record field {field}");
        }
        for field in [20, 24, 42] {
            let z = patched(DEFLATED, |z| {
                put32(z, central(DEFLATED, NAME) + field, u32::MAX);
            });
            assert_eq!(conf(&z), Err(Error::Zip64), "central field {field}");
        }
    }

    #[test]
    fn test_reject_bomb_declaring_its_size() {
        let declared = 4 << 20;
        assert_eq!(conf(BOMB), Err(Error::TooLarge { declared }));
        // With room for it, it is only spaces.
        let spaces = read_conf(BOMB, 4 << 20).unwrap();
        assert!(spaces.len() == 4 << 20 && spaces.iter().all(|&b| b == b' '));
    }

    #[test]
    fn test_reject_bomb_lying_about_its_size() {
        assert_eq!(conf(BOMB_LYING), Err(Error::Bomb));
        assert_eq!(read_conf(BOMB_LYING, 1000), Err(Error::Bomb));
        assert_eq!(
            read_conf(BOMB_LYING, 999),
            Err(Error::TooLarge { declared: 1000 })
        );
    }

    // ---- synthetic edge cases -------------------------------------------------------------

    #[test]
    fn test_truncated_every_prefix() {
        for zip in [STORED, DEFLATED, COMMENT, STREAMED] {
            for len in 0..zip.len() {
                assert!(conf(&zip[..len]).is_err(), "prefix of {len} bytes");
            }
        }
        // Every suffix too: the offsets no longer point at anything.
        for zip in [STORED, DEFLATED] {
            for start in 1..zip.len() {
                assert!(conf(&zip[start..]).is_err(), "suffix from {start}");
            }
        }
    }

    #[test]
    fn test_truncated_data_before_directory() {
        // Only the end record is kept: the directory it points at is gone.
        let end = end_record(STORED);
        assert_eq!(conf(&STORED[end..]), Err(Error::DirectoryOutOfBounds));
        // Data running into the central directory.
        let z = patched(DEFLATED, |z| {
            put32(z, central(DEFLATED, NAME) + 20, 0x0010_0000);
        });
        assert_eq!(conf(&z), Err(Error::Truncated));
    }

    #[test]
    fn test_reject_appended_bytes() {
        // The end record's comment no longer reaches the end of the file.
        let mut z = STORED.to_vec();
        z.push(b'\n');
        assert_eq!(conf(&z), Err(Error::NoEndRecord));
    }

    #[test]
    fn test_read_comment_holding_a_signature() {
        // A 40-byte comment with an end record's signature inside, whose own comment length
        // does not reach the end of the file: the real record is found below it.
        let z = patched(STORED, |z| {
            let end = end_record(z);
            put16(z, end + 20, 40);
            let mut comment = b"note PK\x05\x06".to_vec();
            comment.resize(40, b'.');
            z.extend_from_slice(&comment);
        });
        assert_eq!(conf(&z).unwrap(), CONF);
        // The same with the longest comment: 65,535 bytes.
        let z = patched(STORED, |z| {
            put16(z, end_record(STORED) + 20, 0xFFFF);
            z.extend(std::iter::repeat_n(b'P', 0xFFFF));
        });
        assert_eq!(conf(&z).unwrap(), CONF);
        // One byte more and the record is out of reach.
        let z = patched(&z, |z| z.push(b'P'));
        assert_eq!(conf(&z), Err(Error::NoEndRecord));
    }

    #[test]
    fn test_reject_not_a_zip() {
        for data in [&b""[..], b"PK\x05\x06", &[0; 21], &[0; 22], CONF] {
            assert_eq!(conf(data), Err(Error::NoEndRecord), "{data:?}");
        }
    }

    #[test]
    fn test_reject_lying_directory() {
        let end = end_record(STORED);
        let directory = u32_at(STORED, end + 16) as u32;
        let directory_len = u32_at(STORED, end + 12) as u32;
        let cases: [(u32, u32, Error); 4] = [
            // Offset past the end, size past the end record, offset past the end record.
            (
                STORED.len() as u32 + 10,
                directory_len,
                Error::DirectoryOutOfBounds,
            ),
            (directory, directory_len + 1, Error::DirectoryOutOfBounds),
            (directory + 1, directory_len, Error::DirectoryOutOfBounds),
            // Shifted by one: no signature where the first header should be.
            (directory - 1, directory_len, Error::BadCentralSignature),
        ];
        for (offset, len, e) in cases {
            let z = patched(STORED, |z| {
                put32(z, end + 12, len);
                put32(z, end + 16, offset);
            });
            assert_eq!(conf(&z), Err(e), "{offset} {len}");
        }
        // A directory too short for its first header's name.
        let z = patched(STORED, |z| put32(z, end + 12, 46));
        assert_eq!(conf(&z), Err(Error::DirectoryOverrun));
        // More entries declared than present: walks off the end of the directory.
        let end = end_record(NO_BUNDLE);
        let z = patched(NO_BUNDLE, |z| {
            put16(z, end + 8, 4);
            put16(z, end + 10, 4);
        });
        assert_eq!(conf(&z), Err(Error::DirectoryOverrun));
        // Fewer: the entries after the count are never seen.
        let end = end_record(STORED);
        let z = patched(STORED, |z| {
            put16(z, end + 8, 1);
            put16(z, end + 10, 1);
        });
        assert_eq!(conf(&z), Err(Error::NotFound));
        // A first header whose name, extra field or comment runs past the directory.
        for field in [28, 30, 32] {
            let z = patched(STORED, |z| put16(z, directory as usize + field, 0xFFFF));
            assert_eq!(conf(&z), Err(Error::DirectoryOverrun), "field {field}");
        }
    }

    #[test]
    fn test_reject_multi_disk() {
        let end = end_record(STORED);
        for (field, value) in [(4, 1), (6, 1), (8, 2)] {
            let z = patched(STORED, |z| put16(z, end + field, value));
            assert_eq!(conf(&z), Err(Error::MultiDisk), "field {field}");
        }
        let z = patched(STORED, |z| put16(z, central(STORED, NAME) + 34, 1));
        assert_eq!(conf(&z), Err(Error::MultiDisk));
    }

    #[test]
    fn test_reject_wrong_signatures() {
        let z = patched(STORED, |z| z[end_record(STORED)] = b'Q');
        assert_eq!(conf(&z), Err(Error::NoEndRecord));
        let z = patched(STORED, |z| z[central(STORED, NAME) + 3] = 3);
        assert_eq!(conf(&z), Err(Error::BadCentralSignature));
        let z = patched(STORED, |z| z[local(STORED, NAME)] = 0);
        assert_eq!(conf(&z), Err(Error::BadLocalSignature));
    }

    #[test]
    fn test_reject_local_header_offsets() {
        let directory = u32_at(STORED, end_record(STORED) + 16) as u32;
        for offset in [directory - 29, directory, directory + 100, u32::MAX - 1] {
            let z = patched(STORED, |z| put32(z, central(STORED, NAME) + 42, offset));
            assert_eq!(conf(&z), Err(Error::BadOffset), "{offset}");
        }
        // Pointing at app.jar's header: its bytes are read instead, and fail the CRC-32.
        let z = patched(STORED, |z| put32(z, central(STORED, NAME) + 42, 0));
        assert_eq!(conf(&z), Err(Error::BadCrc));
        // A local name length that pushes the data into the directory.
        let z = patched(STORED, |z| put16(z, local(STORED, NAME) + 26, 0xFFFF));
        assert_eq!(conf(&z), Err(Error::Truncated));
    }

    #[test]
    fn test_reject_local_mismatch() {
        // The central directory says deflated, the local header stored.
        let z = patched(STORED, |z| put16(z, central(STORED, NAME) + 10, 8));
        assert_eq!(conf(&z), Err(Error::LocalMismatch));
        // The local header says encrypted.
        let z = patched(STORED, |z| put16(z, local(STORED, NAME) + 6, 1));
        assert_eq!(conf(&z), Err(Error::LocalMismatch));
    }

    #[test]
    fn test_reject_unsupported_method() {
        // 12 is bzip2, 14 LZMA.
        for method in [12, 14, 1, 9] {
            let z = patched(DEFLATED, |z| put16(z, central(DEFLATED, NAME) + 10, method));
            assert_eq!(conf(&z), Err(Error::UnsupportedMethod(method)));
        }
    }

    #[test]
    fn test_reject_stored_size_mismatch() {
        let z = patched(STORED, |z| put32(z, central(STORED, NAME) + 20, 10));
        assert_eq!(conf(&z), Err(Error::StoredSizeMismatch));
    }

    #[test]
    fn test_reject_bad_crc() {
        for zip in [STORED, DEFLATED] {
            let z = patched(zip, |z| z[central(zip, NAME) + 16] ^= 1);
            assert_eq!(conf(&z), Err(Error::BadCrc));
        }
        // The content changed, the directory not.
        let z = patched(STORED, |z| z[data(STORED, NAME)] ^= 0x20);
        assert_eq!(conf(&z), Err(Error::BadCrc));
    }

    #[test]
    fn test_reject_corrupt_deflate() {
        // First block header: final, type 3 (reserved).
        let z = patched(DEFLATED, |z| z[data(DEFLATED, NAME)] = 0x07);
        assert_eq!(conf(&z), Err(Error::Corrupt));
    }

    #[test]
    fn test_reject_deflate_lengths() {
        let at = central(DEFLATED, NAME);
        let compressed = u32_at(DEFLATED, at + 20) as u32;
        // One byte more than the stream (the next local header's first byte).
        let z = patched(DEFLATED, |z| put32(z, at + 20, compressed + 1));
        assert_eq!(conf(&z), Err(Error::TrailingInput));
        // Half the stream.
        let z = patched(DEFLATED, |z| put32(z, at + 20, compressed / 2));
        assert_eq!(conf(&z), Err(Error::Unterminated));
        let z = patched(DEFLATED, |z| put32(z, at + 20, 0));
        assert_eq!(conf(&z), Err(Error::Unterminated));
        // One byte more, one byte less declared than the stream holds.
        let size = CONF.len() as u32;
        let z = patched(DEFLATED, |z| put32(z, at + 24, size + 1));
        assert_eq!(conf(&z), Err(Error::ShortOutput));
        let z = patched(DEFLATED, |z| put32(z, at + 24, size - 1));
        assert_eq!(conf(&z), Err(Error::Bomb));
    }

    #[test]
    fn test_reject_reader_errors() {
        // Every read of a successful run, failing in turn, surfaces as the reader's error.
        let mut probe = Probe::new(DEFLATED);
        let mut out = [0; 1024];
        read_bundle_conf(&mut probe, &mut Inflater::new(), &mut out).unwrap();
        let reads = probe.reads.len();
        assert!(reads >= 5, "{reads}");
        for fail_at in 0..reads {
            let mut probe = Probe::new(DEFLATED);
            probe.fail_at = Some(fail_at);
            let result = read_bundle_conf(&mut probe, &mut Inflater::new(), &mut out);
            assert_eq!(
                result,
                Err(ArchiveError::Read("injected")),
                "read {fail_at}"
            );
        }
    }

    #[test]
    fn test_slice_reader_bounds() {
        let mut data: &[u8] = b"0123456789";
        let mut buf = [0; 4];
        assert_eq!(data.read_exact_at(6, &mut buf), Ok(()));
        assert_eq!(&buf, b"6789");
        assert_eq!(data.read_exact_at(7, &mut buf), Err(OutOfBounds));
        assert_eq!(data.read_exact_at(u64::MAX, &mut buf), Err(OutOfBounds));
        assert_eq!(data.read_exact_at(10, &mut []), Ok(()));
        assert_eq!((RandomAccess::len(&data), data.is_empty()), (10, false));
    }

    #[test]
    fn test_inflater_size() {
        // The figure in the module doc and the Inflater doc (x86_64).
        assert_eq!(size_of::<DecompressorOxide>(), 10_504);
        assert_eq!(size_of::<Inflater>(), size_of::<DecompressorOxide>());
    }

    #[test]
    fn test_error_messages_are_one_line() {
        let errors: [ArchiveError<OutOfBounds>; 22] = [
            ArchiveError::Read(OutOfBounds),
            ArchiveError::NoEndRecord,
            ArchiveError::Zip64,
            ArchiveError::MultiDisk,
            ArchiveError::DirectoryOutOfBounds,
            ArchiveError::DirectoryOverrun,
            ArchiveError::BadCentralSignature,
            ArchiveError::NotFound,
            ArchiveError::Encrypted,
            ArchiveError::UnsupportedMethod(12),
            ArchiveError::StoredSizeMismatch,
            ArchiveError::TooLarge { declared: 70000 },
            ArchiveError::BadOffset,
            ArchiveError::BadLocalSignature,
            ArchiveError::LocalMismatch,
            ArchiveError::Truncated,
            ArchiveError::Bomb,
            ArchiveError::Corrupt,
            ArchiveError::TrailingInput,
            ArchiveError::Unterminated,
            ArchiveError::ShortOutput,
            ArchiveError::BadCrc,
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
        assert_eq!(
            ArchiveError::Read(OutOfBounds).to_string(),
            "reading the zip: read past the end of the data"
        );
    }
}
