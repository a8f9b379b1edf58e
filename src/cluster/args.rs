//! A cluster from CLI-style inputs: `--masters 10.0.0.1,10.0.0.2 --nodes …
//! --port 22 -e K=V`, and the text of an `--env-file`. Raw values only; no
//! I/O (the password is a reference, the env file's bytes come read).

use super::file::parse_address_port;
use super::{
    is_valid_env_key, parse_env_pair, unless_problems, Address, Cluster, ClusterError, Host,
    PasswordSource, Problem, Role, SshConfig, DEFAULT_SSH_PORT,
};

/// Raw flag values, as `sealrs run` collects them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterArgs {
    /// `--cluster`; `default` when empty.
    pub name: String,
    /// `--masters`: each item may be a comma-separated list, each address may
    /// carry `:port` (`[v6]:port` for IPv6) or be a range of IPv4 addresses
    /// (`10.0.0.11-10.0.0.13`).
    pub masters: Vec<String>,
    pub nodes: Vec<String>,
    pub images: Vec<String>,
    /// `-e KEY=VALUE`, values byte for byte.
    pub env: Vec<String>,
    /// `--ssh-user`.
    pub user: Option<String>,
    /// `--port`: the SSH port of every host without its own.
    pub port: Option<u16>,
    /// `--ssh-key`.
    pub key: Option<String>,
    /// `--ssh-password-stdin` → `Some(PasswordSource::Stdin)`.
    pub password: Option<PasswordSource>,
    /// `--known-hosts`.
    pub known_hosts: Option<String>,
}

impl Cluster {
    /// Builds and validates a cluster from flags; every problem at once, each
    /// naming its flag (`--masters`, `-e`, …).
    pub fn from_args(args: &ClusterArgs) -> Result<Cluster, ClusterError> {
        let name = if args.name.is_empty() {
            "default"
        } else {
            &args.name
        };
        let mut cluster = Cluster::new(name);
        let mut problems = Vec::new();
        cluster.images = args.images.clone();
        cluster.ssh = SshConfig {
            user: args.user.clone(),
            port: args.port,
            key: args.key.clone(),
            password_from: args.password.clone(),
            known_hosts: args.known_hosts.clone(),
        };
        for (flag, list, role) in [
            ("--masters", &args.masters, Role::Master),
            ("--nodes", &args.nodes, Role::Node),
        ] {
            for item in list.iter().flat_map(|s| s.split(',')) {
                let items = match expand_range(item.trim()) {
                    Ok(items) => items,
                    Err(e) => {
                        problems.push(Problem::new(flag, e));
                        continue;
                    }
                };
                for item in items {
                    if item.is_empty() {
                        continue;
                    }
                    match parse_address_port(&item) {
                        Ok((address, port)) => {
                            if let Some(existing) =
                                cluster.hosts.iter_mut().find(|h| h.address == address)
                            {
                                problems.push(Problem::new(
                                    flag,
                                    format!(
                                        "duplicate address {address}: it is already a {}",
                                        existing.roles[0]
                                    ),
                                ));
                                continue;
                            }
                            let mut host = Host::new(address, &[role]);
                            host.port = port;
                            cluster.hosts.push(host);
                        }
                        Err(e) => problems.push(Problem::new(flag, e)),
                    }
                }
            }
        }
        for pair in &args.env {
            match parse_env_pair(pair) {
                Ok((k, v)) => {
                    cluster.env.insert(k, v);
                }
                Err(e) => problems.push(Problem::new("-e", e)),
            }
        }
        // The model's checks, renamed to the flags a user typed.
        for mut p in cluster.problems() {
            p.field = flag_for(&p.field).to_string();
            problems.push(p);
        }
        unless_problems(cluster, "command line", problems)
    }
}

/// The most addresses one range may name: more is a typo, not a cluster.
const MAX_RANGE: u32 = 256;

/// `10.0.0.11-10.0.0.13` as its addresses, in order, as sealos reads a
/// range; any other item as it is (host names may hold `-`).
fn expand_range(item: &str) -> Result<Vec<String>, String> {
    let Some((first, last)) = item.split_once('-') else {
        return Ok(vec![item.to_string()]);
    };
    let (Ok(first), Ok(last)) = (
        first.trim().parse::<std::net::Ipv4Addr>(),
        last.trim().parse::<std::net::Ipv4Addr>(),
    ) else {
        return Ok(vec![item.to_string()]);
    };
    let (from, to) = (u32::from(first), u32::from(last));
    if from > to {
        return Err(format!(
            "{item}: the range ends before it starts; write FIRST-LAST, e.g. 10.0.0.11-10.0.0.13"
        ));
    }
    if to - from >= MAX_RANGE {
        return Err(format!(
            "{item}: the range names {} addresses, more than {MAX_RANGE}; check it or list the hosts",
            u64::from(to - from) + 1
        ));
    }
    Ok((from..=to)
        .map(|n| std::net::Ipv4Addr::from(n).to_string())
        .collect())
}

fn flag_for(field: &str) -> &'static str {
    if field == "metadata.name" {
        "--cluster"
    } else if field.starts_with("spec.hosts") {
        "--masters"
    } else if field.starts_with("spec.env") {
        "-e"
    } else if field.starts_with("spec.images") {
        "IMAGE"
    } else if field.starts_with("spec.ssh.port") {
        "--port"
    } else {
        "arguments"
    }
}

/// Parses `--masters`/`--nodes` values (`IP[:PORT][,IP...]`) into hosts, with
/// the same rules and messages as `sealrs run`.
pub fn parse_hosts(
    cluster: &Cluster,
    masters: &[String],
    nodes: &[String],
) -> Result<Vec<Host>, ClusterError> {
    // The model wants a master: the cluster's first one stands in, and is
    // dropped again (naming it again is then reported as a duplicate).
    let anchor = cluster.first_master().map(|h| match h.port {
        Some(port) => format!("{}:{port}", h.address.url_host()),
        None => h.address.url_host(),
    });
    let mut all_masters: Vec<String> = anchor.iter().cloned().collect();
    all_masters.extend(masters.iter().cloned());
    let parsed = Cluster::from_args(&ClusterArgs {
        name: cluster.name.clone(),
        masters: all_masters,
        nodes: nodes.to_vec(),
        ..Default::default()
    })?;
    Ok(parsed
        .hosts
        .into_iter()
        .skip(usize::from(anchor.is_some()))
        .collect())
}

/// Parses `delete --nodes` values (`IP[:PORT][,IP...]`) as `run` and `add`
/// read addresses. A host is named by its address; a port, when given, must
/// be the host's SSH port, so that a typo never deletes another host.
/// Addresses not in the cluster are left for `sealrs delete` to refuse.
pub fn parse_targets(cluster: &Cluster, nodes: &[String]) -> Result<Vec<Address>, ClusterError> {
    let mut addresses = Vec::new();
    let mut problems = Vec::new();
    let mut items = Vec::new();
    for item in nodes.iter().flat_map(|s| s.split(',')).map(str::trim) {
        match expand_range(item) {
            Ok(expanded) => items.extend(expanded),
            Err(e) => problems.push(Problem::new("--nodes", e)),
        }
    }
    for item in items.iter().map(String::as_str) {
        if item.is_empty() {
            continue;
        }
        let (address, port) = match parse_address_port(item) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.push(Problem::new("--nodes", e));
                continue;
            }
        };
        if let (Some(port), Some(host)) = (port, cluster.host(&address)) {
            let ssh = cluster.ssh_for(host).port.unwrap_or(DEFAULT_SSH_PORT);
            if ssh != port {
                problems.push(Problem::new(
                    "--nodes",
                    format!(
                        "{item}: cluster {} has {address} with SSH port {ssh}, not {port}; name it as {address}",
                        cluster.name
                    ),
                ));
                continue;
            }
        }
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    unless_problems(addresses, "command line", problems)
}

/// The `KEY=VALUE` pairs of an `--env-file`, read by docker's rule for
/// `docker run --env-file` (docker/cli `opts/file.go`, `parseKeyValueFile`),
/// so that a file written for docker means the same here:
/// - lines end at `\n`, and a `\r` before it is dropped (Go's line scanner);
///   a UTF-8 byte order mark before the first line is dropped;
/// - leading whitespace is dropped; then an empty line, or one starting
///   with `#`, is skipped (a `#` later in a line is part of the value);
/// - `KEY=VALUE` splits at the first `=`, and the value is kept byte for
///   byte: no quotes removed, no escapes, trailing spaces kept;
/// - `KEY` alone takes the value `lookup` (sealrs' own environment) has
///   for it, and is left out when that has none (docker passes the bare
///   name, which sets nothing).
///
/// A line that is not valid UTF-8, whose key contains a space or tab or is
/// empty, or (beyond docker) whose key is not a valid variable name, is an
/// error naming `file:LINE`.
pub fn parse_env_file(
    bytes: &[u8],
    file: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ClusterError> {
    let mut pairs = Vec::new();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (i, raw) in lines.into_iter().enumerate() {
        let bad = |reason: String| ClusterError::Syntax {
            source_name: format!("--env-file {file}:{}", i + 1),
            reason,
        };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw)
            .map_err(|_| bad("the line is not valid UTF-8".to_string()))?
            .trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (line, None),
        };
        if key.contains([' ', '\t']) {
            return Err(bad(format!(
                "variable {key:?} contains whitespace; write KEY=VALUE with nothing between KEY and ="
            )));
        }
        if key.is_empty() {
            return Err(bad(format!("no variable name before '=' in {line:?}")));
        }
        if !is_valid_env_key(key) {
            return Err(bad(format!(
                "{key:?} is not a valid variable name (letters, digits and '_', not starting with a digit)"
            )));
        }
        match value {
            Some(value) => pairs.push((key.to_string(), value.to_string())),
            None => {
                if let Some(value) = lookup(key) {
                    pairs.push((key.to_string(), value));
                }
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod env_file_tests {
    use super::parse_env_file;

    fn parse(text: &[u8]) -> Result<Vec<(String, String)>, String> {
        let lookup = |k: &str| (k == "FROM_ENV").then(|| "from the environment".to_string());
        parse_env_file(text, "x.env", &lookup).map_err(|e| e.to_string())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_env_file_keeps_values_byte_for_byte_as_docker_reads_them() {
        let text = b"\xEF\xBB\xBF# a comment\n\n   \nA=1\n  B=two words  \nQ=\"quoted\" 'single' $HOME `x` # not a comment\nEQ=a=b\nEMPTY=\nCRLF=dos\r\nFROM_ENV\nNOT_SET\n\t# indented comment\nLAST=no newline";
        assert_eq!(
            parse(text).unwrap(),
            pairs(&[
                ("A", "1"),
                ("B", "two words  "),
                ("Q", "\"quoted\" 'single' $HOME `x` # not a comment"),
                ("EQ", "a=b"),
                ("EMPTY", ""),
                ("CRLF", "dos"),
                ("FROM_ENV", "from the environment"),
                ("LAST", "no newline"),
            ])
        );
        assert_eq!(parse(b"").unwrap(), pairs(&[]));
    }

    #[test]
    fn a_bad_env_file_line_is_named_by_file_and_line() {
        for (text, line, says) in [
            (&b"A=1\nKEY WITH SPACE=x\n"[..], 2, "contains whitespace"),
            (b"A=1\n\n=value\n", 3, "no variable name"),
            (b"1BAD=x\n", 1, "not a valid variable name"),
            (b"OK=1\nB-C=x\n", 2, "not a valid variable name"),
            (b"A=\xff\xfe\n", 1, "not valid UTF-8"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.starts_with(&format!("--env-file x.env:{line}: ")) && err.contains(says),
                "{err}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masters(list: &str) -> Result<Vec<String>, ClusterError> {
        let c = Cluster::from_args(&ClusterArgs {
            masters: vec![list.to_string()],
            ..Default::default()
        })?;
        Ok(c.hosts.iter().map(|h| h.key()).collect())
    }

    #[test]
    fn a_range_of_ipv4_addresses_names_each_of_them_as_sealos_reads_it() {
        assert_eq!(
            masters("10.0.0.11-10.0.0.13,10.0.0.20").unwrap(),
            ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.20"]
        );
        assert_eq!(
            masters("10.0.0.255-10.0.1.0").unwrap(),
            ["10.0.0.255", "10.0.1.0"]
        );
        // Host names hold '-'.
        assert_eq!(masters("node-1").unwrap(), ["node-1"]);
    }

    #[test]
    fn a_backwards_or_huge_range_is_refused_naming_it() {
        let err = masters("10.0.0.13-10.0.0.11").unwrap_err().to_string();
        assert!(
            err.contains("--masters: 10.0.0.13-10.0.0.11: the range ends before it starts"),
            "{err}"
        );
        let err = masters("10.0.0.1-10.0.9.1").unwrap_err().to_string();
        assert!(err.contains("names 2305 addresses, more than 256"), "{err}");
        let err = masters("10.0.0.11-10.0.0.12,10.0.0.12")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate address 10.0.0.12"), "{err}");
    }
}
