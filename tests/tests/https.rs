//! `https://` end to end: `lockstep serve` and `lockstep deploy` against a local HTTPS
//! repository and control API (a TLS proxy in front of the sandbox, with a throwaway CA made by
//! the test): trust through `--ca-file`, clear refusals (unknown CA, another name, expired),
//! repository credentials, and redirects (to another host: without the credentials; to
//! http: refused).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockstep_tests::TempDir;
use lockstep_tests::stack::{
    Bundle, Ran, SECRET, Sandbox, Serve, accepted, assert_replaced_at_scale_3, bundles, ended,
    failure, notify, run_lockstep, sandbox, serve, the_running_bundle,
};
use lockstep_tests::tls::{HttpsServer, Identity, Rules, TestCa};

/// A throwaway CA, its `ca.pem` in a directory of its own.
struct Pki {
    dir: TempDir,
    ca: TestCa,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new("lockstep-https-pki");
        let ca = TestCa::new(dir.path());
        Self { dir, ca }
    }

    fn ca_file(&self) -> String {
        self.ca.pem_path().to_str().expect("UTF-8").to_owned()
    }

    /// A certificate for 127.0.0.1 and localhost.
    fn loopback(&self) -> Identity {
        self.ca.issue(&["127.0.0.1", "localhost"], false)
    }

    /// A file holding `text`.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a file");
        path.to_str().expect("UTF-8").to_owned()
    }
}

/// An HTTPS front of the sandbox (its control API and its repository).
fn front(s: &Sandbox, identity: &Identity, rules: Rules) -> HttpsServer {
    HttpsServer::start(
        identity,
        Rules {
            upstream: s.url(),
            ..rules
        },
    )
}

fn https(server: &HttpsServer) -> String {
    format!("https://127.0.0.1:{}", server.port())
}

/// `lockstep serve` downloading from `repository`, with `extra` flags.
fn serve_from(s: &Sandbox, repository: &str, extra: &[&str]) -> Serve {
    let mut args = vec!["--repository", repository];
    args.extend_from_slice(extra);
    serve(s, &args)
}

/// Notifies the first compatible version; answers the deployment's failure once it ended.
fn failed_deployment(s: &Sandbox, v: &Serve) -> String {
    let r = notify(v, &s.compatible(0));
    let id = accepted(v, &r, "/deployments");
    failure(&ended(v, &id))
}

/// `lockstep deploy -y <args>` against `v`, the secret in the environment.
fn deploy(v: &Serve, args: &[&str]) -> Ran {
    let home = TempDir::new("lockstep-https-home");
    let url = format!("http://{}", v.client.addr);
    let mut all = vec!["deploy", "-y", "--url", &url];
    all.extend_from_slice(args);
    let home = home.path().to_str().expect("UTF-8").to_owned();
    run_lockstep(
        &all,
        &[("HOME", &home), ("BINTRAY_WEBHOOK_SECRET", SECRET)],
        b"",
    )
}

/// The id of the deployment `lockstep deploy` followed to its success.
fn deployed(ran: &Ran) -> String {
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    ran.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Deployment id: "))
        .unwrap_or_else(|| panic!("no id in {ran:#?}"))
        .to_owned()
}

fn assert_cluster_unchanged(s: &Sandbox, before: &[Bundle], what: &str) {
    assert_eq!(bundles(s), before, "{what}: the cluster changed");
}

#[test]
fn test_an_https_repository_and_control_api_trusted_through_ca_file() {
    let s = sandbox(&[]);
    let pki = Pki::new();
    let server = front(&s, &pki.loopback(), Rules::default());
    let ca = pki.ca_file();
    let repository = format!("{}/repository", https(&server));
    let v = serve_from(
        &s,
        &repository,
        &["--conductr", &https(&server), "--ca-file", &ca],
    );
    let old = the_running_bundle(&s);
    let new = s.compatible(0);

    // `lockstep deploy` reads versions.json over https too.
    let ran = deploy(
        &v,
        &[
            "--repository",
            &repository,
            "--ca-file",
            &ca,
            "visualizer:1.1.0",
        ],
    );
    assert_replaced_at_scale_3(&s, &v, &deployed(&ran), &new, &old);

    let seen = server.requests();
    let has = |suffix: &str| seen.iter().any(|r| r.target.ends_with(suffix));
    assert!(has("/versions.json"), "{seen:#?}");
    assert!(has(&format!("{}.zip", new.digest)), "{seen:#?}");
    assert!(
        seen.iter().any(|r| r.target.starts_with("/v2/bundles")),
        "{seen:#?}"
    );
    assert_eq!(server.handshakes_failed(), 0);
}

#[test]
fn test_refused_certificates_fail_clearly_naming_the_host_and_deploy_nothing() {
    let s = sandbox(&[]);
    let pki = Pki::new();
    let ca = pki.ca_file();
    for (identity, with_ca, says) in [
        (pki.loopback(), false, "unknown CA"),
        (
            pki.ca.issue(&["wrong.example"], false),
            true,
            "not valid for the host name",
        ),
        (
            pki.ca.issue(&["127.0.0.1", "localhost"], true),
            true,
            "has expired",
        ),
    ] {
        let server = front(&s, &identity, Rules::default());
        let repository = format!("{}/repository", https(&server));
        let extra: &[&str] = if with_ca { &["--ca-file", &ca] } else { &[] };
        let v = serve_from(&s, &repository, extra);
        let before = bundles(&s);

        let failure = failed_deployment(&s, &v);
        assert!(
            failure.starts_with("the bundle could not be resolved: failed TLS: ")
                && failure.contains(says),
            "{says}: {failure}"
        );
        assert_cluster_unchanged(&s, &before, says);
        // The log names the host, on one line.
        let host = https(&server);
        let stderr = v.process.stderr();
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&host) && l.contains(says)),
            "{says}: {stderr}"
        );
        assert!(server.handshakes_failed() > 0);
        assert!(server.requests().is_empty(), "nothing was asked of it");

        // `lockstep deploy` names the host too, and sends nothing.
        let mut args = vec!["--repository", repository.as_str(), "visualizer:1.1.0"];
        args.extend_from_slice(extra);
        let ran = deploy(&v, &args);
        assert_eq!(ran.code, Some(1), "{ran:#?}");
        assert!(
            ran.stderr.contains(&host) && ran.stderr.contains(says),
            "{says}: {ran:#?}"
        );
        assert_eq!(ran.stderr.lines().count(), 1, "{ran:#?}");
    }
}

#[test]
fn test_repository_credentials_are_sent_and_a_refusal_is_clear() {
    let s = sandbox(&[]);
    let pki = Pki::new();
    let ca = pki.ca_file();
    let expected = format!("Basic {}", STANDARD.encode("deployer:pa55word"));
    let server = front(
        &s,
        &pki.loopback(),
        Rules {
            require_authorization: Some(expected.clone()),
            ..Rules::default()
        },
    );
    let repository = format!("{}/repository", https(&server));

    // Wrong: the deployment fails on the 401, nothing changes, the secret is nowhere.
    let wrong = pki.file("wrong", "deployer:guess3d\n");
    let v = serve_from(
        &s,
        &repository,
        &["--ca-file", &ca, "--repository-credentials", &wrong],
    );
    let before = bundles(&s);
    let failure = failed_deployment(&s, &v);
    assert_eq!(
        failure,
        "the bundle could not be resolved: answered 401: the credentials were refused or are \
         missing"
    );
    assert_cluster_unchanged(&s, &before, "wrong credentials");
    let ran = deploy(
        &v,
        &[
            "--repository",
            &repository,
            "--ca-file",
            &ca,
            "--repository-credentials",
            &wrong,
            "visualizer:1.1.0",
        ],
    );
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.stderr.contains("answered 401"), "{ran:#?}");
    for text in [v.process.stderr(), ran.stdout, ran.stderr] {
        assert!(
            !text.contains("guess3d") && !text.contains("pa55word"),
            "{text}"
        );
    }
    drop(v);

    // Right: deployed.
    let right = pki.file("right", "deployer:pa55word\n");
    let v = serve_from(
        &s,
        &repository,
        &["--ca-file", &ca, "--repository-credentials", &right],
    );
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let ran = deploy(
        &v,
        &[
            "--repository",
            &repository,
            "--ca-file",
            &ca,
            "--repository-credentials",
            &right,
            "visualizer:1.1.0",
        ],
    );
    assert_replaced_at_scale_3(&s, &v, &deployed(&ran), &new, &old);
    assert!(!v.process.stderr().contains("pa55word"));
}

#[test]
fn test_a_redirect_to_another_host_gets_no_credentials() {
    let s = sandbox(&[]);
    let pki = Pki::new();
    let ca = pki.ca_file();
    let identity = pki.loopback();
    // The bytes are on "another host": localhost, where the repository is 127.0.0.1.
    let storage = front(&s, &identity, Rules::default());
    let authorization = "Bearer t0ken-for-the-repository";
    let repository_server = front(
        &s,
        &identity,
        Rules {
            require_authorization: Some(authorization.to_owned()),
            redirect_zips_to: Some(format!("https://localhost:{}", storage.port())),
            ..Rules::default()
        },
    );
    let repository = format!("{}/repository", https(&repository_server));
    let token = pki.file("token", "t0ken-for-the-repository\n");
    let v = serve_from(
        &s,
        &repository,
        &["--ca-file", &ca, "--repository-credentials", &token],
    );
    let old = the_running_bundle(&s);
    let new = s.compatible(0);
    let r = notify(&v, &new);
    let id = accepted(&v, &r, "/deployments");
    assert_replaced_at_scale_3(&s, &v, &id, &new, &old);

    let zip = format!("{}.zip", new.digest);
    let asked = repository_server.requests();
    let first = asked
        .iter()
        .find(|r| r.target.ends_with(&zip))
        .unwrap_or_else(|| panic!("{asked:#?}"));
    assert_eq!(first.header("authorization"), Some(authorization));
    let fetched = storage.requests();
    let at_storage = fetched
        .iter()
        .find(|r| r.target.ends_with(&zip))
        .unwrap_or_else(|| panic!("{fetched:#?}"));
    assert_eq!(at_storage.header("authorization"), None, "{at_storage:#?}");
    assert!(
        at_storage
            .header("host")
            .is_some_and(|h| h.starts_with("localhost:")),
        "{at_storage:#?}"
    );
}

#[test]
fn test_a_redirect_to_http_and_a_redirect_loop_are_refused() {
    let s = sandbox(&[]);
    let pki = Pki::new();
    let ca = pki.ca_file();
    let identity = pki.loopback();
    let to_http = front(
        &s,
        &identity,
        Rules {
            redirect_zips_to: Some(s.url()),
            ..Rules::default()
        },
    );
    let v = serve_from(
        &s,
        &format!("{}/repository", https(&to_http)),
        &["--ca-file", &ca],
    );
    let before = bundles(&s);
    assert_eq!(
        failed_deployment(&s, &v),
        "the bundle could not be resolved: redirected from https to http (refused)"
    );
    assert_cluster_unchanged(&s, &before, "a redirect to http");
    drop(v);

    // A repository that redirects a zip to itself (an absolute path), forever: 5 redirects
    // are followed, then the download is refused.
    let looping = front(
        &s,
        &identity,
        Rules {
            redirect_zips_to: Some(String::new()),
            ..Rules::default()
        },
    );
    let v = serve_from(
        &s,
        &format!("{}/repository", https(&looping)),
        &["--ca-file", &ca],
    );
    assert_eq!(
        failed_deployment(&s, &v),
        "the bundle could not be resolved: redirected too many times"
    );
    assert_cluster_unchanged(&s, &before, "a redirect loop");
    let zips = looping
        .requests()
        .iter()
        .filter(|r| r.target.ends_with(".zip"))
        .count();
    assert_eq!(zips, 6, "the request and 5 redirects followed");
}
