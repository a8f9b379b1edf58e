//! `--format json` of the commands that change hosts (`run`, `add`,
//! `delete`, `upgrade`, `reset`): one result object on stdout, also when the
//! command failed, so that a script reads per host what changed, what
//! failed (step and message) and how many bytes went out, while progress
//! and the error stay on stderr and the exit code says whether it worked.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::apply::ApplyError;

/// The whole result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CommandResult {
    pub command: String,
    pub cluster: String,
    /// Whether the command did all it was asked to.
    pub ok: bool,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
    /// The command's error, as printed on stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Node joins that failed within `--max-failed`: the command went on
    /// without them (each is `failed` in `hosts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    pub hosts: Vec<HostResult>,
}

/// One host's part.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HostResult {
    pub host: String,
    /// Whether the command changed it (its installer's plan changed something).
    pub changed: bool,
    pub failed: Option<HostError>,
    /// Blob bytes sent to it (`null` when the command failed before it said).
    pub bytes_sent: Option<u64>,
    /// The damaged files (host paths) the command found and repaired.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct HostError {
    /// The step that failed, when one did (`join (k0s install worker)`, a command).
    pub step: Option<String>,
    pub message: String,
}

/// What the command did, as far as it got.
pub(super) struct Done<'a> {
    pub changed: &'a [String],
    pub bytes_sent: &'a BTreeMap<String, u64>,
    /// Per host, the damaged files it repaired.
    pub repaired: &'a BTreeMap<String, Vec<String>>,
}

impl CommandResult {
    /// The result of `command` on `hosts` (and any other host the report or
    /// the error names).
    pub fn new(
        command: &str,
        cluster: &str,
        hosts: &[String],
        done: Done,
        error: Option<&ApplyError>,
    ) -> CommandResult {
        let failures = error.map(ApplyError::host_failures).unwrap_or_default();
        let mut keys: Vec<String> = hosts.to_vec();
        let others = done
            .changed
            .iter()
            .chain(done.bytes_sent.keys())
            .chain(failures.iter().map(|(h, _, _)| h));
        for key in others {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let hosts = keys
            .into_iter()
            .map(|host| {
                let failed =
                    failures
                        .iter()
                        .find(|(h, _, _)| *h == host)
                        .map(|(_, step, message)| HostError {
                            step: step.clone(),
                            message: message.clone(),
                        });
                HostResult {
                    changed: done.changed.contains(&host),
                    bytes_sent: done
                        .bytes_sent
                        .get(&host)
                        .copied()
                        .or((error.is_none()).then_some(0)),
                    failed,
                    repaired: done.repaired.get(&host).cloned().unwrap_or_default(),
                    host,
                }
            })
            .collect();
        CommandResult {
            command: command.to_string(),
            cluster: cluster.to_string(),
            ok: error.is_none(),
            interrupted: error.is_some_and(ApplyError::is_interrupted),
            error: error.map(|e| e.to_string()),
            warning: None,
            hosts,
        }
    }

    /// The result with the node joins `tolerated` (within `--max-failed`)
    /// named as failed, each with its step, and said in `warning`.
    pub fn tolerating(mut self, tolerated: Option<&ApplyError>) -> CommandResult {
        let Some(tolerated) = tolerated else {
            return self;
        };
        for (host, step, message) in tolerated.host_failures() {
            if let Some(result) = self.hosts.iter_mut().find(|h| h.host == host) {
                result.failed = Some(HostError { step, message });
            }
        }
        self.warning = Some(tolerated.to_string());
        self
    }

    /// Prints it on stdout, one JSON object.
    pub fn print(&self) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_that_failed_at_a_step_is_named_with_it_and_the_others_are_listed() {
        let error = ApplyError::Hosts(vec![crate::apply::HostFailure {
            host: "10.0.0.2".into(),
            error: Box::new(ApplyError::Step {
                host: "10.0.0.2".into(),
                action: "join".into(),
                step: "install (k0s install worker)".into(),
                exit_code: Some(1),
                tail: "boom".into(),
            }),
        }]);
        let bytes = BTreeMap::from([("10.0.0.1".to_string(), 5u64)]);
        let result = CommandResult::new(
            "run",
            "default",
            &["10.0.0.1".into(), "10.0.0.2".into()],
            Done {
                changed: &["10.0.0.1".into()],
                bytes_sent: &bytes,
                repaired: &BTreeMap::from([(
                    "10.0.0.1".to_string(),
                    vec!["/usr/local/bin/k3s".into()],
                )]),
            },
            Some(&error),
        );
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["hosts"][0]["changed"], true);
        assert_eq!(json["hosts"][0]["bytesSent"], 5);
        assert_eq!(json["hosts"][0]["repaired"][0], "/usr/local/bin/k3s");
        assert!(
            json["hosts"][1].get("repaired").is_none(),
            "left out when empty"
        );
        assert!(json["hosts"][0]["failed"].is_null());
        let failed = &json["hosts"][1]["failed"];
        assert_eq!(failed["step"], "install (k0s install worker)");
        assert!(failed["message"].as_str().unwrap().contains("boom"));
        assert!(json["hosts"][1]["bytesSent"].is_null());
    }

    #[test]
    fn a_node_join_failed_within_max_failed_is_named_with_its_step_and_the_result_is_ok() {
        let tolerated = ApplyError::Hosts(vec![crate::apply::HostFailure {
            host: "10.0.0.2".into(),
            error: Box::new(ApplyError::Step {
                host: "10.0.0.2".into(),
                action: "join".into(),
                step: "place-rootfs".into(),
                exit_code: None,
                tail: "Not a directory".into(),
            }),
        }]);
        let bytes = BTreeMap::new();
        let done = Done {
            changed: &["10.0.0.1".into()],
            bytes_sent: &bytes,
            repaired: &BTreeMap::new(),
        };
        let hosts = ["10.0.0.1".into(), "10.0.0.2".into()];
        let result =
            CommandResult::new("run", "default", &hosts, done, None).tolerating(Some(&tolerated));
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["ok"], true);
        assert!(json["hosts"][0]["failed"].is_null());
        assert_eq!(json["hosts"][1]["failed"]["step"], "place-rootfs");
        assert!(json["warning"]
            .as_str()
            .unwrap()
            .contains("Not a directory"));
    }
}
