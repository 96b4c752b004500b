//! `lockstep deploy` end to end: the real binary resolves a bundle against the sandbox's
//! repository, sends the signed webhook to a real `lockstep serve`, and follows the deployment
//! to its end (docs/PROTOCOL.md §3).

use lockstep_tests::TempDir;
use lockstep_tests::stack::{
    Ran, SECRET, Sandbox, Serve, assert_replaced_at_scale_3, assert_uuid_v4, ended, event_types,
    run_lockstep, sandbox, serve, the_running_bundle,
};

/// The lines `lockstep deploy` prints for a scale-3 replacement with a configuration, as the
/// official client words them (after the elapsed time).
const LINES_AT_SCALE_3: [&str; 12] = [
    "Deployment started",
    "Downloading bundle",
    "Downloading config from bundle",
    "Loading bundle with config",
    "Deploying - 3 old instance vs 0 new instance",
    "Deploying - 3 old instance vs 1 new instance",
    "Deploying - 2 old instance vs 1 new instance",
    "Deploying - 2 old instance vs 2 new instance",
    "Deploying - 1 old instance vs 2 new instance",
    "Deploying - 1 old instance vs 3 new instance",
    "Deploying - 0 old instance vs 3 new instance",
    "Success",
];

/// `lockstep deploy <args>` against `v`, resolving in `s`'s repository over HTTP, with a home
/// directory of its own (no settings file unless the test writes one) and `env`.
fn deploy(s: &Sandbox, v: &Serve, home: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let url = format!("http://{}", v.client.addr);
    let repository = format!("{}/repository", s.url());
    let mut all = vec!["deploy", "--url", &url, "--repository", &repository];
    all.extend_from_slice(args);
    let home = home.path().to_str().expect("UTF-8");
    let mut environment = vec![("HOME", home)];
    environment.extend_from_slice(env);
    run_lockstep(&all, &environment, b"")
}

const WITH_SECRET: &[(&str, &str)] = &[("BINTRAY_WEBHOOK_SECRET", SECRET)];

/// The deployment id `lockstep deploy` printed.
fn deployment_id(ran: &Ran) -> String {
    let id = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Deployment id: "))
        .unwrap_or_else(|| panic!("no id in {ran:#?}"))
        .to_owned();
    assert_uuid_v4(&id);
    id
}

/// The event lines printed, without their elapsed times (`[   0.1s] `).
fn event_lines(ran: &Ran) -> Vec<String> {
    ran.stdout
        .lines()
        .filter_map(|l| l.strip_prefix('[').and_then(|l| l.split_once("s] ")))
        .map(|(_, line)| line.to_owned())
        .collect()
}

#[test]
fn test_deploy_a_tag_follows_the_lock_step_to_success() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let home = TempDir::new("lockstep-deploy-home");
    let old = the_running_bundle(&s);
    let new = s.compatible(0);

    let ran = deploy(&s, &v, &home, &["visualizer:1.1.0"], WITH_SECRET);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let short = &new.digest[..7];
    assert!(
        ran.stdout
            .starts_with(&format!("Deploying visualizer:1.1.0-{short}\n")),
        "{ran:#?}"
    );
    let id = deployment_id(&ran);
    let lines = event_lines(&ran);
    assert_eq!(lines.len(), LINES_AT_SCALE_3.len(), "{ran:#?}");
    for (line, expected) in lines.iter().zip(LINES_AT_SCALE_3) {
        assert!(line.starts_with(expected), "{line:?} is not {expected:?}");
    }
    assert_eq!(ran.stderr, "");
    assert_replaced_at_scale_3(&s, &v, &id, &new, &old);
}

#[test]
fn test_deploy_a_digest_prefix_deploys_exactly_that_version() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let home = TempDir::new("lockstep-deploy-home");
    let old = the_running_bundle(&s);
    let new = s.compatible(1);
    let shorthand = format!("visualizer:{}-{}", new.tag, &new.digest[..7].to_uppercase());

    let ran = deploy(&s, &v, &home, &[&shorthand], WITH_SECRET);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_replaced_at_scale_3(&s, &v, &deployment_id(&ran), &new, &old);
}

#[test]
fn test_deploy_the_latest_version_which_is_incompatible_fails_with_its_failure_line() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let home = TempDir::new("lockstep-deploy-home");
    let before = the_running_bundle(&s);
    // The demo's latest version is 2.0.0, of compatibilityVersion 2.
    let latest = s.incompatible();

    let ran = deploy(&s, &v, &home, &["visualizer"], WITH_SECRET);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stdout.starts_with(&format!(
            "Deploying visualizer:{}-{}\n",
            latest.tag,
            &latest.digest[..7]
        )),
        "{ran:#?}"
    );
    assert_eq!(
        ran.stderr,
        "lockstep deploy: Failure: no running bundle with compatibilityVersion 2 (a bundle \
         with compatibilityVersion 1 runs)\n"
    );
    let events = ended(&v, &deployment_id(&ran));
    assert_eq!(
        event_types(&events),
        ["deploymentStarted", "bundleDownload", "deploymentFailure"]
    );
    assert_eq!(the_running_bundle(&s), before);
}

#[test]
fn test_deploy_with_a_wrong_secret_is_one_line_naming_the_refusal() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let home = TempDir::new("lockstep-deploy-home");
    for scheme in [&[][..], &["--bintray"][..]] {
        let mut args = vec!["-y", "visualizer:1.1.0"];
        args.extend_from_slice(scheme);
        let ran = deploy(
            &s,
            &v,
            &home,
            &args,
            &[("BINTRAY_WEBHOOK_SECRET", "not-the-secret")],
        );
        assert_eq!(ran.code, Some(1), "{ran:#?}");
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{ran:#?}");
        assert!(
            lines[0].starts_with(&format!(
                "lockstep deploy: http://{}/deployments/typesafe/bundle/typesafe refused the \
                 webhook: 403 ",
                v.client.addr
            )),
            "{lines:?}"
        );
    }
    assert!(
        v.client
            .get("/deployments")
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn test_deploy_an_ambiguous_prefix_or_an_unknown_version_lists_what_exists() {
    // A directory repository whose index has two versions of one tag sharing 7 digest characters.
    let repository = TempDir::new("lockstep-deploy-repository");
    let dir = repository.path().join("typesafe/bundle/typesafe/web");
    std::fs::create_dir_all(&dir).unwrap();
    let a = format!("1234567a{}", "0".repeat(56));
    let b = format!("1234567b{}", "0".repeat(56));
    std::fs::write(
        dir.join("versions.json"),
        format!(
            r#"[{{"version":"1.0-{a}","published":"2026-12-01T10:00:00Z"}},
               {{"version":"1.0-{b}","published":"2026-12-01T11:00:00Z"}}]"#
        ),
    )
    .unwrap();
    let home = TempDir::new("lockstep-deploy-home");
    let run = |bundle: &str| {
        run_lockstep(
            &[
                "deploy",
                "--repository",
                repository.path().to_str().unwrap(),
                // Nobody listens there: nothing must be sent.
                "--url",
                "http://127.0.0.1:9",
                bundle,
            ],
            &[
                ("HOME", home.path().to_str().unwrap()),
                ("BINTRAY_WEBHOOK_SECRET", SECRET),
            ],
            b"",
        )
    };
    let listing = [
        "Published versions, newest first:".to_owned(),
        format!("  web:1.0-{b}  2026-12-01T11:00:00Z"),
        format!("  web:1.0-{a}  2026-12-01T10:00:00Z"),
    ];

    let ran = run("web:1.0-1234567");
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "lockstep deploy: `web:1.0-1234567`: the digest prefix matches 2 published versions of \
         typesafe/bundle/web: give more of it"
    );
    assert_eq!(lines[1..], listing);

    let ran = run("web:2.0");
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "lockstep deploy: `web:2.0` matches no published version of typesafe/bundle/web"
    );
    assert_eq!(lines[1..], listing);

    // The prefix made unambiguous resolves; only then is the (absent) service tried.
    let ran = run("web:1.0-1234567b");
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stderr
            .starts_with("lockstep deploy: the webhook got no answer: "),
        "{ran:#?}"
    );

    let ran = run("nothing");
    assert_eq!(
        ran.stderr,
        "lockstep deploy: `nothing`: typesafe/bundle/nothing has no published version\n"
    );
}

#[test]
fn test_deploy_gives_up_following_after_the_wait_timeout() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let home = TempDir::new("lockstep-deploy-home");
    let new = s.compatible(0);
    s.never_start(&new);

    let ran = deploy(
        &s,
        &v,
        &home,
        &["--wait-timeout", "1", "visualizer:1.1.0"],
        WITH_SECRET,
    );
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    let id = deployment_id(&ran);
    assert_eq!(
        ran.stderr,
        format!(
            "lockstep deploy: deployment {id} is still in flight after 1s (--wait-timeout); its \
             events: http://{}/deployments/{id}\n",
            v.client.addr
        )
    );
    // It showed what happened meanwhile: the new instances asked for, never started.
    assert!(
        event_lines(&ran).contains(&"Deploying - 3 old instance vs 0 new instance".to_owned()),
        "{ran:#?}"
    );
}

#[test]
fn test_deploy_reads_the_secret_from_settings_conf_nested_and_dotted() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);

    // Nested, in the file CONDUCTR_CUSTOM_SETTINGS_FILE names.
    let home = TempDir::new("lockstep-deploy-home");
    let custom = home.path().join("custom.conf");
    std::fs::write(
        &custom,
        format!("conductr {{\n  continuous-delivery {{\n    bintray-webhook-secret = {SECRET}\n  }}\n}}\n"),
    )
    .unwrap();
    let ran = deploy(
        &s,
        &v,
        &home,
        &["--no-wait", "visualizer:1.1.0"],
        &[("CONDUCTR_CUSTOM_SETTINGS_FILE", custom.to_str().unwrap())],
    );
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    // --no-wait: the id, alone.
    let id = ran.stdout.trim_end().to_owned();
    assert_eq!(ran.stdout, format!("{id}\n"));
    assert_uuid_v4(&id);
    assert_eq!(
        event_types(&ended(&v, &id)).last().map(String::as_str),
        Some("deploymentSuccess")
    );

    // Dotted, in ~/.conductr/settings.conf.
    let home = TempDir::new("lockstep-deploy-home");
    std::fs::create_dir(home.path().join(".conductr")).unwrap();
    std::fs::write(
        home.path().join(".conductr/settings.conf"),
        format!("conductr.continuous-delivery.bintray-webhook-secret = \"{SECRET}\"\n"),
    )
    .unwrap();
    let ran = deploy(&s, &v, &home, &["visualizer:1.2.0"], &[]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(
        event_lines(&ran).last().map(String::as_str),
        Some("Success")
    );
}

#[test]
fn test_deploy_without_a_secret_says_which_file_to_edit_and_sends_nothing() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let home = TempDir::new("lockstep-deploy-home");
    let settings = home.path().join(".conductr/settings.conf");

    let ran = deploy(&s, &v, &home, &["visualizer:1.1.0"], &[]);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{ran:#?}");
    assert!(
        lines[0].contains(&settings.display().to_string()),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        format!("Add this line to {}:", settings.display())
    );
    assert!(
        lines[2].starts_with("  conductr.continuous-delivery.bintray-webhook-secret = "),
        "{lines:?}"
    );
    assert_eq!(ran.stdout, "");
    assert!(
        v.client
            .get("/deployments")
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
}
