//! Dry runs print the cluster env so that values can be checked byte for
//! byte; those whose keys look like secrets are masked unless asked for,
//! so that a dry run pasted into a ticket or a CI log leaks nothing.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::Result;

use crate::plan::quote_env;

/// Words in an env key (any case) that make its value a secret.
const SECRET_WORDS: [&str; 5] = ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY"];

/// Whether `key` names a secret: `*PASSWORD*`, `*TOKEN*`, `*SECRET*`, `*KEY*`.
pub(super) fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// `plans` with each `KEY=VALUE` of `env` whose key looks secret shown as
/// `KEY=<masked>`, and the keys masked.
pub(super) fn mask_env<'e>(
    plans: &str,
    env: &'e BTreeMap<String, String>,
) -> (String, Vec<&'e str>) {
    let mut out = plans.to_string();
    let mut masked = Vec::new();
    for (key, value) in env.iter().filter(|(k, v)| looks_secret(k) && !v.is_empty()) {
        let shown = quote_env(key, value);
        if out.contains(&shown) {
            out = out.replace(&shown, &format!("{key}=<masked>"));
            masked.push(key.as_str());
        }
    }
    (out, masked)
}

/// Prints a dry run's plans to stdout, masked unless `show_secrets`; says on
/// stderr which values were masked.
pub(super) fn print_plans(
    plans: &str,
    env: &BTreeMap<String, String>,
    show_secrets: bool,
) -> Result<()> {
    let (text, masked) = if show_secrets {
        (plans.to_string(), Vec::new())
    } else {
        mask_env(plans, env)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    if !masked.is_empty() {
        eprintln!(
            "note: the value{} of {} {} masked; --show-secrets shows {}",
            if masked.len() == 1 { "" } else { "s" },
            masked.join(", "),
            if masked.len() == 1 { "is" } else { "are" },
            if masked.len() == 1 { "it" } else { "them" },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_name_secrets_are_masked_and_others_shown_exactly() {
        assert!(looks_secret("DB_PASSWORD") && looks_secret("api_token"));
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY") && looks_secret("sshKey"));
        assert!(!looks_secret("POD_CIDR") && !looks_secret("CONTROL_PLANE_ENDPOINT"));
        let env: BTreeMap<String, String> = [
            ("API_TOKEN", "s3cr$t \"x\""),
            ("POD_CIDR", "10.42.0.0/16"),
            ("EMPTY_KEY", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let plans = format!(
            "env (for templates):\n  {}\n  {}\n      env: {}\n",
            quote_env("API_TOKEN", "s3cr$t \"x\""),
            quote_env("POD_CIDR", "10.42.0.0/16"),
            quote_env("API_TOKEN", "s3cr$t \"x\""),
        );
        let (text, masked) = mask_env(&plans, &env);
        assert_eq!(masked, vec!["API_TOKEN"]);
        assert!(!text.contains("s3cr"), "{text}");
        assert_eq!(text.matches("API_TOKEN=<masked>").count(), 2, "{text}");
        assert!(text.contains("POD_CIDR=10.42.0.0/16"), "{text}");
    }
}
