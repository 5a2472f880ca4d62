//! The index templates installed on first use, as the successor pipeline's templates had them:
//! strings are keywords, `timestamp` (and the episode times) are dates, `ip` is an ip, and
//! `is_live` / `live_stream` are booleans. A value that does not parse as its type (Opencast's
//! `-omitted-` address) is kept in `_source` and left unindexed instead of losing the document.
//!
//! Enrichment adds `geoip` (`location` a `geo_point`, `ip` an `ip`, coordinates as numbers) and
//! `ua` (keywords); an index made before keeps working, since the template only adds fields.
//! Apart from `geoip.location`, the enriched fields are kept in doc values only (`index:
//! false`): dashboards aggregate them, and filters on them still answer (Elasticsearch queries
//! doc values), while indexing 24 more fields per document in both structures cost the node a
//! third of its throughput (BENCHMARKS.md, issue 11).
//!
//! Templates are composable (`_index_template`). Each covers the prefix of an index pattern
//! (`useractions-%Y.%m.%d` → `useractions-*`); a longer prefix gets a higher priority, so a
//! replay index such as `useractions-replay-*` never collides with the regular one.

use serde_json::{json, Value};

/// Strings become keywords (long ones are kept in `_source` but not indexed, never rejected).
fn string_keywords() -> Value {
    json!([{ "strings": {
        "match_mapping_type": "string",
        "mapping": { "type": "keyword", "ignore_above": 8191 }
    }}])
}

/// The glob an index pattern's template covers: the part before the first `%` field, plus `*`.
/// A pattern without fields names one index and is covered exactly.
pub fn glob_of(pattern: &str) -> String {
    match pattern.find('%') {
        Some(i) => format!("{}*", &pattern[..i]),
        None => pattern.to_string(),
    }
}

/// A template name for a glob (lowercase letters, digits and dashes).
pub fn name_for(kind: &str, glob: &str) -> String {
    let tail: String = glob
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("harvester-{kind}-{}", tail.trim_matches('-'))
}

fn priority(glob: &str) -> usize {
    100 + glob.len()
}

/// The template of action record indices.
pub fn actions(glob: &str) -> Value {
    json!({
        "index_patterns": [glob],
        "priority": priority(glob),
        "_meta": { "managed_by": "harvester", "content": "Opencast user action records" },
        "template": {
            "settings": { "number_of_shards": 1 },
            "mappings": {
                "dynamic_templates": string_keywords(),
                "properties": {
                    "action_id": { "type": "long" },
                    "timestamp": { "type": "date" },
                    // Opencast sends "-omitted-" (and other non-addresses) for anonymised
                    // viewers: keep the document, leave the value unindexed.
                    "ip": { "type": "ip", "ignore_malformed": true },
                    "is_live": { "type": "boolean" },
                    "action": { "properties": {
                        "inpoint": { "type": "long" },
                        "outpoint": { "type": "long" },
                        "length": { "type": "long" },
                        "is_playing": { "type": "boolean" }
                    }},
                    "episode": { "properties": {
                        "duration": { "type": "long" }
                    }},
                    "geoip": geoip_properties(),
                    "ua": ua_properties()
                }
            }
        }
    })
}

/// The `geoip` object of enrichment (Logstash's legacy names): `location` a `geo_point`, `ip`
/// an `ip`, the coordinates and `dma_code` numbers, the names keywords; all but `location` in
/// doc values only.
fn geoip_properties() -> Value {
    let kw = json!({ "type": "keyword", "index": false });
    json!({ "properties": {
        "ip": { "type": "ip", "ignore_malformed": true, "index": false },
        "location": { "type": "geo_point", "ignore_malformed": true },
        "latitude": { "type": "float", "index": false },
        "longitude": { "type": "float", "index": false },
        "dma_code": { "type": "integer", "index": false },
        "country_code2": kw, "country_code3": kw, "country_name": kw, "continent_code": kw,
        "region_name": kw, "region_code": kw, "city_name": kw, "postal_code": kw,
        "timezone": kw
    }})
}

/// The `ua` object of enrichment: every field a keyword (versions are strings like "0b3"), in
/// doc values only.
fn ua_properties() -> Value {
    let kw = json!({ "type": "keyword", "index": false });
    let mut p = serde_json::Map::new();
    for f in [
        "name", "major", "minor", "patch", "build", "os", "os_name", "os_major", "os_minor",
        "device",
    ] {
        p.insert(f.into(), kw.clone());
    }
    json!({ "properties": p })
}

/// The template of the episode index.
pub fn episodes(glob: &str) -> Value {
    json!({
        "index_patterns": [glob],
        "priority": priority(glob),
        "_meta": { "managed_by": "harvester", "content": "Opencast episode documents" },
        "template": {
            "settings": { "number_of_shards": 1 },
            "mappings": {
                "dynamic_templates": string_keywords(),
                "properties": {
                    "duration": { "type": "long" },
                    "start": { "type": "date", "ignore_malformed": true },
                    "live_stream": { "type": "boolean" },
                    "live_start": { "type": "date", "ignore_malformed": true },
                    "live_end": { "type": "date", "ignore_malformed": true },
                    "live_duration": { "type": "long" },
                    "available": { "type": "date", "ignore_malformed": true },
                    "slides": { "properties": {
                        "img": { "type": "keyword" },
                        "time": { "type": "keyword" }
                    }}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_names() {
        assert_eq!(glob_of("useractions-%Y.%m.%d"), "useractions-*");
        assert_eq!(glob_of("replayed"), "replayed");
        assert_eq!(
            name_for("actions", "useractions-*"),
            "harvester-actions-useractions"
        );
        assert!(priority("useractions-replay-*") > priority("useractions-*"));
    }
}
