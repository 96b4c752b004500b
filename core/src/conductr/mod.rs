//! The ConductR control API v2 codec (docs/PROTOCOL.md §5): what the agent sends to ConductR and
//! reads back, and what the sandbox reads and answers, without any I/O.
//!
//! - [`bundles`]: the bundle list of `GET /v2/bundles`, split element by element in bounded
//!   memory ([`bundles::ArraySplitter`]) and read into [`bundles::BundleInfo`]; the
//!   `{"requestId", "bundleId"}` answer of a load or a scale ([`bundles::RequestAnswer`]).
//! - [`multipart`]: the framing of a load request (`POST /v2/bundles`) around file bytes the
//!   caller streams, with its exact `Content-Length`; a streaming reader of multipart bodies
//!   (the bundle and configuration of `GET /v2/bundles/{id}`, a load request in the sandbox).
//! - [`sse`]: the bundle event stream, `GET /v2/bundles/events`.
//! - Here: the request targets ([`BundlePath`], [`ScaleTarget`]) and the fixed paths.
//!
//! Every reader is a push parser: fed chunks of any size, it never holds more than the
//! caller's buffer, never recurses on its input and never panics; the same input cut in any
//! other way gives the same results.

use core::fmt;

use crate::bundle::BundleId;

pub mod bundles;
pub mod multipart;
pub mod sse;

/// `GET` it for the bundle list; `POST` a load request to it.
pub const BUNDLES_PATH: &str = "/v2/bundles";

/// `GET` it (`Accept: text/event-stream`) for the bundle event stream.
pub const BUNDLE_EVENTS_PATH: &str = "/v2/bundles/events";

/// conductr-cli asks it before listing bundles; 404 or 503 means "no license endpoint".
pub const LICENSE_PATH: &str = "/v2/license";

/// The `Accept` of `GET /v2/bundles/{id}` for the bundle and configuration zips.
pub const ACCEPT_MULTIPART: &str = "multipart/form-data";

/// The `Accept` of `GET /v2/bundles/{id}` for the bundle's bundle.conf.
pub const ACCEPT_HOCON: &str = "application/hocon";

/// The `Accept` of the event stream.
pub const ACCEPT_EVENT_STREAM: &str = "text/event-stream";

/// The longest [`BundlePath`]: a full id with a configuration part.
pub const MAX_BUNDLE_PATH_LEN: usize = BUNDLES_PATH.len() + 1 + ID_LEN;

/// The longest [`ScaleTarget`].
pub const MAX_SCALE_TARGET_LEN: usize =
    MAX_BUNDLE_PATH_LEN + "?scale=".len() + U32_LEN + "&affinity=".len() + ID_LEN;

const ID_LEN: usize = 65;
const U32_LEN: usize = 10;

/// Writes `/v2/bundles/{id}`: the target of `GET` (the bundle's files or bundle.conf, by
/// `Accept`) and `DELETE` (which lockstep never sends). At most [`MAX_BUNDLE_PATH_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundlePath(pub BundleId);

impl fmt::Display for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{BUNDLES_PATH}/{}", self.0)
    }
}

/// Writes `/v2/bundles/{id}?scale=N[&affinity={id}]`, the target of a `PUT` that sets an
/// absolute scale (0 stops), as conductr-cli's control_protocol.py `run_bundle` writes it. At
/// most [`MAX_SCALE_TARGET_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScaleTarget {
    /// The bundle to scale.
    pub id: BundleId,
    /// The number of instances wanted.
    pub scale: u32,
    /// Run the instances where this bundle runs.
    pub affinity: Option<BundleId>,
}

impl fmt::Display for ScaleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}?scale={}", BundlePath(self.id), self.scale)?;
        if let Some(affinity) = &self.affinity {
            write!(f, "&affinity={affinity}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use core::fmt::Write as _;

    use super::*;
    use crate::text::Cursor;

    const ID: &str = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c-0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    // conductr-cli's control_protocol.py: `bundles/{}?scale={}&affinity={}` under `/v2/`.
    #[test]
    fn test_parse_scale_target() {
        let id = BundleId::parse(ID).unwrap();
        let mut buf = [0u8; MAX_SCALE_TARGET_LEN];
        let mut out = Cursor::new(&mut buf);
        let target = ScaleTarget {
            id,
            scale: u32::MAX,
            affinity: Some(id),
        };
        write!(out, "{target}").unwrap();
        assert_eq!(out.len(), MAX_SCALE_TARGET_LEN);
        let mut buf = [0u8; 128];
        let mut out = Cursor::new(&mut buf);
        let target = ScaleTarget {
            id: id.without_config(),
            scale: 0,
            affinity: None,
        };
        write!(out, "{target}").unwrap();
        assert_eq!(
            out.written(),
            b"/v2/bundles/6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c?scale=0"
        );
        // A buffer one byte short fails rather than truncates.
        let mut small = [0u8; MAX_SCALE_TARGET_LEN - 1];
        let target = ScaleTarget {
            id,
            scale: u32::MAX,
            affinity: Some(id),
        };
        assert!(write!(Cursor::new(&mut small), "{target}").is_err());
    }

    #[test]
    fn test_parse_bundle_path() {
        let mut buf = [0u8; MAX_BUNDLE_PATH_LEN];
        let mut out = Cursor::new(&mut buf);
        write!(out, "{}", BundlePath(BundleId::parse(ID).unwrap())).unwrap();
        assert_eq!(out.len(), MAX_BUNDLE_PATH_LEN);
        assert!(out.written().ends_with(ID.as_bytes()));
    }
}
