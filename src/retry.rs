//! The one retry policy: exponential backoff with *full jitter*.
//!
//! Retry number `n` (from 0) sleeps a delay drawn uniformly from `[0, min(cap, first·factorⁿ)]`,
//! AWS's "full jitter" (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>):
//! callers that fail together do not retry together, and the ceiling still grows until it
//! reaches the cap. Whether a failure is worth a retry at all is the caller's decision and stays
//! next to it; this module only says how long to wait.
//!
//! [`Backoff`] is the policy (plain settings, `const`-constructible); [`Retries`] is one caller's
//! running state over it (the retry count, reset after a success). Each caller's settings are
//! named here:
//!
//! | caller                                   | first  | cap   |
//! |------------------------------------------|--------|-------|
//! | Opencast client ([`OPENCAST`])           | 200 ms | 10 s  |
//! | `run`/`harvest` forwarders ([`FORWARD`]) | 500 ms | 30 s  |
//! | `run`'s journal reopen ([`JOURNAL_REOPEN`]) | 500 ms | 15 s |
//! | SQS batch re-sends ([`SQS_BATCH`])       | 100 ms | 5 s   |
//! | Elasticsearch bulk ([`ES_BULK`])         | 250 ms | 30 s  |
//! | xAPI statement batches ([`XAPI`])        | 250 ms | 30 s  |
//!
//! A caller with its own configured first delay (the Elasticsearch sink's `backoff`, the
//! Opencast client's `ClientConfig`) builds its policy with [`Backoff::new`] or
//! [`Backoff::with_first`]. A bounded loop that counts its attempts asks [`Backoff::delay`] for
//! retry `attempt - 1`; an unbounded one keeps a [`Retries`] and resets it after a success
//! (the test `callers_use_it_as_documented` shows each kind).

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter: retry `n` (from 0) waits a uniform draw from
/// `[0, min(cap, first·factorⁿ)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub first: Duration,
    /// No delay is ever longer than this.
    pub cap: Duration,
    /// How much the ceiling grows per retry.
    pub factor: u32,
}

/// The Opencast client's default: 200 ms, doubling, up to 10 s.
pub const OPENCAST: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// A forwarder whose sink is down (`run`'s and `harvest`'s loops): 500 ms, doubling, up to 30 s.
pub const FORWARD: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// `run` reopening a journal after an I/O error: 500 ms, doubling, up to 15 s.
pub const JOURNAL_REOPEN: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(15));

/// The SQS sink sending the failed entries of a `SendMessageBatch` again: 100 ms, doubling, up
/// to 5 s.
pub const SQS_BATCH: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// The xAPI sink posting a batch the LRS answered 429 or 5xx to (or that met a network error):
/// 250 ms, doubling, up to 30 s; `XAPI_ATTEMPTS` bounds the attempts.
pub const XAPI: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

/// The Elasticsearch sink retrying a bulk request's failed items (attempts are bounded): the
/// sink's default `backoff` of 250 ms, doubling, up to 30 s.
pub const ES_BULK: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

impl Backoff {
    /// A policy that doubles from `first` up to `cap`.
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            factor: 2,
        }
    }

    /// The same policy with another first delay (a sink's configured `backoff`).
    pub const fn with_first(self, first: Duration) -> Backoff {
        Backoff { first, ..self }
    }

    /// The longest delay of retry `n` (from 0): `min(cap, first·factorⁿ)`, saturating.
    pub fn ceiling(&self, n: u32) -> Duration {
        self.factor
            .checked_pow(n)
            .and_then(|f| self.first.checked_mul(f))
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The delay before retry `n` (from 0), drawn from `rng`: uniform in `[0, ceiling(n)]`.
    pub fn delay_with<R: Rng + ?Sized>(&self, n: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(n);
        if ceiling.is_zero() {
            return ceiling;
        }
        rng.random_range(Duration::ZERO..=ceiling)
    }

    /// The delay before retry `n` (from 0), drawn from the thread's generator.
    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with(n, &mut rand::rng())
    }

    /// A running count of retries over this policy.
    pub const fn retries(self) -> Retries {
        Retries { policy: self, n: 0 }
    }
}

/// One caller's retries over a [`Backoff`]: each [`Retries::next_delay`] is the delay of the
/// next retry; [`Retries::reset`] after a success starts again from the first.
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    n: u32,
}

impl Retries {
    /// The delay before the next retry (drawn with full jitter); counts the retry.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.policy.delay(self.n);
        self.n = self.n.saturating_add(1);
        d
    }

    /// After a success: the next failure waits as little as the first did.
    pub fn reset(&mut self) {
        self.n = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const P: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

    #[test]
    fn the_ceiling_grows_to_the_cap_and_stays() {
        assert_eq!(P.ceiling(0), Duration::from_millis(200));
        assert_eq!(P.ceiling(1), Duration::from_millis(400));
        assert_eq!(P.ceiling(5), Duration::from_millis(6400));
        assert_eq!(P.ceiling(6), Duration::from_secs(10));
        for n in [7, 31, 32, 64, 1000, u32::MAX] {
            assert_eq!(P.ceiling(n), Duration::from_secs(10), "retry {n}");
        }
        let p3 = Backoff { factor: 3, ..P };
        assert_eq!(p3.ceiling(2), Duration::from_millis(1800));
    }

    #[test]
    fn delays_never_exceed_the_ceiling_nor_the_cap() {
        let mut rng = StdRng::seed_from_u64(12);
        for n in 0..40 {
            for _ in 0..200 {
                let d = P.delay_with(n, &mut rng);
                assert!(d <= P.ceiling(n) && d <= P.cap, "retry {n}: {d:?}");
            }
        }
    }

    /// Full jitter: the delays at the cap cover all of `[0, cap]`, the lowest quarter too (the
    /// old Opencast formula drew from `[cap/4, cap]`, SQS's from `[cap/2, cap]`, `run`'s had no
    /// jitter), with a mean near `cap/2`.
    #[test]
    fn delays_sample_the_whole_range() {
        let mut rng = StdRng::seed_from_u64(2026);
        let cap = P.cap.as_secs_f64();
        let draws: Vec<f64> = (0..2000)
            .map(|_| P.delay_with(30, &mut rng).as_secs_f64())
            .collect();
        let below_quarter = draws.iter().filter(|d| **d < cap / 4.0).count();
        let above_3q = draws.iter().filter(|d| **d > cap * 0.75).count();
        // About 500 of each expected; the bounds are wide enough never to flake.
        assert!((350..650).contains(&below_quarter), "{below_quarter}");
        assert!((350..650).contains(&above_3q), "{above_3q}");
        assert!(draws.iter().any(|d| *d < cap * 0.02));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - cap / 2.0).abs() < cap * 0.05, "mean {mean}");
    }

    #[test]
    fn retries_grow_and_reset_after_success() {
        let mut r = FORWARD.retries();
        let mut rng_free_max = Duration::ZERO;
        for _ in 0..10 {
            rng_free_max = rng_free_max.max(r.next_delay());
        }
        assert_eq!(r.n, 10);
        assert!(rng_free_max <= FORWARD.cap);
        r.reset();
        assert_eq!(r.n, 0);
        for _ in 0..50 {
            let mut fresh = r.clone();
            assert!(fresh.next_delay() <= FORWARD.first);
        }
    }

    #[test]
    fn a_zero_policy_never_sleeps() {
        let p = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(p.delay(3), Duration::ZERO);
    }

    /// How each kind of caller uses the policy.
    #[test]
    fn callers_use_it_as_documented() {
        // The SQS sink, before sending the failed entries again (attempt 1, 2, ...):
        let attempt = 1;
        assert!(SQS_BATCH.delay(attempt - 1) <= Duration::from_millis(100));
        // The Elasticsearch bulk engine, from its configured first delay:
        let configured = Duration::from_millis(250);
        assert!(ES_BULK.with_first(configured).delay(attempt - 1) <= configured);
        // A forwarder whose sink is down: up to 500 ms, then up to 1 s; after a success, from
        // the first again.
        let mut backoff = FORWARD.retries();
        assert!(backoff.next_delay() <= Duration::from_millis(500));
        assert!(backoff.next_delay() <= Duration::from_secs(1));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(500));
    }
}
