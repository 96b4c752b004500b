//! The `archive` target: a zip, in memory.

use crate::archive::{Archive, ArchiveError, BUNDLE_CONF, Inflater, OutOfBounds, read_bundle_conf};

/// The output buffer: small, so that inputs reach both sides of the size check.
const OUT: usize = 4096;

/// Reads the bundle.conf of `data` step by step and in one call: both agree, and what is read
/// is exactly what the directory declares, within the buffer, with the declared CRC-32.
pub fn archive(data: &[u8]) {
    let mut inflater = Inflater::new();
    let mut stepwise = [0; OUT];
    let mut direct = [0; OUT];
    let first = step_by_step(data, &mut inflater, &mut stepwise);
    // The same inflater again: every read starts from a clean state.
    let second = read_bundle_conf(&mut { data }, &mut inflater, &mut direct);
    assert_eq!(first, second);
}

fn step_by_step<'b>(
    data: &[u8],
    inflater: &mut Inflater,
    out: &'b mut [u8; OUT],
) -> Result<&'b [u8], ArchiveError<OutOfBounds>> {
    let mut archive = Archive::open(data)?;
    let entry = archive.find(BUNDLE_CONF)?;
    let conf = archive.read(&entry, inflater, out)?;
    assert_eq!(u32::try_from(conf.len()), Ok(entry.uncompressed_size()));
    assert!(conf.len() <= OUT);
    let mut crc = crc32fast::Hasher::new();
    crc.update(conf);
    assert_eq!(crc.finalize(), entry.crc32());
    Ok(conf)
}
