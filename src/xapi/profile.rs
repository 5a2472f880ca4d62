//! The identifiers of the ADL xAPI Video Profile v1.0.3 (`https://w3id.org/xapi/video`), from
//! `video/v1.0.3/video.jsonld` and `statement_data_model.md` in adlnet/xapi-authored-profiles.

/// The profile, as the context category every statement carries.
pub const PROFILE: &str = "https://w3id.org/xapi/video";
/// The category activity's type (xAPI's type for a profile).
pub const PROFILE_TYPE: &str = "http://adlnet.gov/expapi/activities/profile";
/// The object's activity type.
pub const VIDEO: &str = "https://w3id.org/xapi/video/activity-type/video";
/// The series, as the parent activity's type.
pub const COURSE: &str = "http://adlnet.gov/expapi/activities/course";

pub const INITIALIZED: &str = "http://adlnet.gov/expapi/verbs/initialized";
pub const PLAYED: &str = "https://w3id.org/xapi/video/verbs/played";
pub const PAUSED: &str = "https://w3id.org/xapi/video/verbs/paused";
pub const SEEKED: &str = "https://w3id.org/xapi/video/verbs/seeked";
pub const COMPLETED: &str = "http://adlnet.gov/expapi/verbs/completed";
pub const TERMINATED: &str = "http://adlnet.gov/expapi/verbs/terminated";

#[cfg(test)]
const EXT: &str = "https://w3id.org/xapi/video/extensions/";
pub const TIME: &str = "https://w3id.org/xapi/video/extensions/time";
pub const TIME_FROM: &str = "https://w3id.org/xapi/video/extensions/time-from";
pub const TIME_TO: &str = "https://w3id.org/xapi/video/extensions/time-to";
pub const PROGRESS: &str = "https://w3id.org/xapi/video/extensions/progress";
pub const PLAYED_SEGMENTS: &str = "https://w3id.org/xapi/video/extensions/played-segments";
pub const LENGTH: &str = "https://w3id.org/xapi/video/extensions/length";
pub const COMPLETION_THRESHOLD: &str =
    "https://w3id.org/xapi/video/extensions/completion-threshold";
pub const SESSION_ID: &str = "https://w3id.org/xapi/video/extensions/session-id";

/// The verbs, by the word shown in `display` (and in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Initialized,
    Played,
    Paused,
    Seeked,
    Completed,
    Terminated,
}

impl Verb {
    pub fn iri(self) -> &'static str {
        match self {
            Verb::Initialized => INITIALIZED,
            Verb::Played => PLAYED,
            Verb::Paused => PAUSED,
            Verb::Seeked => SEEKED,
            Verb::Completed => COMPLETED,
            Verb::Terminated => TERMINATED,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verb::Initialized => "initialized",
            Verb::Played => "played",
            Verb::Paused => "paused",
            Verb::Seeked => "seeked",
            Verb::Completed => "completed",
            Verb::Terminated => "terminated",
        }
    }

    pub const ALL: [Verb; 6] = [
        Verb::Initialized,
        Verb::Played,
        Verb::Paused,
        Verb::Seeked,
        Verb::Completed,
        Verb::Terminated,
    ];
}

#[cfg(test)]
mod tests {
    #[test]
    fn extensions_share_the_profile_prefix() {
        for e in [
            super::TIME,
            super::TIME_FROM,
            super::TIME_TO,
            super::PROGRESS,
            super::PLAYED_SEGMENTS,
            super::LENGTH,
            super::COMPLETION_THRESHOLD,
            super::SESSION_ID,
        ] {
            assert!(e.starts_with(super::EXT), "{e}");
        }
    }
}
