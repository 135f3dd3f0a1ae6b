//! How long to wait before restarting a crashed instance: exponential, capped, and forgiven
//! once an instance has stayed up for a while (a crash after an hour of service is not part of
//! a crash loop).

use std::time::Duration;

/// The restart policy. The defaults follow what Cloud Run does to a crash-looping container:
/// quick first retries, then slower ones, never longer than half a minute apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first crash.
    pub initial: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// An instance that ran at least this long before it exited starts again from `initial`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(250), cap: Duration::from_secs(30), reset_after: Duration::from_secs(30) }
    }
}

impl Backoff {
    pub fn start(self) -> Delays {
        Delays { policy: self, next: self.initial }
    }
}

/// The waits of one instance slot, one per exit.
#[derive(Debug, Clone)]
pub struct Delays {
    policy: Backoff,
    next: Duration,
}

impl Delays {
    /// The wait before restarting an instance that ran for `uptime` and exited.
    pub fn after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.policy.reset_after {
            self.next = self.policy.initial;
        }
        let wait = self.next.min(self.policy.cap);
        self.next = wait.saturating_mul(2).min(self.policy.cap);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_cap_and_resets_after_a_stable_run() {
        let policy = Backoff { initial: ms(100), cap: ms(700), reset_after: ms(5_000) };
        let mut d = policy.start();
        let quick = ms(10);
        let waits: Vec<_> = (0..5).map(|_| d.after_exit(quick)).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(700), ms(700)]);
        assert_eq!(d.after_exit(ms(5_000)), ms(100), "a stable run starts over");
        assert_eq!(d.after_exit(quick), ms(200));
    }

    #[test]
    fn the_first_wait_never_exceeds_the_cap() {
        let mut d = Backoff { initial: ms(900), cap: ms(300), reset_after: ms(1) }.start();
        assert_eq!(d.after_exit(Duration::ZERO), ms(300));
    }
}
