//! A node's first boot, as stage 2 sees it: before any unit is loaded,
//! `keel-firstboot run` provisions the node from its Ignition config
//! (docs/ignition.md). Until that succeeds and leaves
//! [`FIRSTBOOT_STATE`], every boot is a first boot.
//!
//! keel-init's part is small: decide whether this is a first boot, make
//! the config sources visible (QEMU's fw_cfg driver, the ESP at
//! [`ESP_MOUNT`]), run the program with its output on the console and in
//! init's log, and report. What a failure means for the boot (no units,
//! an emergency shell, no health judgement) is the caller's.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use keel_core::layout::{FIRSTBOOT_PATH, FIRSTBOOT_STATE};

use crate::bless::{self, BlessError, ESP_MOUNT};
use crate::stage1::at;
use crate::sys::Sys;

/// The exit status by which `keel-firstboot run` asks for a reboot: the
/// config was applied and recorded, and it changed the kernel command
/// line, which only a new boot can use.
pub const EXIT_REBOOT: i32 = 100;

/// How the first boot went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstBoot {
    /// Provisioned on an earlier boot: nothing ran.
    Provisioned,
    /// The image has no `keel-firstboot`: nothing ran.
    Absent,
    /// Provisioned now.
    Done,
    /// Provisioned now; the new kernel command line needs a reboot.
    Reboot,
    /// `keel-firstboot` failed; its reason is on the console (and in the
    /// log). The string says how it ended.
    Failed(String),
}

/// Runs a program to the end, handing each line it prints (stdout and
/// stderr together) to `line`.
pub trait Runner {
    fn run(
        &mut self,
        program: &Path,
        args: &[&str],
        line: &mut dyn FnMut(&str),
    ) -> io::Result<ExitStatus>;
}

/// The real thing: a child process with keel-init's base environment,
/// stdin from /dev/null, stdout and stderr into one pipe.
pub struct ChildRunner;

impl Runner for ChildRunner {
    fn run(
        &mut self,
        program: &Path,
        args: &[&str],
        line: &mut dyn FnMut(&str),
    ) -> io::Result<ExitStatus> {
        let (reader, writer) = io::pipe()?;
        let mut cmd = crate::sys::shell::base_command(program, args);
        cmd.stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer);
        let mut child = cmd.spawn()?;
        // The pipe's write ends now live only in the child: EOF comes
        // when it exits.
        drop(cmd);
        for l in BufReader::new(reader).split(b'\n') {
            match l {
                Ok(bytes) => line(String::from_utf8_lossy(&bytes).trim_end_matches('\r')),
                Err(_) => break,
            }
        }
        child.wait()
    }
}

/// The booted Boot Loader Specification entry, as a path on the node
/// (below [`ESP_MOUNT`]): systemd-boot's `LoaderBootCountPath` while the
/// entry counts tries, else `loader/entries/<LoaderEntrySelected>`.
fn booted_entry(sys: &dyn Sys, root: &Path, mnt: &Path) -> Option<String> {
    let rel = bless::boot_count_path(sys, root).or_else(|| {
        bless::read_loader_var(root, "LoaderEntrySelected")
            .map(|id| format!("{}/{id}", keel_core::layout::ESP_ENTRIES_DIR))
    })?;
    mnt.join(&rel)
        .is_file()
        .then(|| format!("{ESP_MOUNT}/{rel}"))
}

/// Whether this boot still has to provision the node.
pub fn pending(root: &Path) -> bool {
    !at(root, FIRSTBOOT_STATE).exists()
}

/// Runs the first boot unless an earlier boot did it. `say` gets
/// keel-init's own messages; the program's lines go to `line`.
pub fn run(
    sys: &dyn Sys,
    root: &Path,
    runner: &mut dyn Runner,
    say: &mut dyn FnMut(&str),
    line: &mut dyn FnMut(&str),
) -> FirstBoot {
    if !pending(root) {
        return FirstBoot::Provisioned;
    }
    let program = at(root, FIRSTBOOT_PATH);
    if !program.exists() {
        say(&format!(
            "first boot: this image has no {FIRSTBOOT_PATH}; no Ignition config is applied"
        ));
        return FirstBoot::Absent;
    }
    // QEMU's fw_cfg entries show in sysfs only with its driver; on other
    // machines loading it fails with "no such device", which is fine.
    if !at(root, "/sys/firmware/qemu_fw_cfg").exists() {
        let _ = crate::early::modules::load_module(sys, root, "qemu_fw_cfg");
    }
    // The ESP may hold the image's default config. A machine without one
    // (a kernel booted directly) has no such source; an ESP that is there
    // but cannot be mounted would hide the config, so that fails the
    // first boot rather than boot the node unconfigured.
    let esp = match bless::mount_esp(sys, root) {
        Ok(mnt) => Some(mnt),
        Err(BlessError::NoEsp { .. }) => {
            say("first boot: no ESP found; looking for a config elsewhere");
            None
        }
        Err(e) => return FirstBoot::Failed(format!("first boot: {}", crate::error::chain(&e))),
    };
    say("first boot: running keel-firstboot");
    let esp_arg = esp
        .as_ref()
        .map_or_else(|| "/nonexistent".to_string(), |_| ESP_MOUNT.to_string());
    let mut args = vec!["run", "--root", "/", "--esp", &esp_arg];
    let entry = esp.as_ref().and_then(|mnt| booted_entry(sys, root, mnt));
    if let Some(e) = &entry {
        args.extend(["--boot-entry", e]);
    }
    let status = runner.run(&program, &args, line);
    if let Some(mnt) = &esp {
        if let Err(e) = sys.umount(mnt) {
            say(&format!("warning: unmounting the ESP: {e}"));
        }
    }
    match status {
        Ok(s) if s.success() => FirstBoot::Done,
        Ok(s) if s.code() == Some(EXIT_REBOOT) => FirstBoot::Reboot,
        Ok(s) => FirstBoot::Failed(format!("keel-firstboot {s}")),
        Err(e) => FirstBoot::Failed(format!("starting {}: {e}", program.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::RecordingSys;
    use std::fs;
    use std::os::unix::process::ExitStatusExt;

    struct Fake {
        code: i32,
        calls: Vec<(String, Vec<String>)>,
    }

    impl Runner for Fake {
        fn run(
            &mut self,
            program: &Path,
            args: &[&str],
            line: &mut dyn FnMut(&str),
        ) -> io::Result<ExitStatus> {
            self.calls.push((
                program.display().to_string(),
                args.iter().map(|a| a.to_string()).collect(),
            ));
            line("keel-firstboot: failed: error at $.storage.files.0.path: path not absolute");
            Ok(ExitStatus::from_raw(self.code << 8))
        }
    }

    fn machine(with_esp: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/keel-firstboot"), "").unwrap();
        fs::create_dir_all(root.join("sys/firmware/qemu_fw_cfg")).unwrap();
        let vda1 = root.join("sys/class/block/vda1");
        fs::create_dir_all(&vda1).unwrap();
        if with_esp {
            fs::write(vda1.join("uevent"), "PARTN=1\nPARTNAME=esp\n").unwrap();
        }
        t
    }

    fn go(root: &Path, code: i32) -> (FirstBoot, Vec<String>, Vec<String>, Fake) {
        let sys = RecordingSys::new(root);
        let mut fake = Fake {
            code,
            calls: vec![],
        };
        let (mut said, mut lines) = (vec![], vec![]);
        let got = run(
            &sys,
            root,
            &mut fake,
            &mut |m| said.push(m.to_string()),
            &mut |l| lines.push(l.to_string()),
        );
        let calls = sys.calls();
        assert_eq!(
            calls.len(),
            usize::from(fake.calls.len() == 1) * 2,
            "{calls:?}"
        );
        (got, said, lines, fake)
    }

    #[test]
    fn runs_with_the_esp_mounted_and_reports_how_it_ended() {
        let t = machine(true);
        let (got, said, lines, fake) = go(t.path(), 0);
        assert_eq!(got, FirstBoot::Done);
        assert_eq!(said, ["first boot: running keel-firstboot"]);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            fake.calls[0].1,
            ["run", "--root", "/", "--esp", "/run/keel/esp"]
        );
        assert_eq!(
            go(t.path(), 1).0,
            FirstBoot::Failed("keel-firstboot exit status: 1".into())
        );
        assert_eq!(go(t.path(), EXIT_REBOOT).0, FirstBoot::Reboot);
    }

    /// systemd-boot's EFI variable: 4 attribute bytes, then UTF-16LE.
    fn loader_var(root: &Path, name: &str, value: &str) {
        let dir = root.join("sys/firmware/efi/efivars");
        fs::create_dir_all(&dir).unwrap();
        let mut raw = vec![6, 0, 0, 0];
        for u in value.encode_utf16().chain([0]) {
            raw.extend(u.to_le_bytes());
        }
        fs::write(
            dir.join(format!("{name}-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f")),
            raw,
        )
        .unwrap();
    }

    #[test]
    fn the_booted_entry_is_passed_for_kernel_arguments() {
        let t = machine(true);
        let root = t.path();
        let entries = root.join("run/keel/esp/loader/entries");
        fs::create_dir_all(&entries).unwrap();
        fs::write(entries.join("keel-1.0.conf"), "options x\n").unwrap();
        loader_var(root, "LoaderEntrySelected", "keel-1.0.conf");
        let (_, _, _, fake) = go(root, 0);
        assert_eq!(
            fake.calls[0].1[5..],
            ["--boot-entry", "/run/keel/esp/loader/entries/keel-1.0.conf"]
        );
        // While counting tries, the counted file is the entry.
        fs::write(entries.join("keel-1.0+2-1.conf"), "options x\n").unwrap();
        loader_var(
            root,
            "LoaderBootCountPath",
            "\\loader\\entries\\keel-1.0+2-1.conf",
        );
        let (_, _, _, fake) = go(root, 0);
        assert_eq!(
            fake.calls[0].1[6],
            "/run/keel/esp/loader/entries/keel-1.0+2-1.conf"
        );
    }

    #[test]
    fn without_an_esp_the_other_sources_still_count() {
        let t = machine(false);
        let sys = RecordingSys::new(t.path());
        let mut fake = Fake {
            code: 0,
            calls: vec![],
        };
        let mut said = vec![];
        let got = run(
            &sys,
            t.path(),
            &mut fake,
            &mut |m| said.push(m.to_string()),
            &mut |_| {},
        );
        assert_eq!(got, FirstBoot::Done);
        assert_eq!(fake.calls[0].1[4], "/nonexistent");
        assert!(said[0].contains("no ESP found"), "{said:?}");
        assert!(sys.calls().is_empty(), "{:?}", sys.calls());
    }

    #[test]
    fn a_provisioned_node_or_an_image_without_the_program_runs_nothing() {
        let t = machine(true);
        fs::create_dir_all(t.path().join("var/lib/keel")).unwrap();
        fs::write(t.path().join("var/lib/keel/firstboot.json"), "{}").unwrap();
        let (got, said, _, fake) = go(t.path(), 0);
        assert_eq!(
            (got, said.len(), fake.calls.len()),
            (FirstBoot::Provisioned, 0, 0)
        );

        let t = machine(true);
        fs::remove_file(t.path().join("usr/bin/keel-firstboot")).unwrap();
        let (got, said, _, fake) = go(t.path(), 0);
        assert_eq!((got, fake.calls.len()), (FirstBoot::Absent, 0));
        assert!(said[0].contains("no /usr/bin/keel-firstboot"), "{said:?}");
    }

    #[test]
    fn the_child_runner_passes_every_line_and_the_status() {
        let mut lines = vec![];
        let status = ChildRunner
            .run(
                Path::new("/bin/sh"),
                &["-c", "echo one; echo two >&2; exit 3"],
                &mut |l| lines.push(l.to_string()),
            )
            .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(lines, ["one", "two"]);
    }
}
