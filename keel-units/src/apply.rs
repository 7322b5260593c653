//! Applies parsed entries to a [`Unit`]: `[Unit]` and `[Install]`
//! directives and the warning machinery; `[Service]` is in `service.rs`.

use std::path::PathBuf;

use super::model::{Condition, ConditionKind, Unit, UnitKind};
use super::name;
use super::specifier::{self, Context, MachineInfo};
use super::syntax::Entry;
use super::values::{parse_bool, parse_timespan};
use super::{mount, service, Warning};

/// Sandboxing and hardening directives: accepted with a warning.
/// `[Unit] X-Keel-BootHealth=no` opts a unit out of the boot health
/// judgement (an `X-` key, so systemd ignores it).
pub const HEALTH_KEY: &str = "X-Keel-BootHealth";

const SANDBOXING: &[&str] = &[
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateUsers",
    "PrivateMounts",
    "PrivateIPC",
    "NoNewPrivileges",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "ProcSubset",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "RestrictAddressFamilies",
    "RestrictFileSystems",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "SystemCallFilter",
    "SystemCallArchitectures",
    "SystemCallErrorNumber",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "DynamicUser",
    "DevicePolicy",
    "DeviceAllow",
    "IPAddressDeny",
    "IPAddressAllow",
    "RemoveIPC",
    "KeyringMode",
    "SecureBits",
];

/// Applies entries to a unit, one at a time, collecting warnings.
pub(super) struct Applier<'a> {
    pub(super) unit: &'a mut Unit,
    pub(super) warnings: &'a mut Vec<Warning>,
    machine: &'a MachineInfo,
}

impl<'a> Applier<'a> {
    pub(super) fn new(
        unit: &'a mut Unit,
        machine: &'a MachineInfo,
        warnings: &'a mut Vec<Warning>,
    ) -> Self {
        Applier {
            unit,
            warnings,
            machine,
        }
    }

    pub(super) fn warn(&mut self, e: &Entry, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: e.file.clone(),
            line: e.line,
            section: e.section.clone(),
            directive: e.key.clone(),
            message: message.into(),
        });
    }

    /// Expands specifiers in `s`, warning about unknown ones.
    pub(super) fn spec(&mut self, e: &Entry, s: &str) -> String {
        let fragment = self.unit.fragment.to_string_lossy().into_owned();
        let ctx = Context {
            name: &self.unit.name,
            fragment: Some(&fragment),
            machine: self.machine,
        };
        let (out, warnings) = specifier::expand(s, &ctx);
        for w in warnings {
            self.warn(e, w);
        }
        out
    }

    /// Applies all entries in order.
    pub(super) fn apply_all(&mut self, entries: &[Entry]) {
        for e in entries {
            self.apply(e);
        }
    }

    /// Applies one entry; several problems with it become one warning.
    fn apply(&mut self, e: &Entry) {
        let before = self.warnings.len();
        self.apply_entry(e);
        if self.warnings.len() > before + 1 {
            let extra: Vec<Warning> = self.warnings.drain(before + 1..).collect();
            let first = &mut self.warnings[before];
            for w in extra {
                first.message.push_str("; ");
                first.message.push_str(&w.message);
            }
        }
    }

    fn apply_entry(&mut self, e: &Entry) {
        if e.section == "Unit" && e.key == HEALTH_KEY {
            match parse_bool(&e.value) {
                Ok(b) => self.unit.unit.health_opt_out = !b,
                Err(m) => self.warn(e, format!("{m}, ignored")),
            }
            return;
        }
        if e.key.starts_with("X-") || e.section.starts_with("X-") {
            // systemd.unit(5): ignored by design, for third-party extensions
            return;
        }
        let handled = match e.section.as_str() {
            "Unit" => self.unit_directive(e),
            "Install" => self.install_directive(e),
            "Service" if self.unit.kind == UnitKind::Service => service::apply(self, e),
            "Mount" if self.unit.kind == UnitKind::Mount => mount::apply_mount(self, e),
            "Swap" if self.unit.kind == UnitKind::Swap => mount::apply_swap(self, e),
            other => {
                self.warn(e, format!("section [{other}] not supported, ignored"));
                return;
            }
        };
        if !handled {
            if SANDBOXING.contains(&e.key.as_str()) {
                self.warn(e, "sandboxing directive not supported, ignored");
            } else {
                self.warn(e, "unknown or unsupported directive, ignored");
            }
        }
    }

    /// A space-separated list of unit names; empty resets.
    pub(super) fn names(&mut self, e: &Entry, list: ListField) {
        if e.value.is_empty() {
            self.list(list).clear();
            return;
        }
        for w in e.value.split_whitespace() {
            let n = self.spec(e, w);
            if name::is_valid(&n) {
                self.list(list).push(n);
            } else {
                self.warn(e, format!("invalid unit name {n:?}, ignored"));
            }
        }
    }

    fn list(&mut self, f: ListField) -> &mut Vec<String> {
        let u = &mut self.unit.unit;
        let i = &mut self.unit.install;
        match f {
            ListField::After => &mut u.after,
            ListField::Before => &mut u.before,
            ListField::Requires => &mut u.requires,
            ListField::Wants => &mut u.wants,
            ListField::Requisite => &mut u.requisite,
            ListField::BindsTo => &mut u.binds_to,
            ListField::PartOf => &mut u.part_of,
            ListField::Conflicts => &mut u.conflicts,
            ListField::WantedBy => &mut i.wanted_by,
            ListField::RequiredBy => &mut i.required_by,
            ListField::Alias => &mut i.alias,
            ListField::Also => &mut i.also,
        }
    }

    fn condition(&mut self, e: &Entry, kind: ConditionKind, assert: bool) {
        if e.value.is_empty() {
            if assert {
                self.unit.unit.asserts.clear();
            } else {
                self.unit.unit.conditions.clear();
            }
            return;
        }
        let mut v = e.value.as_str();
        let trigger = v.starts_with('|');
        v = v.trim_start_matches('|');
        let negate = v.starts_with('!');
        v = v.trim_start_matches('!');
        let path = self.spec(e, v);
        if !path.starts_with('/') {
            self.warn(e, format!("path {path:?} is not absolute, ignored"));
            return;
        }
        let c = Condition {
            kind,
            path: PathBuf::from(path),
            negate,
            trigger,
        };
        if assert {
            self.unit.unit.asserts.push(c);
        } else {
            self.unit.unit.conditions.push(c);
        }
    }

    pub(super) fn start_limit_interval(&mut self, e: &Entry) {
        if e.value.is_empty() {
            self.unit.unit.start_limit_interval = None;
            return;
        }
        match parse_timespan(&e.value) {
            Ok(t) => self.unit.unit.start_limit_interval = Some(t),
            Err(m) => self.warn(e, format!("{m}, ignored")),
        }
    }

    pub(super) fn start_limit_burst(&mut self, e: &Entry) {
        if e.value.is_empty() {
            self.unit.unit.start_limit_burst = None;
            return;
        }
        match e.value.parse() {
            Ok(n) => self.unit.unit.start_limit_burst = Some(n),
            Err(_) => self.warn(e, format!("invalid number {:?}, ignored", e.value)),
        }
    }

    fn unit_directive(&mut self, e: &Entry) -> bool {
        match e.key.as_str() {
            "Description" => {
                let d = self.spec(e, &e.value);
                self.unit.unit.description = (!d.is_empty()).then_some(d);
            }
            "Documentation" => {
                if e.value.is_empty() {
                    self.unit.unit.documentation.clear();
                }
                for w in e.value.split_whitespace() {
                    let d = self.spec(e, w);
                    self.unit.unit.documentation.push(d);
                }
            }
            "After" => self.names(e, ListField::After),
            "Before" => self.names(e, ListField::Before),
            "Requires" => self.names(e, ListField::Requires),
            "Wants" => self.names(e, ListField::Wants),
            "Requisite" => self.names(e, ListField::Requisite),
            "BindsTo" => {
                self.names(e, ListField::BindsTo);
                if !e.value.is_empty() {
                    let n = self.unit.unit.binds_to.clone();
                    for b in n {
                        if !self.unit.unit.requires.contains(&b) {
                            self.unit.unit.requires.push(b);
                        }
                    }
                    self.warn(e, "treated as Requires= (stop propagation not supported)");
                }
            }
            "PartOf" => self.names(e, ListField::PartOf),
            "Conflicts" => self.names(e, ListField::Conflicts),
            "DefaultDependencies" => match parse_bool(&e.value) {
                Ok(b) => self.unit.unit.default_dependencies = b,
                Err(_) if e.value.is_empty() => self.unit.unit.default_dependencies = true,
                Err(m) => self.warn(e, format!("{m}, ignored")),
            },
            "ConditionPathExists" => self.condition(e, ConditionKind::PathExists, false),
            "ConditionPathIsDirectory" => self.condition(e, ConditionKind::PathIsDirectory, false),
            "ConditionFileNotEmpty" => self.condition(e, ConditionKind::FileNotEmpty, false),
            "AssertPathExists" => self.condition(e, ConditionKind::PathExists, true),
            "AssertPathIsDirectory" => self.condition(e, ConditionKind::PathIsDirectory, true),
            "AssertFileNotEmpty" => self.condition(e, ConditionKind::FileNotEmpty, true),
            "StartLimitIntervalSec" => self.start_limit_interval(e),
            "StartLimitBurst" => self.start_limit_burst(e),
            "RequiresMountsFor" => self.requires_mounts_for(e),
            _ => return false,
        }
        true
    }

    /// `RequiresMountsFor=`: space-separated absolute paths; empty resets.
    fn requires_mounts_for(&mut self, e: &Entry) {
        if e.value.is_empty() {
            self.unit.unit.requires_mounts_for.clear();
            return;
        }
        for w in e.value.split_whitespace() {
            let p = self.spec(e, w);
            match name::normalize_path(&p) {
                Some(p) => self.unit.unit.requires_mounts_for.push(PathBuf::from(p)),
                None => self.warn(e, format!("path {p:?} is not absolute, ignored")),
            }
        }
    }

    fn install_directive(&mut self, e: &Entry) -> bool {
        match e.key.as_str() {
            "WantedBy" => self.names(e, ListField::WantedBy),
            "RequiredBy" => self.names(e, ListField::RequiredBy),
            "Alias" => self.names(e, ListField::Alias),
            "Also" => self.names(e, ListField::Also),
            "DefaultInstance" => {
                let v = self.spec(e, &e.value);
                self.unit.install.default_instance = (!v.is_empty()).then_some(v);
            }
            _ => return false,
        }
        true
    }
}

/// Which list a unit-name directive fills.
#[derive(Debug, Clone, Copy)]
pub(super) enum ListField {
    After,
    Before,
    Requires,
    Wants,
    Requisite,
    BindsTo,
    PartOf,
    Conflicts,
    WantedBy,
    RequiredBy,
    Alias,
    Also,
}
