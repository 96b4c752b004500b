//! The `shorthand` target: bundle shorthands, bundle ids and id prefixes.

use core::fmt::Write as _;

use crate::bundle::{BundleId, IdPrefix, Shorthand};

/// Input: any bytes; non-UTF-8 input is refused before the parsers, as the CLI does.
pub fn shorthand(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = Shorthand::parse(text) {
        // The canonical long form parses back to the same shorthand.
        let mut long = heapless::String::<512>::new();
        assert!(write!(long, "{parsed}").is_ok());
        assert_eq!(Shorthand::parse(&long), Ok(parsed));
    }
    if let Ok(id) = BundleId::parse(text) {
        assert_eq!(BundleId::parse(&id.to_text()), Ok(id));
        // An id matches its own short form and itself as a prefix.
        assert!(IdPrefix::parse(&id.short()).is_ok_and(|short| id.matches(&short)));
        assert!(IdPrefix::parse(&id.to_text()).is_ok_and(|full| id.matches(&full)));
    }
    if let Ok(prefix) = IdPrefix::parse(text) {
        let mut again = heapless::String::<65>::new();
        assert!(write!(again, "{prefix}").is_ok());
        assert_eq!(IdPrefix::parse(&again), Ok(prefix));
    }
}
