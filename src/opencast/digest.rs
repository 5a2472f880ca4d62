//! HTTP Digest authentication (RFC 2617, MD5, `qop=auth`) as Opencast's REST endpoints use it.
//!
//! The client's side: answering a `WWW-Authenticate` challenge. The simulated Opencast checks
//! the answer with its own code (`sim::digest`), so the two are not wrong the same way.

use std::collections::HashMap;

use md5::{Digest as _, Md5};

/// A parsed `WWW-Authenticate: Digest ...` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value; `None` when it is not a Digest challenge.
    pub fn parse(header: &str) -> Option<Challenge> {
        let rest = header.trim();
        let (scheme, params) = rest.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let p = parse_params(params);
        Some(Challenge {
            realm: p.get("realm")?.clone(),
            nonce: p.get("nonce")?.clone(),
            opaque: p.get("opaque").cloned(),
            qop_auth: p
                .get("qop")
                .map(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")))
                .unwrap_or(false),
            stale: p
                .get("stale")
                .map(|s| s.eq_ignore_ascii_case("true"))
                .unwrap_or(false),
        })
    }

    /// The `Authorization` header value answering this challenge for one request.
    pub fn authorization(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let ha1 = md5_hex(&format!("{user}:{}:{password}", self.realm));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let nc_s = format!("{nc:08x}");
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm=MD5",
            quote(user),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri)
        );
        if self.qop_auth {
            let resp = md5_hex(&format!("{ha1}:{}:{nc_s}:{cnonce}:auth:{ha2}", self.nonce));
            h.push_str(&format!(
                ", qop=auth, nc={nc_s}, cnonce=\"{cnonce}\", response=\"{resp}\""
            ));
        } else {
            let resp = md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce));
            h.push_str(&format!(", response=\"{resp}\""));
        }
        if let Some(o) = &self.opaque {
            h.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        h
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn md5_hex(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    let mut out = String::with_capacity(32);
    for b in d {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Parses `k=v, k="quoted, value"` lists, honouring quotes and backslash escapes.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                val.push(n)
                            }
                        }
                        '"' => break,
                        _ => val.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        // The worked example of RFC 2617 section 3.5.
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let h = c.authorization(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
    }

    #[test]
    fn any_realm_and_stale() {
        let c = Challenge::parse(r#"Digest realm="Matterhorn", nonce="x", qop="auth", stale=true"#)
            .unwrap();
        assert_eq!(c.realm, "Matterhorn");
        assert!(c.stale && c.qop_auth && c.opaque.is_none());
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
    }
}
