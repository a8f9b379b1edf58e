//! The two content transforms an installer applies on the host, kept pure so
//! that operator-side tests prove them byte for byte.
//!
//! Templates are deliberately small: `${NAME}` and `${NAME:-default}` are
//! replaced by the cluster env, `$${` writes a literal `${`, and every other
//! character (including a lone `$`) is copied as is. A value is inserted
//! verbatim and never re-scanned, so `pa$$w0rd` stays `pa$$w0rd`.

use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template uses ${{{}}} but the cluster env has no such variable (set it with -e {}=VALUE or give a default: ${{{}:-default}})", names.join("}, ${"), names[0], names[0])]
    Undefined { names: Vec<String> },
    #[error("unclosed ${{ at byte {offset} of the template")]
    Unclosed { offset: usize },
    #[error("{what} is not valid YAML: {reason}")]
    Yaml { what: &'static str, reason: String },
    #[error("{what} must be a YAML mapping, found {found}")]
    NotMapping {
        what: &'static str,
        found: &'static str,
    },
}

/// Renders `${NAME}` / `${NAME:-default}` with `env`. Reports every undefined
/// name at once.
pub fn render_template(template: &str, env: &[(String, String)]) -> Result<String, TemplateError> {
    render_with(template, env, &mut |value, _| value.to_string())
}

/// Renders a YAML template (`${NAME}` as [`render_template`] reads them)
/// so that every value from `env` is one YAML scalar, whatever it holds:
/// a newline, `: `, quotes, `#`, `{{` or `$` can neither add keys nor end
/// the string. Each placeholder is first replaced by a token, the document
/// parsed, the values put into the parsed scalars (where the token was),
/// and the result serialized by serde_yaml_ng. A placeholder that is a
/// whole unquoted scalar (`port: ${PORT}`) takes the value's YAML type when
/// it is a one-line boolean or number, as pasting did; anything else is a
/// string. Defaults (`${NAME:-default}`) are the template's own text.
pub fn render_yaml_template(
    template: &str,
    env: &[(String, String)],
) -> Result<String, TemplateError> {
    let mut nonce = 0;
    while template.contains(&format!("sealrs{nonce}v")) {
        nonce += 1;
    }
    let mut values: Vec<(String, bool)> = Vec::new();
    let tokened = render_with(template, env, &mut |value, quoted| {
        values.push((value.to_string(), quoted));
        format!("sealrs{nonce}v{}x", values.len() - 1)
    })?;
    let token = |i: usize| format!("sealrs{nonce}v{i}x");
    let mut doc: Value = serde_yaml_ng::from_str(&tokened).map_err(|e| TemplateError::Yaml {
        what: "the rendered template",
        reason: e.to_string(),
    })?;
    let fill = |text: &str| -> Value {
        if let Some(i) = (0..values.len()).find(|&i| text == token(i)) {
            let (value, quoted) = &values[i];
            if !quoted && !value.contains('\n') {
                if let Ok(v @ (Value::Bool(_) | Value::Number(_))) = serde_yaml_ng::from_str(value)
                {
                    return v;
                }
            }
            return Value::String(value.clone());
        }
        let mut out = text.to_string();
        // Highest index first: `…v1x` is not inside `…v10x`, but be plain.
        for i in (0..values.len()).rev() {
            out = out.replace(&token(i), &values[i].0);
        }
        Value::String(out)
    };
    fill_values(&mut doc, &fill);
    if doc.is_null() {
        return Ok(String::new());
    }
    serde_yaml_ng::to_string(&doc).map_err(|e| TemplateError::Yaml {
        what: "the rendered template",
        reason: e.to_string(),
    })
}

/// Puts the values back in every string scalar and key of `doc`.
fn fill_values(doc: &mut Value, fill: &dyn Fn(&str) -> Value) {
    match doc {
        Value::String(text) => *doc = fill(text),
        Value::Sequence(items) => items.iter_mut().for_each(|v| fill_values(v, fill)),
        Value::Mapping(map) => {
            let old = std::mem::take(map);
            for (mut k, mut v) in old {
                fill_values(&mut k, fill);
                fill_values(&mut v, fill);
                map.insert(k, v);
            }
        }
        Value::Tagged(tagged) => fill_values(&mut tagged.value, fill),
        _ => {}
    }
}

/// [`render_template`] with what a value becomes decided by `subst` (given
/// the value and whether the placeholder stands between a pair of quotes).
fn render_with(
    template: &str,
    env: &[(String, String)],
    subst: &mut dyn FnMut(&str, bool) -> String,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut undefined: Vec<String> = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            offset += i + 3;
            continue;
        }
        if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err(TemplateError::Unclosed { offset: offset + i });
            };
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let consumed = 2 + end + 1;
            let quoted = match (out.chars().last(), after[consumed..].chars().next()) {
                (Some(a), Some(b)) => a == b && (a == '"' || a == '\''),
                _ => false,
            };
            match (env.iter().find(|(k, _)| k == name), default) {
                (Some((_, v)), _) => out.push_str(&subst(v, quoted)),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    if !undefined.iter().any(|u| u == name) {
                        undefined.push(name.to_string());
                    }
                }
            }
            rest = &after[consumed..];
            offset += i + consumed;
            continue;
        }
        out.push('$');
        rest = &after[1..];
        offset += i + 1;
    }
    out.push_str(rest);
    if undefined.is_empty() {
        Ok(out)
    } else {
        Err(TemplateError::Undefined { names: undefined })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn parse_mapping(text: &str, what: &'static str) -> Result<Mapping, TemplateError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| TemplateError::Yaml {
        what,
        reason: e.to_string(),
    })?;
    match value {
        Value::Null => Ok(Mapping::new()),
        Value::Mapping(m) => Ok(m),
        other => Err(TemplateError::NotMapping {
            what,
            found: kind(&other),
        }),
    }
}

/// Merges `overlay` into `base`: nested mappings key by key, anything else
/// in the overlay replaces.
pub fn merge_mappings(base: &mut Mapping, overlay: Mapping) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge_mappings(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Merges the YAML mapping `overlay` over `base` (missing base = empty):
/// nested mappings merge key by key, anything else in the overlay replaces.
pub fn merge_yaml(base: Option<&str>, overlay: &str) -> Result<String, TemplateError> {
    let mut merged = match base {
        Some(text) => parse_mapping(text, "the image's config")?,
        None => Mapping::new(),
    };
    merge_mappings(&mut merged, parse_mapping(overlay, "the overlay")?);
    if merged.is_empty() {
        return Ok(String::new());
    }
    serde_yaml_ng::to_string(&merged).map_err(|e| TemplateError::Yaml {
        what: "the merged config",
        reason: e.to_string(),
    })
}

/// [`merge_yaml`], keeping of the base only the top-level keys in `keys`; a
/// key written `KEY+` (k3s' form that appends to an earlier value) counts
/// as `KEY`. The overlay is kept whole.
pub fn merge_yaml_keeping(
    base: Option<&str>,
    overlay: &str,
    keys: &[String],
) -> Result<String, TemplateError> {
    let Some(text) = base else {
        return merge_yaml(None, overlay);
    };
    let mut mapping = parse_mapping(text, "the image's config")?;
    mapping.retain(|k, _| {
        k.as_str()
            .map(|k| k.strip_suffix('+').unwrap_or(k))
            .is_some_and(|k| keys.iter().any(|known| known == k))
    });
    let kept = serde_yaml_ng::to_string(&mapping).map_err(|e| TemplateError::Yaml {
        what: "the image's config",
        reason: e.to_string(),
    })?;
    merge_yaml(Some(&kept), overlay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_keys_drops_the_others_of_the_base_but_none_of_the_overlay() {
        let keys = ["node-label", "kubelet-arg"].map(String::from);
        let base = "node-label:\n  - a=b\nkubelet-arg+:\n  - x=y\ncluster-init: true\ndisable:\n  - traefik\n";
        let out = merge_yaml_keeping(Some(base), "node-ip: 10.0.0.2\n", &keys).unwrap();
        assert_eq!(
            out,
            "node-label:\n- a=b\nkubelet-arg+:\n- x=y\nnode-ip: 10.0.0.2\n"
        );
        assert_eq!(
            merge_yaml_keeping(None, "node-ip: 10.0.0.2\n", &keys).unwrap(),
            "node-ip: 10.0.0.2\n"
        );
        assert!(merge_yaml_keeping(Some("- a\n"), "", &keys).is_err());
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_names_defaults_and_escapes() {
        let e = env(&[("PASS", "pa$$w0rd\"`x"), ("CIDR", "10.42.0.0/16")]);
        let out = render_template(
            "p: ${PASS}\nc: ${CIDR}\nd: ${NOPE:-dflt}\nlit: $${PASS} $5 $",
            &e,
        )
        .unwrap();
        assert_eq!(
            out,
            "p: pa$$w0rd\"`x\nc: 10.42.0.0/16\nd: dflt\nlit: ${PASS} $5 $"
        );
    }

    /// A value with newlines, `: `, quotes, `{{`, `$` and `#` rendered into
    /// a YAML template reads back as exactly that one string, in a plain
    /// scalar, in quotes and inside a longer string; no key is added.
    #[test]
    fn yaml_template_values_are_one_scalar_each() {
        let evil =
            "x\ndisable-apiserver: true\ntoken: \"s'e\" # c {{ .Values }} ${HOME} $$\n- a: b";
        let e = env(&[("V", evil), ("PORT", "6443"), ("ON", "true")]);
        let template = "plain: ${V}\nsingle: '${V}'\ndouble: \"${V}\"\nlonger: --arg=${V}!\nlist:\n- ${V}\nport: ${PORT}\nquoted-port: '${PORT}'\non: ${ON}\ndefault: ${NOPE:-d}\n";
        let out = render_yaml_template(template, &e).unwrap();
        let v: Value = serde_yaml_ng::from_str(&out).unwrap();
        let map = v.as_mapping().unwrap();
        let keys: Vec<&str> = map.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "plain",
                "single",
                "double",
                "longer",
                "list",
                "port",
                "quoted-port",
                "on",
                "default"
            ],
            "{out}"
        );
        for key in ["plain", "single", "double"] {
            assert_eq!(v[key], Value::String(evil.into()), "{key}: {out}");
        }
        assert_eq!(v["longer"], Value::String(format!("--arg={evil}!")));
        assert_eq!(v["list"][0], Value::String(evil.into()));
        assert_eq!(v["port"], Value::from(6443));
        assert_eq!(v["quoted-port"], Value::String("6443".into()));
        assert_eq!(v["on"], Value::Bool(true));
        assert_eq!(v["default"], Value::String("d".into()));
        // Pasting, as render_template does, would have added keys.
        let pasted: Value = serde_yaml_ng::from_str(&render_template("plain: ${V}\n", &e).unwrap())
            .unwrap_or(Value::Null);
        assert!(pasted.get("plain") != Some(&Value::String(evil.into())));
        // Undefined names are still all reported.
        assert!(matches!(
            render_yaml_template("a: ${A}\nb: ${B}\n", &[]),
            Err(TemplateError::Undefined { names }) if names == ["A", "B"]
        ));
    }

    #[test]
    fn values_are_not_rescanned() {
        let e = env(&[("A", "${B}"), ("B", "no")]);
        assert_eq!(render_template("${A}", &e).unwrap(), "${B}");
    }

    #[test]
    fn reports_every_undefined_name() {
        let err = render_template("${A} ${B} ${A}", &[]).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Undefined {
                names: vec!["A".into(), "B".into()]
            }
        );
        assert!(err.to_string().contains("${A}, ${B}"), "{err}");
        assert_eq!(
            render_template("x ${A", &[]).unwrap_err(),
            TemplateError::Unclosed { offset: 2 }
        );
    }

    #[test]
    fn merges_yaml_with_overlay_winning() {
        let base = "write-kubeconfig-mode: \"0644\"\ncluster-init: false\nkubelet-arg:\n- a=b\nnested:\n  keep: 1\n  over: 1\n";
        let overlay = "cluster-init: true\nnested:\n  over: 2\n";
        let out = merge_yaml(Some(base), overlay).unwrap();
        let v: Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(v["cluster-init"], Value::Bool(true));
        assert_eq!(v["write-kubeconfig-mode"], Value::String("0644".into()));
        assert_eq!(v["nested"]["keep"], Value::from(1));
        assert_eq!(v["nested"]["over"], Value::from(2));
        assert_eq!(v["kubelet-arg"][0], Value::String("a=b".into()));
        // Idempotent: merging the result again changes nothing.
        assert_eq!(merge_yaml(Some(&out), overlay).unwrap(), out);
    }

    #[test]
    fn merge_handles_missing_base_and_rejects_non_mappings() {
        assert_eq!(merge_yaml(None, "a: 1\n").unwrap(), "a: 1\n");
        assert_eq!(merge_yaml(Some(""), "").unwrap(), "");
        assert!(matches!(
            merge_yaml(Some("- a\n"), "a: 1"),
            Err(TemplateError::NotMapping {
                found: "a list",
                ..
            })
        ));
        assert!(matches!(
            merge_yaml(None, "a: [\n"),
            Err(TemplateError::Yaml { .. })
        ));
    }
}
