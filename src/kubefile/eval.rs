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
use super::expand::{expand_fields, expand_word, undefined_names, Vars};
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
    let mut warnings = Vec::new();
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
                warnings.extend(undefined_in_label(pairs, vars, &args.declared));
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
        warnings,
    })
}

/// A warning for each variable a LABEL reads that nothing defines (an ARG
/// declared without a value is defined: it is empty on purpose).
fn undefined_in_label(
    pairs: &[super::parser::Pair],
    vars: Vars<'_>,
    declared: &BTreeSet<String>,
) -> Vec<String> {
    let known: Vec<&str> = vars
        .env
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(declared.iter().map(String::as_str))
        .collect();
    let mut out = Vec::new();
    for word in pairs.iter().flat_map(|p| [&p.name, &p.value]) {
        for name in undefined_names(&word.text, vars) {
            if declared.contains(&name) {
                continue;
            }
            let hint = crate::progress::text::closest(&name, &known)
                .map(|k| format!("did you mean ${k}? "))
                .unwrap_or_default();
            out.push(format!(
                "{}: LABEL reads ${name}, which no ARG or ENV before it defines, so it is empty (UndefinedVar); {hint}declare it with ARG {name} (and --build-arg {name}=...) or ENV",
                word.location
            ));
        }
    }
    out
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
mod tests;
