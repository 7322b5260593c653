//! The real [`Procs`]: services run as processes in their own cgroup, with
//! the environment, user, limits and directories their unit asks for, and
//! their output in their log.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cgroup::Cgroup;
use crate::early::accounts;
use crate::logs::{self, Echo, Rotation, UnitLog};
use crate::mountinfo;
use crate::stage1::at;
use crate::sys::process::{self, ExecSpec, OutputSpec, RlimitResource, StdinSpec};
use crate::unit::{
    command::expand, Command, Condition, ConditionKind, Directories, Output, Preserve, ServiceType,
    TasksMax, Unit, UnitKind,
};

use super::service::{Phase, Procs};

/// The search path for programs given without a directory, and `PATH` of
/// every service (systemd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where services run and log.
pub struct RealProcs {
    root: PathBuf,
    slice: PathBuf,
    log_dir: PathBuf,
    notify_socket: PathBuf,
    console: Arc<Mutex<dyn Write + Send>>,
    logs: BTreeMap<String, Arc<UnitLog>>,
}

impl RealProcs {
    /// `root` is `/` except in tests; `slice` the cgroup directory units
    /// get their cgroups in.
    pub fn new(
        root: &Path,
        slice: &Path,
        notify_socket: &Path,
        console: Arc<Mutex<dyn Write + Send>>,
    ) -> RealProcs {
        RealProcs {
            root: root.to_path_buf(),
            slice: slice.to_path_buf(),
            log_dir: at(root, logs::LOG_DIR),
            notify_socket: notify_socket.to_path_buf(),
            console,
            logs: BTreeMap::new(),
        }
    }

    fn cgroup(&self, unit: &Unit) -> Cgroup {
        Cgroup::for_unit(&self.slice, &unit.name)
    }

    /// The unit's log, opened on first use.
    pub fn unit_log(&mut self, unit: &str) -> io::Result<Arc<UnitLog>> {
        if let Some(l) = self.logs.get(unit) {
            return Ok(Arc::clone(l));
        }
        let log = UnitLog::open(&self.log_dir, unit, Rotation::default())
            .map_err(|e| io::Error::other(e.to_string()))?;
        let log = Arc::new(log);
        self.logs.insert(unit.to_string(), Arc::clone(&log));
        Ok(log)
    }

    /// `(uid, gid, supplementary gids, home, shell)` of `User=`/`Group=`.
    fn identity(&self, unit: &Unit) -> Result<Option<Identity>, String> {
        let s = &unit.service;
        if s.user.is_none() && s.group.is_none() && s.supplementary_groups.is_empty() {
            return Ok(None);
        }
        let user = match &s.user {
            Some(name) => Some(
                accounts::lookup_user(&self.root, name).map_err(|e| format!("User={name}: {e}"))?,
            ),
            None => None,
        };
        let gid = match (&s.group, &user) {
            (Some(g), _) => {
                accounts::lookup_group(&self.root, g)
                    .map_err(|e| format!("Group={g}: {e}"))?
                    .gid
            }
            (None, Some(u)) => u.gid,
            (None, None) => 0,
        };
        let mut groups = Vec::new();
        if let Some(u) = &user {
            groups.extend(
                accounts::groups_of(&self.root, &u.name)
                    .map_err(|e| format!("User={}: {e}", u.name))?,
            );
        }
        for g in &s.supplementary_groups {
            groups.push(
                accounts::lookup_group(&self.root, g)
                    .map_err(|e| format!("SupplementaryGroups={g}: {e}"))?
                    .gid,
            );
        }
        groups.sort_unstable();
        groups.dedup();
        Ok(Some(Identity {
            uid: user.as_ref().map_or(0, |u| u.uid),
            gid,
            groups,
            name: user.as_ref().map(|u| u.name.clone()),
            home: user.as_ref().map(|u| u.home.clone()),
            shell: user.as_ref().map(|u| u.shell.clone()),
        }))
    }

    fn make_dirs(
        &self,
        base: &str,
        dirs: &Directories,
        id: Option<&Identity>,
    ) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for name in &dirs.names {
            let path = at(&self.root, &format!("{base}/{name}"));
            let mode = dirs.mode.unwrap_or(0o755);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("setting the mode of {}: {e}", path.display()))?;
            if let Some(id) = id {
                std::os::unix::fs::chown(&path, Some(id.uid), Some(id.gid))
                    .map_err(|e| format!("chown {}: {e}", path.display()))?;
            }
            out.push(format!("{base}/{name}"));
        }
        Ok(out)
    }

    /// The environment of one command: systemd's base variables, then
    /// `Environment=`, then `EnvironmentFile=` (files win).
    fn environment(
        &self,
        unit: &Unit,
        id: Option<&Identity>,
        main_pid: Option<u32>,
    ) -> Result<BTreeMap<String, String>, String> {
        let s = &unit.service;
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        if let Some(id) = id {
            if let Some(name) = &id.name {
                env.insert("USER".into(), name.clone());
                env.insert("LOGNAME".into(), name.clone());
            }
            if let Some(home) = &id.home {
                env.insert("HOME".into(), home.clone());
            }
            if let Some(shell) = &id.shell {
                env.insert("SHELL".into(), shell.clone());
            }
        }
        if let Some(pid) = main_pid {
            env.insert("MAINPID".into(), pid.to_string());
        }
        let notify = s.service_type == ServiceType::Notify || s.notify_access.is_some();
        if notify {
            env.insert(
                "NOTIFY_SOCKET".into(),
                self.notify_socket.display().to_string(),
            );
        }
        for (var, base, dirs) in [
            ("RUNTIME_DIRECTORY", "/run", &s.runtime_directory),
            ("STATE_DIRECTORY", "/var/lib", &s.state_directory),
            ("LOGS_DIRECTORY", "/var/log", &s.logs_directory),
            ("CACHE_DIRECTORY", "/var/cache", &s.cache_directory),
        ] {
            if !dirs.names.is_empty() {
                let list: Vec<String> = dirs.names.iter().map(|n| format!("{base}/{n}")).collect();
                env.insert(var.into(), list.join(":"));
            }
        }
        for (k, v) in &s.environment {
            env.insert(k.clone(), v.clone());
        }
        for file in &s.environment_files {
            let path = at(&self.root, &file.path.display().to_string());
            match fs::read_to_string(&path) {
                Ok(text) => {
                    for (k, v) in parse_env_file(&text) {
                        env.insert(k, v);
                    }
                }
                Err(e) if file.optional && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("EnvironmentFile={}: {e}", file.path.display())),
            }
        }
        Ok(env)
    }

    /// An absolute program path; a bare name is looked up in
    /// [`DEFAULT_PATH`].
    fn resolve_program(&self, name: &str) -> Result<PathBuf, String> {
        if name.starts_with('/') {
            return Ok(PathBuf::from(name));
        }
        for dir in DEFAULT_PATH.split(':') {
            let candidate = format!("{dir}/{name}");
            if at(&self.root, &candidate).is_file() {
                return Ok(PathBuf::from(candidate));
            }
        }
        Err(format!("{name}: not found in {DEFAULT_PATH}"))
    }

    fn output(
        &mut self,
        unit: &Unit,
    ) -> Result<(OutputSpec, Option<io::PipeReader>, bool), String> {
        let s = &unit.service;
        let out = s.standard_output.clone().unwrap_or(Output::Journal);
        let open = |path: &Path, append: bool, truncate: bool| -> Result<OutputSpec, String> {
            let f = fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(truncate)
                .open(at(&self.root, &path.display().to_string()))
                .map_err(|e| format!("StandardOutput=: {}: {e}", path.display()))?;
            Ok(OutputSpec::Fd(f.into()))
        };
        match out {
            Output::Null => Ok((OutputSpec::Null, None, false)),
            Output::Inherit | Output::Tty | Output::Kmsg | Output::KmsgConsole => {
                Ok((OutputSpec::Inherit, None, false))
            }
            Output::File(p) => Ok((open(&p, false, false)?, None, false)),
            Output::Append(p) => Ok((open(&p, true, false)?, None, false)),
            Output::Truncate(p) => Ok((open(&p, false, true)?, None, false)),
            Output::Journal | Output::JournalConsole => {
                let (r, w) = io::pipe().map_err(|e| format!("creating the output pipe: {e}"))?;
                Ok((
                    OutputSpec::Fd(w.into()),
                    Some(r),
                    out == Output::JournalConsole,
                ))
            }
        }
    }
}

/// A resolved `User=`/`Group=`.
#[derive(Debug, Clone)]
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    name: Option<String>,
    home: Option<String>,
    shell: Option<String>,
}

/// Parses an `EnvironmentFile=`: `KEY=VALUE` lines, `#`/`;` comments,
/// single or double quotes around the value, backslash-newline
/// continuation; lines that are not assignments are skipped.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let joined = text.replace("\\\n", "");
    for line in joined.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if !crate::unit::command::env_name_valid(k) {
            continue;
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            let inner = &v[1..v.len() - 1];
            if v.starts_with('"') {
                inner.replace("\\\"", "\"").replace("\\\\", "\\")
            } else {
                inner.to_string()
            }
        } else {
            v.to_string()
        };
        out.push((k.to_string(), v));
    }
    out
}

impl Procs for RealProcs {
    fn prepare(&mut self, unit: &Unit) -> Result<(), String> {
        let cg = self.cgroup(unit);
        cg.create()
            .map_err(|e| format!("creating cgroup {}: {e}", cg.path().display()))?;
        let max = match unit.service.tasks_max {
            Some(TasksMax::Count(n)) => Some(n),
            _ => None,
        };
        cg.set_tasks_max(max)
            .map_err(|e| format!("setting pids.max of {}: {e}", cg.path().display()))?;
        let id = self.identity(unit)?;
        let s = &unit.service;
        self.make_dirs("/run", &s.runtime_directory, id.as_ref())?;
        self.make_dirs("/var/lib", &s.state_directory, id.as_ref())?;
        self.make_dirs("/var/log", &s.logs_directory, id.as_ref())?;
        self.make_dirs("/var/cache", &s.cache_directory, id.as_ref())?;
        Ok(())
    }

    fn spawn(
        &mut self,
        unit: &Unit,
        cmd: &Command,
        _phase: Phase,
        main_pid: Option<u32>,
    ) -> Result<u32, String> {
        let id = if cmd.full_privileges || cmd.elevated || cmd.elevated_ambient {
            None
        } else {
            self.identity(unit)?
        };
        let env = self.environment(unit, id.as_ref(), main_pid)?;
        let argv = if cmd.no_env_expansion {
            cmd.argv.clone()
        } else {
            expand(&cmd.argv, &env)
        };
        let program = self.resolve_program(&cmd.path)?;
        let s = &unit.service;
        let mut rlimits = Vec::new();
        for (name, limit) in &s.limits {
            let Some(res) = RlimitResource::from_rlimit_name(name) else {
                continue;
            };
            // The kernel refuses an infinite RLIMIT_NOFILE; systemd uses
            // fs.nr_open instead.
            let infinity = if res == RlimitResource::Nofile {
                fs::read_to_string(at(&self.root, "/proc/sys/fs/nr_open"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(1 << 20)
            } else {
                u64::MAX
            };
            let value = |v: Option<u64>| match v {
                None | Some(u64::MAX) => infinity,
                Some(n) => n,
            };
            rlimits.push((res, value(limit.soft), value(limit.hard)));
        }
        let (output, reader, echo) = self.output(unit)?;
        let cwd = s.working_directory.as_ref().map(|w| {
            let path = w
                .path
                .clone()
                .or_else(|| id.as_ref().and_then(|i| i.home.clone()).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/"));
            (path, w.optional)
        });
        let spec = ExecSpec {
            program,
            argv,
            env: env.into_iter().collect(),
            cwd: cwd.as_ref().map(|c| c.0.clone()),
            cwd_optional: cwd.as_ref().is_some_and(|c| c.1),
            uid: id.as_ref().map(|i| i.uid),
            gid: id.as_ref().map(|i| i.gid),
            groups: id.as_ref().map(|i| i.groups.clone()).unwrap_or_default(),
            umask: s.umask.unwrap_or(0o022),
            nice: s.nice,
            oom_score_adjust: s.oom_score_adjust,
            rlimits,
            cgroup: Some(self.cgroup(unit).path().to_path_buf()),
            stdin: StdinSpec::Null,
            output,
            notify_socket: None,
        };
        let pid = process::spawn(spec).map_err(|e| format!("{}: {e}", cmd.path))?;
        if let Some(reader) = reader {
            let log = self.unit_log(&unit.name).map_err(|e| e.to_string())?;
            let echo: Echo = echo.then(|| Arc::clone(&self.console));
            if let Err(e) = logs::pump(reader, log, pid, echo) {
                self.log(unit, &format!("cannot capture output of pid {pid}: {e}"));
            }
        }
        Ok(pid)
    }

    fn signal(&mut self, pid: u32, signal: i32) {
        if let Err(e) = process::kill(pid, signal) {
            let _ = writeln!(
                lock(&self.console),
                "keel-init: warning: kill({pid}, {signal}): {e}"
            );
        }
    }

    fn signal_unit(&mut self, unit: &Unit, signal: i32) {
        let cg = self.cgroup(unit);
        let result = if signal == libc::SIGKILL {
            cg.kill_all().or_else(|_| cg.signal_all(signal))
        } else {
            cg.signal_all(signal)
        };
        if let Err(e) = result {
            self.log(
                unit,
                &format!("signalling cgroup {}: {e}", cg.path().display()),
            );
        }
    }

    fn unit_populated(&mut self, unit: &Unit) -> bool {
        self.cgroup(unit).is_populated().unwrap_or(false)
    }

    fn unit_pids(&mut self, unit: &Unit) -> Vec<u32> {
        self.cgroup(unit).pids().unwrap_or_default()
    }

    fn read_pid_file(&mut self, unit: &Unit) -> Option<u32> {
        let path = unit.service.pid_file.as_ref()?;
        let text = fs::read_to_string(at(&self.root, &path.display().to_string())).ok()?;
        text.trim().parse().ok()
    }

    fn condition(&mut self, c: &Condition) -> bool {
        let path = at(&self.root, &c.path.display().to_string());
        match c.kind {
            ConditionKind::PathExists => path.exists(),
            ConditionKind::PathIsDirectory => path.is_dir(),
            ConditionKind::FileNotEmpty => fs::metadata(&path)
                .map(|m| m.is_file() && m.len() > 0)
                .unwrap_or(false),
        }
    }

    fn already_active(&mut self, unit: &Unit) -> Option<String> {
        match unit.kind {
            UnitKind::Mount => {
                let what = unit.mount.what.as_deref()?;
                let where_ = unit.mount.where_.as_deref()?;
                let mounts = mountinfo::mounts(&self.root);
                mountinfo::is_mounted(&self.root, &mounts, what, where_)
                    .then(|| format!("{what} is already mounted on {}", where_.display()))
            }
            UnitKind::Swap => {
                let what = unit.swap.what.as_deref()?;
                let swaps = mountinfo::swaps(&self.root);
                mountinfo::is_swap_on(&self.root, &swaps, what)
                    .then(|| format!("swap {what} is already on"))
            }
            _ => None,
        }
    }

    fn cleanup(&mut self, unit: &Unit, final_stop: bool) {
        let s = &unit.service;
        let remove = match s.runtime_directory_preserve {
            Preserve::No => true,
            Preserve::Yes => false,
            Preserve::Restart => final_stop,
        };
        if remove {
            for name in &s.runtime_directory.names {
                let path = at(&self.root, &format!("/run/{name}"));
                if let Err(e) = fs::remove_dir_all(&path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        self.log(unit, &format!("removing {}: {e}", path.display()));
                    }
                }
            }
        }
        if final_stop {
            let cg = self.cgroup(unit);
            if !cg.is_populated().unwrap_or(true) {
                // Delegated units may leave sub-cgroups behind; a busy
                // cgroup stays and is reused by the next start.
                let _ = cg.remove();
            }
        }
    }

    fn log(&mut self, unit: &Unit, message: &str) {
        match self.unit_log(&unit.name) {
            Ok(log) => {
                if let Err(e) = log.line(None, message) {
                    let _ = writeln!(
                        lock(&self.console),
                        "keel-init: warning: writing the log of {}: {e}",
                        unit.name
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(
                    lock(&self.console),
                    "keel-init: {}: {message} (log unavailable: {e})",
                    unit.name
                );
            }
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_files_parse_like_systemd() {
        let text = "# comment\n; other\nA=1\nB = \"two words\"\nC='x y'\nexport D=4\n\
                    E=long\\\nvalue\nnot an assignment\n9X=bad\n";
        assert_eq!(
            parse_env_file(text),
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string()),
                ("C".to_string(), "x y".to_string()),
                ("E".to_string(), "longvalue".to_string()),
            ]
        );
    }
}
