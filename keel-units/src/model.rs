//! The typed unit: what the planner and the supervisor consume.

use std::path::PathBuf;

use super::command::Command;
use super::values::{ExitStatusSet, Limit, TimeSpan};

/// The unit types Keel runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitKind {
    /// `.service`
    Service,
    /// `.target`
    Target,
    /// `.mount`: run as a oneshot service calling mount(8), see
    /// [`Unit::mount`].
    Mount,
    /// `.swap`: run as a oneshot service calling swapon(8), see
    /// [`Unit::swap`].
    Swap,
    /// Any other type, e.g. `socket`: loaded for its dependencies only.
    Unsupported(String),
}

impl UnitKind {
    /// The type as in the unit name's suffix: `service`, `mount`, ...
    pub fn type_name(&self) -> &str {
        match self {
            UnitKind::Service => "service",
            UnitKind::Target => "target",
            UnitKind::Mount => "mount",
            UnitKind::Swap => "swap",
            UnitKind::Unsupported(t) => t,
        }
    }

    /// Whether the unit runs processes through the service life cycle
    /// (services, and mounts and swaps with their synthesized commands).
    pub fn runs_processes(&self) -> bool {
        matches!(self, UnitKind::Service | UnitKind::Mount | UnitKind::Swap)
    }
}

/// One loaded unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Full name, e.g. `getty@tty1.service`.
    pub name: String,
    /// Type from the name's suffix.
    pub kind: UnitKind,
    /// The main unit file.
    pub fragment: PathBuf,
    /// Drop-in files applied, in order.
    pub dropins: Vec<PathBuf>,
    /// Other names of this unit (alias symlinks).
    pub aliases: Vec<String>,
    /// `[Unit]`
    pub unit: UnitSection,
    /// `[Service]` (defaults for other kinds; for mounts and swaps the
    /// commands synthesized from `[Mount]`/`[Swap]`).
    pub service: ServiceSection,
    /// `[Mount]` (defaults for other kinds).
    pub mount: MountSection,
    /// `[Swap]` (defaults for other kinds).
    pub swap: SwapSection,
    /// `[Install]`
    pub install: InstallSection,
}

/// What a condition or assertion checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionKind {
    /// `ConditionPathExists=` / `AssertPathExists=`
    PathExists,
    /// `ConditionPathIsDirectory=`
    PathIsDirectory,
    /// `ConditionFileNotEmpty=`
    FileNotEmpty,
}

/// One condition or assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The check.
    pub kind: ConditionKind,
    /// Absolute path checked.
    pub path: PathBuf,
    /// `!`: the check is inverted.
    pub negate: bool,
    /// `|`: a triggering condition (any one of them suffices).
    pub trigger: bool,
}

/// `[Unit]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitSection {
    /// `Description=`
    pub description: Option<String>,
    /// `Documentation=`
    pub documentation: Vec<String>,
    /// `After=`
    pub after: Vec<String>,
    /// `Before=`
    pub before: Vec<String>,
    /// `Requires=` (including `*.requires/` links and `BindsTo=`)
    pub requires: Vec<String>,
    /// `Wants=` (including `*.wants/` links)
    pub wants: Vec<String>,
    /// `Requisite=`
    pub requisite: Vec<String>,
    /// `BindsTo=` (also added to `requires`)
    pub binds_to: Vec<String>,
    /// `PartOf=`
    pub part_of: Vec<String>,
    /// `Conflicts=`
    pub conflicts: Vec<String>,
    /// `DefaultDependencies=` (default yes)
    pub default_dependencies: bool,
    /// `Condition*=`
    pub conditions: Vec<Condition>,
    /// `Assert*=`
    pub asserts: Vec<Condition>,
    /// `StartLimitIntervalSec=` (or `[Service] StartLimitInterval=`)
    pub start_limit_interval: Option<TimeSpan>,
    /// `StartLimitBurst=`
    pub start_limit_burst: Option<u32>,
    /// `X-Keel-BootHealth=no`: the unit does not count for the boot health
    /// judgement.
    pub health_opt_out: bool,
    /// `RequiresMountsFor=`: absolute paths.
    pub requires_mounts_for: Vec<PathBuf>,
}

/// `[Mount]` section (systemd.mount(5)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountSection {
    /// `What=`: the device, file or other source to mount.
    pub what: Option<String>,
    /// `Where=`: the absolute, normalized mount point.
    pub where_: Option<PathBuf>,
    /// `Type=`
    pub fs_type: Option<String>,
    /// `Options=`
    pub options: Option<String>,
    /// `DirectoryMode=`: mode of mount point directories created (0755).
    pub directory_mode: Option<u32>,
}

/// `[Swap]` section (systemd.swap(5)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwapSection {
    /// `What=`: the absolute path of the device or file.
    pub what: Option<String>,
    /// `Options=`
    pub options: Option<String>,
    /// `Priority=`
    pub priority: Option<i32>,
}

/// `Type=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    /// `simple` (the default with ExecStart=)
    #[default]
    Simple,
    /// `exec`
    Exec,
    /// `oneshot`
    Oneshot,
    /// `notify`
    Notify,
    /// `forking`
    Forking,
}

/// `Restart=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// `no`
    #[default]
    No,
    /// `on-success`
    OnSuccess,
    /// `on-failure`
    OnFailure,
    /// `on-abnormal`
    OnAbnormal,
    /// `on-abort`
    OnAbort,
    /// `on-watchdog`
    OnWatchdog,
    /// `always`
    Always,
}

/// `KillMode=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KillMode {
    /// `control-group`
    #[default]
    ControlGroup,
    /// `mixed`
    Mixed,
    /// `process`
    Process,
    /// `none`
    None,
}

/// `NotifyAccess=`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyAccess {
    /// `none`
    None,
    /// `main`
    Main,
    /// `exec`
    Exec,
    /// `all`
    All,
}

/// `StandardOutput=` / `StandardError=`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `inherit`
    Inherit,
    /// `null`
    Null,
    /// `tty`
    Tty,
    /// `journal` (and `syslog`): Keel's per-unit log
    Journal,
    /// `kmsg`
    Kmsg,
    /// `journal+console` (and `syslog+console`)
    JournalConsole,
    /// `kmsg+console`
    KmsgConsole,
    /// `file:PATH`
    File(PathBuf),
    /// `append:PATH`
    Append(PathBuf),
    /// `truncate:PATH`
    Truncate(PathBuf),
}

/// `RuntimeDirectoryPreserve=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preserve {
    /// `no`
    #[default]
    No,
    /// `yes`
    Yes,
    /// `restart`
    Restart,
}

/// `TasksMax=`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TasksMax {
    /// A count.
    Count(u64),
    /// Percent of the system's limit.
    Percent(u32),
    /// `infinity`
    Infinity,
}

/// `WorkingDirectory=`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingDirectory {
    /// Absolute path, or `None` for `~` (the user's home).
    pub path: Option<PathBuf>,
    /// `-`: a missing directory is not an error.
    pub optional: bool,
}

/// `EnvironmentFile=`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentFile {
    /// Absolute path.
    pub path: PathBuf,
    /// `-`: a missing file is not an error.
    pub optional: bool,
}

/// One of the `*Directory=` families with its mode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directories {
    /// Relative directory names (below /run, /var/lib, …).
    pub names: Vec<String>,
    /// `*DirectoryMode=` (default 0755).
    pub mode: Option<u32>,
}

/// `[Service]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceSection {
    /// `Type=`
    pub service_type: ServiceType,
    /// `ExecStartPre=`
    pub exec_start_pre: Vec<Command>,
    /// `ExecStart=`
    pub exec_start: Vec<Command>,
    /// `ExecStartPost=`
    pub exec_start_post: Vec<Command>,
    /// `ExecReload=`
    pub exec_reload: Vec<Command>,
    /// `ExecStop=`
    pub exec_stop: Vec<Command>,
    /// `ExecStopPost=`
    pub exec_stop_post: Vec<Command>,
    /// `Restart=`
    pub restart: Restart,
    /// `RestartSec=` (systemd's default is 100ms)
    pub restart_sec: Option<TimeSpan>,
    /// `RestartPreventExitStatus=`
    pub restart_prevent_exit_status: ExitStatusSet,
    /// `SuccessExitStatus=`
    pub success_exit_status: ExitStatusSet,
    /// `RemainAfterExit=`
    pub remain_after_exit: bool,
    /// `Environment=`, in order (a later assignment of a name wins).
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=`
    pub environment_files: Vec<EnvironmentFile>,
    /// `WorkingDirectory=`
    pub working_directory: Option<WorkingDirectory>,
    /// `User=`
    pub user: Option<String>,
    /// `Group=`
    pub group: Option<String>,
    /// `SupplementaryGroups=`
    pub supplementary_groups: Vec<String>,
    /// `RuntimeDirectory=` + `RuntimeDirectoryMode=`
    pub runtime_directory: Directories,
    /// `RuntimeDirectoryPreserve=`
    pub runtime_directory_preserve: Preserve,
    /// `StateDirectory=` + mode
    pub state_directory: Directories,
    /// `LogsDirectory=` + mode
    pub logs_directory: Directories,
    /// `CacheDirectory=` + mode
    pub cache_directory: Directories,
    /// `Limit*=`, keyed by RLIMIT name (e.g. `RLIMIT_NOFILE`).
    pub limits: Vec<(&'static str, Limit)>,
    /// `TimeoutStartSec=` (or `TimeoutSec=`)
    pub timeout_start: Option<TimeSpan>,
    /// `TimeoutStopSec=` (or `TimeoutSec=`)
    pub timeout_stop: Option<TimeSpan>,
    /// `KillMode=`
    pub kill_mode: KillMode,
    /// `KillSignal=` (signal number)
    pub kill_signal: Option<i32>,
    /// `SendSIGKILL=` (default yes)
    pub send_sigkill: bool,
    /// `Delegate=`
    pub delegate: bool,
    /// `TasksMax=`
    pub tasks_max: Option<TasksMax>,
    /// `OOMScoreAdjust=`
    pub oom_score_adjust: Option<i32>,
    /// `PIDFile=`
    pub pid_file: Option<PathBuf>,
    /// `NotifyAccess=`
    pub notify_access: Option<NotifyAccess>,
    /// `StandardOutput=`
    pub standard_output: Option<Output>,
    /// `StandardError=`
    pub standard_error: Option<Output>,
    /// `UMask=`
    pub umask: Option<u32>,
    /// `Nice=`
    pub nice: Option<i32>,
}

/// `[Install]` section: used by enable/disable only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallSection {
    /// `WantedBy=`
    pub wanted_by: Vec<String>,
    /// `RequiredBy=`
    pub required_by: Vec<String>,
    /// `Alias=`
    pub alias: Vec<String>,
    /// `Also=`
    pub also: Vec<String>,
    /// `DefaultInstance=`
    pub default_instance: Option<String>,
}

impl Unit {
    /// An empty unit with systemd's defaults.
    pub fn new(name: &str, kind: UnitKind, fragment: PathBuf) -> Unit {
        Unit {
            name: name.to_string(),
            kind,
            fragment,
            dropins: Vec::new(),
            aliases: Vec::new(),
            unit: UnitSection {
                default_dependencies: true,
                ..UnitSection::default()
            },
            service: ServiceSection {
                send_sigkill: true,
                ..ServiceSection::default()
            },
            mount: MountSection::default(),
            swap: SwapSection::default(),
            install: InstallSection::default(),
        }
    }
}
