//! The simulator's side of HTTP Digest authentication (RFC 2617, MD5): reading and checking a
//! client's `Authorization` header.
//!
//! Written apart from the Opencast client's digest code on purpose: the simulator is the
//! server that client is tested against, so it must not share the client's mistakes.

use std::collections::HashMap;

use md5::{Digest as _, Md5};

/// The fields of a client's `Authorization: Digest ...` header, as a server reads them.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

impl Credentials {
    pub fn parse(header: &str) -> Option<Credentials> {
        let (scheme, params) = header.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let p = parse_params(params);
        Some(Credentials {
            username: p.get("username")?.clone(),
            realm: p.get("realm")?.clone(),
            nonce: p.get("nonce")?.clone(),
            uri: p.get("uri")?.clone(),
            response: p.get("response")?.clone(),
            qop: p.get("qop").cloned(),
            nc: p.get("nc").cloned(),
            cnonce: p.get("cnonce").cloned(),
        })
    }

    /// True when `response` is what `password` yields for this request.
    pub fn verify(&self, password: &str, method: &str) -> bool {
        let ha1 = md5_hex(&format!("{}:{}:{password}", self.username, self.realm));
        let ha2 = md5_hex(&format!("{method}:{}", self.uri));
        let expected = match (&self.qop, &self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) => {
                md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce))
            }
            _ => md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        expected.eq_ignore_ascii_case(&self.response)
    }
}

/// MD5 of `s` as 32 lowercase hex digits.
fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        // The client's answer in the worked example of RFC 2617 section 3.5.
        let h = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let creds = Credentials::parse(h).unwrap();
        assert_eq!(creds.username, "Mufasa");
        assert_eq!(creds.uri, "/dir/index.html");
        assert!(creds.verify("Circle Of Life", "GET"));
        assert!(!creds.verify("wrong", "GET"));
        assert!(Credentials::parse("Basic dXNlcjpwYXNz").is_none());
    }

    #[test]
    fn quoted_values_keep_commas_and_escapes() {
        let creds = Credentials::parse(
            r#"Digest username="a\"b, c", realm="r", nonce="n", uri="/x?a=1,2", response="00""#,
        )
        .unwrap();
        assert_eq!(creds.username, "a\"b, c");
        assert_eq!(creds.uri, "/x?a=1,2");
        assert!(creds.qop.is_none());
    }
}
