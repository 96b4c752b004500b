//! The sandbox's sample bundles and configuration: real zips that a real ConductR would accept
//! (docs/PROTOCOL.md §4), generated at start-up rather than shipped in the binary.
//!
//! A [`bundle`] holds one folder, `<name>-<tag>/`, with its `bundle.conf` (every field a
//! ConductR bundle needs, one component named after the bundle with one HTTP endpoint), a
//! `README.md`, and the component's start script `<name>/bin/<name>`, which the start command
//! names relative to the folder (as sbt-conductr lays bundles out). A [`configuration`] holds
//! `<name>-config/runtime-config.sh`, which exports a couple of environment variables, and an
//! overlay `bundle.conf` that adds an annotation.
//!
//! Everything written is a function of the arguments only (the zip writer's timestamps are
//! fixed), so a sample's digest, and so its ConductR bundle id, is the same on every run and
//! every machine: [`demo_set`]'s digests can be written down in tests and documentation.

use std::fmt;
use std::io;
use std::path::Path;

use lockstep_core::bundle::{Digest, Segment, SegmentError};

use crate::zip::{self, Entry};

/// The name of the demo's bundle.
pub const DEMO_NAME: &str = "visualizer";

/// A sample bundle zip and what it was made from.
#[derive(Clone, PartialEq, Eq)]
pub struct SampleBundle {
    /// The bundle's name (bundle.conf `name`, and the package it is published as).
    pub name: String,
    /// The bundle's one tag (bundle.conf `tags`), the tag of its published version.
    pub tag: String,
    /// The bundle.conf `compatibilityVersion` (also its `systemVersion`).
    pub compatibility_version: String,
    /// The bundle.conf text, as written into the zip.
    pub bundle_conf: String,
    /// The zip file.
    pub zip: Vec<u8>,
    /// The SHA-256 of [`zip`](Self::zip).
    pub digest: Digest,
}

impl SampleBundle {
    /// The file name ConductR loads a bundle under, `<name>-<64 hex digest>.zip`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.zip", self.name, self.digest)
    }

    /// The published version, `<tag>-<64 hex digest>` (docs/PROTOCOL.md §4).
    pub fn version(&self) -> String {
        format!("{}-{}", self.tag, self.digest)
    }
}

impl fmt::Debug for SampleBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleBundle")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("compatibility_version", &self.compatibility_version)
            .field("zip_len", &self.zip.len())
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// A sample bundle configuration zip.
#[derive(Clone, PartialEq, Eq)]
pub struct SampleConfiguration {
    /// The name of the bundle it configures.
    pub name: String,
    /// The overlay bundle.conf text, as written into the zip.
    pub overlay: String,
    /// The zip file.
    pub zip: Vec<u8>,
    /// The SHA-256 of [`zip`](Self::zip).
    pub digest: Digest,
}

impl SampleConfiguration {
    /// The file name ConductR loads a configuration under, `config-<64 hex digest>.zip`.
    pub fn file_name(&self) -> String {
        format!("config-{}.zip", self.digest)
    }
}

impl fmt::Debug for SampleConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleConfiguration")
            .field("name", &self.name)
            .field("zip_len", &self.zip.len())
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// Why a sample could not be made: each part becomes part of a path inside the zip and of a
/// file name, so each must be a [`Segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SampleError {
    /// The bundle name is not a valid segment.
    Name(SegmentError),
    /// The tag is not a valid segment.
    Tag(SegmentError),
    /// The compatibility version is not a valid segment.
    CompatibilityVersion(SegmentError),
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(e) => write!(f, "the sample bundle's name {e}"),
            Self::Tag(e) => write!(f, "the sample bundle's tag {e}"),
            Self::CompatibilityVersion(e) => {
                write!(f, "the sample bundle's compatibility version {e}")
            }
        }
    }
}

impl std::error::Error for SampleError {}

/// The bundle `name` at `tag`, with `compatibility_version`.
pub fn bundle(
    name: &str,
    tag: &str,
    compatibility_version: &str,
) -> Result<SampleBundle, SampleError> {
    Segment::parse(name).map_err(SampleError::Name)?;
    Segment::parse(tag).map_err(SampleError::Tag)?;
    Segment::parse(compatibility_version).map_err(SampleError::CompatibilityVersion)?;
    let bundle_conf = bundle_conf(name, tag, compatibility_version);
    let script = start_script(name, tag);
    let readme = readme(name, tag, compatibility_version);
    let folder = format!("{name}-{tag}");
    let zip = zip::to_vec(&[
        Entry::deflated(&format!("{folder}/bundle.conf"), bundle_conf.as_bytes()),
        Entry::stored(&format!("{folder}/README.md"), readme.as_bytes()),
        Entry::deflated(&format!("{folder}/{name}/bin/{name}"), script.as_bytes()).executable(),
    ])
    // Segments make plain, distinct path components, and a Vec never fails.
    .expect("sample bundle entries are valid");
    let digest = zip::digest(&zip);
    Ok(SampleBundle {
        name: name.to_owned(),
        tag: tag.to_owned(),
        compatibility_version: compatibility_version.to_owned(),
        bundle_conf,
        zip,
        digest,
    })
}

/// A configuration for the bundle `name`: `<name>-config/runtime-config.sh` exporting
/// `<NAME>_GREETING` and `<NAME>_COLOUR`, and an overlay `bundle.conf` adding the annotation
/// `lockstep.sample.configuration`.
pub fn configuration(name: &str) -> Result<SampleConfiguration, SampleError> {
    Segment::parse(name).map_err(SampleError::Name)?;
    let env = env_prefix(name);
    let script = format!(
        "#!/bin/sh\n\
         # The configuration of {name}, a sample of lockstep's sandbox. ConductR sources this\n\
         # file before it starts each of the bundle's components.\n\
         export {env}_GREETING=\"hello from the sandbox\"\n\
         export {env}_COLOUR=\"teal\"\n"
    );
    let overlay = format!(
        "# Merged over {name}'s own bundle.conf when it is loaded with this configuration.\n\
         annotations = {{\n  \"lockstep.sample.configuration\" = \"{name}-config\"\n}}\n"
    );
    let folder = format!("{name}-config");
    let zip = zip::to_vec(&[
        Entry::deflated(&format!("{folder}/runtime-config.sh"), script.as_bytes()).executable(),
        Entry::deflated(&format!("{folder}/bundle.conf"), overlay.as_bytes()),
    ])
    // A segment makes a plain path component, and a Vec never fails.
    .expect("sample configuration entries are valid");
    let digest = zip::digest(&zip);
    Ok(SampleConfiguration {
        name: name.to_owned(),
        overlay,
        zip,
        digest,
    })
}

/// The demo: bundle [`DEMO_NAME`] in four versions, and its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoSet {
    /// The version that runs at first: tag `1.0.0`, compatibilityVersion `1`.
    pub running: SampleBundle,
    /// Two newer versions that can replace it: tags `1.1.0` and `1.2.0`, compatibilityVersion
    /// `1`.
    pub compatible: [SampleBundle; 2],
    /// A newer version that cannot: tag `2.0.0`, compatibilityVersion `2`.
    pub incompatible: SampleBundle,
    /// The running version's configuration.
    pub configuration: SampleConfiguration,
}

impl DemoSet {
    /// The four bundles, oldest first: running, the two compatible ones, the incompatible one.
    pub fn bundles(&self) -> [&SampleBundle; 4] {
        let [first, second] = &self.compatible;
        [&self.running, first, second, &self.incompatible]
    }

    /// Writes every zip into `dir` (which must exist) under the file name ConductR loads it
    /// under ([`SampleBundle::file_name`], [`SampleConfiguration::file_name`]).
    pub fn write_to(&self, dir: &Path) -> io::Result<()> {
        for bundle in self.bundles() {
            std::fs::write(dir.join(bundle.file_name()), &bundle.zip)?;
        }
        std::fs::write(
            dir.join(self.configuration.file_name()),
            &self.configuration.zip,
        )
    }
}

/// The demo's bundles and configuration.
pub fn demo_set() -> DemoSet {
    // A constant segment: `sample_set` cannot refuse it.
    sample_set(DEMO_NAME).expect("the demo's name is valid")
}

/// The demo's four versions and configuration, for a bundle named `name`.
///
/// # Errors
/// When `name` is not a segment (`[A-Za-z0-9._-]`, 1 to 255 characters).
pub fn sample_set(name: &str) -> Result<DemoSet, SampleError> {
    Ok(DemoSet {
        running: bundle(name, "1.0.0", "1")?,
        compatible: [bundle(name, "1.1.0", "1")?, bundle(name, "1.2.0", "1")?],
        incompatible: bundle(name, "2.0.0", "2")?,
        configuration: configuration(name)?,
    })
}

/// The prefix of the environment variables of the endpoint `name` (ConductR's
/// `<NAME>_BIND_PORT`): upper case, `-` and `.` as `_`, and a leading `_` before a digit.
fn env_prefix(name: &str) -> String {
    let mut env: String = name
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    if env.starts_with(|c: char| c.is_ascii_digit()) {
        env.insert(0, '_');
    }
    env
}

/// The bundle.conf: docs/PROTOCOL.md §4's example, with this name, tag and compatibility version.
/// Keys are quoted where a name could hold a `.`.
fn bundle_conf(name: &str, tag: &str, compatibility_version: &str) -> String {
    format!(
        r#"version              = "1"
name                 = "{name}"
compatibilityVersion = "{compatibility_version}"
system               = "{name}"
systemVersion        = "{compatibility_version}"
nrOfCpus             = 0.1
memory               = 402653184
diskSpace            = 200000000
roles                = ["web"]
tags                 = ["{tag}"]
annotations          = {{}}
components = {{
  "{name}" = {{
    description      = "{name} {tag}, a sample bundle of the lockstep sandbox"
    file-system-type = "universal"
    start-command    = ["{name}/bin/{name}"]
    endpoints = {{
      "{name}" = {{
        bind-protocol = "http"
        bind-port     = 0
        services      = ["http://:9999/{name}"]
      }}
    }}
  }}
}}
"#
    )
}

/// The component's start script: serves the bundle's folder over HTTP on the endpoint's bind
/// address when Python is there, and otherwise stays up until ConductR stops it.
fn start_script(name: &str, tag: &str) -> String {
    let env = env_prefix(name);
    format!(
        r#"#!/bin/sh
# {name} {tag}: the start command of a sample bundle of the lockstep sandbox.
# ConductR sets {env}_BIND_IP and {env}_BIND_PORT; the configuration's
# runtime-config.sh may set {env}_GREETING.
ip="${{{env}_BIND_IP:-127.0.0.1}}"
port="${{{env}_BIND_PORT:-9999}}"
echo "{name} {tag} on $ip:$port: ${{{env}_GREETING:-no greeting configured}}"
cd "$(dirname "$0")/../.." || exit 1
if command -v python3 >/dev/null 2>&1; then
  exec python3 -m http.server --bind "$ip" "$port"
fi
trap 'exit 0' TERM INT
while :; do
  sleep 60 &
  wait $!
done
"#
    )
}

fn readme(name: &str, tag: &str, compatibility_version: &str) -> String {
    format!(
        "# {name} {tag}\n\
         \n\
         A sample bundle generated by the lockstep sandbox: bundle `{name}`, tag `{tag}`,\n\
         compatibilityVersion `{compatibility_version}`. A bundle replaces a running one of the\n\
         same name and compatibilityVersion in a lock-step deployment.\n\
         \n\
         Its component's start script, `{name}/bin/{name}`, serves this folder over HTTP on\n\
         the endpoint `{name}` when Python 3 is installed, and otherwise waits until it is\n\
         stopped.\n"
    )
}

#[cfg(test)]
mod tests {
    use lockstep_core::archive::{Archive, Inflater};
    use lockstep_core::hocon::{Document, Value};

    use super::*;
    use crate::zip::tests::{assert_external_tools_accept, read_conf};

    fn text(doc: &Document<'_>, path: &str) -> String {
        doc.get_str::<256>(path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .unwrap()
            .to_string()
    }

    fn strings(doc: &Document<'_>, path: &str) -> Vec<String> {
        let Some(Value::Array(array)) = doc.get(path) else {
            panic!("{path} is no array");
        };
        array
            .iter()
            .map(|v| v.as_text().unwrap().to_string())
            .collect()
    }

    /// The entry named `name` exactly, read through core's reader.
    fn entry(zip: &[u8], name: &str) -> Vec<u8> {
        let mut reader: &[u8] = zip;
        let mut archive = Archive::open(&mut reader).unwrap();
        let found = archive.find(name.as_bytes()).unwrap();
        let mut out = vec![0; 4096];
        let mut inflater = Box::new(Inflater::new());
        archive
            .read(&found, &mut inflater, &mut out)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn test_bundle_conf_reads_back() {
        let set = demo_set();
        for sample in set.bundles() {
            let conf = read_conf(&sample.zip);
            assert_eq!(conf, sample.bundle_conf.as_bytes());
            let doc = Document::parse_bytes(&conf).unwrap();
            assert_eq!(text(&doc, "version"), "1");
            assert_eq!(text(&doc, "name"), DEMO_NAME);
            assert_eq!(
                text(&doc, "compatibilityVersion"),
                sample.compatibility_version
            );
            assert_eq!(text(&doc, "system"), DEMO_NAME);
            assert_eq!(text(&doc, "systemVersion"), sample.compatibility_version);
            assert_eq!(text(&doc, "nrOfCpus"), "0.1");
            assert_eq!(doc.get_u64("memory"), Some(402_653_184));
            assert_eq!(doc.get_u64("diskSpace"), Some(200_000_000));
            assert_eq!(strings(&doc, "roles"), ["web"]);
            assert_eq!(strings(&doc, "tags"), [sample.tag.as_str()]);
            assert_eq!(doc.get("annotations"), Some(Value::Object));
            let component = "components.visualizer";
            assert_eq!(
                text(&doc, &format!("{component}.file-system-type")),
                "universal"
            );
            let start = strings(&doc, &format!("{component}.start-command"));
            assert_eq!(start, ["visualizer/bin/visualizer"]);
            let endpoint = format!("{component}.endpoints.visualizer");
            assert_eq!(text(&doc, &format!("{endpoint}.bind-protocol")), "http");
            assert_eq!(doc.get_u64(&format!("{endpoint}.bind-port")), Some(0));
            assert_eq!(
                strings(&doc, &format!("{endpoint}.services")),
                ["http://:9999/visualizer"]
            );
            // The start command names an entry of the bundle's folder.
            let script = entry(
                &sample.zip,
                &format!("visualizer-{}/{}", sample.tag, start[0]),
            );
            assert!(script.starts_with(b"#!/bin/sh\n"));
        }
    }

    #[test]
    fn test_bundle_zips_accepted_by_external_tools() {
        let set = demo_set();
        for sample in set.bundles() {
            assert_external_tools_accept(&sample.zip);
        }
        assert_external_tools_accept(&set.configuration.zip);
    }

    #[test]
    fn test_configuration_reads_back() {
        let config = configuration("visualizer").unwrap();
        // The overlay is the configuration's bundle.conf, found the same way.
        let overlay = read_conf(&config.zip);
        assert_eq!(overlay, config.overlay.as_bytes());
        let doc = Document::parse_bytes(&overlay).unwrap();
        assert_eq!(doc.get("annotations"), Some(Value::Object));
        let script = entry(&config.zip, "visualizer-config/runtime-config.sh");
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("export VISUALIZER_GREETING=\"hello from the sandbox\"\n"));
        assert!(script.contains("export VISUALIZER_COLOUR="));
        assert_eq!(
            config.file_name(),
            format!("config-{}.zip", config.digest.to_hex().as_str())
        );
    }

    #[test]
    fn test_digests_are_sha256_and_stable() {
        let (first, second) = (demo_set(), demo_set());
        assert_eq!(first, second);
        for sample in first.bundles() {
            assert_eq!(sample.digest, zip::digest(&sample.zip));
        }
        assert_eq!(
            first.configuration.digest,
            zip::digest(&first.configuration.zip)
        );
        // Four distinct versions.
        let mut digests: Vec<_> = first.bundles().iter().map(|b| b.digest).collect();
        digests.push(first.configuration.digest);
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 5);
    }

    /// The demo's digests, written down: a change to the zip writer or to a sample's content
    /// changes them, and so the bundle ids the sandbox shows. Update them on purpose only.
    #[test]
    fn test_demo_digests_pinned() {
        let set = demo_set();
        let versions: Vec<String> = set.bundles().iter().map(|b| b.version()).collect();
        assert_eq!(versions, PINNED_VERSIONS);
        assert_eq!(set.configuration.digest.to_string(), PINNED_CONFIGURATION);
    }

    const PINNED_VERSIONS: [&str; 4] = [
        "1.0.0-9f8928a01e3c4fe0bd04e70cca3b1604ba013dbd494578572959ebfc9331e4c7",
        "1.1.0-31a429beecdb00b6d192a96bf9cf6b129abc96c1f0c763db8c36494d8e878d47",
        "1.2.0-eb909f16301014f133af54598ba7e7141a49387cc9ad58518003f26f661f1bc9",
        "2.0.0-0a6b23cc86c4eb15ebba7d70a620756f6eb25dbc4ed42a5cb12b309d7cfca9cb",
    ];
    const PINNED_CONFIGURATION: &str =
        "65df1f2c13f738814ec84d209a54873ecf9deac9bc68afb69b3e67675cdfc1ff";

    #[test]
    fn test_demo_set_shape() {
        let set = demo_set();
        let shape: Vec<(&str, &str, &str)> = set
            .bundles()
            .iter()
            .map(|b| {
                (
                    b.name.as_str(),
                    b.tag.as_str(),
                    b.compatibility_version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("visualizer", "1.0.0", "1"),
                ("visualizer", "1.1.0", "1"),
                ("visualizer", "1.2.0", "1"),
                ("visualizer", "2.0.0", "2"),
            ]
        );
        let running = &set.running;
        assert_eq!(
            running.file_name(),
            format!("visualizer-{}.zip", running.digest)
        );
        assert_eq!(running.version(), format!("1.0.0-{}", running.digest));
    }

    #[test]
    fn test_other_names() {
        // A name with `.` and `-`, and one starting with a digit.
        let sample = bundle("my.app-2", "v2-rc-1", "2").unwrap();
        let conf = read_conf(&sample.zip);
        let doc = Document::parse_bytes(&conf).unwrap();
        assert_eq!(text(&doc, "name"), "my.app-2");
        assert_eq!(strings(&doc, "tags"), ["v2-rc-1"]);
        entry(&sample.zip, "my.app-2-v2-rc-1/my.app-2/bin/my.app-2");
        assert_eq!(env_prefix("my.app-2"), "MY_APP_2");
        assert_eq!(env_prefix("9lives"), "_9LIVES");
        let config = configuration("9lives").unwrap();
        let script = entry(&config.zip, "9lives-config/runtime-config.sh");
        assert!(
            String::from_utf8(script)
                .unwrap()
                .contains("export _9LIVES_GREETING=")
        );
    }

    #[test]
    fn test_reject_bad_parts() {
        assert_eq!(
            bundle("a/b", "1", "1").unwrap_err(),
            SampleError::Name(SegmentError::BadChar)
        );
        assert_eq!(
            bundle("a", "..", "1").unwrap_err(),
            SampleError::Tag(SegmentError::Dots)
        );
        assert_eq!(
            bundle("a", "1", "").unwrap_err(),
            SampleError::CompatibilityVersion(SegmentError::Empty)
        );
        assert_eq!(
            configuration("a b").unwrap_err(),
            SampleError::Name(SegmentError::BadChar)
        );
        assert_eq!(
            SampleError::Tag(SegmentError::Dots).to_string(),
            "the sample bundle's tag may not be `.` or `..`"
        );
    }

    #[test]
    fn test_write_to_dir() {
        let dir = std::env::temp_dir().join(format!("lockstep-samples-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = demo_set();
        let written = set.write_to(&dir);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let running = std::fs::read(dir.join(set.running.file_name()));
        std::fs::remove_dir_all(&dir).unwrap();
        written.unwrap();
        names.sort();
        let mut expected: Vec<String> = set.bundles().iter().map(|b| b.file_name()).collect();
        expected.push(set.configuration.file_name());
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(running.unwrap(), set.running.zip);
    }
}
