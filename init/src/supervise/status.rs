//! Exit statuses and service results, worded as systemd words them.

use std::fmt;

use crate::sys::process::signal_name;
pub use crate::sys::process::ExitStatus;
use crate::unit::UnitKind;

use super::service::SubState;

/// The sub-state `keelctl status` shows: a service's, or for mounts and
/// swaps the names systemd gives their states (`mounted`, `mounting`,
/// `unmounting`; `active`, `activating`, `deactivating`).
pub fn sub_name(kind: &UnitKind, state: SubState) -> &'static str {
    use SubState::*;
    match (kind, state) {
        (UnitKind::Mount, StartPre | Start | StartPost) => "mounting",
        (UnitKind::Mount, Exited | Running) => "mounted",
        (UnitKind::Mount, Stop | StopPost) => "unmounting",
        (UnitKind::Mount, StopSigterm) => "unmounting-sigterm",
        (UnitKind::Mount, StopSigkill) => "unmounting-sigkill",
        (UnitKind::Swap, StartPre | Start | StartPost) => "activating",
        (UnitKind::Swap, Exited | Running) => "active",
        (UnitKind::Swap, Stop | StopPost) => "deactivating",
        (UnitKind::Swap, StopSigterm) => "deactivating-sigterm",
        (UnitKind::Swap, StopSigkill) => "deactivating-sigkill",
        _ => state.name(),
    }
}

/// How a process ended, as systemd's log line says it:
/// `code=exited, status=1/FAILURE` or `code=killed, status=11/SEGV`.
pub fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(0) => "code=exited, status=0/SUCCESS".into(),
        ExitStatus::Exited(code) => format!("code=exited, status={code}/FAILURE"),
        ExitStatus::Signaled { signal, core } => format!(
            "code={}, status={signal}/{}",
            if core { "dumped" } else { "killed" },
            signal_name(signal)
        ),
    }
}

/// Why a service run ended (systemd's `Result=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceResult {
    Success,
    /// A process exited uncleanly.
    Exit(ExitStatus),
    /// A start or stop took longer than its timeout.
    Timeout,
    /// `StartLimitBurst=` starts within `StartLimitIntervalSec=`.
    StartLimitHit,
    /// A process could not be started (missing program, user, directory).
    Resources(String),
    /// The service broke its type's protocol (e.g. exited before READY=1).
    Protocol(String),
    /// Anything else, e.g. a failed assertion.
    Other(String),
}

impl ServiceResult {
    pub fn is_success(&self) -> bool {
        matches!(self, ServiceResult::Success)
    }

    /// The first failure wins.
    pub fn or(self, other: ServiceResult) -> ServiceResult {
        if self.is_success() {
            other
        } else {
            self
        }
    }

    /// systemd's result code: `exit-code`, `signal`, `timeout`, ...
    pub fn code(&self) -> &'static str {
        match self {
            ServiceResult::Success => "success",
            ServiceResult::Exit(ExitStatus::Exited(_)) => "exit-code",
            ServiceResult::Exit(ExitStatus::Signaled { core: true, .. }) => "core-dump",
            ServiceResult::Exit(ExitStatus::Signaled { .. }) => "signal",
            ServiceResult::Timeout => "timeout",
            ServiceResult::StartLimitHit => "start-limit-hit",
            ServiceResult::Resources(_) => "resources",
            ServiceResult::Protocol(_) => "protocol",
            ServiceResult::Other(_) => "other",
        }
    }
}

impl fmt::Display for ServiceResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceResult::Success => f.write_str("success"),
            ServiceResult::Exit(ExitStatus::Exited(code)) => write!(f, "exit code {code}"),
            ServiceResult::Exit(ExitStatus::Signaled { signal, core }) => write!(
                f,
                "killed by signal {}{}",
                signal_name(*signal),
                if *core { " (core dumped)" } else { "" }
            ),
            ServiceResult::Timeout => f.write_str("timed out"),
            ServiceResult::StartLimitHit => f.write_str("start request repeated too quickly"),
            ServiceResult::Resources(m) | ServiceResult::Protocol(m) | ServiceResult::Other(m) => {
                f.write_str(m)
            }
        }
    }
}
