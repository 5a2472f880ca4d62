//! `ELASTICSEARCH_HOST`: `host`, `host:port` or a URL with optional `user:password@`, into a
//! base URL and credentials; and the setting without its password, for messages.

use elasticsearch::auth::Credentials;
use elasticsearch::http::Url;

use super::EsError;

/// `host`, `host:port`, or a URL (optionally with `user:password@`) → base URL + credentials.
pub fn parse_host(host: &str) -> Result<(Url, Option<Credentials>), EsError> {
    let h = host.trim();
    if h.is_empty() {
        return Err(EsError::BadHost(String::new()));
    }
    let with_scheme = if h.contains("://") {
        h.to_string()
    } else {
        format!("http://{h}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|_| EsError::BadHost(redact(h)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(EsError::BadHost(redact(h)));
    }
    if url.port().is_none() && !h.contains("://") {
        // The original's ELASTICSEARCH_HOST is "host:port"; a bare host means the default port.
        let _ = url.set_port(Some(9200));
    }
    let credentials = if url.username().is_empty() {
        None
    } else {
        let user = percent_decode(url.username());
        let pass = percent_decode(url.password().unwrap_or(""));
        Some(Credentials::Basic(user, pass))
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok((url, credentials))
}

/// The host setting with any password replaced, for messages.
pub fn redact(host: &str) -> String {
    crate::secret::redact_userinfo(host)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        let (u, c) = parse_host("localhost:9200").unwrap();
        assert_eq!(u.as_str(), "http://localhost:9200/");
        assert!(c.is_none());
        let (u, _) = parse_host("es.example.edu").unwrap();
        assert_eq!(u.as_str(), "http://es.example.edu:9200/");
        let (u, c) = parse_host("https://elastic:p%40ss@es.example.edu:9243/prefix").unwrap();
        assert_eq!(u.as_str(), "https://es.example.edu:9243/prefix/");
        match c {
            Some(Credentials::Basic(user, pass)) => {
                assert_eq!(user, "elastic");
                assert_eq!(pass, "p@ss");
            }
            _ => panic!("expected basic credentials"),
        }
        assert!(parse_host("ftp://x").is_err());
        assert!(parse_host("").is_err());
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redact("https://elastic:secret@es:9243"),
            "https://***@es:9243"
        );
        assert_eq!(redact("elastic:secret@es:9200"), "***@es:9200");
        assert_eq!(redact("es:9200"), "es:9200");
        let e = parse_host("https://u:secret@").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
