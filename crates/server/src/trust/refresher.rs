//! One refresh of an issuer's keys, and the background tasks that run it on a schedule.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::fetch::FetchError;
use super::{Issuer, Shared, Source};

/// Shortest sleep of a background task, whatever the policy says: never a busy loop.
const MIN_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// From a token (unknown `kid`, cold start, stale keys): subject to the rate limit.
    OnDemand,
    /// From the owner or the schedule: always fetches, and counts as an attempt.
    Owner,
}

/// Fetches `issuer`'s keys unless the rate limit refuses (`None`). On success the verifier's
/// keys are replaced; on failure they are kept, and the gate decides how long they stay usable.
pub(super) async fn refresh(shared: &Shared, issuer: &Issuer, trigger: Trigger) -> Option<Result<(), FetchError>> {
    // Requests arriving during a fetch wait for it, then find the gate closed.
    let _fetching = issuer.fetching.lock().await;
    let allowed = issuer.state().gate.may_fetch((shared.clock)());
    if !allowed && trigger == Trigger::OnDemand {
        return None;
    }
    let policy = &shared.policy;
    let (result, next) = match &issuer.source {
        Source::Static => return None,
        Source::Url(uri) => {
            let r = shared.fetcher.url(uri).await;
            let next = match &r {
                Ok(f) => f.max_age.unwrap_or(policy.default_refresh).clamp(policy.min_refresh, policy.max_refresh),
                Err(_) => policy.retry_after_failure,
            };
            (r, next)
        }
        Source::File(path) => (shared.fetcher.file(path).await, policy.file_interval),
    };
    let now = (shared.clock)();
    let outcome = match result {
        Ok(fetched) => {
            tracing::debug!(issuer = %issuer.name, keys = fetched.keys.len(), "JWKS refreshed");
            issuer.verifier.replace_keys(fetched.keys);
            let mut state = issuer.state();
            state.gate.record_success(now);
            state.next_refresh = Some(next);
            Ok(())
        }
        Err(e) => {
            let mut state = issuer.state();
            state.gate.record_failure(now);
            state.next_refresh = Some(next);
            tracing::warn!(
                issuer = %issuer.name,
                failures = state.gate.consecutive_failures(),
                error = %e,
                "JWKS refresh failed: keeping the last good keys until they are too stale"
            );
            Err(e)
        }
    };
    Some(outcome)
}

/// The background refresh tasks of a trust store. Dropping the handle stops them.
#[derive(Debug)]
pub struct Refreshers {
    tasks: Vec<JoinHandle<()>>,
}

impl Refreshers {
    pub(super) fn spawn<'a>(shared: &Arc<Shared>, issuers: impl Iterator<Item = &'a Arc<Issuer>>) -> Self {
        let tasks = issuers
            .map(|issuer| {
                let (shared, issuer) = (Arc::clone(shared), Arc::clone(issuer));
                tokio::spawn(async move {
                    loop {
                        // `None` until the first attempt: a store not yet warmed up fetches at once.
                        let delay = issuer.state().next_refresh;
                        if let Some(d) = delay {
                            tokio::time::sleep(d.max(MIN_TICK)).await;
                        }
                        // Failures are logged in `refresh` and retried on the schedule.
                        let _ = refresh(&shared, &issuer, Trigger::Owner).await;
                    }
                })
            })
            .collect();
        Self { tasks }
    }

    /// Number of running tasks (one per URL or file source).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every task; a fetch in flight is abandoned and the keys stay as they are.
    pub fn cancel(self) {
        drop(self);
    }
}

impl Drop for Refreshers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
