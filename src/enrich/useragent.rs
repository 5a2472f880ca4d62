//! User-agent string → the `ua` object of Logstash's useragent filter (legacy field names).
//!
//! The rules are uap-core's `regexes.yaml` (the data every ua-parser port, Logstash's included,
//! applies), converted once to JSON (`uap-regexes.json`, uap-core 0.18.0, Copyright 2009 Google
//! Inc., Apache License 2.0) and embedded in the binary: nothing is read or fetched at run time.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

/// uap-core's rules, embedded at build time.
const REGEXES: &str = include_str!("uap-regexes.json");

/// The compiled uap-core parser.
pub struct UaParser {
    extractor: ua_parser::Extractor<'static>,
}

impl std::fmt::Debug for UaParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UaParser(uap-core 0.18.0)")
    }
}

/// The `ua` object; the version fields are present only when the rules found them.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UaFields<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<&'a str>,
    /// Logstash's legacy `os` is the operating system's family, the same as `os_name`.
    pub os: &'a str,
    pub os_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_major: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_minor: Option<&'a str>,
    pub device: &'a str,
}

impl UaParser {
    /// Reads the embedded rules. Each rule compiles on its first use (vendor/PATCHED.md):
    /// compiling all 1,196 up front took 0.38 s of CPU, and a workload's few distinct user
    /// agents try a handful of them.
    pub fn new() -> UaParser {
        let ua_parser::Regexes {
            user_agent_parsers,
            os_parsers,
            device_parsers,
        } = serde_json::from_str(REGEXES).expect("the embedded uap-core rules are valid JSON");
        const RULES: &str = "the embedded uap-core rules parse (checked by a unit test)";
        let ua = user_agent_parsers
            .into_iter()
            .try_fold(ua_parser::user_agent::Builder::new(), |b, p| b.push(p))
            .expect(RULES)
            .build()
            .expect(RULES);
        let os = os_parsers
            .into_iter()
            .try_fold(ua_parser::os::Builder::new(), |b, p| b.push(p))
            .expect(RULES)
            .build()
            .expect(RULES);
        let dev = device_parsers
            .into_iter()
            .try_fold(ua_parser::device::Builder::new(), |b, p| b.push(p))
            .expect(RULES)
            .build()
            .expect(RULES);
        UaParser {
            extractor: ua_parser::Extractor { ua, os, dev },
        }
    }

    /// Parses `ua` and hands its fields to `f` (they borrow from `ua` and the rules). As in
    /// uap-core, what no rule matches is the family `Other`.
    pub fn parse_with<R>(&self, ua: &str, f: impl FnOnce(&UaFields<'_>) -> R) -> R {
        let (agent, os, device) = self.extractor.extract(ua);
        let os_family = os.as_ref().map(|o| o.os.as_ref()).unwrap_or("Other");
        let fields = UaFields {
            name: agent.as_ref().map(|a| a.family.as_ref()).unwrap_or("Other"),
            major: agent.as_ref().and_then(|a| a.major),
            minor: agent.as_ref().and_then(|a| a.minor),
            patch: agent.as_ref().and_then(|a| a.patch),
            build: agent.as_ref().and_then(|a| a.patch_minor),
            os: os_family,
            os_name: os_family,
            os_major: os.as_ref().and_then(|o| o.major.as_deref()),
            os_minor: os.as_ref().and_then(|o| o.minor.as_deref()),
            device: device
                .as_ref()
                .map(|d| d.device.as_ref())
                .unwrap_or("Other"),
        };
        f(&fields)
    }

    /// The `ua` object of `ua` as JSON; `None` for an empty string (Logstash's filter only ran
    /// on a non-empty `useragent`).
    pub fn parse(&self, ua: &str) -> Option<Arc<RawValue>> {
        if ua.is_empty() {
            return None;
        }
        let json = self.parse_with(ua, |f| serde_json::to_string(f).ok())?;
        RawValue::from_string(json).ok().map(Arc::from)
    }
}

impl Default for UaParser {
    fn default() -> Self {
        UaParser::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every embedded rule compiles (they compile lazily in use, where one that did not would
    /// silently never match).
    #[test]
    fn every_rule_compiles() {
        let p = UaParser::new();
        p.extractor.ua.compile_all().unwrap();
        p.extractor.os.compile_all().unwrap();
        p.extractor.dev.compile_all().unwrap();
    }
}
