//! `keelctl`: the command line client of init's control socket.
//!
//! `keel-init` is a multi-call binary: started as `keelctl` (the image has
//! `/usr/bin/keelctl -> /usr/lib/keel/keel-init`) it runs [`main`]. Every
//! command but `logs` is one request to init over [`control::SOCKET`];
//! `logs` reads the per-unit log files directly.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::control::{self, Request, Response, UnitStatus};
use crate::error::chain;
use crate::logs;
use crate::unit::name::is_valid;

/// How long to wait for init to answer a quick request.
const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a start, stop or restart (init answers when done).
const JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// Log lines shown below `status UNIT`.
const STATUS_LOG_LINES: usize = 10;

/// Exit status of `status UNIT` when the unit is not active.
pub const EXIT_NOT_ACTIVE: i32 = 3;

const AFTER_HELP: &str = "\
A unit name without a type suffix means NAME.service (ssh = ssh.service).

Exit status: 0 on success, 1 on an error (printed as `keelctl: error: ...`),
2 on a usage error, 3 from `status UNIT` when the unit is not active.
Only root may talk to init.";

/// Control Keel's init (PID 1): show and change the state of units, read
/// their logs, reboot or power off.
#[derive(Debug, Parser)]
#[command(name = "keelctl", after_help = AFTER_HELP)]
pub struct Cli {
    /// Init's control socket
    #[arg(long, value_name = "PATH", default_value = control::SOCKET, hide = true)]
    socket: PathBuf,
    /// Directory of the per-unit logs
    #[arg(long, value_name = "DIR", default_value = logs::LOG_DIR, hide = true)]
    log_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show all units as a table, or one unit in detail with its last log
    /// lines
    Status {
        /// The unit to show in detail; all loaded units when omitted
        unit: Option<String>,
        /// Print the status as JSON (a list of units, or the one unit)
        #[arg(long)]
        json: bool,
    },
    /// Start a unit and the units it requires; waits until it is up
    Start {
        /// The unit to start
        unit: String,
    },
    /// Stop a unit and the units that require it; waits until it is down
    Stop {
        /// The unit to stop
        unit: String,
    },
    /// Stop a unit if it runs, then start it
    Restart {
        /// The unit to restart
        unit: String,
    },
    /// Make a unit start at boot: create the links its [Install] section
    /// asks for below /etc/systemd/system
    Enable {
        /// The unit to enable
        unit: String,
    },
    /// Stop a unit from starting at boot: remove its [Install] links
    Disable {
        /// The unit to disable
        unit: String,
    },
    /// Stop all units and reboot the machine
    Reboot,
    /// Stop all units and power the machine off
    Poweroff,
    /// Send a readiness or status notification to init from a service
    /// (sd_notify over $NOTIFY_SOCKET, like systemd-notify); the unit needs
    /// NotifyAccess=all, since the message comes from this process
    Notify {
        /// Send READY=1
        #[arg(long)]
        ready: bool,
        /// Send STATUS=TEXT
        #[arg(long, value_name = "TEXT")]
        status: Option<String>,
        /// Further VARIABLE=VALUE assignments to send
        #[arg(value_name = "VARIABLE=VALUE")]
        assignments: Vec<String>,
    },
    /// Print a unit's log (its standard output and error)
    Logs {
        /// The unit whose log to print
        unit: String,
        /// Keep printing new lines as they are written, until interrupted
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print
        #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
        lines: usize,
    },
}

/// Runs `keelctl` with `args` (including argv\[0\]); returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let stdout = io::stdout();
    let stderr = io::stderr();
    execute(args, &mut stdout.lock(), &mut stderr.lock(), now)
}

/// [`main`] with its output streams and the current time (ms since the
/// epoch) given.
fn execute(args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write, now_ms: u64) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let stream: &mut dyn Write = if e.use_stderr() { err } else { out };
            let _ = stream.write_all(text.as_bytes());
            return e.exit_code();
        }
    };
    match run(&cli, out, err, now_ms) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(err, "keelctl: error: {message}");
            1
        }
    }
}

/// The sd_notify datagram: one `KEY=VALUE` per line.
fn notify_message(
    ready: bool,
    status: Option<&str>,
    assignments: &[String],
) -> Result<String, String> {
    let mut lines = Vec::new();
    if ready {
        lines.push("READY=1".to_string());
    }
    if let Some(s) = status {
        lines.push(format!("STATUS={s}"));
    }
    for a in assignments {
        match a.split_once('=') {
            Some((k, _)) if !k.is_empty() && !a.contains('\n') => lines.push(a.clone()),
            _ => return Err(format!("{a:?} is not a VARIABLE=VALUE assignment")),
        }
    }
    if lines.is_empty() {
        return Err("nothing to send: give --ready, --status or VARIABLE=VALUE".into());
    }
    Ok(lines.join("\n"))
}

/// A bare name means `NAME.service`, as with systemctl.
fn unit_name(arg: &str) -> Result<String, String> {
    let name = if arg.contains('.') {
        arg.to_string()
    } else {
        format!("{arg}.service")
    };
    if is_valid(&name) {
        Ok(name)
    } else {
        Err(format!("invalid unit name {arg:?}"))
    }
}

fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write, now_ms: u64) -> Result<i32, String> {
    let (request, timeout) = match &cli.command {
        Command::Status { unit, json } => {
            let unit = unit.as_deref().map(unit_name).transpose()?;
            return status(cli, unit, *json, out, err, now_ms);
        }
        Command::Logs {
            unit,
            follow,
            lines,
        } => {
            let unit = unit_name(unit)?;
            logs::print(&cli.log_dir, &unit, *lines, *follow, out, &|| false)
                .map_err(|e| chain(&e))?;
            return Ok(0);
        }
        Command::Notify {
            ready,
            status,
            assignments,
        } => {
            let text = notify_message(*ready, status.as_deref(), assignments)?;
            let socket = std::env::var_os("NOTIFY_SOCKET")
                .ok_or("NOTIFY_SOCKET is not set: not started by init as a notify service")?;
            crate::sys::notify::notify(Path::new(&socket), &text)
                .map_err(|e| format!("sending to {}: {e}", Path::new(&socket).display()))?;
            return Ok(0);
        }
        Command::Start { unit } => (
            Request::Start {
                unit: unit_name(unit)?,
            },
            JOB_TIMEOUT,
        ),
        Command::Stop { unit } => (
            Request::Stop {
                unit: unit_name(unit)?,
            },
            JOB_TIMEOUT,
        ),
        Command::Restart { unit } => (
            Request::Restart {
                unit: unit_name(unit)?,
            },
            JOB_TIMEOUT,
        ),
        Command::Enable { unit } => (
            Request::Enable {
                unit: unit_name(unit)?,
            },
            QUICK_TIMEOUT,
        ),
        Command::Disable { unit } => (
            Request::Disable {
                unit: unit_name(unit)?,
            },
            QUICK_TIMEOUT,
        ),
        Command::Reboot => (Request::Reboot, QUICK_TIMEOUT),
        Command::Poweroff => (Request::Poweroff, QUICK_TIMEOUT),
    };
    match ask(&cli.socket, &request, timeout)? {
        Response::Ok { message } => {
            if !message.is_empty() {
                writeln!(out, "{}", message.trim_end_matches('\n')).map_err(write_err)?;
            }
            Ok(0)
        }
        Response::Status { .. } => Err("init answered with a status instead of a result".into()),
        Response::Error { message } => Err(message),
    }
}

fn ask(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, String> {
    control::request(socket, request, timeout).map_err(|e| chain(&e))
}

fn write_err(e: io::Error) -> String {
    format!("writing to standard output: {e}")
}

fn status(
    cli: &Cli,
    unit: Option<String>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
    now_ms: u64,
) -> Result<i32, String> {
    let request = Request::Status { unit: unit.clone() };
    let units = match ask(&cli.socket, &request, QUICK_TIMEOUT)? {
        Response::Status { units } => units,
        Response::Error { message } => return Err(message),
        Response::Ok { .. } => return Err("init answered a status request without one".into()),
    };
    let Some(name) = unit else {
        if json {
            write_json(out, &units)?;
        } else {
            out.write_all(table(&units).as_bytes()).map_err(write_err)?;
        }
        return Ok(0);
    };
    let one = units
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| format!("init sent no status for {name}"))?;
    if json {
        write_json(out, &one)?;
    } else {
        out.write_all(block(&one, now_ms).as_bytes())
            .map_err(write_err)?;
        match logs::tail(&cli.log_dir, &name, STATUS_LOG_LINES) {
            Ok(lines) if lines.is_empty() => {}
            Ok(lines) => {
                let mut text = String::from("\n");
                for l in lines {
                    text.push_str(&l);
                    text.push('\n');
                }
                out.write_all(text.as_bytes()).map_err(write_err)?;
            }
            Err(e) => {
                let _ = writeln!(
                    err,
                    "keelctl: warning: cannot show the log of {name}: {}",
                    chain(&e)
                );
            }
        }
    }
    Ok(if one.is_active() { 0 } else { EXIT_NOT_ACTIVE })
}

fn write_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    text.push('\n');
    out.write_all(text.as_bytes()).map_err(write_err)
}

/// The unit list, like `systemctl list-units`: a `●` marks failed units.
fn table(units: &[UnitStatus]) -> String {
    const HEADER: [&str; 4] = ["UNIT", "LOAD", "ACTIVE", "SUB"];
    let mut widths = HEADER.map(str::len);
    for u in units {
        for (w, v) in widths.iter_mut().zip([&u.name, &u.load, &u.active, &u.sub]) {
            *w = (*w).max(v.chars().count());
        }
    }
    let row = |mark: &str, cols: [&str; 4], description: &str| {
        let mut line = mark.to_string();
        for (c, w) in cols.iter().zip(widths) {
            line.push_str(&format!("{c:<w$} "));
        }
        line.push_str(description);
        format!("{}\n", line.trim_end())
    };
    let mut text = row("  ", HEADER, "DESCRIPTION");
    for u in units {
        let mark = if u.is_failed() { "● " } else { "  " };
        let cols = [&*u.name, &*u.load, &*u.active, &*u.sub];
        text.push_str(&row(mark, cols, u.description.as_deref().unwrap_or("")));
    }
    let failed = units.iter().filter(|u| u.is_failed()).count();
    let noun = if units.len() == 1 { "unit" } else { "units" };
    text.push_str(&format!(
        "\n{} {noun} listed, {failed} failed\n",
        units.len()
    ));
    text
}

/// One unit in detail, like the head of `systemctl status UNIT`.
fn block(u: &UnitStatus, now_ms: u64) -> String {
    let bullet = if u.active == "inactive" { "○" } else { "●" };
    let mut text = match &u.description {
        Some(d) => format!("{bullet} {} - {d}\n", u.name),
        None => format!("{bullet} {}\n", u.name),
    };
    let line = |text: &mut String, label: &str, value: &str| {
        text.push_str(&format!("{label:>12} {value}\n"));
    };
    let enabled = match u.enabled {
        Some(true) => "enabled",
        Some(false) => "disabled",
        None => "static",
    };
    let loaded = match &u.fragment {
        Some(f) => format!("{} ({f}; {enabled})", u.load),
        None => u.load.clone(),
    };
    line(&mut text, "Loaded:", &loaded);
    let mut active = u.active.clone();
    if u.sub != u.active {
        active.push_str(&format!(" ({})", u.sub));
    }
    if let Some(r) = &u.result {
        active.push_str(&format!(" (Result: {r})"));
    }
    if let Some(since) = u.since_unix_ms {
        active.push_str(&format!(
            " since {}; {} ago",
            utc(since),
            span(now_ms.saturating_sub(since))
        ));
    }
    line(&mut text, "Active:", &active);
    if let Some(pid) = u.main_pid {
        line(&mut text, "Main PID:", &pid.to_string());
    }
    line(&mut text, "Restarts:", &u.restarts.to_string());
    if !u.health {
        line(&mut text, "Health:", "not part of the boot health check");
    }
    text
}

/// `Tue 2023-11-14 22:13:20 UTC`
fn utc(ms: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let weekday = WEEKDAYS[usize::try_from(days % 7).unwrap_or(0)];
    format!(
        "{weekday} {y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A duration the way systemd prints one: its two largest units, e.g.
/// `2h 5min`, `1 day 3h`, `45s`, `120ms`.
fn span(ms: u64) -> String {
    const UNITS: [(u64, &str, &str); 7] = [
        (31_557_600_000, "year", "years"),
        (2_629_800_000, "month", "months"),
        (604_800_000, "week", "weeks"),
        (86_400_000, "day", "days"),
        (3_600_000, "h", "h"),
        (60_000, "min", "min"),
        (1000, "s", "s"),
    ];
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut left = ms;
    let mut parts = Vec::new();
    for (size, one, many) in UNITS {
        if parts.len() == 2 {
            break;
        }
        let n = left / size;
        if n == 0 {
            if !parts.is_empty() {
                break;
            }
            continue;
        }
        left -= n * size;
        let word = if n == 1 { one } else { many };
        let sep = if matches!(word, "h" | "min" | "s") {
            ""
        } else {
            " "
        };
        parts.push(format!("{n}{sep}{word}"));
    }
    parts.join(" ")
}

#[cfg(test)]
#[path = "keelctl_tests.rs"]
mod tests;
