//! At the start of a harvest: does Opencast run our requests as our user, and does it show that
//! user every episode?
//!
//! Stock Opencast serves user actions and episodes to anonymous callers, so a harvest whose
//! credentials were ignored would run without an error, private episodes hidden. One request to
//! `/info/me.json` tells: a refusal or another user stops a harvest before it journals anything;
//! a user without `ROLE_ADMIN` is a warning naming the role.

use crate::opencast::identity::ADMIN_ROLE;
use crate::opencast::{Opencast, OpencastError};

/// What the start of a command does when Opencast cannot say who we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDoubt {
    /// `harvest`: refused or ignored credentials end the command.
    Fail,
    /// `run`: every fault is logged, and the service goes on (its cycles report their own).
    Warn,
}

/// Asks Opencast who our requests run as, and logs what the operator must know.
pub async fn confirm(oc: &Opencast, on_doubt: OnDoubt) -> Result<(), OpencastError> {
    let user = oc.client().user().to_string();
    match oc.verify_identity().await {
        Ok(id) => {
            if !id.reads_every_episode() {
                tracing::warn!(
                    user = %user,
                    role = ADMIN_ROLE,
                    "the Opencast user lacks {ADMIN_ROLE}: Opencast's search hides the episodes its roles may not read, and their actions are journaled with \"episode\": {{}}; give the user {ADMIN_ROLE}"
                );
            }
            Ok(())
        }
        Err(
            e @ (OpencastError::CredentialsRejected { .. }
            | OpencastError::NotAuthenticated { .. }
            | OpencastError::UnsupportedChallenge { .. }
            | OpencastError::NoChallenge { .. }
            | OpencastError::Redirected { .. }),
        ) if on_doubt == OnDoubt::Fail => Err(e),
        Err(e @ OpencastError::NotAuthenticated { .. }) => {
            // The service goes on, but each cycle would read only what anonymous callers see.
            tracing::error!(error = %e, "Opencast serves this harvester anonymously: private episodes are hidden from it");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not confirm which user Opencast runs the requests as");
            Ok(())
        }
    }
}
