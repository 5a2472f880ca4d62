//! HTTP Digest authentication, the client's side (RFC 7616, which keeps RFC 2617's MD5): reading
//! a `WWW-Authenticate` challenge and computing the `Authorization` answer for one request.
//!
//! Opencast's Spring filter sends MD5 with `qop="auth"`; RFC 7616 adds `SHA-256` and the `-sess`
//! variants, which a proxy or a patched server in front of Opencast may ask for. What the
//! harvester cannot answer (`qop=auth-int` alone, an unknown algorithm) is an [`Unsupported`]
//! challenge, a final answer that says so: never "wrong credentials". The simulated Opencast
//! checks answers with its own code (`sim::digest`), so the two are not wrong the same way.

use std::collections::HashMap;

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// The hash of a challenge (`algorithm=`; MD5 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// The token as RFC 7616 spells it (compared without case).
    fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// `-sess`: A1 also holds the nonce and the client nonce (RFC 7616 section 3.4.2).
    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// `H(s)`: the digest of `s` in lowercase hex.
    fn hex(self, s: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(s.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(s.as_bytes())),
        }
    }
}

/// A Digest challenge the harvester cannot answer, and why (the server's values are shown
/// shortened and escaped: they are outside input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("algorithm={0} (the harvester answers MD5, MD5-sess, SHA-256 and SHA-256-sess)")]
    Algorithm(String),
    #[error("qop=\"{0}\" without \"auth\" (the harvester answers qop=auth, not auth-int)")]
    Qop(String),
}

/// A parsed `WWW-Authenticate: Digest ...` challenge the harvester can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `qop` offered `auth` (else no `qop`: RFC 2069's answer).
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value: `None` when it is not a Digest challenge (or
    /// lacks its realm or nonce), `Some(Err)` when it is one the harvester cannot answer.
    pub fn parse(header: &str) -> Option<Result<Challenge, Unsupported>> {
        let (scheme, params) = header.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let p = parse_params(params);
        let realm = p.get("realm")?.clone();
        let nonce = p.get("nonce")?.clone();
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(a) => a,
                None => return Some(Err(Unsupported::Algorithm(shown(a)))),
            },
        };
        let qop_auth = match p.get("qop") {
            None => false,
            Some(q) => {
                if !q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")) {
                    return Some(Err(Unsupported::Qop(shown(q))));
                }
                true
            }
        };
        Some(Ok(Challenge {
            realm,
            nonce,
            opaque: p.get("opaque").cloned(),
            algorithm,
            qop_auth,
            stale: p
                .get("stale")
                .map(|s| s.eq_ignore_ascii_case("true"))
                .unwrap_or(false),
        }))
    }

    /// The `Authorization` header value answering this challenge for one request: `nc` counts
    /// the requests made with this nonce (from 1), `cnonce` is the client's nonce (for a
    /// `-sess` algorithm, the same one for every request of this challenge).
    pub fn authorization(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let mut ha1 = alg.hex(&format!("{user}:{}:{password}", self.realm));
        if alg.is_sess() {
            ha1 = alg.hex(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.hex(&format!("{method}:{uri}"));
        let nc_s = format!("{nc:08x}");
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}",
            quote(user),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            alg.name()
        );
        if self.qop_auth {
            let resp = alg.hex(&format!("{ha1}:{}:{nc_s}:{cnonce}:auth:{ha2}", self.nonce));
            h.push_str(&format!(
                ", qop=auth, nc={nc_s}, cnonce=\"{}\", response=\"{resp}\"",
                quote(cnonce)
            ));
        } else {
            if alg.is_sess() {
                // RFC 2617 3.2.2.2: A1 of a -sess algorithm needs the cnonce, sent even without qop.
                h.push_str(&format!(", cnonce=\"{}\"", quote(cnonce)));
            }
            let resp = alg.hex(&format!("{ha1}:{}:{ha2}", self.nonce));
            h.push_str(&format!(", response=\"{resp}\""));
        }
        if let Some(o) = &self.opaque {
            h.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        h
    }
}

/// A server's value as it may be shown: at most 40 characters, control characters escaped.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_default).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// MD5 of `s` as 32 lowercase hex digits.
pub fn md5_hex(s: &str) -> String {
    Algorithm::Md5.hex(s)
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

    fn ok(h: &str) -> Challenge {
        Challenge::parse(h)
            .expect("a digest challenge")
            .expect("supported")
    }

    #[test]
    fn rfc2617_example() {
        // The worked example of RFC 2617 section 3.5.
        let c = ok(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
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

    /// RFC 7616 section 3.9.1: the same request answered with SHA-256 and with MD5 (the
    /// password is "Circle of Life" there).
    #[test]
    fn rfc7616_examples() {
        let challenge = |alg: &str| {
            format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            )
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, want) in [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let c = ok(&challenge(alg));
            let h = c.authorization(
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                1,
                cnonce,
            );
            assert!(h.contains(&format!(r#"response="{want}""#)), "{alg}: {h}");
            assert!(h.contains(&format!("algorithm={alg}")), "{h}");
            assert!(h.contains("qop=auth, nc=00000001"), "{h}");
            assert!(
                h.contains(r#"opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#),
                "{h}"
            );
        }
    }

    /// `-sess`: A1 = H(H(user:realm:password):nonce:cnonce), computed by hand here.
    #[test]
    fn sess_variants_hash_the_nonces_into_a1() {
        for (alg, a) in [
            ("MD5-sess", Algorithm::Md5),
            ("SHA-256-sess", Algorithm::Sha256),
        ] {
            let c = ok(&format!(
                r#"Digest realm="r", qop="auth", algorithm={alg}, nonce="n""#
            ));
            assert_eq!(c.algorithm.name(), alg);
            let ha1 = a.hex(&format!("{}:n:cn", a.hex("u:r:p")));
            let ha2 = a.hex("GET:/x");
            let want = a.hex(&format!("{ha1}:n:00000002:cn:auth:{ha2}"));
            let h = c.authorization("u", "p", "GET", "/x", 2, "cn");
            assert!(h.contains(&format!(r#"response="{want}""#)), "{alg}: {h}");
        }
    }

    #[test]
    fn what_cannot_be_answered_says_so() {
        let e = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#)
            .unwrap()
            .unwrap_err();
        assert_eq!(e, Unsupported::Qop("auth-int".into()));
        assert!(e.to_string().contains("auth-int"), "{e}");
        let e = Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#)
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("algorithm=SHA-512-256"), "{e}");
        let e = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=\"\u{1b}[2Jx\"")
            .unwrap()
            .unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
    }

    #[test]
    fn any_realm_and_stale() {
        let c = ok(r#"Digest realm="Matterhorn", nonce="x", qop="auth", stale=true"#);
        assert_eq!(c.realm, "Matterhorn");
        assert!(c.stale && c.qop_auth && c.opaque.is_none());
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
        // Spring's own form: stale="true" quoted.
        assert!(ok(r#"Digest realm="Opencast", qop="auth", nonce="x", stale="true""#).stale);
    }
}
