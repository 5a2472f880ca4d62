//! The simulator's side of HTTP authentication: reading and checking a client's Digest answer
//! (RFC 2617's MD5 as Spring's filter checks it, and RFC 7616's SHA-256 and `-sess` variants a
//! test may ask for) and its Basic credentials.
//!
//! Written apart from the Opencast client's digest code on purpose: the simulator is the
//! server that client is tested against, so it must not share the client's mistakes.

use std::collections::HashMap;

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// The `algorithm` the simulator's challenges name (Spring's entry point names none: MD5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimAlgorithm {
    /// No `algorithm` parameter, as Opencast sends it.
    #[default]
    Unnamed,
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl SimAlgorithm {
    /// The challenge's `algorithm=` parameter, if any.
    pub fn token(self) -> Option<&'static str> {
        match self {
            SimAlgorithm::Unnamed => None,
            SimAlgorithm::Md5 => Some("MD5"),
            SimAlgorithm::Md5Sess => Some("MD5-sess"),
            SimAlgorithm::Sha256 => Some("SHA-256"),
            SimAlgorithm::Sha256Sess => Some("SHA-256-sess"),
        }
    }

    fn sha256(self) -> bool {
        matches!(self, SimAlgorithm::Sha256 | SimAlgorithm::Sha256Sess)
    }

    fn sess(self) -> bool {
        matches!(self, SimAlgorithm::Md5Sess | SimAlgorithm::Sha256Sess)
    }

    fn h(self, s: &str) -> String {
        if self.sha256() {
            Sha256::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        } else {
            md5_hex(s)
        }
    }
}

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
    pub algorithm: Option<String>,
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
            algorithm: p.get("algorithm").cloned(),
        })
    }

    /// True when `response` is what `password` yields for this request (MD5, as Opencast
    /// checks it).
    #[cfg(test)]
    pub fn verify(&self, password: &str, method: &str) -> bool {
        self.verify_with(SimAlgorithm::Unnamed, password, method)
    }

    /// True when `response` is what `password` yields under the algorithm the challenge named,
    /// and the answer names that algorithm (MD5 may be left unnamed).
    pub fn verify_with(&self, alg: SimAlgorithm, password: &str, method: &str) -> bool {
        let named = self.algorithm.as_deref().unwrap_or("MD5");
        if !named.eq_ignore_ascii_case(alg.token().unwrap_or("MD5")) {
            return false;
        }
        let mut ha1 = alg.h(&format!("{}:{}:{password}", self.username, self.realm));
        if alg.sess() {
            let Some(cnonce) = &self.cnonce else {
                return false;
            };
            ha1 = alg.h(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.h(&format!("{method}:{}", self.uri));
        let expected = match (&self.qop, &self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) => {
                alg.h(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce))
            }
            _ => alg.h(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        expected.eq_ignore_ascii_case(&self.response)
    }
}

/// The user and password of an `Authorization: Basic` header; `None` when it is not one or
/// does not decode.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(base64_decode(b64.trim())?).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Standard base64 with padding (RFC 4648 section 4), as Basic auth uses it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
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

    /// RFC 7616 section 3.9.1's answers, SHA-256 and MD5, checked by the server's code.
    #[test]
    fn rfc7616_answers_verify() {
        let h = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = Credentials::parse(h).unwrap();
        assert!(c.verify_with(SimAlgorithm::Sha256, "Circle of Life", "GET"));
        assert!(!c.verify_with(SimAlgorithm::Md5, "Circle of Life", "GET"));
        let h = h.replace("algorithm=SHA-256", "algorithm=MD5").replace(
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            "8ca523f5e9506fed4657c9700eebdbec",
        );
        let c = Credentials::parse(&h).unwrap();
        assert!(c.verify_with(SimAlgorithm::Md5, "Circle of Life", "GET"));
        assert!(c.verify("Circle of Life", "GET"));
    }

    #[test]
    fn basic_credentials_decode() {
        // RFC 7617 section 2's example.
        assert_eq!(
            basic_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Some(("Aladdin".into(), "open sesame".into()))
        );
        assert_eq!(
            basic_credentials("basic dTpwOng="),
            Some(("u".into(), "p:x".into()))
        );
        assert_eq!(basic_credentials("Basic !!!!"), None);
        assert_eq!(basic_credentials("Digest x"), None);
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
