//! The few host tools osbuild runs: mkfs.erofs, mkfs.ext4, debugfs, depmod
//! and qemu-img.
//! Each gets explicit paths and a fixed time, and its stderr ends up in the
//! error message when it fails.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cancel::{Cancel, Interrupted};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("running {tool} (is it installed? `make deps` installs the host packages)")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("waiting for {tool}")]
    Wait {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// How often a running tool is checked for having ended or for a signal.
const POLL: Duration = Duration::from_millis(20);

/// Runs `cmd` to its end, its output captured; when `cancel` records a
/// signal meanwhile, the tool is killed and reaped and the result is
/// [`ToolError::Interrupted`].
fn run(cmd: &mut Command, cancel: &Cancel) -> Result<(), ToolError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    cancel.check()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Spawn {
            tool: tool.clone(),
            source,
        })?;
    // Drained by threads, so a tool that writes much never blocks.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let wait_err = |source| ToolError::Wait {
        tool: tool.clone(),
        source,
    };
    let status = loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            break status;
        }
        if let Err(e) = cancel.check() {
            // Killing a child that just exited is harmless; reap it either way.
            let _ = child.kill();
            child.wait().map_err(wait_err)?;
            return Err(e.into());
        }
        std::thread::sleep(POLL);
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    // A tool that a terminal's Ctrl-C stopped with us failed because of it.
    cancel.check()?;
    if status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&stderr).trim().to_string();
        if text.is_empty() {
            text = String::from_utf8_lossy(&stdout).trim().to_string();
        }
        Err(ToolError::Failed {
            tool,
            status,
            stderr: text,
        })
    }
}

/// An erofs image of `dir`, lz4hc-compressed, every timestamp `epoch`.
/// `all_root` makes every file owned by root (for builds not run as root,
/// where the staging tree belongs to the builder).
pub fn mkfs_erofs(
    dir: &Path,
    out: &Path,
    uuid: &uuid::Uuid,
    epoch: u64,
    all_root: bool,
    cancel: &Cancel,
) -> Result<(), ToolError> {
    let mut cmd = Command::new("mkfs.erofs");
    if all_root {
        cmd.arg("--all-root");
    }
    run(
        cmd.arg("-zlz4hc")
            .arg(format!("-T{epoch}"))
            .arg(format!("-U{uuid}"))
            .arg("--quiet")
            .arg(out)
            .arg(dir)
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
        cancel,
    )
}

/// An ext4 filesystem of `size` bytes in the file `out`, populated from
/// `dir`, with fixed UUID, hash seed and time.
pub fn mkfs_ext4(
    dir: &Path,
    out: &Path,
    size: u64,
    label: &str,
    uuid: &uuid::Uuid,
    epoch: u64,
    cancel: &Cancel,
) -> Result<(), ToolError> {
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-L", label])
            .arg("-U")
            .arg(uuid.to_string())
            .arg("-E")
            .arg(format!(
                "hash_seed={uuid},root_owner=0:0,lazy_itable_init=0,nodiscard"
            ))
            .arg("-d")
            .arg(dir)
            .arg(out)
            .arg(format!("{}k", size / 1024))
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
        cancel,
    )
}

/// mke2fs -d copies ctime (which nothing can set) and atime from the
/// staging files; debugfs sets every timestamp of every inode to `epoch`,
/// and with `all_root` every owner to root.
pub fn ext4_fix_inodes(
    image: &Path,
    staged: &Path,
    epoch: u64,
    all_root: bool,
    cancel: &Cancel,
) -> Result<(), ToolError> {
    let mut script = String::new();
    let mut add = |p: &str| {
        for field in ["atime", "ctime", "mtime", "crtime"] {
            script.push_str(&format!("sif \"{p}\" {field} @{epoch}\n"));
        }
        if all_root {
            script.push_str(&format!("sif \"{p}\" uid 0\nsif \"{p}\" gid 0\n"));
        }
    };
    add("/");
    add("/lost+found");
    let mut stack = vec![staged.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| ToolError::Spawn {
            tool: format!("reading {}", d.display()),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            if let Ok(rel) = p.strip_prefix(staged) {
                paths.push(format!("/{}", rel.to_string_lossy()));
            }
        }
    }
    paths.sort();
    for p in &paths {
        if p.contains('"') || p.contains('\n') {
            return Err(ToolError::Failed {
                tool: "debugfs".into(),
                status: std::process::ExitStatus::default(),
                stderr: format!("cannot address {p:?} in a debugfs script"),
            });
        }
        add(p);
    }
    let script_path = image.with_extension("debugfs");
    std::fs::write(&script_path, script).map_err(|source| ToolError::Spawn {
        tool: format!("writing {}", script_path.display()),
        source,
    })?;
    let r = run(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script_path)
            .arg(image),
        cancel,
    );
    let _ = std::fs::remove_file(&script_path);
    r
}

/// Kernel module configuration directories of an image root that depmod
/// reads (its `-C`); the build host's own are never used.
pub const DEPMOD_CONFIG_DIRS: &[&str] = &["etc/depmod.d", "usr/lib/depmod.d"];

/// `modules.dep`, `modules.alias` and the other indexes (text and `.bin`)
/// that modprobe needs, for the modules in `<root>/lib/modules/<kver>`:
/// the host's `depmod -b ROOT KVER`, configured only from the root.
/// `config_dirs` are [`DEPMOD_CONFIG_DIRS`] as resolved inside the root
/// (the existing ones).
pub fn depmod(
    root: &Path,
    kver: &str,
    config_dirs: &[std::path::PathBuf],
    cancel: &Cancel,
) -> Result<(), ToolError> {
    let mut cmd = Command::new("depmod");
    cmd.arg("-b").arg(root);
    for dir in config_dirs {
        cmd.arg("-C").arg(dir);
    }
    run(cmd.arg(kver), cancel)
}

pub fn qemu_img_convert(raw: &Path, qcow2: &Path, cancel: &Cancel) -> Result<(), ToolError> {
    run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2", "-c"])
            .arg(raw)
            .arg(qcow2),
        cancel,
    )
}

/// Checks that every tool osbuild needs can be started, before any work.
pub fn check_available(tools: &[&str]) -> Result<(), ToolError> {
    for t in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(ToolError::Spawn {
                tool: t.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} not found in PATH", OsStr::new(t).to_string_lossy()),
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_signal_kills_the_running_tool() {
        let cancel = Cancel::new();
        let c = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c.cancel(signal_hook::consts::SIGINT);
        });
        let start = Instant::now();
        let e = run(Command::new("sleep").arg("30"), &cancel).unwrap_err();
        t.join().unwrap();
        assert!(matches!(e, ToolError::Interrupted(_)), "{e}");
        // Killed, not waited for.
        assert!(start.elapsed() < Duration::from_secs(20));
        // Nothing runs once a signal came.
        let e = run(&mut Command::new("true"), &cancel).unwrap_err();
        assert!(matches!(e, ToolError::Interrupted(_)), "{e}");
    }

    #[test]
    fn failures_carry_the_tool_output() {
        let cancel = Cancel::new();
        run(&mut Command::new("true"), &cancel).unwrap();
        let e = run(
            Command::new("sh").args(["-c", "echo bad thing >&2; exit 3"]),
            &cancel,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sh failed") && e.contains("bad thing"), "{e}");
    }
}
