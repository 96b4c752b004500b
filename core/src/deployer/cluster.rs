//! What the deployer needs to know of a bundle in the cluster, as the agent observed it
//! (`GET /v2/bundles`, docs/PROTOCOL.md §5).

use crate::bundle::{BundleId, Digest};

pub use crate::limits::MAX_BUNDLE_TAGS;

/// One loaded bundle, borrowed from the agent's buffer for the duration of one
/// [`Deployer::handle_reply`](super::Deployer::handle_reply).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundleView<'a> {
    /// `bundleId`.
    pub id: BundleId,
    /// `attributes.bundleName`.
    pub name: &'a str,
    /// `attributes.compatibilityVersion`.
    pub compatibility_version: &'a str,
    /// `attributes.tags` (the first [`MAX_BUNDLE_TAGS`]).
    pub tags: heapless::Vec<&'a str, MAX_BUNDLE_TAGS>,
    /// `bundleScale.scale`, when a run was ever requested.
    pub scale: Option<u32>,
    /// Executions with `isStarted: true`.
    pub started: u32,
    /// Executions not started yet.
    pub starting: u32,
    /// `hasError`.
    pub has_error: bool,
}

impl BundleView<'_> {
    /// Whether it runs: a requested scale above 0 (a bundle being stopped, scale 0, does not),
    /// or, when no scale was ever requested, a started instance.
    pub fn is_running(&self) -> bool {
        match self.scale {
            Some(scale) => scale > 0,
            None => self.started > 0,
        }
    }

    /// The scale a lock-step replacing it must reach: the requested scale, or the started
    /// instances when no scale was ever requested.
    pub fn target_scale(&self) -> u32 {
        self.scale.unwrap_or(self.started)
    }

    /// Whether it was made from the zip with `digest`.
    pub fn is_of(&self, digest: &Digest) -> bool {
        self.id.is_of_bundle(digest)
    }
}
