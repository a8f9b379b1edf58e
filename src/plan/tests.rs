use super::*;

fn sample() -> Plan {
    let mut plan = Plan::new(
        "test",
        "install",
        "10.0.0.1",
        vec![("PASS".into(), "pa$$w0rd\"`x".into())],
    );
    plan.push(Step::place_rootfs(Role::Master));
    plan.push(Step::write_file(
        "conf",
        "/etc/demo.conf",
        FileContent::text("a: 1\n"),
        0o644,
    ));
    plan.push(Step::write_secret_file(
        "secret",
        "/etc/demo.env",
        FileContent::text("TOKEN=\"s3cret\"\n"),
        0o600,
    ));
    plan.push(
        Step::run(
            "run",
            "run the demo",
            &[
                "/bin/demo",
                "--flag=a b",
                "it's",
                "$HOME",
                "line\nbreak",
                "s3cret",
            ],
            Check::Creates {
                path: "/var/lib/demo".into(),
            },
        )
        .with_env(vec![("PASS".into(), "pa$$w0rd\"`x".into())])
        .with_cwd("/tmp")
        .with_redacted(&[5]),
    );
    plan.push(Step::restart_if_changed(
        "restart",
        "demo.service",
        &["conf", "secret"],
    ));
    plan.push(Step::read_file(
        "read",
        "/var/lib/demo/token",
        Capture::secret("demo.token"),
    ));
    plan
}

#[test]
fn quote_shows_values_exactly() {
    assert_eq!(quote("plain-1.2/x:y=z"), "plain-1.2/x:y=z");
    assert_eq!(quote(""), "''");
    assert_eq!(quote("a b"), "'a b'");
    assert_eq!(quote("pa$$w0rd\"`x"), "'pa$$w0rd\"`x'");
    assert_eq!(quote("it's"), "'it'\\''s'");
    assert_eq!(quote("a\nb\\'"), "$'a\\nb\\\\\\''");
    assert_eq!(quote("\u{1b}"), "$'\\u001b'");
    assert_eq!(quote_env("K", "v v"), "K='v v'");
}

#[test]
fn dry_run_lists_every_step() {
    let text = sample().render_dry_run();
    let expected = r#"plan: test install on 10.0.0.1 (6 steps)
env (for templates):
  PASS='pa$$w0rd"`x'
 1. [place-rootfs] place the image rootfs for a master
      place rootfs: layout for master
      idempotent: skipped when content and mode already match
 2. [conf] write /etc/demo.conf
      file: /etc/demo.conf mode 0644 (5 bytes)
      | a: 1
      idempotent: skipped when content and mode already match
 3. [secret] write /etc/demo.env
      file: /etc/demo.env mode 0600 (15 bytes)
      (secret content not shown)
      idempotent: skipped when content and mode already match
 4. [run] run the demo
      run: /bin/demo '--flag=a b' 'it'\''s' '$HOME' $'line\nbreak' <redacted 6 bytes>
      env: PASS='pa$$w0rd"`x'
      cwd: /tmp
      idempotent: skipped when /var/lib/demo exists
 5. [restart] restart demo.service if its files changed
      run: systemctl restart demo.service
      idempotent: runs only when conf, secret changed and demo.service is active
 6. [read] read back /var/lib/demo/token
      read: /var/lib/demo/token as demo.token (secret)
      idempotent: read-only, always runs
"#;
    assert_eq!(text, expected, "\n{text}");
    assert!(!text.contains("s3cret"));
}

#[test]
fn plans_round_trip_through_json() {
    let plan = sample();
    let json = plan.to_json();
    assert!(json.contains("\"kind\": \"write_file\""), "{json}");
    assert_eq!(Plan::from_json(&json).unwrap(), plan);
    assert_eq!(plan.captures().len(), 1);
    assert_eq!(plan.step("run").unwrap().title, "run the demo");
}

#[test]
fn validate_reports_every_problem() {
    let mut plan = Plan::new("t", "install", "h", vec![]);
    plan.push(Step::restart_if_changed("r", "u", &["later"]));
    plan.push(Step::run("later", "x", &[], Check::ReadOnly));
    plan.push(Step::read_file("later", "/a", Capture::public("k")));
    plan.push(Step::read_file("b", "/b", Capture::public("k")));
    let problems = plan.validate().unwrap_err();
    assert_eq!(
        problems,
        vec![
            PlanError::UnknownStep {
                step: "r".into(),
                missing: "later".into()
            },
            PlanError::EmptyArgv {
                step: "later".into()
            },
            PlanError::DuplicateId { id: "later".into() },
            PlanError::DuplicateCapture { key: "k".into() },
        ]
    );
    assert!(sample().validate().is_ok());
}

#[test]
fn a_query_check_needs_an_argv_and_shows_it_quoted() {
    let mut plan = Plan::new("t", "remove-node", "h", vec![]);
    plan.push(Step::run(
        "q",
        "gated",
        &["true"],
        Check::IfOutput { argv: vec![] },
    ));
    assert_eq!(
        plan.validate().unwrap_err(),
        vec![PlanError::EmptyArgv { step: "q".into() }]
    );
    let mut plan = Plan::new("t", "remove-node", "h", vec![]);
    plan.push(Step::run(
        "q",
        "gated",
        &["true"],
        Check::IfOutput {
            argv: vec!["kubectl".into(), "get".into(), "node".into(), "a b".into()],
        },
    ));
    plan.validate().unwrap();
    let text = plan.render_dry_run();
    assert!(
        text.contains("idempotent: runs only when `kubectl get node 'a b'` prints something"),
        "{text}"
    );
}
