//! A strict reader of the Prometheus text exposition format (version 0.0.4), written from its
//! specification for the suites: it refuses what Prometheus would refuse, and also what
//! `promtool check metrics` warns about in a family's shape (a `TYPE` after its samples, a
//! family split in two, a repeated series, a histogram without `+Inf` or with buckets that
//! are not cumulative, a counter that is negative).
//!
//! It is independent of the code that writes `/metrics`: the two agree only if both follow the
//! format.

use std::collections::{BTreeMap, HashSet};

/// The type of a family, as its `# TYPE` line says (`untyped` without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
    /// `untyped`, or no `# TYPE` line.
    Untyped,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its metric name (for a histogram, with its `_bucket`, `_sum` or `_count` suffix).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A family: a name, its type and help, and its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Its `# HELP` text, unescaped.
    pub help: Option<String>,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// A whole exposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// The families, in order.
    pub families: Vec<Family>,
}

impl Exposition {
    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// Parses an exposition; an error names the line and what is wrong with it.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line does not end with a line feed".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment
                .trim_start_matches([' ', '\t'])
                .splitn(3, [' ', '\t']);
            let keyword = words.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // an ordinary comment
            }
            let name = words.next().unwrap_or("");
            check_metric_name(name).map_err(at)?;
            let rest = words.next().unwrap_or("");
            let family = open_family(&mut families, &mut closed, name).map_err(at)?;
            if keyword == "HELP" {
                if family.help.is_some() {
                    return Err(at("a second HELP for this family".into()));
                }
                family.help = Some(unescape(rest, false).map_err(at)?);
            } else {
                if !family.samples.is_empty() {
                    return Err(at("TYPE after the family's samples".into()));
                }
                if family.kind != Kind::Untyped {
                    return Err(at("a second TYPE for this family".into()));
                }
                family.kind = match rest.trim_end() {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "histogram" => Kind::Histogram,
                    "summary" => Kind::Summary,
                    "untyped" => Kind::Untyped,
                    other => return Err(at(format!("unknown type {other:?}"))),
                };
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family_name = family_of(&families, &sample.name);
        let family = open_family(&mut families, &mut closed, &family_name).map_err(at)?;
        match family.kind {
            Kind::Counter if sample.value < 0.0 || sample.value.is_nan() => {
                return Err(at("a counter below zero".into()));
            }
            Kind::Histogram => {
                let suffix = &sample.name[family.name.len()..];
                if !matches!(suffix, "_bucket" | "_sum" | "_count") {
                    return Err(at(
                        "a histogram sample that is not _bucket, _sum or _count".into()
                    ));
                }
                if (suffix == "_bucket") != sample.labels.contains_key("le") {
                    return Err(at("le belongs to _bucket samples, and only to them".into()));
                }
            }
            _ => {}
        }
        let key = (
            sample.name.clone(),
            sample.labels.clone().into_iter().collect(),
        );
        if !series.insert(key) {
            return Err(at("the same series twice".into()));
        }
        family.samples.push(sample);
    }
    for family in &families {
        if family.kind == Kind::Histogram {
            check_histogram(family)?;
        }
    }
    Ok(Exposition { families })
}

/// The family a sample belongs to: a histogram's or summary's when its suffix says so.
fn family_of(families: &[Family], sample: &str) -> String {
    if let Some(last) = families.last() {
        let suffixes: &[&str] = match last.kind {
            Kind::Histogram => &["_bucket", "_sum", "_count"],
            Kind::Summary => &["_sum", "_count"],
            _ => &[],
        };
        if suffixes
            .iter()
            .any(|s| sample.strip_suffix(s) == Some(last.name.as_str()))
        {
            return last.name.clone();
        }
    }
    sample.to_owned()
}

/// The family `name`, continuing the last one or starting a new one; a family seen before,
/// then left, may not come back.
fn open_family<'a>(
    families: &'a mut Vec<Family>,
    closed: &mut HashSet<String>,
    name: &str,
) -> Result<&'a mut Family, String> {
    let continues = families.last().is_some_and(|f| f.name == name);
    if !continues {
        if closed.contains(name) {
            return Err(format!("family {name} is split in two"));
        }
        if let Some(last) = families.last() {
            closed.insert(last.name.clone());
        }
        families.push(Family {
            name: name.to_owned(),
            kind: Kind::Untyped,
            help: None,
            samples: Vec::new(),
        });
    }
    families.last_mut().ok_or_else(|| "no family".to_owned())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("not a metric name: {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__") {
        Ok(())
    } else {
        Err(format!("not a label name: {name:?}"))
    }
}

/// Unescapes a HELP text (`\\`, `\n`) or a label value (also `\"`).
fn unescape(text: &str, label: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if label => out.push('"'),
            other => return Err(format!("a bad escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// A sample value: Go's float syntax as Prometheus reads it, with `NaN`, `+Inf` and `-Inf`.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let plain = !digits.is_empty()
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    match text.parse::<f64>() {
        Ok(v) if plain => Ok(v),
        _ => Err(format!("not a value: {text:?}")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("a sample without a value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without =")?;
            let label = rest[..eq].trim_end_matches([' ', '\t']);
            check_label_name(label)?;
            rest = rest[eq + 1..].trim_start_matches([' ', '\t']);
            rest = rest
                .strip_prefix('"')
                .ok_or("a label value without quotes")?;
            let mut end = None;
            let mut escaped = false;
            for (i, c) in rest.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("an unterminated label value")?;
            let value = unescape(&rest[..end], true)?;
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            rest = rest[end + 1..].trim_start_matches([' ', '\t']);
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("labels not separated by ,".into());
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("no blank before the value".into());
    }
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let value = parse_value(words.next().ok_or("a sample without a value")?)?;
    if let Some(timestamp) = words.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("not a timestamp: {timestamp:?}"))?;
    }
    if words.next().is_some() {
        return Err("more than a value and a timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A histogram's buckets, per label set other than `le`: a `+Inf` bucket, cumulative counts,
/// a `_count` equal to the `+Inf` bucket, a `_sum`.
fn check_histogram(family: &Family) -> Result<(), String> {
    let name = &family.name;
    /// The labels other than `le`, and the (bound, count) of each bucket with them.
    type Groups = BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>>;
    let mut groups = Groups::new();
    for s in family
        .samples
        .iter()
        .filter(|s| s.name.ends_with("_bucket"))
    {
        let mut rest = s.labels.clone();
        let le = rest.remove("le").unwrap_or_default();
        let bound = parse_value(&le).map_err(|e| format!("{name}: le {e}"))?;
        groups
            .entry(rest.into_iter().collect())
            .or_default()
            .push((bound, s.value));
    }
    if groups.is_empty() {
        return Err(format!("histogram {name} has no buckets"));
    }
    for (labels, mut buckets) in groups {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            return Err(format!("histogram {name} {labels:?} has no +Inf bucket"));
        }
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!(
                "histogram {name} {labels:?}: buckets not cumulative"
            ));
        }
        let find = |suffix: &str| {
            family
                .samples
                .iter()
                .find(|s| {
                    s.name == format!("{name}{suffix}")
                        && s.labels.clone().into_iter().collect::<Vec<_>>() == labels
                })
                .map(|s| s.value)
        };
        let count = find("_count").ok_or_else(|| format!("histogram {name} without _count"))?;
        find("_sum").ok_or_else(|| format!("histogram {name} without _sum"))?;
        if buckets.last().map(|b| b.1) != Some(count) {
            return Err(format!("histogram {name}: _count is not the +Inf bucket"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000
http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000
# A comment.
# HELP msdos_file_access_time_seconds A \\\\ path \\n here.
msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9
# TYPE rpc_duration_seconds histogram
rpc_duration_seconds_bucket{le=\"0.05\"} 24054
rpc_duration_seconds_bucket{le=\"0.1\"} 33444
rpc_duration_seconds_bucket{le=\"+Inf\"} 144320
rpc_duration_seconds_sum 53423
rpc_duration_seconds_count 144320
metric_without_timestamp_and_labels 12.47
something_weird{problem=\"division by zero\",} +Inf -3982045
";

    #[test]
    fn test_parse_accepts_the_specification_example() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.families.len(), 5);
        assert_eq!(
            e.value(
                "http_requests_total",
                &[("method", "post"), ("code", "400")]
            ),
            Some(3.0)
        );
        assert_eq!(
            e.family("msdos_file_access_time_seconds")
                .unwrap()
                .help
                .as_deref(),
            Some("A \\ path \n here.")
        );
        let msdos = &e.family("msdos_file_access_time_seconds").unwrap().samples[0];
        assert_eq!(msdos.labels["path"], "C:\\DIR\\FILE.TXT");
        assert_eq!(msdos.labels["error"], "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(
            e.family("rpc_duration_seconds").unwrap().kind,
            Kind::Histogram
        );
        assert_eq!(
            e.value("something_weird", &[("problem", "division by zero")]),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn test_parse_refuses_each_violation() {
        let bad = [
            ("a 1", "no final line feed"),
            ("1a 1\n", "bad metric name"),
            ("a{1b=\"x\"} 1\n", "bad label name"),
            ("a{__x=\"x\"} 1\n", "reserved label name"),
            ("a{b=x} 1\n", "unquoted label value"),
            ("a{b=\"x} 1\n", "unterminated label value"),
            ("a{b=\"\\t\"} 1\n", "bad escape"),
            ("a{b=\"x\",b=\"y\"} 1\n", "label twice"),
            ("a{b=\"x\" c=\"y\"} 1\n", "labels without comma"),
            ("a\n", "no value"),
            ("a one\n", "bad value"),
            ("a 0x10\n", "hex value"),
            ("a 1 2 3\n", "trailing words"),
            ("a 1 1.5\n", "bad timestamp"),
            ("a{} 1\na{} 2\n", "same series twice"),
            ("a 1\nb 1\na 2\n", "family split in two"),
            ("a 1\n# TYPE a counter\n", "TYPE after samples"),
            ("# TYPE a counter\n# TYPE a counter\n", "second TYPE"),
            ("# HELP a x\n# HELP a y\n", "second HELP"),
            ("# TYPE a thing\n", "unknown type"),
            ("# TYPE a counter\na -1\n", "negative counter"),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
                "no +Inf",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "not cumulative",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
                "count is not +Inf",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
                "no sum",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n",
                "no count",
            ),
            (
                "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
                "bucket without le",
            ),
            (
                "# TYPE h histogram\nh_total 1\n",
                "histogram sample of another kind",
            ),
        ];
        for (text, why) in bad {
            assert!(parse(text).is_err(), "{why}: {text:?} was accepted");
        }
    }
}
