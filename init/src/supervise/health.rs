//! The boot health judgement.
//!
//! The boot is healthy when every unit of the boot transaction that counts
//! (not opted out with `X-Keel-BootHealth=no`) is up — active, or a oneshot
//! that succeeded, or skipped by a condition — and stays so for the grace
//! period without interruption. It is unhealthy when that has not happened
//! by the deadline, counted from the start of init's stage 2. A verdict is
//! given once.

use std::time::{Duration, Instant};

use keel_core::cmdline::Cmdline;

use crate::unit::values::{parse_timespan, TimeSpan};

/// `keel.health.grace=` default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// `keel.health.deadline=` default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// The judgement's two times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    pub grace: Duration,
    pub deadline: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            grace: DEFAULT_GRACE,
            deadline: DEFAULT_DEADLINE,
        }
    }
}

impl HealthConfig {
    /// Reads `keel.health.grace=` and `keel.health.deadline=` (systemd
    /// time spans: `30`, `30s`, `5min`). Returns the config and a warning
    /// for each value it could not use.
    pub fn from_cmdline(cmdline: &Cmdline) -> (HealthConfig, Vec<String>) {
        let mut cfg = HealthConfig::default();
        let mut warnings = Vec::new();
        for (key, slot) in [
            ("keel.health.grace", &mut cfg.grace),
            ("keel.health.deadline", &mut cfg.deadline),
        ] {
            let Some(value) = cmdline.get(key) else {
                continue;
            };
            match parse_timespan(value) {
                Ok(TimeSpan::Finite(d)) => *slot = d,
                Ok(TimeSpan::Infinity) => *slot = Duration::from_secs(u32::MAX as u64),
                Err(e) => warnings.push(format!("{key}={value}: {e}; using the default")),
            }
        }
        (cfg, warnings)
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// What was wrong at the deadline, one line per unit.
    Unhealthy(Vec<String>),
}

/// The judgement's state.
#[derive(Debug, Clone)]
pub struct Health {
    config: HealthConfig,
    started: Instant,
    healthy_since: Option<Instant>,
    decided: bool,
}

impl Health {
    pub fn new(config: HealthConfig, started: Instant) -> Health {
        Health {
            config,
            started,
            healthy_since: None,
            decided: false,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.started + self.config.deadline
    }

    /// Since when every unit has been up, if it is.
    pub fn healthy_since(&self) -> Option<Instant> {
        self.healthy_since
    }

    /// Whether a verdict was given.
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// When the judgement needs to look again: at the end of the grace
    /// period if everything is up, else at the deadline.
    pub fn next_check(&self) -> Option<Instant> {
        if self.decided {
            return None;
        }
        Some(match self.healthy_since {
            Some(since) => (since + self.config.grace).min(self.deadline()),
            None => self.deadline(),
        })
    }

    /// Takes the current problems (empty: everything is up) at `now`;
    /// returns the verdict once it is reached.
    pub fn observe(&mut self, now: Instant, problems: &[String]) -> Option<Verdict> {
        if self.decided {
            return None;
        }
        if problems.is_empty() {
            let since = *self.healthy_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.grace {
                self.decided = true;
                return Some(Verdict::Healthy);
            }
        } else {
            self.healthy_since = None;
        }
        if now >= self.deadline() {
            self.decided = true;
            let reasons = if problems.is_empty() {
                vec![format!(
                    "units were not up for the whole grace period of {} s",
                    self.config.grace.as_secs()
                )]
            } else {
                problems.to_vec()
            };
            return Some(Verdict::Unhealthy(reasons));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(grace: u64, deadline: u64) -> HealthConfig {
        HealthConfig {
            grace: Duration::from_secs(grace),
            deadline: Duration::from_secs(deadline),
        }
    }

    #[test]
    fn healthy_after_an_uninterrupted_grace_period() {
        let t0 = Instant::now();
        let mut h = Health::new(cfg(10, 100), t0);
        let s = Duration::from_secs;
        assert_eq!(h.observe(t0 + s(1), &[]), None);
        assert_eq!(h.next_check(), Some(t0 + s(11)));
        // A unit goes down: the grace period starts over.
        assert_eq!(h.observe(t0 + s(5), &["a: failed".into()]), None);
        assert_eq!(h.next_check(), Some(t0 + s(100)));
        assert_eq!(h.observe(t0 + s(6), &[]), None);
        assert_eq!(h.observe(t0 + s(15), &[]), None);
        assert_eq!(h.observe(t0 + s(16), &[]), Some(Verdict::Healthy));
        assert!(h.decided());
        assert_eq!(h.observe(t0 + s(17), &[]), None);
        assert_eq!(h.next_check(), None);
    }

    #[test]
    fn unhealthy_at_the_deadline_with_the_reasons() {
        let t0 = Instant::now();
        let mut h = Health::new(cfg(10, 30), t0);
        let s = Duration::from_secs;
        let problems = vec!["bad.service: failed (exit code 1)".to_string()];
        assert_eq!(h.observe(t0 + s(29), &problems), None);
        assert_eq!(
            h.observe(t0 + s(30), &problems),
            Some(Verdict::Unhealthy(problems.clone()))
        );
        // Up only shortly before the deadline: still unhealthy.
        let mut h = Health::new(cfg(10, 30), t0);
        assert_eq!(h.observe(t0 + s(25), &[]), None);
        assert_eq!(h.next_check(), Some(t0 + s(30)));
        assert!(matches!(
            h.observe(t0 + s(30), &[]),
            Some(Verdict::Unhealthy(r)) if r[0].contains("grace period")
        ));
    }

    #[test]
    fn reads_the_kernel_command_line() {
        let (c, w) = HealthConfig::from_cmdline(&Cmdline::parse(
            "keel.health.grace=2s keel.health.deadline=1min",
        ));
        assert_eq!(c, cfg(2, 60));
        assert!(w.is_empty());
        let (c, w) = HealthConfig::from_cmdline(&Cmdline::parse("keel.health.grace=soon"));
        assert_eq!(c, HealthConfig::default());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("keel.health.grace=soon"), "{w:?}");
    }
}
