//! Whom the harvester trusts over https: the system's trust store (with `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`) and Mozilla's roots always; a site's own CA per service from a setting
//! (`OPENCAST_CA_FILE`, `ES_CA_FILE`), or Elasticsearch's CA by its SHA-256 fingerprint
//! (`ES_CA_FINGERPRINT`, as Elasticsearch prints at first start and its own clients take).
//!
//! A certificate the harvester does not trust is a final error, never retried as if the node
//! were down: it comes back the same until a setting changes, and the message names the setting.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::ConfigError;

/// A PEM bundle of CA certificates a setting names, read and parsed when settings are checked.
#[derive(Clone)]
pub struct CaFile {
    pub setting: &'static str,
    pub path: PathBuf,
    pub certs: Vec<reqwest::Certificate>,
    /// The same certificates in DER (the Elasticsearch client takes them so).
    pub ders: Vec<Vec<u8>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaFile({}={}, {} certificates)",
            self.setting,
            self.path.display(),
            self.certs.len()
        )
    }
}

/// Largest CA bundle read (a system bundle of every public root is about 220 KB).
const MAX_CA_FILE: u64 = 16 * 1024 * 1024;

/// Reads the PEM file `path` names for `setting`: at least one certificate, or exit 2.
pub fn read_ca_file(setting: &'static str, path: &Path) -> Result<CaFile, ConfigError> {
    let shown = crate::escape::text(&path.display().to_string()).into_owned();
    let bad = |why: String| ConfigError::new(format!("{setting}={shown}: {why}"));
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
    if !meta.is_file() {
        return Err(bad(
            "is not a file; give the CA's certificate as a PEM file".into(),
        ));
    }
    if meta.len() > MAX_CA_FILE {
        return Err(bad(format!(
            "is {} bytes, more than a CA bundle ({MAX_CA_FILE} bytes at most)",
            meta.len()
        )));
    }
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's certificate in PEM"
                .into(),
        ));
    }
    // rustls's own PEM reader (pki-types): the DER of every certificate, others sections skipped.
    let mut ders = Vec::new();
    for item in CertificateDer::pem_slice_iter(&pem) {
        let der =
            item.map_err(|e| bad(format!("is not a readable PEM certificate bundle ({e})")))?;
        ders.push(der);
    }
    if ders.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    let mut certs = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        // Each one must be a usable trust anchor now, or every request would fail later.
        let usable = rustls::RootCertStore::empty().add(der.clone()).is_ok();
        let cert = reqwest::Certificate::from_der(der).ok().filter(|_| usable);
        let Some(cert) = cert else {
            return Err(bad(format!(
                "certificate {} of the file is not an X.509 certificate usable as a trust anchor",
                i + 1
            )));
        };
        certs.push(cert);
    }
    Ok(CaFile {
        setting,
        path: path.to_path_buf(),
        certs,
        ders: ders.iter().map(|d| d.to_vec()).collect(),
    })
}

/// A SHA-256 certificate fingerprint (`ES_CA_FINGERPRINT`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

/// Parses a SHA-256 fingerprint: 64 hex digits, upper or lower case, with or without `:`
/// between bytes (Elasticsearch prints it without, `openssl x509 -fingerprint -sha256` with).
pub fn parse_fingerprint(setting: &str, value: &str) -> Result<Fingerprint, ConfigError> {
    let v = value.trim();
    let v = v
        .strip_prefix("sha256:")
        .or(v.strip_prefix("SHA256:"))
        .unwrap_or(v);
    let hex: String = v.chars().filter(|c| *c != ':').collect();
    let bad = || {
        ConfigError::new(format!(
            "{setting} is not a SHA-256 fingerprint: give 64 hex digits (colons allowed), as \
             Elasticsearch prints at its first start or `openssl x509 -noout -fingerprint -sha256 \
             -in http_ca.crt` shows"
        ))
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(Fingerprint(out))
}

/// Why a TLS connection failed over the server's certificate (rustls's reason, such as
/// `UnknownIssuer` or `NotValidForName`), or `None` for any other failure.
pub fn certificate_problem(e: &(dyn StdError + 'static)) -> Option<String> {
    find_rustls(e, 0).and_then(|r| match r {
        rustls::Error::InvalidCertificate(c) => Some(format!("{c:?}")),
        _ => None,
    })
}

/// The rustls error in `e`'s chain. An `io::Error` hides the error it wraps from `source()`
/// (and the HTTP stack wraps one `io::Error` in another), so each is opened with `get_ref`.
fn find_rustls<'a>(e: &'a (dyn StdError + 'static), depth: usize) -> Option<&'a rustls::Error> {
    if depth > 16 {
        return None;
    }
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(r) = find_rustls(inner, depth + 1) {
            return Some(r);
        }
    }
    e.source().and_then(|s| find_rustls(s, depth + 1))
}

/// Records the chain a server presents and accepts it (after checking the handshake's signature,
/// so the server holds the key of the certificate it sent): used only to find the certificate
/// with a pinned fingerprint, by a request that carries no credentials.
#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self.seen.lock().expect("recorder lock");
        seen.clear();
        seen.push(end_entity.clone().into_owned());
        seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why the certificate with a pinned fingerprint could not be had.
#[derive(Debug)]
pub enum PinError {
    /// The node could not be reached (worth trying again).
    Unreachable(String),
    /// It answered, but no certificate in its chain has the fingerprint (final).
    NotPresented { presented: Vec<Fingerprint> },
}

/// Connects to `url` (https), and returns the certificate of the chain the server presents whose
/// SHA-256 fingerprint is `pin`: the caller trusts it as a root, so every later connection is
/// verified in full (chain, dates, host name) against it. The request carries no credentials.
pub async fn fetch_pinned(
    url: &reqwest::Url,
    pin: Fingerprint,
    timeout: Duration,
) -> Result<Vec<u8>, PinError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let verifier = Arc::new(Recorder {
        seen: seen.clone(),
        provider: provider.clone(),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PinError::Unreachable(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| PinError::Unreachable(e.to_string()))?;
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare.set_path("/");
    bare.set_query(None);
    // Any answer (a 401 from a secured node) will do: the handshake is what counts.
    client
        .head(bare)
        .send()
        .await
        .map_err(|e| PinError::Unreachable(crate::escape::text(&error_chain(&e)).into_owned()))?;
    let certs = seen.lock().expect("recorder lock").clone();
    match certs.iter().find(|c| Fingerprint::of(c) == pin) {
        Some(c) => Ok(c.to_vec()),
        None => Err(PinError::NotPresented {
            presented: certs.iter().map(|c| Fingerprint::of(c)).collect(),
        }),
    }
}

/// An error and its sources in one line, each source once (Elasticsearch and the pinning
/// request both report with it).
pub fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_every_usual_spelling() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        for v in [hex.as_str(), colons.as_str(), &format!("  {hex} ")] {
            assert_eq!(
                parse_fingerprint("ES_CA_FINGERPRINT", v).unwrap().0,
                [0xab; 32]
            );
        }
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            let e = parse_fingerprint("ES_CA_FINGERPRINT", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("ES_CA_FINGERPRINT"), "{e}");
        }
    }

    proptest::proptest! {
        /// Any fingerprint, in any of the usual spellings, parses to itself; any other text is
        /// refused with the setting's name, never a panic.
        #[test]
        fn fingerprints_round_trip_and_garbage_is_refused(
            bytes in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            colons in proptest::prelude::any::<bool>(),
            upper in proptest::prelude::any::<bool>(),
            junk in proptest::prelude::any::<String>(),
        ) {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut text = hex.join(if colons { ":" } else { "" });
            if upper {
                text = text.to_uppercase();
            }
            proptest::prop_assert_eq!(parse_fingerprint("ES_CA_FINGERPRINT", &text).unwrap().0, bytes);
            proptest::prop_assert_eq!(Fingerprint(bytes).to_string(), hex.concat());
            if let Err(e) = parse_fingerprint("ES_CA_FINGERPRINT", &junk) {
                proptest::prop_assert!(e.to_string().contains("ES_CA_FINGERPRINT"));
            }
        }

        /// A CA file of arbitrary bytes is refused by name or read, never a panic.
        #[test]
        fn ca_files_of_any_bytes_never_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            framed in proptest::prelude::any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ca.pem");
            let mut bytes = Vec::new();
            if framed {
                bytes.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
            }
            bytes.extend_from_slice(&body);
            if framed {
                bytes.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
            }
            std::fs::write(&path, &bytes).unwrap();
            if let Err(e) = read_ca_file("OPENCAST_CA_FILE", &path) {
                proptest::prop_assert!(e.to_string().contains("OPENCAST_CA_FILE"));
            }
        }
    }

    #[test]
    fn ca_files_that_are_not_certificates_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = read_ca_file("ES_CA_FILE", &missing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ES_CA_FILE") && e.contains("nope.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let e = read_ca_file("OPENCAST_CA_FILE", &junk)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("OPENCAST_CA_FILE") && e.contains("no PEM"),
            "{e}"
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca_file("OPENCAST_CA_FILE", &broken)
            .unwrap_err()
            .to_string();
        assert!(e.contains("OPENCAST_CA_FILE"), "{e}");
        let e = read_ca_file("ES_CA_FILE", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a file"), "{e}");
    }
}
