//! Address → the `geoip` object of Logstash's geoip filter (legacy, non-ECS field names).
//!
//! The database is any MaxMind-format City or Country database, memory-mapped. A lookup never
//! fails a record: an address that does not parse (`-omitted-`), a private, loopback, link-local
//! or otherwise reserved one, an address the database does not know and a database record of an
//! unexpected shape all give "no `geoip` object".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::{geoip2, Mmap, Reader};
use serde::Serialize;
use serde_json::value::RawValue;

/// A GeoIP database that could not be opened (a setting error, reported at start).
#[derive(Debug, thiserror::Error)]
#[error("GEOIP_DATABASE '{path}' cannot be opened as a MaxMind database: {reason} (give the path of a GeoLite2/GeoIP2 City or Country .mmdb file)")]
pub struct GeoIpOpenError {
    path: PathBuf,
    reason: String,
}

/// An open MaxMind database.
pub struct GeoIpDb {
    reader: Reader<Mmap>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoIpDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIpDb")
            .field("path", &self.path)
            .field("type", &self.reader.metadata().database_type)
            .finish()
    }
}

/// The `geoip` object, field for field as Logstash's legacy geoip filter wrote it; a field is
/// present only when the database has it.
#[derive(Debug, Default, Serialize, PartialEq)]
struct GeoFields<'a> {
    ip: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    country_code2: Option<&'a str>,
    /// Logstash's legacy output carries the two-letter ISO code here too (GeoIP2 databases
    /// have no three-letter code); kept for the dashboards that read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    country_code3: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continent_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    city_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postal_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    longitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dma_code: Option<u16>,
}

/// A geo point as Elasticsearch's `geo_point` takes it.
#[derive(Debug, Serialize, PartialEq)]
struct Location {
    lat: f64,
    lon: f64,
}

impl GeoIpDb {
    /// Opens (memory-maps) the database and checks that it reads.
    pub fn open(path: &Path) -> Result<GeoIpDb, GeoIpOpenError> {
        let fail = |reason: String| GeoIpOpenError {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(fail("no such file".into()));
        }
        // SAFETY: the map is read-only. The documented hazard is another process truncating the
        // file while it is mapped; MaxMind's updaters (geoipupdate) replace the file by renaming
        // a new one over it, which leaves this mapping intact.
        let reader = unsafe { Reader::open_mmap(path) }.map_err(|e| fail(e.to_string()))?;
        let kind = reader.metadata().database_type.to_ascii_lowercase();
        if !(kind.contains("city") || kind.contains("country")) {
            return Err(fail(format!(
                "its type is '{}', not a City or Country database",
                reader.metadata().database_type
            )));
        }
        Ok(GeoIpDb {
            reader,
            path: path.to_path_buf(),
        })
    }

    /// The database's type and build time, for the log.
    pub fn describe(&self) -> String {
        let m = self.reader.metadata();
        format!(
            "{} ({}, built {})",
            self.path.display(),
            m.database_type,
            crate::timefmt::format_rfc3339(m.build_epoch as i64 * 1_000_000)
        )
    }

    /// Looks `ip` up and decodes its entry, reporting what [`GeoIpDb::locate`] would pass over
    /// in silence (for `harvester check`): the entry's country code, `None` when the database
    /// has no entry for the address, an error when the look-up or the decoding fails.
    pub fn probe(&self, ip: IpAddr) -> Result<Option<String>, String> {
        let found = self.reader.lookup(ip).map_err(|e| e.to_string())?;
        let city: Option<geoip2::City> = found.decode().map_err(|e| e.to_string())?;
        Ok(city.map(|c| c.country.iso_code.unwrap_or("-").to_string()))
    }

    /// The `geoip` object of `ip` as JSON, or `None` (see the module doc).
    pub fn locate(&self, ip: &str) -> Option<Arc<RawValue>> {
        // The forms `IP_PRIVACY=truncate` reads are located too: a port (`1.2.3.4:5678`,
        // `[v6]:443`), and an IPv6 address that maps an IPv4 one (`::ffff:1.2.3.4`).
        let addr: IpAddr = ip
            .parse()
            .ok()
            .or_else(|| ip.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))?;
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        if !is_public(addr) {
            return None;
        }
        let found = self.reader.lookup(addr).ok()?;
        let city: geoip2::City = found.decode().ok()??;
        let sub = city.subdivisions.last();
        let loc = &city.location;
        let f = GeoFields {
            ip,
            country_code2: city.country.iso_code,
            country_code3: city.country.iso_code,
            country_name: city.country.names.english,
            continent_code: city.continent.code,
            region_name: sub.and_then(|s| s.names.english),
            region_code: sub.and_then(|s| s.iso_code),
            city_name: city.city.names.english,
            postal_code: city.postal.code,
            latitude: loc.latitude,
            longitude: loc.longitude,
            location: match (loc.latitude, loc.longitude) {
                (Some(lat), Some(lon)) => Some(Location { lat, lon }),
                _ => None,
            },
            timezone: loc.time_zone,
            dma_code: loc.metro_code,
        };
        if f == (GeoFields {
            ip,
            ..Default::default()
        }) {
            return None; // a record with none of our fields (an ASN entry, say)
        }
        let json = serde_json::to_string(&f).ok()?;
        RawValue::from_string(json).ok().map(Arc::from)
    }
}

/// Whether an address can be located: not private, loopback, link-local, shared (CGNAT),
/// documentation, multicast, broadcast or otherwise reserved.
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(a),
        },
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, ..] = a.octets();
    !(a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_broadcast()
        || a.is_documentation()
        || a.is_unspecified()
        || a.is_multicast()
        || o0 == 0
        || o0 >= 240
        || (o0 == 100 && (64..128).contains(&o1))
        || (o0 == 198 && (o1 == 18 || o1 == 19)))
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    let s0 = a.segments()[0];
    !(a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || a.is_unique_local()
        || a.is_unicast_link_local()
        || s0 == 0x2001 && a.segments()[1] == 0x0db8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_addresses_are_not_located() {
        for a in [
            "10.1.2.3",
            "172.16.0.5",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["128.103.1.1", "8.8.8.8", "2a02:1234::1", "::ffff:8.8.8.8"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }
}
