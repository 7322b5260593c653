//! `[Service]` directives.

use std::path::PathBuf;

use super::apply::Applier;
use super::command::{parse_command, parse_environment, Command};
use super::model::{
    Directories, EnvironmentFile, KillMode, NotifyAccess, Output, Preserve, Restart, ServiceType,
    TasksMax, WorkingDirectory,
};
use super::syntax::Entry;
use super::values::{
    parse_bool, parse_exit_statuses, parse_limit, parse_mode, parse_signal, parse_timeout,
    parse_timespan, ExitStatusSet, TimeSpan, LIMITS,
};

/// Which `Exec*=` list a command goes to.
#[derive(Clone, Copy)]
enum Exec {
    StartPre,
    Start,
    StartPost,
    Reload,
    Stop,
    StopPost,
}

/// Which `*Directory=` family.
#[derive(Clone, Copy)]
enum Dir {
    Runtime,
    State,
    Logs,
    Cache,
}

/// Applies one `[Service]` entry; false when the directive is unknown.
pub(super) fn apply(a: &mut Applier<'_>, e: &Entry) -> bool {
    let v = e.value.as_str();
    match e.key.as_str() {
        "Type" => match v {
            "simple" | "" => a.unit.service.service_type = ServiceType::Simple,
            "exec" => a.unit.service.service_type = ServiceType::Exec,
            "oneshot" => a.unit.service.service_type = ServiceType::Oneshot,
            "notify" => a.unit.service.service_type = ServiceType::Notify,
            "forking" => a.unit.service.service_type = ServiceType::Forking,
            "dbus" | "idle" | "notify-reload" => {
                a.unit.service.service_type = ServiceType::Simple;
                a.warn(e, format!("Type={v} not supported, treated as simple"));
            }
            _ => a.warn(e, format!("invalid service type {v:?}, ignored")),
        },
        "ExecStartPre" => exec(a, e, Exec::StartPre),
        "ExecStart" => exec(a, e, Exec::Start),
        "ExecStartPost" => exec(a, e, Exec::StartPost),
        "ExecReload" => exec(a, e, Exec::Reload),
        "ExecStop" => exec(a, e, Exec::Stop),
        "ExecStopPost" => exec(a, e, Exec::StopPost),
        "Restart" => {
            let r = match v {
                "no" | "" => Restart::No,
                "on-success" => Restart::OnSuccess,
                "on-failure" => Restart::OnFailure,
                "on-abnormal" => Restart::OnAbnormal,
                "on-abort" => Restart::OnAbort,
                "on-watchdog" => Restart::OnWatchdog,
                "always" => Restart::Always,
                _ => return warn_invalid(a, e, "restart setting"),
            };
            a.unit.service.restart = r;
        }
        "RestartSec" => {
            if let Some(t) = span(a, e, parse_timespan) {
                a.unit.service.restart_sec = t;
            }
        }
        "TimeoutSec" => {
            if let Some(t) = span(a, e, parse_timeout) {
                a.unit.service.timeout_start = t;
                a.unit.service.timeout_stop = t;
            }
        }
        "TimeoutStartSec" => {
            if let Some(t) = span(a, e, parse_timeout) {
                a.unit.service.timeout_start = t;
            }
        }
        "TimeoutStopSec" => {
            if let Some(t) = span(a, e, parse_timeout) {
                a.unit.service.timeout_stop = t;
            }
        }
        "RestartPreventExitStatus" => exit_set(a, e, |s| &mut s.restart_prevent_exit_status),
        "SuccessExitStatus" => exit_set(a, e, |s| &mut s.success_exit_status),
        "StartLimitInterval" => a.start_limit_interval(e),
        "StartLimitBurst" => a.start_limit_burst(e),
        "RemainAfterExit" => {
            if let Some(b) = boolean(a, e, false) {
                a.unit.service.remain_after_exit = b;
            }
        }
        "SendSIGKILL" => {
            if let Some(b) = boolean(a, e, true) {
                a.unit.service.send_sigkill = b;
            }
        }
        "Delegate" => {
            // A list of controller names also means yes.
            a.unit.service.delegate = parse_bool(v).unwrap_or(!v.is_empty());
        }
        "Environment" => environment(a, e),
        "EnvironmentFile" => {
            if v.is_empty() {
                a.unit.service.environment_files.clear();
            } else {
                let (optional, p) = v.strip_prefix('-').map_or((false, v), |p| (true, p));
                let p = a.spec(e, p);
                if p.starts_with('/') {
                    let f = EnvironmentFile {
                        path: PathBuf::from(p),
                        optional,
                    };
                    a.unit.service.environment_files.push(f);
                } else {
                    a.warn(e, format!("path {p:?} is not absolute, ignored"));
                }
            }
        }
        "WorkingDirectory" => {
            if v.is_empty() {
                a.unit.service.working_directory = None;
            } else {
                let (optional, p) = v.strip_prefix('-').map_or((false, v), |p| (true, p));
                let p = a.spec(e, p);
                let path = match p.as_str() {
                    "~" => None,
                    p if p.starts_with('/') => Some(PathBuf::from(p)),
                    _ => return warn_invalid(a, e, "working directory"),
                };
                a.unit.service.working_directory = Some(WorkingDirectory { path, optional });
            }
        }
        "User" => a.unit.service.user = opt_string(a, e),
        "Group" => a.unit.service.group = opt_string(a, e),
        "SupplementaryGroups" => {
            if v.is_empty() {
                a.unit.service.supplementary_groups.clear();
            }
            for w in v.split_whitespace() {
                let g = a.spec(e, w);
                a.unit.service.supplementary_groups.push(g);
            }
        }
        "RuntimeDirectory" => dirs(a, e, Dir::Runtime),
        "StateDirectory" => dirs(a, e, Dir::State),
        "LogsDirectory" => dirs(a, e, Dir::Logs),
        "CacheDirectory" => dirs(a, e, Dir::Cache),
        "RuntimeDirectoryMode" => dir_mode(a, e, Dir::Runtime),
        "StateDirectoryMode" => dir_mode(a, e, Dir::State),
        "LogsDirectoryMode" => dir_mode(a, e, Dir::Logs),
        "CacheDirectoryMode" => dir_mode(a, e, Dir::Cache),
        "RuntimeDirectoryPreserve" => {
            a.unit.service.runtime_directory_preserve = match v {
                "restart" => Preserve::Restart,
                "" => Preserve::No,
                _ => match parse_bool(v) {
                    Ok(true) => Preserve::Yes,
                    Ok(false) => Preserve::No,
                    Err(_) => return warn_invalid(a, e, "value"),
                },
            }
        }
        "KillMode" => {
            a.unit.service.kill_mode = match v {
                "control-group" | "" => KillMode::ControlGroup,
                "mixed" => KillMode::Mixed,
                "process" => KillMode::Process,
                "none" => KillMode::None,
                _ => return warn_invalid(a, e, "kill mode"),
            }
        }
        "KillSignal" => match parse_signal(v) {
            Ok(s) => a.unit.service.kill_signal = Some(s),
            Err(_) if v.is_empty() => a.unit.service.kill_signal = None,
            Err(m) => a.warn(e, format!("{m}, ignored")),
        },
        "TasksMax" => {
            let t = if v == "infinity" {
                Some(TasksMax::Infinity)
            } else if let Some(p) = v.strip_suffix('%') {
                p.parse().ok().map(TasksMax::Percent)
            } else {
                v.parse().ok().map(TasksMax::Count)
            };
            match t {
                Some(t) => a.unit.service.tasks_max = Some(t),
                None if v.is_empty() => a.unit.service.tasks_max = None,
                None => return warn_invalid(a, e, "tasks limit"),
            }
        }
        "OOMScoreAdjust" => match v.parse::<i32>() {
            Ok(n) if (-1000..=1000).contains(&n) => a.unit.service.oom_score_adjust = Some(n),
            _ if v.is_empty() => a.unit.service.oom_score_adjust = None,
            _ => return warn_invalid(a, e, "OOM score adjustment"),
        },
        "Nice" => match v.parse::<i32>() {
            Ok(n) if (-20..=19).contains(&n) => a.unit.service.nice = Some(n),
            _ if v.is_empty() => a.unit.service.nice = None,
            _ => return warn_invalid(a, e, "nice level"),
        },
        "UMask" => match parse_mode(v) {
            Ok(m) => a.unit.service.umask = Some(m),
            Err(_) if v.is_empty() => a.unit.service.umask = None,
            Err(m) => a.warn(e, format!("{m}, ignored")),
        },
        "PIDFile" => {
            let p = a.spec(e, v);
            a.unit.service.pid_file = match p.as_str() {
                "" => None,
                p if p.starts_with('/') => Some(PathBuf::from(p)),
                // systemd resolves relative PIDFile= against /run
                p => Some(PathBuf::from("/run").join(p)),
            }
        }
        "NotifyAccess" => {
            a.unit.service.notify_access = match v {
                "" => None,
                "none" => Some(NotifyAccess::None),
                "main" => Some(NotifyAccess::Main),
                "exec" => Some(NotifyAccess::Exec),
                "all" => Some(NotifyAccess::All),
                _ => return warn_invalid(a, e, "notify access"),
            }
        }
        "StandardOutput" => a.unit.service.standard_output = output(a, e),
        "StandardError" => a.unit.service.standard_error = output(a, e),
        key => {
            let Some(res) = key.strip_prefix("Limit") else {
                return false;
            };
            let Some((_, rlimit, unit)) = LIMITS.iter().find(|(n, _, _)| *n == res) else {
                return false;
            };
            let limits = &mut a.unit.service.limits;
            limits.retain(|(r, _)| r != rlimit);
            if v.is_empty() {
                return true;
            }
            match parse_limit(v, *unit) {
                Ok(l) => a.unit.service.limits.push((rlimit, l)),
                Err(m) => a.warn(e, format!("{m}, ignored")),
            }
        }
    }
    true
}

fn warn_invalid(a: &mut Applier<'_>, e: &Entry, what: &str) -> bool {
    a.warn(e, format!("invalid {what} {:?}, ignored", e.value));
    true
}

/// Empty resets to `None`; otherwise a parsed span or a warning (`None` returned).
fn span(
    a: &mut Applier<'_>,
    e: &Entry,
    parse: fn(&str) -> Result<TimeSpan, String>,
) -> Option<Option<TimeSpan>> {
    if e.value.is_empty() {
        return Some(None);
    }
    match parse(&e.value) {
        Ok(t) => Some(Some(t)),
        Err(m) => {
            a.warn(e, format!("{m}, ignored"));
            None
        }
    }
}

/// A boolean; empty resets to `default`.
fn boolean(a: &mut Applier<'_>, e: &Entry, default: bool) -> Option<bool> {
    if e.value.is_empty() {
        return Some(default);
    }
    match parse_bool(&e.value) {
        Ok(b) => Some(b),
        Err(m) => {
            a.warn(e, format!("{m}, ignored"));
            None
        }
    }
}

fn opt_string(a: &mut Applier<'_>, e: &Entry) -> Option<String> {
    let s = a.spec(e, &e.value);
    (!s.is_empty()).then_some(s)
}

fn exec_list<'b>(a: &'b mut Applier<'_>, which: Exec) -> &'b mut Vec<Command> {
    let s = &mut a.unit.service;
    match which {
        Exec::StartPre => &mut s.exec_start_pre,
        Exec::Start => &mut s.exec_start,
        Exec::StartPost => &mut s.exec_start_post,
        Exec::Reload => &mut s.exec_reload,
        Exec::Stop => &mut s.exec_stop,
        Exec::StopPost => &mut s.exec_stop_post,
    }
}

fn exec(a: &mut Applier<'_>, e: &Entry, which: Exec) {
    if e.value.is_empty() {
        exec_list(a, which).clear();
        return;
    }
    match parse_command(&e.value) {
        Ok(mut cmd) => {
            cmd.path = a.spec(e, &cmd.path);
            let argv = std::mem::take(&mut cmd.argv);
            cmd.argv = argv.iter().map(|w| a.spec(e, w)).collect();
            exec_list(a, which).push(cmd);
        }
        Err(m) => a.warn(e, format!("{m}, ignored")),
    }
}

fn environment(a: &mut Applier<'_>, e: &Entry) {
    if e.value.is_empty() {
        a.unit.service.environment.clear();
        return;
    }
    match parse_environment(&e.value) {
        Ok(items) => {
            for item in items {
                match item {
                    Ok((k, v)) => {
                        let v = a.spec(e, &v);
                        a.unit.service.environment.push((k, v));
                    }
                    Err(m) => a.warn(e, m),
                }
            }
        }
        Err(m) => a.warn(e, format!("{m}, ignored")),
    }
}

fn exit_set(
    a: &mut Applier<'_>,
    e: &Entry,
    field: fn(&mut super::model::ServiceSection) -> &mut ExitStatusSet,
) {
    if e.value.is_empty() {
        *field(&mut a.unit.service) = ExitStatusSet::default();
        return;
    }
    for m in parse_exit_statuses(&e.value, field(&mut a.unit.service)) {
        a.warn(e, m);
    }
}

fn dir_field<'b>(a: &'b mut Applier<'_>, d: Dir) -> &'b mut Directories {
    let s = &mut a.unit.service;
    match d {
        Dir::Runtime => &mut s.runtime_directory,
        Dir::State => &mut s.state_directory,
        Dir::Logs => &mut s.logs_directory,
        Dir::Cache => &mut s.cache_directory,
    }
}

fn dirs(a: &mut Applier<'_>, e: &Entry, d: Dir) {
    if e.value.is_empty() {
        dir_field(a, d).names.clear();
        return;
    }
    for w in e.value.split_whitespace() {
        let n = a.spec(e, w);
        let bad = n.starts_with('/') || n.split('/').any(|c| c == ".." || c == ".");
        if bad || n.contains(':') {
            a.warn(e, format!("invalid directory name {n:?}, ignored"));
        } else {
            dir_field(a, d).names.push(n);
        }
    }
}

fn dir_mode(a: &mut Applier<'_>, e: &Entry, d: Dir) {
    if e.value.is_empty() {
        dir_field(a, d).mode = None;
        return;
    }
    match parse_mode(&e.value) {
        Ok(m) => dir_field(a, d).mode = Some(m),
        Err(m) => a.warn(e, format!("{m}, ignored")),
    }
}

fn output(a: &mut Applier<'_>, e: &Entry) -> Option<Output> {
    let v = e.value.as_str();
    let current = match e.key.as_str() {
        "StandardOutput" => a.unit.service.standard_output.clone(),
        _ => a.unit.service.standard_error.clone(),
    };
    let path = |a: &mut Applier<'_>, p: &str| PathBuf::from(a.spec(e, p));
    let out = match v {
        "" => return None,
        "inherit" => Output::Inherit,
        "null" => Output::Null,
        "tty" => Output::Tty,
        "journal" | "syslog" => Output::Journal,
        "kmsg" => Output::Kmsg,
        "journal+console" | "syslog+console" => Output::JournalConsole,
        "kmsg+console" => Output::KmsgConsole,
        _ => {
            if let Some(p) = v.strip_prefix("file:") {
                Output::File(path(a, p))
            } else if let Some(p) = v.strip_prefix("append:") {
                Output::Append(path(a, p))
            } else if let Some(p) = v.strip_prefix("truncate:") {
                Output::Truncate(path(a, p))
            } else {
                a.warn(e, format!("output {v:?} not supported, ignored"));
                return current;
            }
        }
    };
    Some(out)
}
