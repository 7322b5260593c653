//! The few host tools osbuild runs: mkfs.erofs, mkfs.ext4, debugfs, depmod
//! and qemu-img.
//! Each gets explicit paths and a fixed time, and its stderr ends up in the
//! error message when it fails.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

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
}

fn run(cmd: &mut Command) -> Result<(), ToolError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| ToolError::Spawn {
        tool: tool.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(ToolError::Failed {
            tool,
            status: out.status,
            stderr,
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
) -> Result<(), ToolError> {
    let mut cmd = Command::new("mkfs.erofs");
    if all_root {
        cmd.arg("--all-root");
    }
    run(cmd
        .arg("-zlz4hc")
        .arg(format!("-T{epoch}"))
        .arg(format!("-U{uuid}"))
        .arg("--quiet")
        .arg(out)
        .arg(dir)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()))
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
) -> Result<(), ToolError> {
    run(Command::new("mkfs.ext4")
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
        .env("SOURCE_DATE_EPOCH", epoch.to_string()))
}

/// mke2fs -d copies ctime (which nothing can set) and atime from the
/// staging files; debugfs sets every timestamp of every inode to `epoch`,
/// and with `all_root` every owner to root.
pub fn ext4_fix_inodes(
    image: &Path,
    staged: &Path,
    epoch: u64,
    all_root: bool,
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
    let r = run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(image));
    let _ = std::fs::remove_file(&script_path);
    r
}

/// Kernel module configuration directories of an image root that depmod
/// reads (its `-C`); the build host's own are never used.
pub const DEPMOD_CONFIG_DIRS: &[&str] = &["etc/depmod.d", "usr/lib/depmod.d"];

/// `modules.dep`, `modules.alias` and the other indexes (text and `.bin`)
/// that modprobe needs, for the modules in `<root>/lib/modules/<kver>`:
/// the host's `depmod -b ROOT KVER`, configured only from the root.
pub fn depmod(root: &Path, kver: &str) -> Result<(), ToolError> {
    let mut cmd = Command::new("depmod");
    cmd.arg("-b").arg(root);
    for dir in DEPMOD_CONFIG_DIRS {
        // A missing directory is skipped by depmod.
        cmd.arg("-C").arg(root.join(dir));
    }
    run(cmd.arg(kver))
}

pub fn qemu_img_convert(raw: &Path, qcow2: &Path) -> Result<(), ToolError> {
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2", "-c"])
        .arg(raw)
        .arg(qcow2))
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
