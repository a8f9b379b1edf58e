//! Credentials: where they come from and how a registry asks for them.
//!
//! We read and write the containers auth file (the one podman, buildah and
//! skopeo share, so `podman login` works for us and `sealrs login` works for
//! them) and read docker's `config.json`, including its credential helpers,
//! because that is where most people already have their passwords.
//!
//! Lookup order, first hit wins (as containers/image does it):
//! 1. the containers auth file: `--authfile`, else `$REGISTRY_AUTH_FILE`,
//!    else `$XDG_RUNTIME_DIR/containers/auth.json`, else
//!    `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/...`);
//! 2. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`:
//!    `credHelpers[host]`, then `auths[host]`, then `credsStore`.
//!
//! Within a file, a key naming a repository (`host/team/app`) beats one
//! naming a namespace (`host/team`), which beats the bare host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::error::RegistryError;
use super::RegistryOptions;
use crate::secret::Secret;

/// A user name and password. `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: Secret,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// The secret, for building a request header and nothing else.
    pub(crate) fn password(&self) -> &str {
        self.password.expose()
    }

    /// The value of an `Authorization: Basic …` header.
    pub(crate) fn basic_header(&self) -> String {
        format!("Basic {}", encode_auth(&self.username, self.password()))
    }
}

fn encode_auth(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}

fn decode_auth(value: &str) -> Option<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some(Credentials::new(user, pass))
}

/// The registry name used as a key in auth files: no scheme, no path, and
/// Docker Hub's many aliases folded into `docker.io`.
pub fn normalize_registry(input: &str) -> Result<String, RegistryError> {
    let bad = |reason: &str| RegistryError::InvalidRegistry {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = trimmed.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("it is empty"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(bad("it is not a host[:port]"));
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_ascii_lowercase(),
    })
}

/// The key a legacy docker config may use for a registry, normalized.
fn normalize_key(key: &str) -> String {
    let without_scheme = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, rest) = match without_scheme.split_once('/') {
        Some((h, r)) => (h, r.trim_end_matches('/')),
        None => (without_scheme, ""),
    };
    let host = normalize_registry(host).unwrap_or_else(|_| host.to_string());
    // docker's `https://index.docker.io/v1/`: the path is an API version, not a namespace.
    if rest.is_empty() || rest == "v1" || rest == "v2" {
        host
    } else {
        format!("{host}/{rest}")
    }
}

/// The keys to try for `registry/repository`, most specific first.
fn candidate_keys(registry: &str, repository: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let parts: Vec<&str> = repository.split('/').filter(|p| !p.is_empty()).collect();
    for n in (1..=parts.len()).rev() {
        keys.push(format!("{registry}/{}", parts[..n].join("/")));
    }
    keys.push(registry.to_string());
    keys
}

/// Where `sealrs login` writes: see the module docs for the order.
pub fn auth_file_path(opts: &RegistryOptions) -> Result<PathBuf, RegistryError> {
    if let Some(p) = &opts.auth_file {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("containers/auth.json"));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("containers/auth.json"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config/containers/auth.json")),
        None => Err(RegistryError::AuthFile {
            path: PathBuf::from("auth.json"),
            reason: "cannot tell where it is: set REGISTRY_AUTH_FILE or XDG_RUNTIME_DIR".into(),
        }),
    }
}

/// docker's config file, if we can tell where it would be.
pub fn docker_config_path(opts: &RegistryOptions) -> Option<PathBuf> {
    if let Some(dir) = &opts.docker_config_dir {
        return Some(dir.join("config.json"));
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// A containers auth file or docker config, kept as JSON so that fields we do
/// not know (`credsStore`, `HttpHeaders`, …) survive a rewrite.
#[derive(Debug)]
pub struct AuthFile {
    path: PathBuf,
    json: serde_json::Map<String, serde_json::Value>,
}

impl AuthFile {
    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<AuthFile, RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(RegistryError::AuthFileIo {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let json = if text.trim().is_empty() {
            serde_json::Map::new()
        } else {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(map)) => map,
                Ok(_) => {
                    return Err(RegistryError::AuthFile {
                        path: path.to_path_buf(),
                        reason: "it is not a JSON object".into(),
                    })
                }
                // serde_json's message has a line and column, never the content.
                Err(e) => {
                    return Err(RegistryError::AuthFile {
                        path: path.to_path_buf(),
                        reason: format!("invalid JSON: {e}"),
                    })
                }
            }
        };
        if let Some(auths) = json.get("auths") {
            if !auths.is_object() {
                return Err(RegistryError::AuthFile {
                    path: path.to_path_buf(),
                    reason: "\"auths\" is not an object".into(),
                });
            }
        }
        Ok(AuthFile {
            path: path.to_path_buf(),
            json,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `auths` with normalized keys (the original key is kept for removal).
    fn auths(&self) -> BTreeMap<String, (String, &serde_json::Value)> {
        let mut out = BTreeMap::new();
        if let Some(serde_json::Value::Object(auths)) = self.json.get("auths") {
            for (key, value) in auths {
                out.insert(normalize_key(key), (key.clone(), value));
            }
        }
        out
    }

    /// The inline credentials for `registry/repository`, most specific key first.
    pub fn get(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let auths = self.auths();
        for key in candidate_keys(registry, repository) {
            let Some((_, entry)) = auths.get(&key) else {
                continue;
            };
            if let Some(value) = entry.get("auth").and_then(|v| v.as_str()) {
                if value.is_empty() {
                    continue;
                }
                return decode_auth(value)
                    .map(Some)
                    .ok_or_else(|| RegistryError::AuthFile {
                        path: self.path.clone(),
                        reason: format!(
                            "the \"auth\" entry of {key:?} is not base64 of user:password"
                        ),
                    });
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|v| v.as_str()),
                entry.get("password").and_then(|v| v.as_str()),
            ) {
                return Ok(Some(Credentials::new(u, p)));
            }
        }
        Ok(None)
    }

    /// The credential helper configured for `registry` (`credHelpers`, then `credsStore`).
    pub fn helper(&self, registry: &str) -> Option<String> {
        if let Some(serde_json::Value::Object(helpers)) = self.json.get("credHelpers") {
            for (key, value) in helpers {
                if normalize_key(key) == registry {
                    return value.as_str().map(str::to_string);
                }
            }
        }
        self.json
            .get("credsStore")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Records `creds` for `registry` (replacing entries that normalize to it).
    pub fn set(&mut self, registry: &str, creds: &Credentials) {
        self.remove(registry);
        let auths = self
            .json
            .entry("auths")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(map) = auths {
            map.insert(
                registry.to_string(),
                serde_json::json!({ "auth": encode_auth(&creds.username, creds.password()) }),
            );
        }
    }

    /// Removes every entry that normalizes to `registry`; true if there was one.
    pub fn remove(&mut self, registry: &str) -> bool {
        let keys: Vec<String> = self
            .auths()
            .into_iter()
            .filter(|(norm, _)| norm == registry)
            .map(|(_, (orig, _))| orig)
            .collect();
        let Some(serde_json::Value::Object(map)) = self.json.get_mut("auths") else {
            return false;
        };
        for key in &keys {
            map.remove(key);
        }
        !keys.is_empty()
    }

    /// Writes the file atomically with mode 0600 (its directory 0700 if created):
    /// a temp file in the same directory, then rename, so that a crash never
    /// leaves half a file and other users never see the secrets.
    pub fn save(&self) -> Result<(), RegistryError> {
        use std::os::unix::fs::DirBuilderExt;
        let io_err = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::AuthFileIo {
                action,
                path,
                source,
            }
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create the directory of", &self.path))?;
        let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(self.json.clone()))
            .expect("a JSON map serializes");
        text.push('\n');
        crate::atomic_file::write(&self.path, text.as_bytes(), Some(0o600))
            .map_err(io_err("write", &self.path))
    }
}

/// Finds credentials for `registry/repository`; `Ok(None)` means anonymous.
pub fn lookup(
    registry: &str,
    repository: &str,
    opts: &RegistryOptions,
) -> Result<Option<Credentials>, RegistryError> {
    let primary = AuthFile::load(&auth_file_path(opts)?)?;
    if let Some(c) = primary.get(registry, repository)? {
        return Ok(Some(c));
    }
    if let Some(path) = docker_config_path(opts) {
        let docker = AuthFile::load(&path)?;
        if let Some(serde_json::Value::Object(helpers)) = docker.json.get("credHelpers") {
            if let Some(name) = helpers
                .iter()
                .find(|(k, _)| normalize_key(k) == registry)
                .and_then(|(_, v)| v.as_str())
            {
                return run_helper(name, registry);
            }
        }
        if let Some(c) = docker.get(registry, repository)? {
            return Ok(Some(c));
        }
        if let Some(name) = docker.helper(registry) {
            return run_helper(&name, registry);
        }
    }
    Ok(None)
}

/// Runs `docker-credential-NAME get` with the server on stdin, as docker does.
/// "credentials not found" is not an error: the registry may allow anonymous access.
fn run_helper(name: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: name.to_string(),
        registry: registry.to_string(),
        reason,
    };
    if name.is_empty() || name.contains('/') {
        return Err(fail("invalid helper name".into()));
    }
    // Docker Hub's helpers store it under the v1 URL.
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let mut child = Command::new(format!("docker-credential-{name}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        // The helper's own words may include the secret: report only the status.
        return Err(fail(format!("it exited with {}", out.status)));
    }
    #[derive(serde::Deserialize)]
    struct HelperReply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout)
        .map_err(|_| fail("its output is not {\"Username\":…,\"Secret\":…} JSON".into()))?;
    Ok(Some(Credentials::new(reply.username, reply.secret)))
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// Token auth: get a token from `realm` for `service` and the scopes we need.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (RFC 7235: `scheme k=v, k="quoted, \"x\""`,
/// several challenges possibly in one header). Unknown schemes are skipped.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut current: Option<(String, BTreeMap<String, String>)> = None;
    let mut rest = header.trim();
    let flush = |c: Option<(String, BTreeMap<String, String>)>, out: &mut Vec<Challenge>| {
        if let Some((scheme, mut params)) = c {
            match scheme.to_ascii_lowercase().as_str() {
                "basic" => out.push(Challenge::Basic),
                "bearer" => {
                    if let Some(realm) = params.remove("realm") {
                        out.push(Challenge::Bearer {
                            realm,
                            service: params.remove("service"),
                            scope: params.remove("scope"),
                        });
                    }
                }
                _ => {}
            }
        }
    };
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start_matches([' ', '\t']);
        if let Some(value_part) = after.strip_prefix('=') {
            // key=value inside the current challenge.
            let value_part = value_part.trim_start();
            let (value, remaining) = if let Some(quoted) = value_part.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            } else {
                let end = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..end].trim().to_string(), &value_part[end..])
            };
            if let Some((_, params)) = current.as_mut() {
                params.insert(token.to_ascii_lowercase(), value);
            }
            rest = remaining;
        } else {
            // A new scheme.
            flush(current.take(), &mut out);
            current = Some((token.to_string(), BTreeMap::new()));
            rest = after;
        }
    }
    flush(current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn opts_with(dir: &Path) -> RegistryOptions {
        RegistryOptions {
            auth_file: Some(dir.join("containers/auth.json")),
            docker_config_dir: Some(dir.join("docker")),
            ..RegistryOptions::default()
        }
    }

    #[test]
    fn debug_of_credentials_hides_the_password() {
        let c = Credentials::new("alice", "s3cr3t-pw");
        let text = format!("{c:?}");
        assert!(
            text.contains("alice") && text.contains("<redacted>"),
            "{text}"
        );
        assert!(!text.contains("s3cr3t-pw"), "{text}");
    }

    #[test]
    fn login_writes_0600_and_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers/auth.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"other.io":{"auth":"eDp5"}},"credHelpers":{"gcr.io":"gcloud"}}"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = AuthFile::load(&path).unwrap();
        file.set("127.0.0.1:5000", &Credentials::new("bob", "pw:with:colons"));
        file.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(json["auths"]["other.io"]["auth"], "eDp5");
        let reread = AuthFile::load(&path).unwrap();
        assert_eq!(
            reread.get("127.0.0.1:5000", "team/app").unwrap(),
            Some(Credentials::new("bob", "pw:with:colons"))
        );
        let mut reread = reread;
        assert!(reread.remove("127.0.0.1:5000"));
        assert!(!reread.remove("127.0.0.1:5000"));
        reread.save().unwrap();
        assert_eq!(
            AuthFile::load(&path)
                .unwrap()
                .get("127.0.0.1:5000", "x")
                .unwrap(),
            None
        );
    }

    #[test]
    fn new_auth_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh/containers/auth.json");
        let mut file = AuthFile::load(&path).unwrap();
        file.set("r.io", &Credentials::new("u", "p"));
        file.save().unwrap();
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn keys_match_docker_legacy_forms_and_the_most_specific_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let enc = |u: &str| encode_auth(u, "pw");
        std::fs::write(
            &path,
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": enc("hub")},
                "reg.io": {"auth": enc("host")},
                "reg.io/team": {"auth": enc("team")},
                "http://plain.io:5000": {"username": "plain", "password": "pw"},
            }})
            .to_string(),
        )
        .unwrap();
        let f = AuthFile::load(&path).unwrap();
        let user = |r: &str, repo: &str| f.get(r, repo).unwrap().map(|c| c.username);
        assert_eq!(user("docker.io", "library/nginx").as_deref(), Some("hub"));
        assert_eq!(user("reg.io", "team/app").as_deref(), Some("team"));
        assert_eq!(user("reg.io", "other/app").as_deref(), Some("host"));
        assert_eq!(user("plain.io:5000", "x").as_deref(), Some("plain"));
        assert_eq!(user("nowhere.io", "x"), None);
    }

    #[test]
    fn broken_files_are_named_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(
            &path,
            r#"{"auths": {"r.io": {"auth": "!!!not-base64-secret"}}}"#,
        )
        .unwrap();
        let err = AuthFile::load(&path)
            .unwrap()
            .get("r.io", "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.json") && !err.contains("not-base64-secret"),
            "{err}"
        );
        std::fs::write(&path, "{ nope").unwrap();
        let err = AuthFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("invalid JSON"), "{err}");
    }

    #[test]
    fn lookup_falls_back_to_docker_config_and_its_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let opts = opts_with(dir.path());
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::write(
            dir.path().join("docker/config.json"),
            serde_json::json!({
                "auths": {"d.io": {"auth": encode_auth("dockeruser", "pw")}},
                "credHelpers": {"h.io": "sealrs-test-missing-helper"}
            })
            .to_string(),
        )
        .unwrap();
        let c = lookup("d.io", "x", &opts).unwrap().unwrap();
        assert_eq!(c.username, "dockeruser");
        assert_eq!(lookup("none.io", "x", &opts).unwrap(), None);
        let err = lookup("h.io", "x", &opts).unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-sealrs-test-missing-helper"),
            "{err}"
        );
    }

    #[test]
    fn credential_helper_output_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("docker-credential-fake");
        std::fs::write(
            &bin,
            "#!/bin/sh\nread server\nif [ \"$server\" = h.io ]; then echo '{\"ServerURL\":\"h.io\",\"Username\":\"helped\",\"Secret\":\"tok\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // run_helper resolves through PATH, as docker does: prepend our directory.
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let found = with_path(&path, || run_helper("fake", "h.io")).unwrap();
        assert_eq!(found, Some(Credentials::new("helped", "tok")));
        let missing = with_path(&path, || run_helper("fake", "other.io")).unwrap();
        assert_eq!(missing, None);
    }

    /// Only this test changes PATH, and only by prepending a directory, so
    /// processes spawned meanwhile by other tests still find their programs.
    fn with_path<T>(path: &str, f: impl FnOnce() -> T) -> T {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let old = std::env::var_os("PATH");
        std::env::set_var("PATH", path);
        let out = f();
        match old {
            Some(v) => std::env::set_var("PATH", v),
            None => std::env::remove_var("PATH"),
        }
        out
    }

    #[test]
    fn challenges_basic_bearer_quoted_and_several() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic]
        );
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#
            ),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"bearer realm=https://t.io/token, service=t.io"#),
            vec![Challenge::Bearer {
                realm: "https://t.io/token".into(),
                service: Some("t.io".into()),
                scope: None
            }]
        );
        assert_eq!(
            parse_challenges(r#"Negotiate, Bearer realm="a\"b", Basic realm="x, y""#),
            vec![
                Challenge::Bearer {
                    realm: "a\"b".into(),
                    service: None,
                    scope: None
                },
                Challenge::Basic
            ]
        );
        assert_eq!(parse_challenges("Bearer service=x"), vec![]);
        assert_eq!(parse_challenges(""), vec![]);
    }

    #[test]
    fn registry_names_are_normalized() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/").unwrap(),
            "docker.io"
        );
        assert_eq!(
            normalize_registry("127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_registry("Reg.IO/team").unwrap(), "reg.io");
        assert!(normalize_registry("").is_err());
        assert!(normalize_registry("user@host").is_err());
    }
}
