//! The `hocon` target: any bytes as a HOCON document, then look-ups that must agree.

use core::fmt::Write;

use crate::hocon::{Array, Document, HoconError, MAX_DEPTH, Value};

/// The keys lockstep reads (docs/PROTOCOL.md §3, §4), and a few short ones the fuzzer finds easily.
const PATHS: &[&str] = &[
    "version",
    "name",
    "compatibilityVersion",
    "compatibility-version",
    "system",
    "systemVersion",
    "nrOfCpus",
    "memory",
    "diskSpace",
    "roles",
    "tags",
    "annotations",
    "components",
    "components.visualizer.start-command",
    "components.visualizer.endpoints.visualizer.services",
    "conductr.continuous-delivery.bintray-webhook-secret",
    "a",
    "a.b",
    "a.b.c",
    "",
];

/// Capacity of the texts the target decodes: a text of the largest document fits.
const TEXT: usize = 65_536;

/// Parses `data`; on success looks up the paths above and paths taken from the input itself,
/// and checks that every answer agrees with the others.
pub fn hocon(data: &[u8]) {
    let parsed = Document::parse_bytes(data);
    if let Ok(text) = core::str::from_utf8(data) {
        assert_eq!(
            Document::parse(text).map(|d| d.as_str()),
            parsed.map(|d| d.as_str())
        );
    }
    let doc = match parsed {
        Ok(doc) => doc,
        Err(e) => return check_error(e),
    };
    for path in PATHS {
        check_path(&doc, path);
    }
    // The input's first key, as written, and each of its prefixes.
    let own = own_path(doc.as_str());
    check_path(&doc, own);
    for prefix in prefixes(own) {
        check_path(&doc, prefix);
    }
}

fn check_error(e: HoconError) {
    let mut line = heapless::String::<256>::new();
    assert!(write!(line, "{e}").is_ok());
    assert!(!line.contains('\n'));
    assert_eq!(e.line().is_some(), line.starts_with("line "));
}

/// Up to the first character that cannot be part of a key, after leading blanks and a `{`; at
/// most 200 bytes of it.
fn own_path(text: &str) -> &str {
    let text = text.trim_start_matches(|c: char| c.is_whitespace() || c == '{');
    let end = text
        .find(|c: char| c.is_whitespace() || "=:{[,#\"".contains(c))
        .unwrap_or(text.len());
    let (key, _) = text.split_at(end);
    let mut end = key.len().min(200);
    while !key.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    key.split_at(end).0
}

/// The proper prefixes of a path that end before one of its dots.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('.').map(|(i, _)| path.split_at(i).0)
}

fn check_path(doc: &Document<'_>, path: &str) {
    let value = doc.get(path);
    // The same look-up twice gives the same answer.
    assert_eq!(value, doc.get(path));
    check_text(value);
    let text = value.and_then(|v| v.as_text());
    let got = doc.get_str::<TEXT>(path);
    assert_eq!(got.is_some(), text.is_some());
    if let (Some(got), Some(text)) = (got, text) {
        // Every text fits: none is longer than the document.
        assert!(got.as_ref().is_ok_and(|s| text.eq_str(s)));
    }
    if let Some(Value::Bool(b)) = value {
        assert_eq!(doc.get_bool(path), Some(b));
    }
    if doc.get_bool(path).is_some() {
        assert!(matches!(value, Some(Value::Bool(_) | Value::String(_))));
    }
    if doc.get_u64(path).is_some() {
        assert!(matches!(value, Some(Value::Number(_) | Value::String(_))));
    }
    if path.split('.').count() >= MAX_DEPTH {
        return;
    }
    // Whatever a path holds, every proper prefix of it holds an object.
    if value.is_some() {
        for prefix in prefixes(path) {
            assert_eq!(doc.get(prefix), Some(Value::Object));
        }
    }
    // Nothing is below a value that is not an object.
    if value.is_some_and(|v| v != Value::Object) {
        let mut child = heapless::String::<256>::new();
        if write!(child, "{path}.x").is_ok() {
            assert_eq!(doc.get(&child), None);
        }
    }
    if let Some(Value::Array(array)) = value {
        check_array(array);
    }
}

/// A text decodes the same way through every method.
fn check_text(value: Option<Value<'_>>) {
    let Some(text) = value.and_then(|v| v.as_text()) else {
        return;
    };
    let decoded = text.to_heapless::<TEXT>();
    assert!(decoded.is_ok());
    let Ok(s) = decoded else {
        return;
    };
    assert!(text.eq_str(&s));
    assert!(text.chars().eq(s.chars()));
    let mut shown = heapless::String::<TEXT>::new();
    assert!(write!(shown, "{text}").is_ok());
    assert_eq!(shown, s);
    assert_eq!(text.to_heapless::<0>().is_ok(), s.is_empty());
}

/// Every element of an array and of the arrays inside it, without recursion.
fn check_array(array: Array<'_>) {
    let mut pending: heapless::Vec<Array<'_>, 64> = heapless::Vec::new();
    let mut budget = 10_000usize;
    if pending.push(array).is_err() {
        return;
    }
    while let Some(array) = pending.pop() {
        assert!(array.as_raw().starts_with('['));
        assert!(array.as_raw().ends_with(']'));
        let mut count = 0usize;
        for element in array.iter() {
            count = count.saturating_add(1);
            check_text(Some(element));
            if let Value::Array(inner) = element {
                // A full stack or spent budget only stops the exploration.
                budget = budget.saturating_sub(1);
                if budget > 0 {
                    let _ = pending.push(inner);
                }
            }
        }
        assert_eq!(array.len(), count);
        assert_eq!(array.is_empty(), count == 0);
    }
}
