//! Applying instructions to an image config, the way buildah 1.28 does.
//!
//! buildah's choices that matter here (each observed with `buildah bud`):
//! - ARG values are visible only after the ARG, ENV values win over them, and
//!   `--build-arg` only sets ARGs that the file declares; an ARG declared
//!   before FROM is visible only to FROM unless re-declared after it.
//! - ENTRYPOINT drops the base image's CMD, but not a CMD set earlier in
//!   this Kubefile; `CMD []` and `ENTRYPOINT []` clear the setting.
//! - WORKDIR: an absolute path is kept exactly as written, a relative one is
//!   joined to the previous WORKDIR and cleaned.
//! - EXPOSE writes `PORT/PROTO` (tcp by default, protocol case kept) and skips
//!   a port number the config already exposes with any protocol.
//! - MAINTAINER, CMD and ENTRYPOINT are never expanded.

use std::collections::{BTreeMap, BTreeSet};

use super::error::KubefileError;
use super::expand::{expand_fields, expand_word, Vars};
use super::parser::{Args, Instruction, Keyword, Kubefile, Word};
use super::{BaseImage, ConfigState, CopyStep, EvalOptions, Location, Stage};

impl ConfigState {
    /// What buildah starts from for `FROM scratch`: only a default PATH.
    pub fn scratch() -> ConfigState {
        ConfigState {
            env: vec![(
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            )],
            ..ConfigState::default()
        }
    }

    /// Sets a variable, replacing an existing one in place as Docker does.
    fn set_env(&mut self, name: String, value: String) {
        match self.env.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.env.push((name, value)),
        }
    }
}

/// Resolves the FROM line; only ARGs declared before it are visible there.
pub fn evaluate_from(kf: &Kubefile, opts: &EvalOptions) -> Result<BaseImage, KubefileError> {
    let (heading, from) = heading_args(kf, opts)?;
    let Some(from) = from else {
        return Err(KubefileError::MissingFrom {
            location: kf
                .instructions
                .first()
                .map(|i| i.location.clone())
                .unwrap_or_else(|| Location {
                    file: String::new(),
                    line: 1,
                    column: 1,
                }),
        });
    };
    let Args::Words(words) = &from.args else {
        return Err(from_arguments(from));
    };
    let Some(image) = words.first() else {
        return Err(from_arguments(from));
    };
    let name = expand(
        image,
        Vars {
            env: &[],
            args: &heading.values,
        },
    )?;
    if name.is_empty() {
        return Err(KubefileError::MissingArguments {
            location: image.location.clone(),
            keyword: "FROM".to_string(),
            expected: "an image name; this one expands to nothing",
        });
    }
    Ok(if name == "scratch" {
        BaseImage::Scratch
    } else {
        BaseImage::Image {
            name,
            location: image.location.clone(),
        }
    })
}

fn from_arguments(from: &Instruction) -> KubefileError {
    KubefileError::WrongArguments {
        location: from.location.clone(),
        keyword: "FROM".to_string(),
        expected: "FROM IMAGE or FROM IMAGE AS NAME",
    }
}

/// Applies every instruction after FROM to `base`.
pub fn evaluate(
    kf: &Kubefile,
    opts: &EvalOptions,
    base: ConfigState,
) -> Result<Stage, KubefileError> {
    let (heading, _) = heading_args(kf, opts)?;
    let mut declared = heading.declared.clone();
    let mut args = ArgScope::default();
    let mut config = base;
    let mut cmd_set = false;
    let mut copies = Vec::new();
    let after_from = kf
        .instructions
        .iter()
        .skip_while(|i| i.keyword != Keyword::From)
        .skip(1);
    for instruction in after_from {
        let vars = Vars {
            env: &config.env,
            args: &args.values,
        };
        match (instruction.keyword, &instruction.args) {
            (Keyword::Arg, Args::ArgWords(words)) => {
                let before = args.values.clone();
                let vars = Vars {
                    env: &config.env,
                    args: &before,
                };
                args.declare(words, vars, opts, Some(&heading))?;
            }
            (Keyword::Env, Args::Pairs(pairs)) => {
                let expanded = expand_pairs(pairs, vars)?;
                for (name, value) in expanded {
                    config.set_env(name, value);
                }
            }
            (Keyword::Label, Args::Pairs(pairs)) => {
                let expanded = expand_pairs(pairs, vars)?;
                config.labels.extend(expanded);
            }
            (Keyword::Copy | Keyword::Add, Args::Words(words) | Args::Json(words)) => {
                copies.push(copy_step(instruction, words, vars, &config)?);
            }
            (Keyword::Cmd, args) => {
                config.cmd = command(args);
                cmd_set |= config.cmd.is_some();
            }
            (Keyword::Entrypoint, args) => {
                config.entrypoint = command(args);
                if !cmd_set {
                    config.cmd = None;
                }
            }
            (Keyword::Workdir, Args::Text(word)) => {
                let dir = expand(word, vars)?;
                config.working_dir = Some(if dir.starts_with('/') {
                    dir
                } else {
                    let current = config.working_dir.as_deref().unwrap_or("");
                    clean_rooted(&format!("{current}/{dir}"))
                });
            }
            (Keyword::User, Args::Text(word)) => config.user = Some(expand(word, vars)?),
            (Keyword::Expose, Args::Words(words)) => {
                let mut ports = Vec::new();
                for word in words {
                    ports.extend(expand_fields(&word.text, vars).map_err(|problem| {
                        KubefileError::Expansion {
                            location: word.location.clone(),
                            word: word.text.clone(),
                            problem,
                        }
                    })?);
                }
                expose(&mut config, &ports);
            }
            (Keyword::Volume, Args::Words(words) | Args::Json(words)) => {
                for word in words {
                    let path = expand(word, vars)?.trim().to_string();
                    if path.is_empty() {
                        return Err(KubefileError::EmptyVolume {
                            location: word.location.clone(),
                        });
                    }
                    if !config.volumes.contains(&path) {
                        config.volumes.push(path);
                    }
                }
            }
            (Keyword::StopSignal, Args::Text(word)) => {
                let signal = expand(word, vars)?;
                if !is_signal(&signal) {
                    return Err(KubefileError::InvalidSignal {
                        location: word.location.clone(),
                        value: signal,
                    });
                }
                config.stop_signal = Some(signal);
            }
            (Keyword::Maintainer, Args::Text(word)) => config.author = Some(word.text.clone()),
            // The parser gives each keyword one shape of arguments and allows
            // one FROM; nothing else reaches here.
            _ => {}
        }
        declared.extend(args.declared.iter().cloned());
    }
    let unused_build_args = opts
        .build_args
        .keys()
        .filter(|name| !declared.contains(*name))
        .cloned()
        .collect();
    Ok(Stage {
        config,
        copies,
        unused_build_args,
    })
}

/// ARG values in force, and every name declared so far.
#[derive(Debug, Default, Clone)]
struct ArgScope {
    values: BTreeMap<String, String>,
    declared: BTreeSet<String>,
}

impl ArgScope {
    /// One ARG instruction. All its words are expanded first, so that
    /// `ARG A=1 B=$A` sees the A from before the instruction, as in buildah.
    fn declare(
        &mut self,
        words: &[Word],
        vars: Vars<'_>,
        opts: &EvalOptions,
        heading: Option<&ArgScope>,
    ) -> Result<(), KubefileError> {
        let mut expanded = Vec::with_capacity(words.len());
        for word in words {
            let text = expand(word, vars)?;
            let (name, default) = match text.split_once('=') {
                Some((name, default)) => (name.to_string(), Some(default.to_string())),
                None => {
                    let builtin = builtin_arg(&text, opts);
                    (text, builtin)
                }
            };
            if name.is_empty() {
                return Err(KubefileError::EmptyName {
                    location: word.location.clone(),
                    word: word.text.clone(),
                });
            }
            expanded.push((name, default));
        }
        for (name, default) in expanded {
            let value = opts
                .build_args
                .get(&name)
                .cloned()
                .or(default)
                .or_else(|| heading.and_then(|h| h.values.get(&name).cloned()));
            if let Some(value) = value {
                self.values.insert(name.clone(), value);
            }
            self.declared.insert(name);
        }
        Ok(())
    }
}

/// The ARGs before FROM, and FROM itself.
fn heading_args<'k>(
    kf: &'k Kubefile,
    opts: &EvalOptions,
) -> Result<(ArgScope, Option<&'k Instruction>), KubefileError> {
    let mut scope = ArgScope::default();
    for instruction in &kf.instructions {
        match (&instruction.keyword, &instruction.args) {
            (Keyword::From, _) => return Ok((scope, Some(instruction))),
            (Keyword::Arg, Args::ArgWords(words)) => {
                let values = scope.values.clone();
                let vars = Vars {
                    env: &[],
                    args: &values,
                };
                scope.declare(words, vars, opts, None)?;
            }
            _ => {}
        }
    }
    Ok((scope, None))
}

/// The automatic platform ARGs; they get a value only when declared.
fn builtin_arg(name: &str, opts: &EvalOptions) -> Option<String> {
    let os = if opts.target_os.is_empty() {
        std::env::consts::OS
    } else {
        opts.target_os.as_str()
    };
    let arch = if opts.target_arch.is_empty() {
        crate::arch::host()
    } else {
        opts.target_arch.as_str()
    };
    Some(match name {
        "TARGETOS" | "BUILDOS" => os.to_string(),
        "TARGETARCH" | "BUILDARCH" => arch.to_string(),
        "TARGETPLATFORM" | "BUILDPLATFORM" => format!("{os}/{arch}"),
        "TARGETVARIANT" | "BUILDVARIANT" => String::new(),
        _ => return None,
    })
}

fn expand(word: &Word, vars: Vars<'_>) -> Result<String, KubefileError> {
    expand_word(&word.text, vars).map_err(|problem| KubefileError::Expansion {
        location: word.location.clone(),
        word: word.text.clone(),
        problem,
    })
}

/// Expands names and values with the variables from before the instruction.
fn expand_pairs(
    pairs: &[super::parser::Pair],
    vars: Vars<'_>,
) -> Result<Vec<(String, String)>, KubefileError> {
    pairs
        .iter()
        .map(|pair| {
            let name = expand(&pair.name, vars)?;
            if name.is_empty() {
                return Err(KubefileError::EmptyName {
                    location: pair.name.location.clone(),
                    word: format!("{}={}", pair.name.text, pair.value.text),
                });
            }
            Ok((name, expand(&pair.value, vars)?))
        })
        .collect()
}

/// CMD and ENTRYPOINT: JSON kept verbatim, shell form run by `/bin/sh -c`;
/// an empty JSON array means "none".
fn command(args: &Args) -> Option<Vec<String>> {
    match args {
        Args::Json(words) if words.is_empty() => None,
        Args::Json(words) => Some(words.iter().map(|w| w.text.clone()).collect()),
        Args::Text(word) => Some(vec!["/bin/sh".into(), "-c".into(), word.text.clone()]),
        _ => None,
    }
}

fn copy_step(
    instruction: &Instruction,
    words: &[Word],
    vars: Vars<'_>,
    config: &ConfigState,
) -> Result<CopyStep, KubefileError> {
    let mut chmod = None;
    for flag in &instruction.flags {
        let value = expand(&flag.value, vars)?;
        if flag.name == "chmod" {
            chmod =
                Some(
                    u32::from_str_radix(&value, 8).map_err(|_| KubefileError::InvalidChmod {
                        location: flag.value.location.clone(),
                        value,
                    })?,
                );
        }
    }
    let mut expanded = Vec::with_capacity(words.len());
    for word in words {
        expanded.push(expand(word, vars)?);
    }
    let dest = expanded.pop().unwrap_or_default();
    Ok(CopyStep {
        location: instruction.location.clone(),
        sources: expanded,
        dest: make_absolute(&dest, config.working_dir.as_deref().unwrap_or("")),
        chmod,
        extract_archives: instruction.keyword == Keyword::Add,
    })
}

/// A COPY destination relative to WORKDIR, keeping a trailing `/` since that
/// says "into this directory".
fn make_absolute(dest: &str, workdir: &str) -> String {
    if dest.starts_with('/') {
        return dest.to_string();
    }
    let into_dir = dest == "." || dest.ends_with('/');
    let mut joined = clean_rooted(&format!("{workdir}/{dest}"));
    if into_dir && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// Go's `filepath.Clean` for a path under `/`: no `.`, no `..`, no `//`.
fn clean_rooted(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn expose(config: &mut ConfigState, ports: &[String]) {
    let port_number = |spec: &str| spec.split('/').next().unwrap_or("").to_string();
    let existing: BTreeSet<String> = config
        .exposed_ports
        .iter()
        .map(|p| port_number(p))
        .collect();
    for spec in ports {
        let mut parts = spec.split('/');
        let port = parts.next().unwrap_or("");
        let proto = parts.next().unwrap_or("tcp");
        let key = format!("{port}/{proto}");
        if !existing.contains(port) && !config.exposed_ports.contains(&key) {
            config.exposed_ports.push(key);
        }
    }
}

/// What buildah's `signal.CheckSignal` accepts on Linux: a non-zero number,
/// or a name with or without `SIG`, in any case.
fn is_signal(value: &str) -> bool {
    if let Ok(number) = value.parse::<u32>() {
        return number != 0;
    }
    let upper = value.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    let offset = |prefix: &str, max: u32| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    offset("RTMIN+", 15) || offset("RTMAX-", 14)
}

#[cfg(test)]
mod tests {
    //! The expected configs in `buildah_*` tests were observed from buildah
    //! 1.28 (`buildah --storage-driver vfs bud` on the same file, then
    //! `inspect --type image`), label io.buildah.version left out.
    use super::*;
    use crate::kubefile::parse;

    const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    fn opts(build_args: &[(&str, &str)]) -> EvalOptions {
        EvalOptions {
            build_args: build_args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target_os: "linux".into(),
            target_arch: "amd64".into(),
        }
    }

    fn run_text(text: &str, build_args: &[(&str, &str)]) -> Result<Stage, KubefileError> {
        let kf = parse(text, "Kubefile")?;
        let opts = opts(build_args);
        evaluate_from(&kf, &opts)?;
        evaluate(&kf, &opts, ConfigState::scratch())
    }

    fn run_file(name: &str, build_args: &[(&str, &str)]) -> Stage {
        let path = format!(
            "{}/tests/data/kubefiles/{name}/Kubefile",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("test Kubefile");
        run_text(&text, build_args).expect("evaluates")
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        env(pairs).into_iter().collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn buildah_sealos_rootfs_keeps_escaped_dollar_and_json_cmd_verbatim() {
        let stage = run_file("sealos-rootfs", &[]);
        assert_eq!(stage.config.env, env(&[("PATH", PATH), ("NAME", "calico")]));
        assert_eq!(
            stage.config.labels,
            labels(&[
                ("check", "$foo"),
                ("sealos.io.type", "rootfs"),
                ("version", "v1")
            ])
        );
        assert_eq!(
            stage.config.cmd,
            Some(strings(&["kubectl apply -f $(VAR)"]))
        );
        let dests: Vec<_> = stage.copies.iter().map(|c| c.dest.as_str()).collect();
        assert_eq!(dests, ["/etc", "/scripts/"]);
    }

    #[test]
    fn buildah_arg_without_value_then_env_default() {
        let stage = run_file("arg-env-default", &[]);
        assert_eq!(
            stage.config.env,
            env(&[
                ("PATH", PATH),
                ("NAME", "calico"),
                ("OTHER", "fallback value"),
                ("PLUS", "set"),
                ("EMPTYPLUS", "")
            ])
        );
        assert_eq!(
            stage.config.labels,
            labels(&[
                ("emptyplus", "xx"),
                ("name", "calico"),
                ("other", "fallback value"),
                ("plus", "set")
            ])
        );
    }

    #[test]
    fn buildah_build_arg_overrides_declared_arg_and_unused_ones_are_listed() {
        let text =
            "FROM scratch\nARG NAME\nENV NAME=${NAME:-\"calico\"}\nARG DEF=d\nLABEL def=$DEF\n";
        let stage = run_text(text, &[("NAME", "flannel"), ("DEF", "x"), ("ZZ", "1")]).unwrap();
        assert_eq!(
            stage.config.env,
            env(&[("PATH", PATH), ("NAME", "flannel")])
        );
        assert_eq!(stage.config.labels, labels(&[("def", "x")]));
        assert_eq!(stage.unused_build_args, ["ZZ"]);
    }

    #[test]
    fn buildah_env_forms_quotes_and_in_place_replacement() {
        let stage = run_file("env-forms", &[]);
        assert_eq!(
            stage.config.env,
            env(&[
                ("PATH", PATH),
                ("A", "3"),
                ("B", "two words"),
                ("LEGACY", "value with   spaces"),
                ("C", "1-two words"),
                ("D", "single $A"),
                ("E", "double 1"),
                ("F", "a b"),
                ("G", "$A")
            ])
        );
        assert_eq!(
            stage.config.labels,
            labels(&[("c", "1-two words"), ("legacy", "value with   spaces")])
        );
    }

    #[test]
    fn buildah_entrypoint_keeps_cmd_set_in_same_file() {
        let stage = run_file("entrypoint-cmd", &[]);
        assert_eq!(stage.config.entrypoint, Some(strings(&["/bin/entry"])));
        assert_eq!(stage.config.cmd, Some(strings(&["/bin/server", "--flag"])));
    }

    #[test]
    fn buildah_shell_forms_are_wrapped_in_sh_c_unexpanded() {
        let stage = run_file("entrypoint-first", &[]);
        assert_eq!(
            stage.config.entrypoint,
            Some(strings(&["/bin/sh", "-c", "/bin/entry --x \"$HOME\""]))
        );
        assert_eq!(
            stage.config.cmd,
            Some(strings(&["/bin/sh", "-c", "run it"]))
        );
    }

    #[test]
    fn entrypoint_drops_the_base_images_cmd() {
        let kf = parse("FROM base\nENTRYPOINT [\"/e\"]\n", "K").unwrap();
        let base = ConfigState {
            cmd: Some(strings(&["/base-cmd"])),
            ..ConfigState::scratch()
        };
        let stage = evaluate(&kf, &opts(&[]), base).unwrap();
        assert_eq!(stage.config.cmd, None);
    }

    #[test]
    fn buildah_empty_json_entrypoint_clears_it_and_keeps_cmd() {
        let stage = run_text("FROM scratch\nCMD [\"x\"]\nENTRYPOINT []\n", &[]).unwrap();
        assert_eq!(stage.config.entrypoint, None);
        assert_eq!(stage.config.cmd, Some(strings(&["x"])));
        let stage = run_text("FROM scratch\nCMD [\"x\"]\nCMD []\n", &[]).unwrap();
        assert_eq!(stage.config.cmd, None);
    }

    #[test]
    fn buildah_workdir_relative_joins_and_cleans_absolute_is_verbatim() {
        let stage = run_text(
            "FROM scratch\nWORKDIR /a\nWORKDIR b/../c\nWORKDIR ./d/\n",
            &[],
        )
        .unwrap();
        assert_eq!(stage.config.working_dir.as_deref(), Some("/a/c/d"));
        let stage = run_text("FROM scratch\nWORKDIR rel\nWORKDIR /x//y/./z/\n", &[]).unwrap();
        assert_eq!(stage.config.working_dir.as_deref(), Some("/x//y/./z/"));
        let stage = run_text("FROM scratch\nENV D=/opt\nWORKDIR $D/x\nUSER ${D}\n", &[]).unwrap();
        assert_eq!(stage.config.working_dir.as_deref(), Some("/opt/x"));
        assert_eq!(stage.config.user.as_deref(), Some("/opt"));
    }

    #[test]
    fn copy_destinations_resolve_against_workdir() {
        let stage = run_file("workdir-copy", &[]);
        assert_eq!(stage.config.working_dir.as_deref(), Some("/"));
        let got: Vec<_> = stage
            .copies
            .iter()
            .map(|c| {
                (
                    c.sources.join(","),
                    c.dest.as_str(),
                    c.chmod,
                    c.extract_archives,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("f".to_string(), "/a/c/d/rel/", None, false),
                ("f,g".to_string(), "/a/c/d/multi/", None, false),
                ("f".to_string(), "/abs/f", Some(0o644), true),
                ("f".to_string(), "/a/c/d/with space/", None, false),
                ("f".to_string(), "/", None, false),
            ]
        );
    }

    #[test]
    fn buildah_metadata_ports_volumes_user_signal() {
        let stage = run_file("metadata", &[]);
        let c = &stage.config;
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.author.as_deref(), Some("Jane Doe <jane@example.com>"));
        let mut ports = c.exposed_ports.clone();
        ports.sort();
        assert_eq!(ports, ["443/tcp", "53/udp", "80/tcp", "80/udp", "8080/tcp"]);
        let mut volumes = c.volumes.clone();
        volumes.sort();
        assert_eq!(volumes, ["/a", "/b", "/data", "/x y"]);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
    }

    #[test]
    fn buildah_expose_skips_known_port_numbers_and_keeps_protocol_case() {
        let text = "FROM scratch\nEXPOSE 80/udp\nEXPOSE 80\nEXPOSE 8000-8002 90/TCP\nENV P=\"1 2\"\nEXPOSE $P\n";
        let stage = run_text(text, &[]).unwrap();
        assert_eq!(
            stage.config.exposed_ports,
            ["80/udp", "8000-8002/tcp", "90/TCP", "1/tcp", "2/tcp"]
        );
    }

    #[test]
    fn buildah_volume_json_is_expanded_and_words_are_not_split() {
        let text = "FROM scratch\nENV X=ex P=\"a b\"\nVOLUME [\"/data/$X\", \"/b\"]\nVOLUME $P\n";
        let stage = run_text(text, &[]).unwrap();
        assert_eq!(stage.config.volumes, ["/data/ex", "/b", "a b"]);
    }

    #[test]
    fn buildah_escape_directive_does_not_reach_the_lexer() {
        // buildah honours `# escape=`` for continuations but still expands
        // with `\` as the escape: `\p` loses its backslash.
        let stage = run_file("escape-backtick", &[]);
        assert_eq!(
            stage.config.env,
            env(&[("PATH", PATH), ("P", "C:dir"), ("Q", "two")])
        );
        assert_eq!(stage.config.labels, labels(&[("a", "`"), ("b", "c:path")]));
    }

    #[test]
    fn buildah_comments_and_blank_lines_inside_continuations() {
        let stage = run_file("continuation-comments", &[]);
        assert_eq!(
            stage.config.labels,
            labels(&[("one", "1"), ("three", "3"), ("two", "2")])
        );
        assert_eq!(stage.config.env, env(&[("PATH", PATH), ("lower", "case")]));
    }

    #[test]
    fn buildah_args_before_from_are_only_for_from_unless_redeclared() {
        let stage = run_file("pre-from-args", &[]);
        assert_eq!(
            stage.config.labels,
            labels(&[
                ("base", "xx"),
                ("other", "none"),
                ("version", "1.0"),
                ("withdef", "default")
            ])
        );
        let stage = run_file(
            "pre-from-args",
            &[("VERSION", "2.0"), ("OTHER", "o"), ("UNUSED", "1")],
        );
        assert_eq!(
            stage.config.labels,
            labels(&[
                ("base", "xx"),
                ("other", "o"),
                ("version", "2.0"),
                ("withdef", "default")
            ])
        );
        assert_eq!(stage.unused_build_args, ["UNUSED"]);
    }

    #[test]
    fn from_sees_pre_from_args_and_build_args() {
        let kf = parse("ARG BASE=scratch\nFROM ${BASE}\n", "K").unwrap();
        assert_eq!(evaluate_from(&kf, &opts(&[])).unwrap(), BaseImage::Scratch);
        let got = evaluate_from(&kf, &opts(&[("BASE", "docker.io/x:1")])).unwrap();
        assert!(
            matches!(got, BaseImage::Image { name, location } if name == "docker.io/x:1" && location.line == 2 && location.column == 6)
        );
    }

    #[test]
    fn buildah_quotes_in_label_keys_and_values() {
        let stage = run_file("quotes", &[]);
        assert_eq!(
            stage.config.labels,
            labels(&[
                ("back", "a\\b"),
                ("brace", "exy"),
                ("dollar", "$"),
                ("esc", "q\"q"),
                ("key with space", "v 1"),
                ("mixed", "ab exd"),
                ("single", "$X"),
                ("tail", "ab")
            ])
        );
    }

    #[test]
    fn buildah_platform_args_need_declaring() {
        let stage = run_file("platform-args", &[]);
        assert_eq!(
            stage.config.labels,
            labels(&[
                ("arch", "amd64"),
                ("barch", "amd64"),
                ("bplat", "linux/amd64"),
                ("notdeclared", "xx"),
                ("os", "linux"),
                ("platform", "linux/amd64")
            ])
        );
    }

    #[test]
    fn buildah_env_wins_over_arg_and_sees_base_path() {
        let stage = run_file("env-over-arg", &[]);
        assert_eq!(
            stage.config.env,
            env(&[("PATH", &format!("/opt/bin:{PATH}")), ("X", "env")])
        );
        assert_eq!(stage.config.labels, labels(&[("path", PATH), ("x", "env")]));
    }

    #[test]
    fn buildah_arg_multi_and_legacy_env_with_expansion() {
        let stage = run_text("FROM scratch\nARG A=1 B=2\nLABEL a=$A b=$B\n", &[]).unwrap();
        assert_eq!(stage.config.labels, labels(&[("a", "1"), ("b", "2")]));
        let stage = run_text(
            "FROM scratch\nENV A=one\nENV K $A \"two  three\" 'four'\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            stage.config.env[2],
            ("K".into(), "one two  three four".into())
        );
        let stage = run_text(
            "FROM scratch\nLABEL a=b=c \"x\"y=z\nENV \"A\"=1 B= C=\"\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(stage.config.labels, labels(&[("a", "b=c"), ("xy", "z")]));
        assert_eq!(
            &stage.config.env[1..],
            env(&[("A", "1"), ("B", ""), ("C", "")])
        );
    }

    #[test]
    fn buildah_stopsignal_accepts_numbers_and_lowercase_names() {
        for ok in ["9", "kill", "SIGRTMIN+3", "RTMAX-14", "term"] {
            let stage = run_text(&format!("FROM scratch\nSTOPSIGNAL {ok}\n"), &[]).unwrap();
            assert_eq!(stage.config.stop_signal.as_deref(), Some(ok));
        }
    }

    fn error_of(text: &str) -> String {
        run_text(text, &[]).unwrap_err().to_string()
    }

    #[test]
    fn evaluation_errors_point_at_the_word() {
        assert_eq!(
            error_of("FROM scratch\nSTOPSIGNAL NOPE\n"),
            "Kubefile:2:12: invalid STOPSIGNAL `NOPE`; expected a signal name (SIGTERM, KILL) or a number"
        );
        assert_eq!(
            error_of("FROM scratch\nVOLUME [\"\"]\n"),
            "Kubefile:2:8: VOLUME path is empty; expected a path such as /data"
        );
        assert_eq!(
            error_of("FROM scratch\nCOPY --chmod=999 f /f\n"),
            "Kubefile:2:14: invalid --chmod value `999`; expected octal permissions such as 0644"
        );
        assert_eq!(
            error_of("FROM scratch\nLABEL ok=1 a=\"x\n"),
            "Kubefile:2:14: cannot expand `\"x`: unterminated double quote; close it with \""
        );
        assert_eq!(
            error_of("FROM scratch\nLABEL a=${U-d}\n"),
            "Kubefile:2:9: cannot expand `${U-d}`: unsupported substitution `${U`; expected ${U}, ${U:-default} or ${U:+alternative}"
        );
        assert_eq!(
            error_of("FROM scratch\nENV a=${U:?x}\n"),
            "Kubefile:2:7: cannot expand `${U:?x}`: unsupported modifier `:?` in ${U:...}; expected :- or :+"
        );
        assert_eq!(
            error_of("FROM scratch\nENV =x\n"),
            "Kubefile:2:5: empty name in `=x`; expected NAME=VALUE"
        );
        assert_eq!(
            error_of("FROM $NOPE\n"),
            "Kubefile:1:6: FROM has no arguments; expected an image name; this one expands to nothing"
        );
    }

    #[test]
    fn clean_rooted_matches_go_filepath_clean() {
        assert_eq!(clean_rooted("/a/../../b/./c//"), "/b/c");
        assert_eq!(clean_rooted("/"), "/");
        assert_eq!(clean_rooted(""), "/");
    }

    #[test]
    fn corpus_inputs_never_panic() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kubefile-corpus");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).expect("corpus dir") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            let text = String::from_utf8_lossy(&bytes);
            let _ = run_text(&text, &[("NAME", "x y"), ("VERSION", "$X")]);
            if let Ok(kf) = parse(&text, "corpus") {
                let _ = evaluate(&kf, &EvalOptions::default(), ConfigState::default());
            }
            count += 1;
        }
        assert!(count >= 10, "corpus has {count} files");
    }
}
