use super::*;

fn config(path: &str, strategy: Strategy, data: &str) -> ConfigDoc {
    ConfigDoc {
        name: "c".into(),
        path: path.into(),
        image: None,
        strategy,
        data: data.into(),
    }
}

fn originals(files: &[(&str, &str, u32)]) -> BTreeMap<String, Original> {
    files
        .iter()
        .map(|(p, t, m)| {
            (
                p.to_string(),
                Original {
                    content: t.as_bytes().to_vec(),
                    mode: *m,
                },
            )
        })
        .collect()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn configs_apply_as_sealos_dumps_them() {
    let base = "a: 1\nnested:\n  keep: x\n  over: y\n---\nb: 2\n";
    let merged = apply_config(
        Some(base),
        &config(
            "etc/v.yaml",
            Strategy::Merge,
            "nested:\n  over: z\nlist: [1]\n",
        ),
    )
    .unwrap();
    let docs: Vec<Value> = merged
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{merged}");
    assert_eq!(docs[0]["nested"]["keep"], Value::from("x"));
    assert_eq!(docs[0]["nested"]["over"], Value::from("z"));
    assert_eq!(docs[1]["b"], Value::from(2));
    assert_eq!(docs[1]["list"][0], Value::from(1));
    let c = |s| config("f", s, "new");
    assert_eq!(
        apply_config(Some("old"), &c(Strategy::Override)).unwrap(),
        "new"
    );
    assert_eq!(
        apply_config(Some("old"), &c(Strategy::Insert)).unwrap(),
        "new\nold"
    );
    assert_eq!(
        apply_config(Some("old"), &c(Strategy::Append)).unwrap(),
        "old\nnew"
    );
    assert_eq!(apply_config(None, &c(Strategy::Append)).unwrap(), "\nnew");
    assert_eq!(
        apply_config(None, &config("f", Strategy::Merge, "a: 1\n")).unwrap(),
        "a: 1\n"
    );
    let err = apply_config(Some("- a\n"), &config("f", Strategy::Merge, "a: 1")).unwrap_err();
    assert!(err.contains("mapping"), "{err}");
}

#[test]
fn a_host_gets_configs_then_rendered_templates() {
    let files = originals(&[
        (
            "manifests/admin.yaml.tmpl",
            "ns: {{ default \"kd\" .NAMESPACE }}\nmode: {{ .SEALOS_SYS_RUN_MODE }}\n",
            0o644,
        ),
        ("etc/app.yaml", "a: 1\n", 0o600),
        (
            "scripts/init.sh.tmpl",
            "#!/bin/bash\necho '{{ .PASS }}'\n",
            0o755,
        ),
    ]);
    let merge = config("etc/app.yaml", Strategy::Merge, "b: 2\n");
    let over = config(
        "manifests/admin.yaml",
        Strategy::Override,
        "overridden by the template",
    );
    let e = env(&[
        ("SEALOS_SYS_RUN_MODE", "master,registry"),
        ("PASS", "pa$$`x`'\""),
    ]);
    let out = files_for(&files, &[&merge, &over], &e).unwrap();
    let got: Vec<(&str, &str, u32)> = out
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_str(), f.mode))
        .collect();
    assert_eq!(
        got,
        [
            ("etc/app.yaml", "a: 1\nb: 2\n", 0o600),
            (
                "manifests/admin.yaml",
                "ns: kd\nmode: master,registry\n",
                0o644
            ),
            ("scripts/init.sh", "#!/bin/bash\necho 'pa$$`x`'\"'\n", 0o755),
        ]
    );
}

#[test]
fn every_problem_names_its_file_and_place() {
    let mut files = originals(&[
        ("manifests/a.yaml.tmpl", "x: 1\ny: {{ .MISSING }}\n", 0o644),
        ("etc/b.tmpl", "{{ toJsonish . }}", 0o644),
    ]);
    files.insert(
        "etc/bin.tmpl".into(),
        Original {
            content: vec![0xff, 0xfe],
            mode: 0o644,
        },
    );
    let bad = config("etc/c.yaml", Strategy::Merge, "[not a mapping");
    let err = files_for(&files, &[&bad], &env(&[])).unwrap_err();
    let all = err.join("\n");
    assert!(
        all.contains("manifests/a.yaml.tmpl:2:4: MISSING is not defined"),
        "{all}"
    );
    assert!(
        all.contains("etc/b.tmpl:1:4: function \"toJsonish\" not defined"),
        "{all}"
    );
    assert!(all.contains("etc/bin.tmpl: not UTF-8"), "{all}");
    assert!(
        all.contains("Config \"c\" (etc/c.yaml): spec.data"),
        "{all}"
    );
}

#[test]
fn configs_match_their_image_by_name_or_reference() {
    let mut c = config("f", Strategy::Override, "x");
    assert!(matches_image(&c, "docker.io/labring/calico:v3.24.1"));
    c.image = Some("labring/calico:v3.24.1".into());
    assert!(matches_image(&c, "docker.io/labring/calico:v3.24.1"));
    assert!(!matches_image(&c, "docker.io/labring/helm:v3.8.2"));
}

/// A layer's tar holding `files`, and its descriptor.
fn layer(files: &[(&str, &str)]) -> (Vec<u8>, Descriptor) {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let digest = crate::digest::sha256_digest(&bytes);
    let desc = Descriptor::new(
        oci_spec::image::MediaType::ImageLayer,
        bytes.len() as u64,
        digest,
    );
    (bytes, desc)
}

#[test]
fn layers_streamed_from_a_registry_are_used_only_when_they_match_their_digest() {
    let (first, first_desc) = layer(&[("etc/a.yaml.tmpl", "a: {{ .X }}"), ("bin/k3s", "elf")]);
    let (mut second, second_desc) = layer(&[("etc/b.yaml.tmpl", "b")]);
    let wanted = |p: &str| template::is_template(p);
    // One stream, the blobs one after the other, as the registry reader gives them.
    let mut joined = first.clone();
    joined.extend(&second);
    let mut stream = io::Cursor::new(joined);
    let mut files = Originals::default();
    let listed = read_remote(&mut stream, &first_desc, &mut files, &wanted, true).unwrap();
    assert_eq!(listed.unwrap(), ["etc/a.yaml.tmpl", "bin/k3s"]);
    read_remote(&mut stream, &second_desc, &mut files, &wanted, false).unwrap();
    assert_eq!(
        files.files.keys().collect::<Vec<_>>(),
        ["etc/a.yaml.tmpl", "etc/b.yaml.tmpl"]
    );

    // The same size, one byte changed: refused, naming the layer.
    let last = second.len() - 1;
    second[last] ^= 1;
    let mut stream = io::Cursor::new(second);
    let error = read_remote(
        &mut stream,
        &second_desc,
        &mut Originals::default(),
        &wanted,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(&second_desc.digest().to_string())
            && error.contains("nothing of it was used"),
        "{error}"
    );
}

#[test]
fn a_host_whose_installer_cannot_read_the_originals_leaves_them_to_the_operators_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (bytes, desc) = layer(&[("etc/a.yaml.tmpl", "a: {{ .X }}"), ("bin/k3s", "elf")]);
    store.put_bytes(&bytes).unwrap();
    // An installer that is not on "the host" (this machine): its call fails,
    // as that of an installer without `originals` does.
    let image = AppliedImage {
        name: "edge/k3s:1".into(),
        digest: "sha256:0".into(),
        layers: vec![desc.clone()],
        info: crate::runtime::ImageInfo::new("k3s", "v1.30.2+k3s1").unwrap(),
        arch: "amd64".into(),
        installer: Some(desc),
        host_files: BTreeMap::new(),
        deferred_files: None,
        app_trees: false,
        pull_from: None,
    };
    let deferred = Deferred {
        configs: Vec::new(),
        envs: [("h1".to_string(), env(&[("X", "1")]))].into(),
    };
    let log = crate::progress::Recorder::default();
    let local = crate::transport::Local::new();
    let files = from_host(&store, &local, &image, &deferred, &log).unwrap();
    let made: Vec<(&str, &str)> = files["h1"]
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_str()))
        .collect();
    assert_eq!(made, [("etc/a.yaml", "a: 1")]);
    let said = log.0.lock().unwrap().join("\n");
    assert!(
        said.contains("localhost: its installer cannot read the templates of image edge/k3s:1 (")
            && said.contains("); reading the layers that hold them from the registry"),
        "{said}"
    );
}
