//! Fault injection: what `--faults` and `POST /sandbox/faults` take (the same JSON).
//!
//! ```json
//! {"bundles": [{"match": "visualizer", "neverStart": true},
//!              {"match": "6a1e3b5", "crashAfterMs": 1500, "crashes": 1},
//!              {"match": "visualizer", "hasError": true}],
//!  "requests": [{"nth": 3, "status": 500},
//!               {"method": "PUT", "path": "/v2/bundles/", "status": 503, "times": 2},
//!               {"nth": 5, "hang": true},
//!               {"path": "/v2/bundles", "delayMs": 300},
//!               {"method": "POST", "path": "/v2/bundles", "hold": true, "times": 1},
//!               {"path": "/repository/", "holdAfterBytes": 1000, "times": 1}]}
//! ```
//!
//! A bundle rule's `match` is a bundle name, an id (prefix of at least 7 characters per part) or
//! a bundle digest prefix; it applies to bundles loaded before or after it. `neverStart`: its
//! instances stay starting. `crashAfterMs`: a started instance is lost that long after it
//! started, `crashes` times (default 1), and the sandbox starts a replacement, as ConductR
//! reschedules. `hasError`: the bundle reports `hasError: true`.
//!
//! A request rule matches by `nth` (the n-th request, counting from 1 from when the rule was
//! installed; requests under `/sandbox/` are not counted), or by `method` and/or `path` (a
//! prefix of the path), `times` times (default: every time). Its action is exactly one of
//! `status` (a 5xx answer with a one-line body, the request not carried out), `hang` (the
//! request not carried out, never answered; the connection stays open until the client gives
//! up), `delayMs` (carried out and answered normally, that much later), `hold` (carried out
//! now, its effect on the cluster as without the rule, but nothing of the answer is ever sent)
//! or `holdAfterBytes: n` (carried out, and the answer's head and the first `n` bytes of its
//! body sent, then nothing more; a body of `n` bytes or fewer is sent whole and nothing is
//! held; an event stream is held after its head). A held connection stays open until its
//! client closes it; `GET /sandbox/held` lists the requests held meanwhile.

use std::time::Duration;

use serde_json::Value;

/// A rule for bundles.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleFault {
    /// A name, id prefix or digest prefix.
    pub matcher: String,
    /// Instances never start.
    pub never_start: bool,
    /// Started instances crash after this long.
    pub crash_after: Option<Duration>,
    /// How many crashes are left.
    pub crashes: u32,
    /// Reports `hasError`.
    pub has_error: bool,
}

/// What a faulted request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// This status, with a one-line body.
    Status(u16),
    /// No answer, ever.
    Hang,
    /// The normal answer, this much later.
    Delay(Duration),
    /// Carried out, and nothing of the answer sent, ever: the connection is held until its
    /// client closes it.
    Hold,
    /// Carried out, and the answer's head and this many bytes of its body sent, then nothing
    /// more: the connection is held until its client closes it. A body no longer than this
    /// is sent whole, and nothing is held.
    HoldAfterBytes(usize),
}

/// The actions of a request rule, in the order they are named in messages.
const ACTIONS: [&str; 5] = ["status", "hang", "delayMs", "hold", "holdAfterBytes"];

/// A rule for requests.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestFault {
    /// The n-th request after installation (absolute count once installed).
    pub nth: Option<u64>,
    /// The method, if given.
    pub method: Option<String>,
    /// A path prefix, if given.
    pub path: Option<String>,
    /// How many more requests it may fault; `None`: all.
    pub times: Option<u32>,
    /// What they get.
    pub action: Action,
}

/// The rules in force.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Bundle rules.
    pub bundles: Vec<BundleFault>,
    /// Request rules.
    pub requests: Vec<RequestFault>,
}

/// A rule the sandbox does not understand: the message names what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultError(pub String);

impl std::fmt::Display for FaultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultError {}

fn err(message: impl Into<String>) -> FaultError {
    FaultError(message.into())
}

fn object<'v>(
    value: &'v Value,
    what: &str,
) -> Result<&'v serde_json::Map<String, Value>, FaultError> {
    value
        .as_object()
        .ok_or_else(|| err(format!("{what} must be a JSON object")))
}

fn known(
    map: &serde_json::Map<String, Value>,
    what: &str,
    keys: &[&str],
) -> Result<(), FaultError> {
    match map.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(err(format!(
            "unknown key `{k}` in {what}; known: {}",
            keys.join(", ")
        ))),
        None => Ok(()),
    }
}

fn number(map: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u64>, FaultError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| err(format!("`{key}` must be a non-negative integer"))),
    }
}

fn flag(map: &serde_json::Map<String, Value>, key: &str) -> Result<bool, FaultError> {
    match map.get(key) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| err(format!("`{key}` must be true or false"))),
    }
}

fn text(map: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, FaultError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| err(format!("`{key}` must be a string"))),
    }
}

/// The one action of a request rule: a flag set to `false` is no action.
fn request_action(rule: &serde_json::Map<String, Value>) -> Result<Action, FaultError> {
    let status = number(rule, "status")?;
    let hang = flag(rule, "hang")?;
    let delay = number(rule, "delayMs")?;
    let hold = flag(rule, "hold")?;
    let hold_after = number(rule, "holdAfterBytes")?;
    let given: Vec<&str> = ACTIONS
        .into_iter()
        .zip([
            status.is_some(),
            hang,
            delay.is_some(),
            hold,
            hold_after.is_some(),
        ])
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
    if given.len() != 1 {
        let has = if given.is_empty() {
            "none".to_owned()
        } else {
            given.join(", ")
        };
        return Err(err(format!(
            "a request rule needs exactly one of {}; it has {has}",
            ACTIONS.join(", ")
        )));
    }
    Ok(match (status, delay, hold_after) {
        (Some(status), _, _) => match u16::try_from(status) {
            Ok(status) if (500..=599).contains(&status) => Action::Status(status),
            _ => return Err(err("`status` must be a 5xx status")),
        },
        (_, Some(ms), _) => Action::Delay(Duration::from_millis(ms)),
        (_, _, Some(bytes)) => Action::HoldAfterBytes(
            usize::try_from(bytes).map_err(|_| err("`holdAfterBytes` is too large"))?,
        ),
        // Exactly one was given: `hang` or `hold`.
        (None, None, None) if hang => Action::Hang,
        (None, None, None) => Action::Hold,
    })
}

impl Faults {
    /// Parses the JSON of the module doc. `request_count` is the number of requests counted
    /// so far, from which `nth` counts.
    pub fn parse(json: &[u8], request_count: u64) -> Result<Self, FaultError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| err(format!("faults are not JSON: {e}")))?;
        let top = object(&value, "the faults")?;
        known(top, "the faults", &["bundles", "requests"])?;
        let list = |key: &str| -> Result<Vec<Value>, FaultError> {
            match top.get(key) {
                None => Ok(vec![]),
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(_) => Err(err(format!("`{key}` must be an array"))),
            }
        };
        let mut faults = Faults::default();
        for item in list("bundles")? {
            let rule = object(&item, "a bundle rule")?;
            known(
                rule,
                "a bundle rule",
                &["match", "neverStart", "crashAfterMs", "crashes", "hasError"],
            )?;
            let matcher = text(rule, "match")?.ok_or_else(|| err("a bundle rule needs `match`"))?;
            let crash_after = number(rule, "crashAfterMs")?.map(Duration::from_millis);
            let fault = BundleFault {
                matcher,
                never_start: flag(rule, "neverStart")?,
                crash_after,
                crashes: u32::try_from(number(rule, "crashes")?.unwrap_or(1))
                    .map_err(|_| err("`crashes` is too large"))?,
                has_error: flag(rule, "hasError")?,
            };
            if !fault.never_start && fault.crash_after.is_none() && !fault.has_error {
                return Err(err(
                    "a bundle rule needs neverStart, crashAfterMs or hasError",
                ));
            }
            faults.bundles.push(fault);
        }
        for item in list("requests")? {
            let rule = object(&item, "a request rule")?;
            known(
                rule,
                "a request rule",
                &[
                    "nth",
                    "method",
                    "path",
                    "times",
                    "status",
                    "hang",
                    "delayMs",
                    "hold",
                    "holdAfterBytes",
                ],
            )?;
            let nth = number(rule, "nth")?;
            if nth == Some(0) {
                return Err(err("`nth` counts from 1"));
            }
            let action = request_action(rule)?;
            let method = text(rule, "method")?;
            let path = text(rule, "path")?;
            if nth.is_none() && method.is_none() && path.is_none() {
                return Err(err("a request rule needs nth, method or path"));
            }
            faults.requests.push(RequestFault {
                nth: nth.map(|n| request_count.saturating_add(n)),
                method,
                path,
                times: number(rule, "times")?.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
                action,
            });
        }
        Ok(faults)
    }

    /// The action for request number `count` (counting from 1), if a rule matches; a matching
    /// rule with a `times` budget spends one.
    pub fn for_request(&mut self, count: u64, method: &str, path: &str) -> Option<Action> {
        let rule = self.requests.iter_mut().find(|r| {
            r.times != Some(0)
                && r.nth.is_none_or(|n| n == count)
                && r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && r.path.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        if let Some(times) = rule.times.as_mut() {
            *times = times.saturating_sub(1);
        }
        Some(rule.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_the_documented_example() {
        let json = br#"{"bundles": [{"match": "visualizer", "neverStart": true},
                     {"match": "6a1e3b5", "crashAfterMs": 1500, "crashes": 1},
                     {"match": "visualizer", "hasError": true}],
          "requests": [{"nth": 3, "status": 500},
                       {"method": "PUT", "path": "/v2/bundles/", "status": 503, "times": 2},
                       {"nth": 5, "hang": true},
                       {"path": "/v2/bundles", "delayMs": 300},
                       {"method": "POST", "path": "/v2/bundles", "hold": true, "times": 1},
                       {"path": "/repository/", "holdAfterBytes": 1000, "times": 1}]}"#;
        let faults = Faults::parse(json, 10).unwrap();
        assert_eq!(faults.bundles.len(), 3);
        assert_eq!(
            faults.bundles[1].crash_after,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(faults.requests[0].nth, Some(13));
        assert_eq!(faults.requests[2].action, Action::Hang);
        assert_eq!(faults.requests[4].action, Action::Hold);
        assert_eq!(faults.requests[4].times, Some(1));
        assert_eq!(faults.requests[5].action, Action::HoldAfterBytes(1000));
    }

    #[test]
    fn test_parse_each_action() {
        for (action, expected) in [
            (r#""status": 503"#, Action::Status(503)),
            (r#""hang": true"#, Action::Hang),
            (r#""delayMs": 0"#, Action::Delay(Duration::ZERO)),
            (r#""hold": true"#, Action::Hold),
            (r#""holdAfterBytes": 0"#, Action::HoldAfterBytes(0)),
            (r#""holdAfterBytes": 65536"#, Action::HoldAfterBytes(65536)),
            // A flag set to false is no action: the other one is the rule's.
            (r#""hold": false, "hang": true"#, Action::Hang),
            (r#""hold": true, "hang": false"#, Action::Hold),
        ] {
            let json = format!(r#"{{"requests": [{{"path": "/v2/", {action}}}]}}"#);
            let faults = Faults::parse(json.as_bytes(), 0).unwrap();
            assert_eq!(faults.requests[0].action, expected, "{json}");
        }
    }

    #[test]
    fn test_for_request_hold_spends_its_times() {
        let json = br#"{"requests": [
            {"method": "PUT", "path": "/v2/bundles/", "hold": true, "times": 1},
            {"path": "/repository/", "holdAfterBytes": 10}]}"#;
        let mut faults = Faults::parse(json, 0).unwrap();
        assert_eq!(faults.for_request(1, "GET", "/v2/bundles"), None);
        assert_eq!(
            faults.for_request(2, "PUT", "/v2/bundles/abc"),
            Some(Action::Hold)
        );
        assert_eq!(faults.for_request(3, "PUT", "/v2/bundles/abc"), None);
        for count in 4..6 {
            assert_eq!(
                faults.for_request(count, "GET", "/repository/a/b.zip"),
                Some(Action::HoldAfterBytes(10))
            );
        }
    }

    #[test]
    fn test_reject_more_or_fewer_than_one_action() {
        for (rule, has) in [
            (r#""hang": true, "hold": true"#, "it has hang, hold"),
            (
                r#""status": 500, "holdAfterBytes": 3"#,
                "it has status, holdAfterBytes",
            ),
            (
                r#""hold": true, "holdAfterBytes": 3"#,
                "it has hold, holdAfterBytes",
            ),
            (r#""delayMs": 5, "hold": true"#, "it has delayMs, hold"),
            (r#""times": 1"#, "it has none"),
            (r#""hold": false"#, "it has none"),
        ] {
            let json = format!(r#"{{"requests": [{{"nth": 1, {rule}}}]}}"#);
            let e = Faults::parse(json.as_bytes(), 0).unwrap_err();
            assert_eq!(
                e.0,
                format!(
                    "a request rule needs exactly one of status, hang, delayMs, hold, \
                     holdAfterBytes; {has}"
                ),
                "{json}"
            );
        }
    }

    #[test]
    fn test_reject_bad_hold_values() {
        for (rule, message) in [
            (
                r#""holdAfterBytes": -1"#,
                "`holdAfterBytes` must be a non-negative integer",
            ),
            (
                r#""holdAfterBytes": 1.5"#,
                "`holdAfterBytes` must be a non-negative integer",
            ),
            (
                r#""holdAfterBytes": "10""#,
                "`holdAfterBytes` must be a non-negative integer",
            ),
            (
                r#""holdAfterBytes": null"#,
                "`holdAfterBytes` must be a non-negative integer",
            ),
            (r#""hold": 1"#, "`hold` must be true or false"),
            (r#""hold": "true""#, "`hold` must be true or false"),
            (r#""hold": null"#, "`hold` must be true or false"),
            (
                r#""holdAfter": 3"#,
                "unknown key `holdAfter` in a request rule",
            ),
        ] {
            let json = format!(r#"{{"requests": [{{"path": "/repository/", {rule}}}]}}"#);
            let e = Faults::parse(json.as_bytes(), 0).unwrap_err();
            assert!(e.0.starts_with(message), "{json}: {e}");
        }
    }

    #[test]
    fn test_for_request_nth_and_times() {
        let json = br#"{"requests": [{"nth": 2, "status": 500},
                                     {"method": "PUT", "path": "/v2/bundles/", "status": 503, "times": 2}]}"#;
        let mut faults = Faults::parse(json, 0).unwrap();
        assert_eq!(faults.for_request(1, "GET", "/v2/bundles"), None);
        assert_eq!(
            faults.for_request(2, "GET", "/v2/bundles"),
            Some(Action::Status(500))
        );
        assert_eq!(faults.for_request(3, "GET", "/v2/bundles"), None);
        assert_eq!(
            faults.for_request(4, "put", "/v2/bundles/x"),
            Some(Action::Status(503))
        );
        assert_eq!(
            faults.for_request(5, "PUT", "/v2/bundles/x"),
            Some(Action::Status(503))
        );
        assert_eq!(
            faults.for_request(6, "PUT", "/v2/bundles/x"),
            None,
            "times spent"
        );
    }

    #[test]
    fn test_reject_bad_rules() {
        for (json, message) in [
            (&br#"[]"#[..], "must be a JSON object"),
            (br#"{"bundle": []}"#, "unknown key `bundle`"),
            (
                br#"{"requests": [{"nth": 0, "status": 500}]}"#,
                "counts from 1",
            ),
            (br#"{"requests": [{"nth": 1, "status": 404}]}"#, "5xx"),
            (
                br#"{"requests": [{"nth": 1, "status": 500, "hang": true}]}"#,
                "exactly one",
            ),
            (br#"{"requests": [{"status": 500}]}"#, "nth, method or path"),
            (
                br#"{"bundles": [{"match": "x"}]}"#,
                "neverStart, crashAfterMs or hasError",
            ),
            (br#"{"bundles": [{"neverStart": true}]}"#, "needs `match`"),
            (b"{", "not JSON"),
        ] {
            let e = Faults::parse(json, 0).unwrap_err();
            assert!(e.0.contains(message), "{e} should say {message}");
        }
    }
}
