//! The `webhook` target: a request target and a body.

use crate::bundle::{Digest, Segment, Version};
use crate::webhook::{BodyLimit, MAX_BODY_LIMIT, Notification, Target, parse_body};

/// Input layout: the request target up to the first `\n`, then the body. Without a `\n`, the
/// whole input is tried as both.
pub fn webhook(data: &[u8]) {
    let mut lines = data.splitn(2, |&b| b == b'\n');
    let (target, body) = match (lines.next(), lines.next()) {
        (Some(target), Some(body)) => (target, body),
        _ => (data, data),
    };
    if let Ok(target) = core::str::from_utf8(target)
        && let Ok(parsed) = Target::parse(target)
    {
        for segment in [parsed.org, parsed.repo, parsed.third]
            .iter()
            .chain(&parsed.tags)
        {
            assert_valid(*segment);
        }
    }
    let default = parse_body(body, BodyLimit::default());
    if let Ok(n) = &default {
        check_notification(n);
        // A larger limit never refuses what a smaller one accepts.
        let widest = BodyLimit::new(MAX_BODY_LIMIT).map(|limit| parse_body(body, limit));
        assert!(matches!(widest, Ok(Ok(ref same)) if same == n));
    }
}

fn assert_valid(segment: Segment<'_>) {
    assert_eq!(Segment::parse(segment.as_str()), Ok(segment));
}

fn check_notification(n: &Notification<'_>) {
    assert_valid(n.package);
    assert_valid(n.version.tag);
    // The digest spelled back out parses to itself, in lowercase.
    let hex = n.version.digest.to_hex();
    assert!(
        hex.as_str()
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
    assert_eq!(Digest::parse(hex.as_str()), Ok(n.version.digest));
    let mut text = heapless::String::<200>::new();
    assert!(core::fmt::write(&mut text, format_args!("{}", n.version)).is_ok());
    assert_eq!(Version::parse(&text), Ok(n.version));
}
