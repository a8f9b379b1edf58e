//! Image references in YAML: Kubernetes manifests (multi-document, any depth:
//! pods, deployments, cronjobs, initContainers, CRDs) and Helm chart values.
//!
//! We build a small tree from yaml-rust2's *event* parser rather than its
//! `Yaml` values because the events carry positions: every reference keeps the
//! line it came from, for errors that point at it. Scalars keep their source
//! text, so `tag: 1.10` stays `1.10` (a float would make it `1.1`).
//!
//! Two shapes are images:
//! - a key `image` whose value is a string (`image: nginx:1.25`);
//! - a mapping with `repository` and `tag` and/or `digest`, optionally
//!   `registry` (Bitnami and most charts), or with `registry` + `image` +
//!   `tag`/`digest` (ingress-nginx). Under a key `image`, `repository` alone is
//!   enough; its missing tag defaults to the chart's `appVersion`, as Helm
//!   charts do.
//!
//! A value with `{{` is a template that only Helm can render; the finder
//! reports it rather than guessing.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with the line (1-based) it starts on.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Scalar {
        text: String,
        null: bool,
        line: usize,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn scalar(&self) -> Option<&str> {
        match self {
            Node::Scalar {
                text, null: false, ..
            } => Some(text),
            _ => None,
        }
    }

    fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } => *line,
            Node::Seq(items) => items.first().map_or(0, Node::line),
            Node::Map(entries) => entries.first().map_or(0, |(k, _)| k.line()),
        }
    }
}

/// A syntax error: 1-based line and column, and the parser's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

enum Partial {
    Seq(Vec<Node>, usize),
    /// Entries, a key waiting for its value, anchor id.
    Map(Vec<(Node, Node)>, Option<Node>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Partial>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
}

impl Builder {
    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Partial::Seq(items, _)) => items.push(node),
            Some(Partial::Map(entries, key, _)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let null = style == TScalarStyle::Plain
                    && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                self.complete(
                    Node::Scalar {
                        text,
                        null,
                        line: mark.line(),
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Partial::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Partial::Map(Vec::new(), None, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Partial::Seq(items, anchor)) => self.complete(Node::Seq(items), anchor),
                Some(Partial::Map(entries, _, anchor)) => self.complete(Node::Map(entries), anchor),
                None => {}
            },
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node::Scalar {
                    text: String::new(),
                    null: true,
                    line: mark.line(),
                });
                self.complete(node, 0);
            }
            _ => {}
        }
    }
}

/// Parses every document of `text`.
pub(crate) fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        line: e.marker().line().max(1),
        column: e.marker().col() + 1,
        reason: e.info().to_string(),
    })?;
    Ok(builder.docs)
}

/// What the finder saw where an image should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// A reference as written (not yet parsed).
    Image { text: String, line: usize },
    /// A `{{ … }}` template.
    Templated { text: String, line: usize },
    /// An image map without tag or digest, and no appVersion to default to.
    MissingTag { repository: String, line: usize },
}

/// Walks `docs` and reports every image found, in document order.
/// `app_version` is the chart's `appVersion`, for image maps without a tag.
pub(crate) fn find_images(docs: &[Node], source: &str, app_version: Option<&str>) -> Vec<Finding> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    for doc in docs {
        walk(doc, false, &lines, app_version, &mut out);
    }
    out
}

fn walk(node: &Node, under_image: bool, lines: &[&str], app: Option<&str>, out: &mut Vec<Finding>) {
    match node {
        Node::Scalar { .. } => {}
        Node::Seq(items) => {
            for item in items {
                walk(item, false, lines, app, out);
            }
        }
        Node::Map(entries) => {
            if let Some(found) = image_map(entries, under_image, app) {
                out.push(found);
                return;
            }
            for (key, value) in entries {
                let is_image_key = key.scalar() == Some("image");
                if is_image_key {
                    match value {
                        Node::Scalar {
                            text,
                            null: false,
                            line,
                        } if !text.trim().is_empty() => {
                            let text = text.trim().to_string();
                            out.push(if text.contains("{{") {
                                Finding::Templated { text, line: *line }
                            } else {
                                Finding::Image { text, line: *line }
                            });
                            continue;
                        }
                        Node::Map(inner)
                            if inner.iter().any(|(k, _)| !matches!(k, Node::Scalar { .. })) =>
                        {
                            // `image: {{ .Values.x }}` unquoted parses as a flow
                            // mapping whose key is a mapping: a template.
                            let line = key.line();
                            let raw = lines.get(line.wrapping_sub(1)).copied().unwrap_or("");
                            let text = raw
                                .split_once("image:")
                                .map_or(raw, |(_, rest)| rest)
                                .trim()
                                .to_string();
                            out.push(Finding::Templated { text, line });
                            continue;
                        }
                        _ => {}
                    }
                }
                walk(value, is_image_key, lines, app, out);
            }
        }
    }
}

/// `{registry, repository, tag, digest}` (or ingress-nginx's `{registry,
/// image, tag, digest}`) → one finding.
fn image_map(entries: &[(Node, Node)], under_image: bool, app: Option<&str>) -> Option<Finding> {
    let get = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(name))
            .map(|(_, v)| v)
    };
    let has = |name: &str| get(name).is_some();
    let text_of = |name: &str| {
        get(name)
            .and_then(Node::scalar)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let (repo_key, repository) = match text_of("repository") {
        Some(r) => ("repository", r),
        None if has("registry") && (has("tag") || has("digest")) => ("image", text_of("image")?),
        None => return None,
    };
    if !(under_image || has("tag") || has("digest")) {
        return None;
    }
    let line = get(repo_key).map_or(0, Node::line);
    let registry = text_of("registry");
    let digest = text_of("digest");
    let mut tag = text_of("tag");
    if tag.is_none() && digest.is_none() {
        match app {
            Some(v) => tag = Some(v),
            None => {
                return Some(Finding::MissingTag {
                    repository: repository.to_string(),
                    line,
                })
            }
        }
    }
    let mut text = String::new();
    if let Some(r) = registry {
        text.push_str(r.trim_end_matches('/'));
        text.push('/');
    }
    text.push_str(repository);
    if let Some(t) = tag {
        text.push(':');
        text.push_str(t);
    }
    if let Some(d) = digest {
        text.push('@');
        text.push_str(d);
    }
    Some(if text.contains("{{") {
        Finding::Templated { text, line }
    } else {
        Finding::Image { text, line }
    })
}

/// `appVersion` of a Chart.yaml, if it has one.
pub(crate) fn app_version(chart_yaml: &str) -> Option<String> {
    let docs = parse(chart_yaml).ok()?;
    let Node::Map(entries) = docs.first()? else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.scalar() == Some("appVersion"))
        .and_then(|(_, v)| v.scalar())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(src: &str) -> Vec<Finding> {
        find_images(&parse(src).unwrap(), src, None)
    }

    fn img(text: &str, line: usize) -> Finding {
        Finding::Image {
            text: text.to_string(),
            line,
        }
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(images("image: a\n"), vec![img("a", 1)]);
        assert_eq!(images("\n\nx:\n  image: a\n"), vec![img("a", 4)]);
    }

    #[test]
    fn deployment_with_init_containers_and_sidecars() {
        let src = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: web
          image: \"nginx:1.25\"
          ports: [{containerPort: 80}]
        - {name: side, image: 'registry.k8s.io/pause:3.9'}
";
        assert_eq!(
            images(src),
            vec![
                img("busybox:1.36", 10),
                img("nginx:1.25", 13),
                img("registry.k8s.io/pause:3.9", 15)
            ]
        );
    }

    #[test]
    fn multi_document_cronjob_and_empty_documents() {
        let src = "\
---
apiVersion: v1
kind: Service
metadata: {name: s}
---
---
apiVersion: batch/v1
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - image: alpine:3.19
...
";
        assert_eq!(images(src), vec![img("alpine:3.19", 15)]);
    }

    #[test]
    fn null_and_empty_images_are_nothing() {
        assert!(images("image:\nother: {image: ~}\nx: {image: ''}\n").is_empty());
        assert!(images("kind: ConfigMap\ndata: {a: b}\n").is_empty());
        assert!(images("").is_empty());
    }

    #[test]
    fn values_maps_with_registry_repository_tag_digest() {
        let src = "\
image:
  registry: docker.io
  repository: bitnami/nginx
  tag: 1.25.3
  pullPolicy: IfNotPresent
metrics:
  image:
    repository: nginx/nginx-prometheus-exporter
    tag: \"1.10\"
controller:
  image:
    registry: registry.k8s.io
    image: ingress-nginx/controller
    tag: v1.9.4
    digest: sha256:5b161f051d017e55d358435f295f5e9a297e66158f136321d9b04520ec6c48a3
sidecar:
  repository: quay.io/x/y
  digest: sha256:5b161f051d017e55d358435f295f5e9a297e66158f136321d9b04520ec6c48a3
";
        assert_eq!(
            images(src),
            vec![
                img("docker.io/bitnami/nginx:1.25.3", 3),
                img("nginx/nginx-prometheus-exporter:1.10", 8),
                img("registry.k8s.io/ingress-nginx/controller:v1.9.4@sha256:5b161f051d017e55d358435f295f5e9a297e66158f136321d9b04520ec6c48a3", 13),
                img("quay.io/x/y@sha256:5b161f051d017e55d358435f295f5e9a297e66158f136321d9b04520ec6c48a3", 17),
            ]
        );
    }

    #[test]
    fn a_repository_key_alone_is_not_an_image_outside_image() {
        assert!(images("backup:\n  repository: s3://bucket\n").is_empty());
    }

    #[test]
    fn empty_tag_defaults_to_app_version_or_is_reported() {
        let src = "image:\n  repository: nginx\n  tag: \"\"\n";
        let docs = parse(src).unwrap();
        assert_eq!(
            find_images(&docs, src, Some("1.25")),
            vec![img("nginx:1.25", 2)]
        );
        assert_eq!(
            find_images(&docs, src, None),
            vec![Finding::MissingTag {
                repository: "nginx".into(),
                line: 2
            }]
        );
        assert_eq!(
            app_version("name: x\nappVersion: \"1.25\"\n").as_deref(),
            Some("1.25")
        );
        assert_eq!(app_version("name: x\n"), None);
    }

    #[test]
    fn templates_are_reported_quoted_or_not() {
        let src = "\
a:
  image: \"{{ .Values.registry }}/app:1\"
b:
  image:
    repository: app
    tag: \"{{ .Chart.AppVersion }}\"
c:
  image: {{ .Values.image }}
";
        assert_eq!(
            images(src),
            vec![
                Finding::Templated {
                    text: "{{ .Values.registry }}/app:1".into(),
                    line: 2
                },
                Finding::Templated {
                    text: "app:{{ .Chart.AppVersion }}".into(),
                    line: 5
                },
                Finding::Templated {
                    text: "{{ .Values.image }}".into(),
                    line: 8
                },
            ]
        );
    }

    #[test]
    fn anchors_and_aliases() {
        let src = "base: &img {repository: nginx, tag: '1'}\nuse:\n  image: *img\n";
        let found = images(src);
        assert_eq!(found.len(), 2);
        assert!(found
            .iter()
            .all(|f| matches!(f, Finding::Image { text, .. } if text == "nginx:1")));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: b\nc: [d\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let err = parse("a:\n  - b\n c: d\n").unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
    }
}
