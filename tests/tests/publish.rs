//! `lockstep publish`, the real binary (docs/PROTOCOL.md §4): a bundle into the published layout
//! that a `lockstep sandbox` serves, then the signed webhook to a `lockstep serve` that deploys
//! it at scale 3; a republish that changes nothing, to the byte and the file time; the tag's
//! three sources; refusals that leave the repository as it was; and publishers in two processes
//! at once that both keep their index entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lockstep::samples;
use lockstep::zip::{self, Entry};
use lockstep_tests::TempDir;
use lockstep_tests::stack::*;
use serde_json::Value;

/// Where the demo's package lives under a repository root.
const PACKAGE: &str = "typesafe/bundle/typesafe/visualizer";

/// Writes `bytes` to `dir/name`; its path, as text.
fn file(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write a test file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// A bundle zip whose bundle.conf is `conf`.
fn bundle_zip(conf: &str) -> Vec<u8> {
    zip::to_vec(&[
        Entry::deflated("b-1/bundle.conf", conf.as_bytes()),
        Entry::stored("b-1/README.md", b"a test bundle\n"),
    ])
    .expect("a zip")
}

/// `lockstep publish <args>` with `env`, to its exit.
fn publish(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut all = vec!["publish"];
    all.extend_from_slice(args);
    run_lockstep(&all, env, b"")
}

/// A refusal: `code`, nothing on stdout, one line on stderr naming the command; that line.
fn refused(ran: &Ran, code: i32) -> String {
    assert_eq!(ran.code, Some(code), "{ran:?}");
    assert_eq!(ran.stdout, "", "{ran:?}");
    let line = ran.stderr.strip_suffix('\n').unwrap_or(&ran.stderr);
    assert!(
        line.starts_with("lockstep publish: ") && !line.contains('\n'),
        "{ran:?}"
    );
    line.to_owned()
}

/// Every file and directory under `root`: its bytes (none for a directory) and modification
/// time. Equal snapshots: nothing was written, created or removed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Option<Vec<u8>>, SystemTime)> {
    let mut all = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory") {
            let path = entry.expect("an entry").path();
            let meta = std::fs::metadata(&path).expect("metadata");
            let bytes = if meta.is_dir() {
                dirs.push(path.clone());
                None
            } else {
                Some(std::fs::read(&path).expect("read a file"))
            };
            all.insert(path, (bytes, meta.modified().expect("mtime")));
        }
    }
    all
}

/// The versions in a package's index, oldest first.
fn indexed(root: &Path) -> Vec<String> {
    let text = std::fs::read(root.join(PACKAGE).join("versions.json")).expect("the index");
    let json: Value = serde_json::from_slice(&text).expect("JSON");
    json.as_array()
        .expect("an array")
        .iter()
        .map(|e| e["version"].as_str().expect("a version").to_owned())
        .collect()
}

// ---- publish, then notify: the deployment ------------------------------------------------------

/// A sandbox, a `lockstep serve` wired to it, and a new compatible version of the demo bundle
/// to publish into the sandbox's repository directory.
struct Stack {
    s: Sandbox,
    v: Serve,
    files: TempDir,
    new: samples::SampleBundle,
    zip: String,
    repository: PathBuf,
}

fn stack(tag: &str) -> Stack {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let new = samples::bundle("visualizer", tag, "1").expect("a sample");
    let files = TempDir::new("lockstep-publish-files");
    let zip = file(&files, "visualizer.zip", &new.zip);
    let repository = s.dir.path().join("repository");
    Stack {
        s,
        v,
        files,
        new,
        zip,
        repository,
    }
}

impl Stack {
    /// The URL of the service's webhook under `prefix`.
    fn hook(&self, prefix: &str) -> String {
        format!("http://{}{prefix}", self.v.client.addr)
    }

    /// `lockstep publish` of the new version into the sandbox's repository, notifying `hook`.
    fn publish(&self, hook: &str, extra: &[&str], env: &[(&str, &str)]) -> Ran {
        let repository = self.repository.to_str().expect("a UTF-8 path");
        let mut args = vec![
            self.zip.as_str(),
            "--repository",
            repository,
            "--notify",
            hook,
        ];
        args.extend_from_slice(extra);
        publish(&args, env)
    }
}

/// The deployment id of the `notified <hook>: 202 <id>` line that ends a run.
fn notified<'r>(ran: &'r Ran, hook: &str) -> &'r str {
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let last = ran.stdout.lines().last().unwrap_or_default();
    let id = last
        .strip_prefix(&format!("notified {hook}: 202 "))
        .unwrap_or_else(|| panic!("{ran:?}"));
    assert_uuid_v4(id);
    id
}

#[test]
fn test_publish_notify_deploys_at_scale_3() {
    let t = stack("1.3.0");
    let old = the_running_bundle(&t.s);
    let mark = mark(&t.s);
    let hook = t.hook(HOOK);
    let ran = t.publish(&hook, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    let id = notified(&ran, &hook);
    let version = t.new.version();
    let path = t
        .repository
        .join(PACKAGE)
        .join(&version)
        .join(format!("visualizer-{version}.zip"));
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            format!("published visualizer:{version} to {}", path.display()),
            version.clone()
        ],
        "{ran:?}"
    );
    assert_eq!(lines.len(), 3, "{ran:?}");
    assert_eq!(std::fs::read(&path).unwrap(), t.new.zip);
    // After the sandbox's four demo versions.
    let versions = indexed(&t.repository);
    assert_eq!(versions.len(), 5, "{versions:?}");
    assert_eq!(versions[4], version);

    let published = Version {
        name: "visualizer".into(),
        tag: "1.3.0".into(),
        digest: t.new.digest.to_string(),
        role: "published".into(),
    };
    assert_replaced_at_scale_3(&t.s, &t.v, id, &published, &old);
    assert_history_within_2_to_4(&t.s, mark);
}

#[test]
fn test_publish_notify_bintray_signed_deploys() {
    let t = stack("1.4.0");
    let secret_file = file(&t.files, "secret", format!("{SECRET}\n").as_bytes());
    let hook = t.hook(HOOK_V2);
    let extra = [
        "--bintray",
        "--secret-file",
        &secret_file,
        "--timeout",
        "5s",
    ];
    let ran = t.publish(&hook, &extra, &[]);
    assert_succeeded(&ended(&t.v, notified(&ran, &hook)));
}

#[test]
fn test_publish_refused_notification_keeps_the_publication() {
    let t = stack("1.5.0");
    let hook = t.hook(HOOK);
    let ran = t.publish(&hook, &[], &[("BINTRAY_WEBHOOK_SECRET", "not-the-secret")]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let version = t.new.version();
    assert!(
        ran.stdout
            .starts_with(&format!("published visualizer:{version} to ")),
        "{ran:?}"
    );
    let prefix = format!(
        "lockstep publish: published visualizer:{version}, but the notification failed: {hook} \
         answered 403: "
    );
    assert!(ran.stderr.starts_with(&prefix), "{ran:?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:?}");
    assert!(indexed(&t.repository).contains(&version));
    assert_eq!(listing(&t.v, "/deployments"), Vec::<Value>::new());

    // Nobody listening: no answer, and the publication (already there) stays.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}{HOOK}", closed.local_addr().unwrap());
    drop(closed);
    let ran = t.publish(&nowhere, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stdout.starts_with("already published"), "{ran:?}");
    assert!(
        ran.stderr.starts_with(&format!(
            "lockstep publish: published visualizer:{version}, but the notification failed: \
             {nowhere}: "
        )),
        "{ran:?}"
    );
}

// ---- a republish changes nothing -------------------------------------------------------------

#[test]
fn test_publish_twice_changes_nothing() {
    let files = TempDir::new("lockstep-publish-files");
    let repository = TempDir::new("lockstep-publish-repository");
    let root = repository.path_text();
    let bundle = samples::bundle("visualizer", "1.0.0", "1").expect("a sample");
    let config = samples::configuration("visualizer").expect("a sample");
    let zip = file(&files, "b.zip", &bundle.zip);
    let config_zip = file(&files, "c.zip", &config.zip);
    let args = [
        zip.as_str(),
        "--repository",
        &root,
        "--configuration",
        &config_zip,
    ];

    let first = publish(&args, &[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let version = bundle.version();
    let dir = repository.path().join(PACKAGE).join(&version);
    let zip_path = dir.join(format!("visualizer-{version}.zip"));
    let config_path = dir.join(format!("visualizer-{version}-config.zip"));
    assert_eq!(
        first.stdout,
        format!(
            "published visualizer:{version} to {}\npublished its configuration to {}\n{version}\n",
            zip_path.display(),
            config_path.display()
        )
    );
    assert_eq!(std::fs::read(&config_path).unwrap(), config.zip);
    let before = snapshot(repository.path());

    let second = publish(&args, &[]);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert_eq!(
        second.stdout,
        format!(
            "already published visualizer:{version} at {}\n\
             already published its configuration at {}\n{version}\n",
            zip_path.display(),
            config_path.display()
        )
    );
    assert_eq!(second.stderr, "");
    assert_eq!(snapshot(repository.path()), before);
    assert_eq!(indexed(repository.path()), std::slice::from_ref(&version));

    // Another configuration for the same version: refused, nothing changed.
    let other = zip::to_vec(&[Entry::stored("c/runtime-config.sh", b"export X=1\n")]).unwrap();
    let other = file(&files, "other.zip", &other);
    let line = refused(
        &publish(
            &[&zip, "--repository", &root, "--configuration", &other],
            &[],
        ),
        1,
    );
    assert!(
        line.contains("already published with another configuration"),
        "{line}"
    );
    assert_eq!(snapshot(repository.path()), before);
}

// ---- the tag ---------------------------------------------------------------------------------

#[test]
fn test_publish_tag_from_option_first_tag_or_compatibility_version() {
    let files = TempDir::new("lockstep-publish-files");
    let repository = TempDir::new("lockstep-publish-repository");
    let root = repository.path_text();
    let conf = "name = visualizer\ncompatibilityVersion = 3\n";
    let tagged = bundle_zip(&format!("{conf}tags = [\"3.1.0\", \"latest\"]\n"));
    let untagged = bundle_zip(conf);
    let cases = [
        ("tagged.zip", &tagged, None, "3.1.0"),
        ("tagged.zip", &tagged, Some("v3-rc-1"), "v3-rc-1"),
        ("untagged.zip", &untagged, None, "v3"),
    ];
    let mut expected = vec![];
    for (name, zip, tag, want) in cases {
        let path = file(&files, name, zip);
        let mut args = vec![path.as_str(), "--repository", &root];
        if let Some(tag) = tag {
            args.extend(["--tag", tag]);
        }
        let ran = publish(&args, &[]);
        assert_eq!(ran.code, Some(0), "{ran:?}");
        let version = format!("{want}-{}", zip::digest(zip));
        assert_eq!(ran.stdout.lines().last(), Some(version.as_str()), "{ran:?}");
        expected.push(version);
    }
    assert_eq!(indexed(repository.path()), expected);

    // Under another organisation and repository.
    let path = file(&files, "tagged.zip", &tagged);
    let ran = publish(
        &[
            &path,
            "--repository",
            &root,
            "--org",
            "acme",
            "--repo",
            "ci",
        ],
        &[],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        repository
            .path()
            .join("acme/ci/acme/visualizer/versions.json")
            .is_file()
    );
}

// ---- refusals --------------------------------------------------------------------------------

#[test]
fn test_publish_refuses_what_is_not_a_bundle() {
    let files = TempDir::new("lockstep-publish-files");
    let repository = TempDir::new("lockstep-publish-repository");
    let root = repository.path_text();
    // Something published already: a refusal must leave it as it is.
    let sample = samples::bundle("visualizer", "1.0.0", "1").expect("a sample");
    let good = file(&files, "good.zip", &sample.zip);
    assert_eq!(publish(&[&good, "--repository", &root], &[]).code, Some(0));
    let before = snapshot(repository.path());

    let no_conf = zip::to_vec(&[Entry::stored("b/README.md", b"x")]).unwrap();
    let long_tag = format!(
        "name = v\ncompatibilityVersion = 1\ntags = [\"{}\"]",
        "t".repeat(70)
    );
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "no-conf.zip",
            no_conf,
            "not a bundle: no readable bundle.conf: no bundle.conf in the zip",
        ),
        (
            "bad-name.zip",
            bundle_zip("name = \"../visualizer\"\ncompatibilityVersion = 1"),
            "not a bundle: bundle.conf's name may hold only the characters A-Z a-z 0-9 . _ -",
        ),
        (
            "no-compat.zip",
            bundle_zip("name = visualizer"),
            "not a bundle: bundle.conf has no compatibilityVersion",
        ),
        (
            "bad-tag.zip",
            bundle_zip(&long_tag),
            "bundle.conf's first tag is longer than 64",
        ),
        (
            "text.zip",
            b"not a zip at all".to_vec(),
            "not a zip: no end of central directory",
        ),
        (
            "hocon.zip",
            bundle_zip("name = ${x}"),
            "not a bundle: bundle.conf: ",
        ),
    ];
    for (name, bytes, why) in cases {
        let path = file(&files, name, &bytes);
        let line = refused(&publish(&[&path, "--repository", &root], &[]), 1);
        assert!(line.contains(&format!("{path}: ")), "{line}");
        assert!(line.contains(why), "{name}: {line}");
        assert_eq!(snapshot(repository.path()), before, "{name}");
    }
    // A configuration that is not one; a file that is not there.
    let config = file(&files, "config.zip", &sample.zip);
    let line = refused(
        &publish(
            &[&good, "--repository", &root, "--configuration", &config],
            &[],
        ),
        1,
    );
    assert!(
        line.contains("not a configuration: no runtime-config.sh"),
        "{line}"
    );
    let missing = files.path().join("missing.zip");
    let line = refused(
        &publish(&[missing.to_str().unwrap(), "--repository", &root], &[]),
        1,
    );
    assert!(line.contains("missing.zip: No such file"), "{line}");
    assert_eq!(snapshot(repository.path()), before);
}

#[test]
fn test_publish_refuses_an_unwritable_repository() {
    // Under a regular file: no directory can be made, even by root (which chmod does not stop).
    let files = TempDir::new("lockstep-publish-files");
    let sample = samples::bundle("visualizer", "1.0.0", "1").expect("a sample");
    let zip = file(&files, "b.zip", &sample.zip);
    let blocker = file(&files, "a-file", b"");
    let root = format!("{blocker}/repository");
    let line = refused(&publish(&[&zip, "--repository", &root], &[]), 1);
    assert!(
        line.starts_with("lockstep publish: nothing published: ") && line.contains(&blocker),
        "{line}"
    );
    assert_eq!(std::fs::read(&blocker).unwrap(), b"");
    let names = files.entries();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn test_publish_bad_notify_or_secret_writes_nothing() {
    let files = TempDir::new("lockstep-publish-files");
    let repository = TempDir::new("lockstep-publish-repository");
    let root = repository.path_text();
    let sample = samples::bundle("visualizer", "1.0.0", "1").expect("a sample");
    let zip = file(&files, "b.zip", &sample.zip);
    let secret = [("BINTRAY_WEBHOOK_SECRET", SECRET)];
    let cases = [
        (
            "ftp://127.0.0.1:9/deployments/typesafe/bundle/typesafe",
            &secret[..],
            "a URL must start with http:// or https://",
        ),
        ("http://127.0.0.1:9", &secret[..], "no webhook path"),
        (
            "http://127.0.0.1:9/deploy/typesafe/bundle/typesafe",
            &secret[..],
            "not a webhook path",
        ),
        (
            "http://127.0.0.1:9/deployments/acme/bundle/acme",
            &secret[..],
            "--org, --repo",
        ),
        (
            "http://127.0.0.1:9/deployments/typesafe/bundle/typesafe",
            &[][..],
            "no webhook secret",
        ),
    ];
    for (url, env, why) in cases {
        let line = refused(
            &publish(&[&zip, "--repository", &root, "--notify", url], env),
            2,
        );
        assert!(line.contains(why), "{url}: {line}");
        repository.assert_empty(url);
    }
    // A --ca-file that cannot be used, for an https:// --notify: refused before anything is
    // written.
    let missing = files.path().join("no-such-ca.pem");
    let missing = missing.to_str().expect("UTF-8");
    let line = refused(
        &publish(
            &[
                &zip,
                "--repository",
                &root,
                "--notify",
                "https://127.0.0.1:9/deployments/typesafe/bundle/typesafe",
                "--ca-file",
                missing,
            ],
            &secret,
        ),
        2,
    );
    assert!(line.contains(&format!("--ca-file {missing}: ")), "{line}");
    repository.assert_empty("--ca-file");
    // Bad arguments.
    let (zip, root) = (zip.as_str(), root.as_str());
    for (args, why) in [
        (&[zip][..], "--repository DIR is required"),
        (&["--repository", root][..], "no bundle zip"),
        (
            &[zip, "--repository", root, "--tag", "a/b"][..],
            "--tag may hold only",
        ),
        (
            &[zip, "--repository", root, "--org", ".."][..],
            "--org may not be",
        ),
        (&[zip, "--repository", root, "--frob"][..], "--frob"),
    ] {
        let line = refused(&publish(args, &[]), 2);
        assert!(line.contains(why), "{args:?}: {line}");
        repository.assert_empty(why);
    }
}

#[test]
fn test_publish_help_names_every_option() {
    let ran = publish(&["--help"], &[]);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("Usage: lockstep publish BUNDLE.zip --repository DIR")
    );
    for option in [
        "--configuration",
        "--tag",
        "--org",
        "--repo",
        "--notify",
        "--secret-file",
        "--bintray",
        "--timeout",
        "Exit codes",
    ] {
        assert!(ran.stdout.contains(option), "{option}");
    }
    let top = run_lockstep(&["--help"], &[], b"");
    assert!(top.stdout.contains("  publish "), "{top:?}");
}

// ---- publishers at once ----------------------------------------------------------------------

#[test]
fn test_two_publishers_at_once_keep_both_entries() {
    const ROUNDS: usize = 12;
    let files = TempDir::new("lockstep-publish-files");
    let repository = TempDir::new("lockstep-publish-repository");
    let root = repository.path_text();
    let mut expected = vec![];
    for round in 0..ROUNDS {
        let zips: Vec<(String, String)> = ["a", "b"]
            .iter()
            .map(|side| {
                let tag = format!("{side}{round}");
                let sample = samples::bundle("visualizer", &tag, "1").expect("a sample");
                let path = file(&files, &format!("{tag}.zip"), &sample.zip);
                (path, sample.version())
            })
            .collect();
        // Both processes at once, each from a thread of its own.
        let runs: Vec<_> = zips
            .iter()
            .map(|(path, _)| {
                let (path, root) = (path.clone(), root.clone());
                std::thread::spawn(move || publish(&[&path, "--repository", &root], &[]))
            })
            .collect();
        for run in runs {
            let ran = run.join().expect("a publisher thread");
            assert_eq!(ran.code, Some(0), "{ran:?}");
        }
        expected.extend(zips.into_iter().map(|(_, version)| version));
        let mut found = indexed(repository.path());
        assert_eq!(found.len(), expected.len(), "round {round}: {found:?}");
        found.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(found, want, "round {round}");
    }
    // No temporary file left: the versions' directories, the index and its lock file.
    let package = repository.path().join(PACKAGE);
    let mut left: Vec<String> = std::fs::read_dir(&package)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !expected.contains(name))
        .collect();
    left.sort();
    assert_eq!(left, [".versions.json.lock", "versions.json"]);
}
