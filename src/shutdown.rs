//! Asking tasks to stop, and knowing when they have (the pattern of tokio's mini-redis).
//!
//! One [`Trigger`] makes the [`Shutdown`] handles the components own: each checks
//! [`Shutdown::is_shutdown`] between units of work, or awaits [`Shutdown::wait`] while idle, and
//! finishes the unit in hand before it returns. A [`Completion`] tells the owner when they
//! have: every task holds a [`TaskGuard`] and drops it on its way out; [`Completion::wait`]
//! returns once the last is gone.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Fires the shutdown its [`Shutdown`] handles see. Dropping it without firing also releases
/// them (a handle whose trigger is gone has nobody left to wait for).
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    /// A trigger and the first handle on it (more with
    /// [`Shutdown::clone`]).
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown(Some(rx)))
    }

    /// Asks every handle to stop (again: a no-op).
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

/// A component's view of a shutdown: cheap to clone, never reset once it has fired.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

impl Shutdown {
    /// A handle that never fires (a one-shot command that runs to its end).
    pub fn never() -> Shutdown {
        Shutdown(None)
    }

    /// Has the shutdown been asked for (or its trigger dropped)?
    pub fn is_shutdown(&self) -> bool {
        match &self.0 {
            None => false,
            Some(rx) => *rx.borrow() || rx.has_changed().is_err(),
        }
    }

    /// Resolves once the shutdown is asked for (at once if it was).
    pub async fn wait(&self) {
        match &self.0 {
            None => std::future::pending().await,
            Some(rx) => {
                let mut rx = rx.clone();
                // An error: the trigger is gone, and nobody is left to fire it.
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    }

    /// Sleeps `d`, or less if the shutdown is asked for meanwhile.
    pub async fn sleep(&self, d: Duration) {
        if self.is_shutdown() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {},
            _ = self.wait() => {},
        }
    }
}

/// Tells an owner when every task it started has finished: each holds a [`TaskGuard`].
#[derive(Debug)]
pub struct Completion {
    tx: mpsc::Sender<()>,
    rx: mpsc::Receiver<()>,
}

/// Held by a task for as long as it runs; dropping it says the task is done.
#[derive(Debug, Clone)]
pub struct TaskGuard(#[allow(dead_code)] mpsc::Sender<()>);

impl Default for Completion {
    fn default() -> Self {
        Self::new()
    }
}

impl Completion {
    pub fn new() -> Completion {
        let (tx, rx) = mpsc::channel(1);
        Completion { tx, rx }
    }

    /// The guard a new task holds.
    pub fn guard(&self) -> TaskGuard {
        TaskGuard(self.tx.clone())
    }

    /// Resolves once every guard is dropped.
    pub async fn wait(self) {
        let Completion { tx, mut rx } = self;
        drop(tx);
        // Nothing is ever sent: `None` means every sender (guard) is gone.
        let _ = rx.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_trigger() {
        let (trigger, a) = Trigger::new();
        let b = a.clone();
        let c = Shutdown(Some(trigger.0.subscribe()));
        assert!(!a.is_shutdown() && !b.is_shutdown() && !c.is_shutdown());
        let waiter = tokio::spawn(async move { b.wait().await });
        trigger.fire();
        waiter.await.unwrap();
        assert!(a.is_shutdown() && c.is_shutdown());
        // Once fired, a wait or a sleep returns at once.
        tokio::time::timeout(Duration::from_secs(5), a.sleep(Duration::from_secs(3600)))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_trigger_releases_its_handles() {
        let (trigger, s) = Trigger::new();
        drop(trigger);
        assert!(s.is_shutdown());
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .unwrap();
        assert!(!Shutdown::never().is_shutdown());
    }

    #[tokio::test]
    async fn completion_waits_for_every_guard() {
        let done = Completion::new();
        let (trigger, stop) = Trigger::new();
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..3 {
            let (guard, stop, finished) = (done.guard(), stop.clone(), finished.clone());
            tokio::spawn(async move {
                stop.wait().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(guard);
            });
        }
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), done.wait())
            .await
            .unwrap();
        assert_eq!(finished.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
