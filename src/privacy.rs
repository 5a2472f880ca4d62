//! Pseudonymized ids and shortened addresses at the sinks (`PSEUDONYMIZE_KEY`, `IP_PRIVACY`).
//!
//! Guarantees:
//! - The journal keeps what Opencast sent: it is local and private (0600), and a replay under a
//!   new key must be possible. Only what leaves through a sink (SQS, stdout, Elasticsearch, xAPI,
//!   replays) and `journal dump --pseudonymize` is changed.
//! - A person's id becomes the lowercase hex HMAC-SHA256 of the value under the key, the same
//!   for the same person everywhere: `printf %s ID | openssl dgst -sha256 -hmac KEY` gives the
//!   same string. That covers `huid` and `session_id` (Opencast's session id is the viewer's
//!   HTTP session cookie, an online identifier that links every action of a visit, and a live
//!   credential while that session lasts). The not-logged-in markers (`anonymous`,
//!   `-omitted-`, no user, an empty string) name nobody and stay as they are.
//! - `IP_PRIVACY=truncate` keeps the /24 of an IPv4 address and the /48 of an IPv6 one, in `ip`
//!   and in every `proxyN`; `drop` leaves `ip` null and no `proxyN`. Both happen after GeoIP
//!   enrichment, which reads the full address. An element of the chain that is no address
//!   (a forged header, say) cannot be shortened: under `truncate` the whole chain is dropped
//!   rather than sent as it came (the markers `-omitted-` and `unknown` hold no address and
//!   stay).
//! - The key never prints: `Debug` shows its length only; no message quotes it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::config::ConfigError;
use crate::record::Record;

/// The shortest key accepted, in bytes (SHA-256's output; RFC 2104 advises at least that).
pub const MIN_KEY_BYTES: usize = 32;

/// Entries of a sink's caches before they are emptied (a session sends the same ids hundreds of
/// times; one HMAC per distinct value keeps the forward rate close to the plain one).
const CACHE_ENTRIES: usize = 8192;

/// The secret of `PSEUDONYMIZE_KEY`: prints as its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct PseudonymKey(Arc<[u8]>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PseudonymKey({} bytes, ***)", self.0.len())
    }
}

impl PseudonymKey {
    /// The key of `value` (the bytes of the setting, as `openssl -hmac` takes them).
    pub fn new(value: &[u8]) -> Result<PseudonymKey, ConfigError> {
        if value.len() < MIN_KEY_BYTES {
            return Err(ConfigError::new(format!(
                "PSEUDONYMIZE_KEY is {} bytes long; it takes a secret of at least {MIN_KEY_BYTES} bytes (for instance `openssl rand -hex 32`), in the environment or .env",
                value.len()
            )));
        }
        Ok(PseudonymKey(value.into()))
    }

    /// The pseudonym of `value`: lowercase hex HMAC-SHA256.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(value.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut s = String::with_capacity(64);
        for b in bytes.iter() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `id` names nobody (a not-logged-in marker), and so stays as it is.
pub fn is_marker(id: &str) -> bool {
    matches!(id, "" | "anonymous" | "-omitted-")
}

/// What `IP_PRIVACY` does to the addresses a sink sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpPrivacy {
    /// As Opencast sent them.
    #[default]
    Keep,
    /// IPv4 to its /24, IPv6 to its /48.
    Truncate,
    /// No address at all.
    Drop,
}

impl IpPrivacy {
    pub fn parse(s: &str) -> Result<IpPrivacy, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "keep" | "" => Ok(IpPrivacy::Keep),
            "truncate" => Ok(IpPrivacy::Truncate),
            "drop" => Ok(IpPrivacy::Drop),
            other => Err(ConfigError::new(format!(
                "IP_PRIVACY={} is not a choice; use keep (the default), truncate (IPv4 /24, IPv6 /48) or drop",
                crate::escape::quoted_short(other, 40)
            ))),
        }
    }
}

/// The privacy settings of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privacy {
    pub key: Option<PseudonymKey>,
    pub ip: IpPrivacy,
}

impl Privacy {
    /// Reads `PSEUDONYMIZE_KEY` from the environment (where `.env` put it: never a flag, which
    /// `ps` would show) and parses `ip` (`IP_PRIVACY`).
    pub fn from_env(ip: &str) -> Result<Privacy, ConfigError> {
        let key = match std::env::var_os("PSEUDONYMIZE_KEY") {
            None => None,
            Some(v) => {
                use std::os::unix::ffi::OsStrExt;
                if v.is_empty() {
                    return Err(ConfigError::new(
                        "PSEUDONYMIZE_KEY is set but empty; set a secret of at least 32 bytes, or remove the line to send ids as they are",
                    ));
                }
                Some(PseudonymKey::new(v.as_bytes())?)
            }
        };
        Ok(Privacy {
            key,
            ip: IpPrivacy::parse(ip)?,
        })
    }

    pub fn is_on(&self) -> bool {
        self.key.is_some() || self.ip != IpPrivacy::Keep
    }

    /// One sink's handle (its own caches).
    pub fn for_sink(&self) -> SinkPrivacy {
        SinkPrivacy {
            privacy: self.clone(),
            ids: HashMap::default(),
            chains: HashMap::default(),
            geoip: HashMap::default(),
        }
    }
}

/// The personal fields of a record as a sink shows them.
#[derive(Debug, Clone)]
pub struct Shown {
    /// `None`: no user (the record's `"None"`).
    pub huid: Option<Arc<str>>,
    pub session_id: Arc<str>,
    /// The `userIp` chain to split into `ip`, `proxyN`; `None`: none.
    pub ip_chain: Option<Arc<str>>,
}

type Cache = HashMap<Box<str>, Arc<str>, foldhash::fast::RandomState>;
type ChainCache = HashMap<Box<str>, Option<Arc<str>>, foldhash::fast::RandomState>;

/// One sink's pseudonyms and shortened chains, cached per distinct value.
pub struct SinkPrivacy {
    privacy: Privacy,
    ids: Cache,
    chains: ChainCache,
    geoip: GeoCache,
}

type GeoCache = HashMap<Box<str>, Option<Arc<RawValue>>, foldhash::fast::RandomState>;

impl std::fmt::Debug for SinkPrivacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkPrivacy")
            .field("privacy", &self.privacy)
            .finish_non_exhaustive()
    }
}

impl SinkPrivacy {
    pub fn settings(&self) -> &Privacy {
        &self.privacy
    }

    /// The pseudonym of a person's id (markers as they are; the id itself without a key).
    pub fn id(&mut self, id: &str) -> Arc<str> {
        let Some(key) = &self.privacy.key else {
            return id.into();
        };
        if is_marker(id) {
            return id.into();
        }
        if let Some(p) = self.ids.get(id) {
            return p.clone();
        }
        let p: Arc<str> = key.pseudonym(id).into();
        if self.ids.len() >= CACHE_ENTRIES {
            self.ids.clear();
        }
        self.ids.insert(id.into(), p.clone());
        p
    }

    /// The address chain as sent under `IP_PRIVACY`.
    pub fn chain(&mut self, chain: &str) -> Option<Arc<str>> {
        match self.privacy.ip {
            IpPrivacy::Keep => Some(chain.into()),
            IpPrivacy::Drop => None,
            IpPrivacy::Truncate => {
                if let Some(c) = self.chains.get(chain) {
                    return c.clone();
                }
                let c: Option<Arc<str>> = truncate_chain(chain).map(Into::into);
                if self.chains.len() >= CACHE_ENTRIES {
                    self.chains.clear();
                }
                self.chains.insert(chain.into(), c.clone());
                c
            }
        }
    }

    /// The `geoip` object of address `ip` as a sink sends it: located from the full address,
    /// but with its own `ip` field shortened or left out as `IP_PRIVACY` says (the object is
    /// ours, written with `ip` first; one that is not is left out whole rather than sent).
    pub fn geoip(&mut self, g: &Arc<RawValue>, ip: &str) -> Option<Arc<RawValue>> {
        if self.privacy.ip == IpPrivacy::Keep {
            return Some(g.clone());
        }
        if let Some(v) = self.geoip.get(ip) {
            return v.clone();
        }
        let head = format!("{{\"ip\":{},", serde_json::to_string(ip).ok()?);
        let v = g.get().strip_prefix(head.as_str()).and_then(|rest| {
            let json = match (self.privacy.ip, truncate_ip(ip)) {
                (IpPrivacy::Truncate, Some(t)) => format!("{{\"ip\":\"{t}\",{rest}"),
                _ => format!("{{{rest}"),
            };
            RawValue::from_string(json).ok().map(Arc::from)
        });
        if self.geoip.len() >= CACHE_ENTRIES {
            self.geoip.clear();
        }
        self.geoip.insert(ip.into(), v.clone());
        v
    }

    /// A copy of `r` with the personal fields as a sink shows them (for writers that take a
    /// record, such as the CSV dump).
    pub fn apply(&mut self, r: &Record) -> Record {
        let s = self.show(r);
        Record {
            huid: s.huid.map(|h| h.to_string()),
            session_id: s.session_id.to_string(),
            ip_chain: s.ip_chain.map(|c| c.to_string()),
            ..r.clone()
        }
    }

    /// What a sink shows of `r`'s personal fields.
    pub fn show(&mut self, r: &Record) -> Shown {
        Shown {
            huid: r.huid.as_deref().map(|h| self.id(h)),
            session_id: self.id(&r.session_id),
            ip_chain: r.ip_chain.as_deref().and_then(|c| self.chain(c)),
        }
    }
}

/// A `userIp` chain with each address cut to its /24 or /48; `None` when an element is no
/// address (it cannot be shortened, so nothing of the chain is sent).
pub fn truncate_chain(chain: &str) -> Option<String> {
    let mut out = String::with_capacity(chain.len());
    for (n, part) in chain.split(',').map(str::trim).enumerate() {
        if n > 0 {
            out.push(',');
        }
        if matches!(part, "-omitted-" | "unknown" | "") {
            out.push_str(part);
            continue;
        }
        out.push_str(&truncate_ip(part)?.to_string());
    }
    Some(out)
}

/// An address (`1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`) cut to its /24 (IPv4, and IPv6
/// that maps one) or /48 (IPv6); the port is dropped. `None` for anything else.
pub fn truncate_ip(s: &str) -> Option<IpAddr> {
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))?;
    Some(match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4_24(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V6(v4_24(v4).to_ipv6_mapped()),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    })
}

fn v4_24(v4: Ipv4Addr) -> Ipv4Addr {
    let o = v4.octets();
    Ipv4Addr::new(o[0], o[1], o[2], 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn pseudonym_is_openssl_hmac_sha256_hex() {
        // printf %s 'student-42' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
        let k = PseudonymKey::new(KEY.as_bytes()).unwrap();
        let p = k.pseudonym("student-42");
        assert_eq!(p.len(), 64);
        assert!(p
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(p, k.pseudonym("student-42"));
        assert_ne!(p, k.pseudonym("student-43"));
        // RFC 4231 test case 2 (key "Jefe" is short, so through the raw function).
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let b = mac.finalize().into_bytes();
        assert_eq!(
            b.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn short_keys_are_refused_and_never_printed() {
        let e = PseudonymKey::new(b"short-secret").unwrap_err().to_string();
        assert!(e.contains("PSEUDONYMIZE_KEY") && e.contains("32"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
        let k = PseudonymKey::new(KEY.as_bytes()).unwrap();
        assert!(!format!("{k:?}").contains(KEY));
        let p = Privacy {
            key: Some(k),
            ip: IpPrivacy::Keep,
        };
        assert!(!format!("{p:?}").contains(KEY));
        assert!(!format!("{:?}", p.for_sink()).contains(KEY));
    }

    #[test]
    fn markers_stay() {
        let mut s = Privacy {
            key: Some(PseudonymKey::new(KEY.as_bytes()).unwrap()),
            ip: IpPrivacy::Keep,
        }
        .for_sink();
        for m in ["anonymous", "-omitted-", ""] {
            assert_eq!(&*s.id(m), m);
        }
        assert_eq!(s.id("jdoe").len(), 64);
    }

    #[test]
    fn truncation() {
        let t = |s: &str| truncate_ip(s).map(|i| i.to_string());
        assert_eq!(t("10.1.2.3").as_deref(), Some("10.1.2.0"));
        assert_eq!(t("10.1.2.3:4567").as_deref(), Some("10.1.2.0"));
        assert_eq!(
            t("2001:db8:abcd:12:34::1").as_deref(),
            Some("2001:db8:abcd::")
        );
        assert_eq!(
            t("[2001:db8:abcd:12::1]:443").as_deref(),
            Some("2001:db8:abcd::")
        );
        assert_eq!(t("::ffff:10.1.2.3").as_deref(), Some("::ffff:10.1.2.0"));
        assert_eq!(t("not-an-ip"), None);
        assert_eq!(
            truncate_chain("10.1.2.3, 192.168.7.9,unknown").as_deref(),
            Some("10.1.2.0,192.168.7.0,unknown")
        );
        assert_eq!(truncate_chain("10.1.2.3, evil"), None);
        assert_eq!(truncate_chain("-omitted-").as_deref(), Some("-omitted-"));
    }

    #[test]
    fn ip_privacy_parses_and_names_itself() {
        assert_eq!(IpPrivacy::parse("Truncate").unwrap(), IpPrivacy::Truncate);
        let e = IpPrivacy::parse("hash").unwrap_err().to_string();
        assert!(e.contains("IP_PRIVACY") && e.contains("truncate"), "{e}");
    }
}
