//! Limits that more than one module holds to, each defined once, here.
//!
//! A limit that only one module enforces lives with it (the body limit with the webhook
//! parser, a segment's length with [`Segment`](crate::bundle::Segment)); one that a parser
//! enforces and a record stores inline lives here, so that neither imports the other.

/// The most `?tag=` values a webhook target may carry (docs/PROTOCOL.md §1), and so the most a
/// deployment's [`Tags`](crate::deployer::Tags) hold.
pub const MAX_TAGS: usize = 8;

/// The most tags of a running bundle (`attributes.tags`, docs/PROTOCOL.md §5) the control API
/// codec keeps and the deployer compares with `?tag=`; more are ignored.
pub const MAX_BUNDLE_TAGS: usize = 8;
