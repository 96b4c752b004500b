//! Loading a bundle (`POST /v2/bundles`) and handing its files back
//! (`GET /v2/bundles/{id}` with `Accept: multipart/form-data`), with core's multipart codec.

use std::io;
use std::time::Instant;

use lockstep_core::bundle::{BundleId, Digest};
use lockstep_core::conductr::multipart::{
    Boundary, Event, FileName, HEAD_BUFFER_LEN, LoadField, LoadOrder, Multipart, MultipartReader,
    Part, boundary_from_content_type, split_zip_name,
};
use sha2::Digest as _;

use super::Shared;
use super::state::{Attributes, Bundle};
use crate::http::{Request, Response};

/// A file part of a load request.
#[derive(Default)]
struct Upload {
    filename: Option<String>,
    bytes: Vec<u8>,
}

/// `POST /v2/bundles`: the fields in ConductR's order, the zips' digests checked against their
/// file names. The id of the bundle loaded (or already loaded); otherwise the answer, 400 or
/// 500, and nothing loaded.
pub(super) fn load(state: &Shared, request: &Request) -> Result<BundleId, Response> {
    let bad = |line: String| Err(Response::text(400, &line));
    let Some(boundary) = request
        .header_str("content-type")
        .and_then(boundary_from_content_type)
    else {
        return bad("a load is multipart/form-data with a boundary".into());
    };
    let Ok(boundary) = Boundary::new(boundary) else {
        return bad("the multipart boundary is malformed".into());
    };
    let mut head = vec![0u8; HEAD_BUFFER_LEN];
    let mut reader = MultipartReader::new(boundary, &mut head);
    let mut order = LoadOrder::new();
    let mut fields: [Upload; 4] = Default::default();
    let mut current = None;
    let mut input = request.body.as_slice();
    loop {
        match reader.next(&mut input) {
            Ok(Some(Event::PartStart { name, filename })) => match order.accept(name) {
                Ok(field) => {
                    current = Some(field as usize);
                    if let Some(upload) = fields.get_mut(field as usize) {
                        upload.filename = filename.map(str::to_owned);
                    }
                }
                Err(e) => return bad(format!("{e}")),
            },
            Ok(Some(Event::Data(data))) => {
                if let Some(upload) = current.and_then(|i| fields.get_mut(i)) {
                    upload.bytes.extend_from_slice(data);
                }
            }
            Ok(Some(Event::PartEnd)) => current = None,
            Ok(Some(Event::End)) => break,
            Ok(None) if input.is_empty() => break,
            Ok(None) => {}
            Err(e) => return bad(format!("malformed multipart body: {e}")),
        }
    }
    if let Err(e) = reader.finish() {
        return bad(format!("malformed multipart body: {e}"));
    }
    if let Err(e) = order.finish() {
        return bad(format!("{e}"));
    }
    let [conf, overlay, bundle, configuration] = fields;
    let Ok(bundle_conf) = String::from_utf8(conf.bytes) else {
        return bad("bundleConf is not UTF-8".into());
    };
    let attributes = match Attributes::from_bundle_conf(&bundle_conf) {
        Ok(a) => a,
        Err(e) => return bad(e),
    };
    let (bundle_file_name, digest) = match checked_zip(LoadField::Bundle, &bundle) {
        Ok(ok) => ok,
        Err(e) => return bad(e),
    };
    let config = if configuration.filename.is_some() || !configuration.bytes.is_empty() {
        match checked_zip(LoadField::Configuration, &configuration) {
            Ok(ok) => Some(ok),
            Err(e) => return bad(e),
        }
    } else {
        None
    };
    let id = BundleId::of(&digest, config.as_ref().map(|(_, d)| d));
    if state.cluster.borrow().bundles.iter().any(|b| b.id == id) {
        return Ok(id);
    }
    let store = |dir: &str, name: &str, bytes: &[u8]| -> io::Result<std::path::PathBuf> {
        let path = state.data_dir.join(dir).join(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    };
    let bundle_file = match store("bundles", &bundle_file_name, &bundle.bytes) {
        Ok(path) => path,
        Err(e) => {
            return Err(Response::text(
                500,
                &format!("cannot store the bundle: {e}"),
            ));
        }
    };
    let config_file = match &config {
        Some((name, _)) => match store("configurations", name, &configuration.bytes) {
            Ok(path) => Some(path),
            Err(e) => {
                return Err(Response::text(
                    500,
                    &format!("cannot store the configuration: {e}"),
                ));
            }
        },
        None => None,
    };
    let overlay =
        (!overlay.bytes.is_empty()).then(|| String::from_utf8_lossy(&overlay.bytes).into_owned());
    let mut cluster = state.cluster.borrow_mut();
    cluster.bundles.push(Bundle {
        id,
        digest,
        config: config.as_ref().map(|(_, d)| *d),
        bundle_conf,
        overlay,
        attributes,
        bundle_file,
        bundle_file_name,
        config_file,
        config_file_name: config.map(|(name, _)| name),
        scale: None,
        executions: Vec::new(),
        reschedules: 0,
    });
    cluster.publish("bundleInstallationAdded", id);
    cluster.advance(Instant::now());
    Ok(id)
}

/// A zip part's file name `<prefix>-<digest>.zip` and the SHA-256 of its bytes, which must
/// match.
fn checked_zip(field: LoadField, upload: &Upload) -> Result<(String, Digest), String> {
    let name = upload
        .filename
        .as_deref()
        .ok_or_else(|| format!("the `{}` part has no file name", field.name()))?;
    let safe = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let (_, declared) = split_zip_name(name)
        .filter(|_| safe)
        .ok_or_else(|| format!("`{name}` is not <name>-<64 hex digest>.zip"))?;
    let actual = Digest::from_bytes(sha2::Sha256::digest(&upload.bytes).into());
    if actual != declared {
        return Err(format!("the digest of `{name}` does not match its file"));
    }
    Ok((name.to_owned(), actual))
}

/// The multipart answer of `GET /v2/bundles/{id}`: the bundle zip, then the configuration zip,
/// each under the file name it was loaded with.
pub(super) fn files_multipart(bundle: &Bundle) -> io::Result<(String, Vec<u8>)> {
    let bundle_bytes = std::fs::read(&bundle.bundle_file)?;
    let config_bytes = match &bundle.config_file {
        Some(path) => Some(std::fs::read(path)?),
        None => None,
    };
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let boundary_text: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let boundary = Boundary::new(&boundary_text).map_err(|e| io::Error::other(e.to_string()))?;
    let len = |bytes: &[u8]| u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut parts = vec![Part {
        name: LoadField::Bundle.name(),
        filename: Some(FileName::Plain(&bundle.bundle_file_name)),
        len: len(&bundle_bytes),
    }];
    if let (Some(bytes), Some(name)) = (&config_bytes, &bundle.config_file_name) {
        parts.push(Part {
            name: LoadField::Configuration.name(),
            filename: Some(FileName::Plain(name)),
            len: len(bytes),
        });
    }
    let form = Multipart::new(boundary, &parts).map_err(|e| io::Error::other(e.to_string()))?;
    let mut body = Vec::with_capacity(usize::try_from(form.content_length()).unwrap_or(0));
    for (index, bytes) in [Some(&bundle_bytes), config_bytes.as_ref()]
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut head = String::new();
        form.write_head(index, &mut head)
            .map_err(|e| io::Error::other(e.to_string()))?;
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(bytes);
    }
    let mut close = String::new();
    form.write_close(&mut close)
        .map_err(|e| io::Error::other(e.to_string()))?;
    body.extend_from_slice(close.as_bytes());
    Ok((boundary.content_type().to_string(), body))
}
