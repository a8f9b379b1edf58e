//! The one type for a value that must not show: an SSH password, a join
//! token, an env value that holds a credential.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string: `Debug` and `Display` print `<redacted>`; only
/// [`Secret::expose`] gives the value, for the one place that needs it.
/// It serializes as the plain string, so a type that holds one decides, by
/// being serialized or not, whether it may travel (a request on stdin) or
/// not (a Clusterfile keeps only where a password comes from).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("pa$$w0rd");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "pa$$w0rd");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"pa$$w0rd\"");
    }
}
