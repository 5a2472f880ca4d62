//! `journal dump --format csv`: one flat row per record, for spreadsheets and data frames.
//!
//! The columns are the record's JSON fields ([`crate::record`]) with nested objects flattened
//! into dotted names (`action.type`, `episode.title`), in the order the JSON writes them, fixed
//! up front so that every row has the same columns whatever its record holds. A row is made from
//! the record's own JSON form (the same serialisation `journal dump` and the sinks use), so the
//! two formats cannot drift apart; a test in this module pins the column set to that form.
//!
//! Cells: a string as it is, a number in decimal, a boolean as `true`/`false`, and an empty
//! cell for `null` and for a field the record does not have (an unknown episode's `{}`, an
//! episode without series). The one field with no fixed name, the proxies past the fourth of a
//! long `X-Forwarded-For` chain (`proxy5`, `proxy6`, ...), goes into `more_proxies` as a JSON
//! array of strings. Quoting is the `csv` crate's (RFC 4180: a cell with a comma, quote or line
//! break is quoted, quotes doubled); rows end in `\n`.

use std::io::{self, Write};

use serde_json::Value;

use crate::record::Record;

/// The proxies that have a column of their own; later ones go into [`MORE_PROXIES`].
const NAMED_PROXIES: u64 = 4;

/// The column of the proxies past `proxy4`.
pub const MORE_PROXIES: &str = "more_proxies";

/// The header: every field a record's JSON can have, in its order.
pub const COLUMNS: [&str; 28] = [
    "action_id",
    "timestamp",
    "mpid",
    "session_id",
    "huid",
    "useragent",
    "action.type",
    "action.inpoint",
    "action.outpoint",
    "action.length",
    "action.is_playing",
    "ip",
    "proxy1",
    "proxy2",
    "proxy3",
    "proxy4",
    MORE_PROXIES,
    "is_live",
    "episode.title",
    "episode.duration",
    "episode.start",
    "episode.course",
    "episode.series",
    "episode.year",
    "episode.term",
    "episode.cdn",
    "episode.type",
    "episode.description",
];

/// Writes records as CSV rows under the [`COLUMNS`] header.
pub struct CsvDump<W: Write> {
    csv: csv::Writer<W>,
    cells: Vec<String>,
    more: Vec<(u64, String)>,
    /// A field of no column (a newer service's record, say): named once on stderr.
    unknown: Vec<String>,
}

impl<W: Write> CsvDump<W> {
    /// Writes the header.
    pub fn new(out: W) -> io::Result<CsvDump<W>> {
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .buffer_capacity(1 << 16)
            .from_writer(out);
        csv.write_record(COLUMNS).map_err(io_error)?;
        Ok(CsvDump {
            csv,
            cells: vec![String::new(); COLUMNS.len()],
            more: Vec::new(),
            unknown: Vec::new(),
        })
    }

    /// Writes the row of a record.
    pub fn record(&mut self, r: &Record) -> io::Result<()> {
        let v = serde_json::to_value(r).map_err(io::Error::other)?;
        self.value(&v)
    }

    /// Writes the row of a record's JSON form (as `journal dump` prints it).
    pub fn value(&mut self, v: &Value) -> io::Result<()> {
        let Value::Object(fields) = v else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a record is not a JSON object",
            ));
        };
        for c in &mut self.cells {
            c.clear();
        }
        self.more.clear();
        for (k, v) in fields {
            match v {
                Value::Object(inner) => {
                    for (ik, iv) in inner {
                        self.put(Some(k), ik, iv);
                    }
                }
                _ => self.put(None, k, v),
            }
        }
        if !self.more.is_empty() {
            self.more.sort_unstable_by_key(|(n, _)| *n);
            let list: Vec<&str> = self.more.iter().map(|(_, s)| s.as_str()).collect();
            let i = column(None, MORE_PROXIES).expect("a column");
            self.cells[i] = serde_json::to_string(&list).map_err(io::Error::other)?;
        }
        self.csv.write_record(&self.cells).map_err(io_error)
    }

    fn put(&mut self, parent: Option<&str>, key: &str, v: &Value) {
        if let Some(i) = column(parent, key) {
            cell(&mut self.cells[i], v);
            return;
        }
        if parent.is_none() {
            if let Some(n) = key
                .strip_prefix("proxy")
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > NAMED_PROXIES)
            {
                let mut s = String::new();
                cell(&mut s, v);
                self.more.push((n, s));
                return;
            }
        }
        let name = match parent {
            Some(p) => format!("{p}.{key}"),
            None => key.to_string(),
        };
        if !self.unknown.contains(&name) {
            tracing::warn!(field = %name, "a record field has no CSV column; left out");
            self.unknown.push(name);
        }
    }

    /// Flushes what is buffered and gives the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.csv.flush()?;
        self.csv
            .into_inner()
            .map_err(|e| io::Error::new(e.error().kind(), e.error().to_string()))
    }
}

/// The column of `parent.key` (or `key`), without building the name.
fn column(parent: Option<&str>, key: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| match parent {
        None => *c == key,
        Some(p) => c
            .strip_prefix(p)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| rest == key),
    })
}

/// The text of a JSON value in a cell.
fn cell(out: &mut String, v: &Value) {
    out.clear();
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        // No record field is an array or a deeper object today; one would be its JSON text.
        Value::Array(_) | Value::Object(_) => out.push_str(&v.to_string()),
    }
}

/// A CSV error as the I/O error it wraps (so a closed pipe stays a closed pipe).
fn io_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::{ActionBlock, EpisodeBlock};

    /// A record with every optional field present and a proxy chain longer than four.
    fn full() -> Record {
        Record {
            action_id: 7,
            created_us: 1_456_833_600_123_456,
            mpid: "mp".into(),
            session_id: "s".into(),
            huid: Some("u".into()),
            useragent: Some("ua".into()),
            action: ActionBlock {
                kind: Some("PLAY".into()),
                inpoint: Some(1),
                outpoint: Some(2),
                length: Some(1),
                is_playing: true,
            },
            ip_chain: Some("1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4, 5.5.5.5, 6.6.6.6, 7.7.7.7, 8.8.8.8, 9.9.9.9, 10.10.10.10, 11.11.11.11".into()),
            is_live: true,
            episode: Some(Arc::new(EpisodeBlock {
                title: Some("t".into()),
                duration: Some(3),
                start: Some("2016-03-01T00:00:00Z".into()),
                series: Some(("c".into(), "20160112345".into())),
                kind: Some("L".into()),
                description: Some("d".into()),
            })),
        }
    }

    /// The dotted keys of a record's JSON, in the order the JSON text writes them.
    fn json_keys(r: &Record) -> Vec<String> {
        let text = r.to_json();
        let Value::Object(m) = serde_json::from_str::<Value>(&text).unwrap() else {
            panic!("not an object")
        };
        let mut keys: Vec<(usize, String)> = Vec::new();
        for (k, v) in &m {
            let at = text.find(&format!("\"{k}\":")).unwrap();
            match v {
                Value::Object(inner) => {
                    for ik in inner.keys() {
                        let inner_at = text[at..].find(&format!("\"{ik}\":")).unwrap() + at;
                        keys.push((inner_at, format!("{k}.{ik}")));
                    }
                }
                _ => keys.push((at, k.clone())),
            }
        }
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn the_columns_are_the_record_schema_flattened_in_json_order() {
        let keys = json_keys(&full());
        // The named proxies have columns; the rest are `more_proxies`, where `proxy5` would be.
        let mut expected: Vec<String> = Vec::new();
        for k in keys {
            let n = k.strip_prefix("proxy").and_then(|n| n.parse::<u64>().ok());
            match n {
                Some(n) if n > NAMED_PROXIES => {
                    if !expected.iter().any(|e| e == MORE_PROXIES) {
                        expected.push(MORE_PROXIES.into());
                    }
                }
                _ => expected.push(k),
            }
        }
        assert_eq!(expected, COLUMNS);
    }

    fn rows(records: &[Record]) -> Vec<Vec<String>> {
        let mut d = CsvDump::new(Vec::new()).unwrap();
        for r in records {
            d.record(r).unwrap();
        }
        let bytes = d.finish().unwrap();
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&bytes[..])
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn every_field_lands_in_its_column() {
        let rows = rows(&[full()]);
        assert_eq!(rows[0], COLUMNS);
        let get = |name: &str| &rows[1][COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(get("action_id"), "7");
        assert_eq!(get("timestamp"), "2016-03-01T12:00:00.123456+00:00");
        assert_eq!(get("action.type"), "PLAY");
        assert_eq!(get("action.is_playing"), "true");
        assert_eq!(get("is_live"), "1");
        assert_eq!(get("ip"), "1.1.1.1");
        assert_eq!(get("proxy4"), "5.5.5.5");
        assert_eq!(
            get(MORE_PROXIES),
            r#"["6.6.6.6","7.7.7.7","8.8.8.8","9.9.9.9","10.10.10.10","11.11.11.11"]"#
        );
        assert_eq!(get("episode.year"), "2016");
        assert_eq!(get("episode.cdn"), "12345");
        assert_eq!(get("episode.type"), "L");
    }

    #[test]
    fn absent_and_null_fields_are_empty_cells_and_hostile_text_survives() {
        let mut r = full();
        r.episode = None;
        r.ip_chain = None;
        r.huid = None;
        r.useragent = Some("a,b \"q\"\r\nline2\u{2028} ü 🎓 =1+1".into());
        r.action.inpoint = None;
        let rows = rows(&[r.clone()]);
        let get = |name: &str| &rows[1][COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(get("useragent"), r.useragent.as_deref().unwrap());
        assert_eq!(get("huid"), "None");
        for empty in [
            "ip",
            "proxy1",
            MORE_PROXIES,
            "action.inpoint",
            "episode.title",
        ] {
            assert_eq!(get(empty), "", "{empty}");
        }
        assert_eq!(rows[1].len(), COLUMNS.len());
    }
}
