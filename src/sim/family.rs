//! Which Opencast the simulator plays: the Harvard DCE build the original harvester ran against
//! (it reads `start`/`end`), or a stock release from Matterhorn 1.4 to Opencast 17, each with the
//! behaviour `shared/reference/opencast-versions.md` describes (read from Opencast's source at the
//! release tags).
//!
//! A release is kept as its version number; what differs between releases is asked of it through
//! one predicate per behaviour, so that a handler never compares version numbers itself.

use std::fmt;

/// The Opencast the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Release {
    /// The Harvard DCE build described by `opencast-api.md`: reads `start`/`end`, challenges
    /// every request.
    #[default]
    Dce,
    /// A stock release, `major.minor` (Matterhorn 1.4 is `1.4`, Opencast 16.6 is `16.6`).
    Stock { major: u16, minor: u16 },
}

/// The release families the tests run against, each with the release the simulator plays for it.
pub const FAMILIES: &[(&str, Release)] = &[
    ("dce", Release::Dce),
    ("mh1.4-1.6", Release::Stock { major: 1, minor: 4 }),
    ("oc2-7", Release::Stock { major: 2, minor: 0 }),
    ("oc6-7", Release::Stock { major: 6, minor: 0 }),
    ("oc8-11", Release::Stock { major: 8, minor: 0 }),
    (
        "oc12",
        Release::Stock {
            major: 12,
            minor: 0,
        },
    ),
    (
        "oc13-15",
        Release::Stock {
            major: 13,
            minor: 0,
        },
    ),
    (
        "oc16-17",
        Release::Stock {
            major: 16,
            minor: 0,
        },
    ),
];

impl Release {
    /// Reads `dce`, a family name of [`FAMILIES`] or a release number (`1.4`, `7`, `16.6`).
    pub fn parse(s: &str) -> Option<Release> {
        let t = s.trim().to_ascii_lowercase();
        if let Some((_, r)) = FAMILIES.iter().find(|(n, _)| *n == t) {
            return Some(*r);
        }
        let t = t
            .strip_prefix("oc")
            .or_else(|| t.strip_prefix("mh"))
            .unwrap_or(&t);
        let (major, minor) = match t.split_once('.') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => (t.parse().ok()?, 0),
        };
        let known = matches!((major, minor), (1, 4..=6)) || (2..=17).contains(&major);
        known.then_some(Release::Stock { major, minor })
    }

    fn major(self) -> u16 {
        match self {
            Release::Dce => 0,
            Release::Stock { major, .. } => major,
        }
    }

    pub fn is_stock(self) -> bool {
        matches!(self, Release::Stock { .. })
    }

    /// `/usertracking/actions.json` filters by `start`/`end` (the DCE build only).
    pub fn reads_window(self) -> bool {
        !self.is_stock()
    }

    /// `sessionId`, `userId` and `userIp` are flat strings on the action (Matterhorn 1.4–1.6).
    pub fn flat_session(self) -> bool {
        self.major() == 1
    }

    /// Jettison writes attributes (`total`, `offset`, `limit`) as strings (up to 7.x; and DCE).
    pub fn string_attributes(self) -> bool {
        self.major() <= 7
    }

    /// `log.ip/user/session` default to false: those values arrive as `-omitted-` (6.0+).
    pub fn omits_by_default(self) -> bool {
        self.major() >= 6
    }

    /// The scheduler workflow has a `capture` operation (up to 3.x; and DCE).
    pub fn capture_operation(self) -> bool {
        self.major() <= 3
    }

    /// `/workflow/instances.json` is gone; `/workflow/mediaPackage/{id}/instances.json` (12+).
    pub fn workflow_by_media_package(self) -> bool {
        self.major() >= 12
    }

    /// Usertracking is a plugin, off by default (13+).
    pub fn usertracking_plugin(self) -> bool {
        self.major() >= 13
    }

    /// The player is Paella 7: `PLAY`/`PAUSE`/`SEEK`, whole seconds, no heartbeat (13+).
    pub fn event_player(self) -> bool {
        self.major() >= 13
    }

    /// The search service was rewritten: `{"result":[…]}`, Dublin Core lists, doubles (16+).
    pub fn search_v16(self) -> bool {
        self.major() >= 16
    }

    /// `GET /search/**` and `GET /usertracking/**` are open to anonymous callers (stock).
    pub fn anonymous_reads(self) -> bool {
        self.is_stock()
    }

    /// Basic auth is answered when asked for with `X-Requested-Auth: Basic` (3.0+).
    pub fn basic_auth(self) -> bool {
        self.major() >= 3
    }

    /// The Digest realm: `Opencast Matterhorn` up to 2.0, `Opencast` later.
    pub fn realm(self) -> &'static str {
        match self {
            Release::Stock { major: 1, .. } | Release::Stock { major: 2, minor: 0 } => {
                "Opencast Matterhorn"
            }
            _ => "Opencast",
        }
    }

    /// How long a nonce stays good: 10 s in 1.x, 300 s later.
    pub fn nonce_validity_s(self) -> u64 {
        if self.major() == 1 {
            10
        } else {
            300
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Release::Dce => f.write_str("the DCE build (start/end)"),
            Release::Stock { major: 1, minor } => write!(f, "Matterhorn 1.{minor}"),
            Release::Stock { major, minor } => write!(f, "Opencast {major}.{minor}"),
        }
    }
}

/// The order a stock server returns the rows of an actions query in (none is promised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowOrder {
    /// `created` order: the usual index range scan.
    #[default]
    Created,
    /// Id order: a primary key scan (the same as `created` order for the generated data,
    /// except where ids were given out of time order).
    Id,
    /// A different order for every query: a planner that promises nothing.
    Shuffled,
}

impl RowOrder {
    pub fn parse(s: &str) -> Option<RowOrder> {
        match s.trim().to_ascii_lowercase().as_str() {
            "created" => Some(RowOrder::Created),
            "id" => Some(RowOrder::Id),
            "shuffled" => Some(RowOrder::Shuffled),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_and_families_parse() {
        assert_eq!(Release::parse("dce"), Some(Release::Dce));
        assert_eq!(
            Release::parse("16.6"),
            Some(Release::Stock {
                major: 16,
                minor: 6
            })
        );
        assert_eq!(
            Release::parse("oc13-15"),
            Some(Release::Stock {
                major: 13,
                minor: 0
            })
        );
        assert_eq!(
            Release::parse("1.4"),
            Some(Release::Stock { major: 1, minor: 4 })
        );
        assert_eq!(Release::parse("1.2"), None);
        assert_eq!(Release::parse("18"), None);
        assert_eq!(Release::parse("x"), None);
        let r = Release::parse("mh1.4-1.6").unwrap();
        assert!(r.flat_session() && r.string_attributes() && !r.basic_auth());
        assert_eq!(r.realm(), "Opencast Matterhorn");
        let r = Release::parse("oc16-17").unwrap();
        assert!(r.search_v16() && r.usertracking_plugin() && !r.string_attributes());
    }
}
