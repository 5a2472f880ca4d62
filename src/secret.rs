//! Secrets (passwords, tokens) in a type that cannot print itself.
//!
//! A `#[derive(Debug)]` on a settings struct would otherwise print a password in any `{:?}`,
//! a panic message or a trace line. [`Secret`] shows `***` in `Debug` and `Display`; the value
//! is reached only through [`Secret::expose`], at the one place that sends it.

use std::fmt;

/// A password or token: `Debug` and `Display` print `***`, never the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the code that sends it (and nothing that prints).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// A URL or `user:password@host` setting with the user information replaced by `***`, for
/// messages (works on strings that do not parse as URLs too).
pub fn redact_userinfo(host: &str) -> String {
    let (scheme, rest) = match host.find("://") {
        Some(s) => host.split_at(s + 3),
        None => ("", host),
    };
    // Everything up to the last '@' goes: a password may hold '/', '?' or '#' itself, and
    // hiding a path's '@' too costs nothing in a message.
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(***))");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("https://elastic:secret@es:9243/p"),
            "https://***@es:9243/p"
        );
        assert_eq!(redact_userinfo("elastic:secret@es:9200"), "***@es:9200");
        assert_eq!(redact_userinfo("u:p@ss@h"), "***@h");
        assert_eq!(redact_userinfo("es:9200"), "es:9200");
        assert_eq!(redact_userinfo("http://u:pa/ss@h"), "http://***@h");
        assert_eq!(redact_userinfo("http://u:secret@"), "http://***@");
    }
}
