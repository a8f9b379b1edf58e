use super::*;

fn conf(text: &str) -> RegistriesConf {
    RegistriesConf::parse("test.conf", text).unwrap()
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// The endpoints as `name` strings, mirrors marked with `~`.
fn order(c: &RegistriesConf, name: &str) -> Vec<String> {
    c.sources(&reference(name))
        .unwrap()
        .iter()
        .map(|e| format!("{}{}", if e.mirror { "~" } else { "" }, e.reference))
        .collect()
}

#[test]
fn mirrors_come_first_in_file_order_then_the_origin() {
    let c = conf(
        r#"
[[registry]]
location = "10.0.0.1:5000"
[[registry.mirror]]
location = "10.0.0.2:5001"
[[registry.mirror]]
location = "cache.local/mirrors"
insecure = true
"#,
    );
    assert_eq!(
        order(&c, "10.0.0.1:5000/edge/k3s:1.30"),
        [
            "~10.0.0.2:5001/edge/k3s:1.30",
            "~cache.local/mirrors/edge/k3s:1.30",
            "10.0.0.1:5000/edge/k3s:1.30"
        ]
    );
    let sources = c
        .sources(&reference("10.0.0.1:5000/edge/k3s:1.30"))
        .unwrap();
    assert_eq!(
        sources.iter().map(|e| e.insecure).collect::<Vec<_>>(),
        [false, true, false]
    );
}

#[test]
fn an_image_no_table_matches_is_pulled_where_its_name_says() {
    let c = conf(
        "[[registry]]\nlocation = \"10.0.0.1:5000\"\n[[registry.mirror]]\nlocation = \"m:1\"\n",
    );
    assert_eq!(order(&c, "10.0.0.1:5001/app:1"), ["10.0.0.1:5001/app:1"]);
    // A bare host prefix does not match another port of that host.
    let c =
        conf("[[registry]]\nlocation = \"10.0.0.1\"\n[[registry.mirror]]\nlocation = \"m:1\"\n");
    assert_eq!(order(&c, "10.0.0.1:5001/app:1"), ["10.0.0.1:5001/app:1"]);
    // Nor a longer host name.
    assert_eq!(
        order(&conf(""), "docker.io/library/nginx:1"),
        ["docker.io/library/nginx:1"]
    );
}

#[test]
fn the_longest_prefix_wins_and_location_remaps_the_prefix() {
    let c = conf(
        r#"
[[registry]]
location = "example.com"
[[registry.mirror]]
location = "all-of-example.local"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"
[[registry.mirror]]
location = "mirror-0.local/mirror-for-foo"
"#,
    );
    assert_eq!(
        order(&c, "example.com/foo/myimage:latest"),
        [
            "~mirror-0.local/mirror-for-foo/myimage:latest",
            "internal.example.net/bar/myimage:latest"
        ]
    );
    assert_eq!(
        order(&c, "example.com/other:2"),
        ["~all-of-example.local/other:2", "example.com/other:2"]
    );
    // `example.com/foo` is not a prefix of `example.com/foobar`.
    assert_eq!(
        order(&c, "example.com/foobar:2"),
        ["~all-of-example.local/foobar:2", "example.com/foobar:2"]
    );
}

#[test]
fn pull_from_mirror_and_mirror_by_digest_only_choose_by_tag_or_digest() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let c = conf(
        r#"
[[registry]]
location = "r.io"
[[registry.mirror]]
location = "by-digest.local"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "by-tag.local"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "both.local"

[[registry]]
location = "d.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "d-mirror.local"
"#,
    );
    assert_eq!(
        order(&c, "r.io/app:1"),
        ["~by-tag.local/app:1", "~both.local/app:1", "r.io/app:1"]
    );
    assert_eq!(
        order(&c, &format!("r.io/app@{digest}")),
        [
            format!("~by-digest.local/app@{digest}"),
            format!("~both.local/app@{digest}"),
            format!("r.io/app@{digest}")
        ]
    );
    assert_eq!(order(&c, "d.io/app:1"), ["d.io/app:1"]);
    assert_eq!(
        order(&c, &format!("d.io/app@{digest}")),
        [
            format!("~d-mirror.local/app@{digest}"),
            format!("d.io/app@{digest}")
        ]
    );
}

#[test]
fn a_wildcard_prefix_applies_mirrors_to_subdomains_without_rewriting() {
    let c = conf(
        r#"
[[registry]]
prefix = "*.example.com"
insecure = true
[[registry.mirror]]
location = "cache.local:5000"
"#,
    );
    assert_eq!(
        order(&c, "a.b.example.com/team/app:1"),
        ["~cache.local:5000/team/app:1", "a.b.example.com/team/app:1"]
    );
    assert!(c.sources(&reference("a.b.example.com/team/app:1")).unwrap()[1].insecure);
    assert_eq!(order(&c, "example.com/app:1"), ["example.com/app:1"]);
}

#[test]
fn a_blocked_registry_is_refused_naming_its_prefix() {
    let c = conf("[[registry]]\nlocation = \"bad.io\"\nblocked = true\n");
    let err = c.sources(&reference("bad.io/app:1")).unwrap_err();
    assert!(matches!(err, MirrorsError::Blocked { .. }));
    assert!(err.to_string().contains("\"bad.io\""), "{err}");
}

#[test]
fn a_drop_in_replaces_a_table_with_the_same_prefix_whole_and_adds_others() {
    let main = conf("[[registry]]\nlocation = \"r.io\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"old.local\"\n");
    let drop_in = conf("[[registry]]\nlocation = \"r.io\"\n[[registry.mirror]]\nlocation = \"new.local\"\n[[registry]]\nlocation = \"s.io\"\nblocked = true\n");
    let merged = main.merge(drop_in);
    assert_eq!(
        order(&merged, "r.io/app:1"),
        ["~new.local/app:1", "r.io/app:1"]
    );
    assert!(!merged.sources(&reference("r.io/app:1")).unwrap()[1].insecure);
    assert!(merged.sources(&reference("s.io/app:1")).is_err());
}

#[test]
fn version_1_insecure_and_block_lists_are_read() {
    let c = conf("[registries.search]\nregistries = ['docker.io']\n[registries.insecure]\nregistries = ['plain.local:5000']\n[registries.block]\nregistries = ['bad.io']\n");
    assert!(c.sources(&reference("plain.local:5000/app:1")).unwrap()[0].insecure);
    assert!(c.sources(&reference("bad.io/app:1")).is_err());
}

#[test]
fn aliases_and_search_registries_are_left_alone() {
    let c = conf("unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"enforcing\"\n[aliases]\n\"nginx\" = \"docker.io/library/nginx\"\n");
    assert!(c.registries.is_empty());
}

#[test]
fn bad_files_are_refused_with_the_file_and_the_fix() {
    let bad = |text: &str| {
        RegistriesConf::parse("/etc/x.conf", text)
            .unwrap_err()
            .to_string()
    };
    let e = bad("[[registry]\n");
    assert!(e.starts_with("/etc/x.conf: not a registries.conf"), "{e}");
    let e = bad("[[registry]]\nlocation = \"https://r.io\"\n");
    assert!(
        e.contains("URL scheme") && e.contains("insecure = true"),
        "{e}"
    );
    let e = bad("[[registry]]\nprefix = \"r.io/app\"\n");
    assert!(e.contains("location is empty"), "{e}");
    let e = bad("[[registry]]\ninsecure = true\n");
    assert!(e.contains("neither prefix nor location"), "{e}");
    let e = bad("[[registry]]\nlocation = \"r.io\"\n[[registry]]\nlocation = \"r.io/\"\n");
    assert!(e.contains("defined twice"), "{e}");
    let e = bad("[[registry]]\nlocation = \"r.io\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"\n");
    assert!(e.contains("sometimes"), "{e}");
    let e = bad("[[registry]]\nlocation = \"r.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"all\"\n");
    assert!(e.contains("mirror-by-digest-only"), "{e}");
    let e =
        bad("[registries.insecure]\nregistries = ['a.io']\n[[registry]]\nlocation = \"r.io\"\n");
    assert!(e.contains("mixes"), "{e}");
    let e = bad("[[registry]]\nprefix = \"*.example.com/foo\"\n");
    assert!(e.contains("wildcard"), "{e}");
}

#[test]
fn a_mirror_location_without_a_host_is_an_error_not_docker_hub() {
    let c =
        conf("[[registry]]\nlocation = \"r.io\"\n[[registry.mirror]]\nlocation = \"mirrorhost\"\n");
    let err = c.sources(&reference("r.io/app:1")).unwrap_err();
    assert!(err.to_string().contains("registry host"), "{err}");
}

#[test]
fn hosts_fetching_blobs_by_digest_get_the_digest_pull_mirrors_without_a_tag() {
    let c = conf(
        r#"
[[registry]]
location = "r.io"
[[registry.mirror]]
location = "by-tag.local"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "by-digest.local/ns"
pull-from-mirror = "digest-only"
"#,
    );
    let names: Vec<String> = c
        .repository_sources("r.io", "edge/k3s")
        .unwrap()
        .iter()
        .map(|e| e.reference.to_string())
        .collect();
    assert_eq!(names, ["by-digest.local/ns/edge/k3s", "r.io/edge/k3s"]);
}

#[test]
fn a_push_or_login_takes_its_registrys_insecure_and_blocked_but_no_mirror_or_location() {
    let c = conf(
        r#"
[[registry]]
location = "10.0.0.1:5000"
insecure = true
[[registry.mirror]]
location = "10.0.0.2:5001"
[[registry]]
prefix = "10.0.0.3:5000/team"
location = "10.0.0.4:5000/elsewhere"
[[registry]]
location = "bad.io"
blocked = true
"#,
    );
    // A push names its repository, a login only the registry.
    assert_eq!(c.destination_insecure("10.0.0.1:5000/edge/k3s"), Ok(true));
    assert_eq!(c.destination_insecure("10.0.0.1:5000"), Ok(true));
    assert_eq!(c.destination_insecure("10.0.0.1:5001/edge/k3s"), Ok(false));
    assert_eq!(c.destination_insecure("10.0.0.3:5000/team/app"), Ok(false));
    assert_eq!(c.destination_insecure("unlisted.io/app"), Ok(false));
    let err = c.destination_insecure("bad.io/app").unwrap_err();
    assert!(matches!(err, MirrorsError::BlockedDestination { .. }));
    assert!(
        err.to_string().contains("\"bad.io\"") && err.to_string().contains("no push"),
        "{err}"
    );
}
