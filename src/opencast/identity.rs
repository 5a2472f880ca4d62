//! Who Opencast ran a request as: `GET /info/me.json`.
//!
//! Stock Opencast serves `/search` and `/usertracking` to anonymous callers, so a 200 there
//! proves nothing about our credentials. `/info/me.json` (`RuntimeInfo.getMyInfo`, open to
//! anonymous callers in every release) names the user the request ran as: an answer that names
//! someone else (`anonymous`) means the credentials were not used.
//!
//! Its shape, from Opencast's source: Matterhorn 1.x (`matterhorn-runtime-info-ui`) writes
//! `{"username": …, "roles": […], "org": {…}}`; from 2.0 (`RuntimeInfo.java`) the user is an
//! object, `{"user": {"username", "name", "email", "provider"}, "roles": […], "org": {"id",
//! "name", "adminRole", "anonymousRole", "properties"}}` (json-simple up to 8.x, Gson from 9.0,
//! which leaves null values out).

use serde_json::Value;

use super::wire::DecodeError;

/// The role that reads every episode: the search service filters results by the caller's
/// roles unless it holds `ROLE_ADMIN` (`SecurityConstants.GLOBAL_ADMIN_ROLE`) or the
/// organization's admin role (`SearchServiceImpl`/`SolrRequester` up to 15, `SearchRestService`
/// from 16).
pub const ADMIN_ROLE: &str = "ROLE_ADMIN";

/// The user a request ran as, and its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub roles: Vec<String>,
    /// The organization's admin role (`org.adminRole`), when Opencast names it.
    pub org_admin_role: Option<String>,
}

impl Identity {
    /// Reads a `/info/me.json` body of any release.
    pub fn parse(body: &[u8]) -> Result<Identity, DecodeError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| DecodeError::json("not a user description", &e))?;
        let username = v
            .get("user")
            .and_then(|u| u.get("username"))
            .or_else(|| v.get("username"))
            .and_then(Value::as_str)
            .ok_or_else(|| DecodeError::wrong_shape("no user.username in /info/me.json"))?
            .to_string();
        let roles = match v.get("roles") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let org_admin_role = v
            .get("org")
            .and_then(|o| o.get("adminRole"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Identity {
            username,
            roles,
            org_admin_role,
        })
    }

    /// The search service shows this user every episode, private ones included.
    pub fn reads_every_episode(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r == ADMIN_ROLE || Some(r) == self.org_admin_role.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_shape() {
        // Matterhorn 1.4 (json-simple, flat).
        let id = Identity::parse(
            br#"{"username":"matterhorn_system_account","roles":["ROLE_ADMIN","ROLE_USER"],"org":{"id":"mh_default_org","adminRole":"ROLE_ADMIN"}}"#,
        )
        .unwrap();
        assert_eq!(id.username, "matterhorn_system_account");
        assert!(id.reads_every_episode());
        // 2.0+ (a user object), anonymous.
        let id = Identity::parse(
            br#"{"user":{"username":"anonymous","name":null,"email":null,"provider":null},"roles":["ROLE_ANONYMOUS"],"org":{"adminRole":"ROLE_ADMIN","anonymousRole":"ROLE_ANONYMOUS"}}"#,
        )
        .unwrap();
        assert_eq!(id.username, "anonymous");
        assert!(!id.reads_every_episode());
        // An organization whose admin role is its own.
        let id = Identity::parse(
            br#"{"user":{"username":"u"},"roles":["ROLE_ORG_ADMIN"],"org":{"adminRole":"ROLE_ORG_ADMIN"}}"#,
        )
        .unwrap();
        assert!(id.reads_every_episode());
        assert!(Identity::parse(b"<html>login</html>").is_err());
        assert!(Identity::parse(br#"{"roles":[]}"#).is_err());
    }
}
