//! Helpers of the `osbuild build` tests: the binaries they put into images,
//! running osbuild offline, and reading what it printed and left.
#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn init_binary() -> PathBuf {
    let p = std::env::var_os("KEEL_INIT_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/x86_64-unknown-linux-gnu/release/keel-init"));
    assert!(
        p.is_file(),
        "{} missing: run `make image` first",
        p.display()
    );
    p
}

pub fn firstboot_binary() -> PathBuf {
    let p = std::env::var_os("KEEL_FIRSTBOOT_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace().join("target/x86_64-unknown-linux-gnu/release/keel-firstboot")
        });
    assert!(
        p.is_file(),
        "{} missing: run `make image` first",
        p.display()
    );
    p
}

pub fn minimal_config() -> String {
    fs::read_to_string(workspace().join("image-configs/minimal.toml")).unwrap()
}

/// Runs `osbuild build` offline with a fixed SOURCE_DATE_EPOCH.
/// Runs `osbuild build` offline with a fixed SOURCE_DATE_EPOCH (the config
/// is written to DIR/image.toml).
pub fn osbuild(config: &str, dir: &Path, out: &Path, extra: &[&str]) -> Output {
    command(config, dir, out, extra).output().unwrap()
}

pub fn sha256(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

/// The single error line osbuild printed; fails unless it failed with one.
pub fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "osbuild succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("osbuild: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    errors[0].to_string()
}

/// The names in `dir`, sorted (none when it does not exist).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The `osbuild build` command line [`osbuild`] runs.
pub fn command(config: &str, dir: &Path, out: &Path, extra: &[&str]) -> Command {
    let cfg = dir.join("image.toml");
    fs::write(&cfg, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osbuild"));
    cmd.arg("build")
        .arg(&cfg)
        .arg("--out")
        .arg(out)
        .arg("--offline")
        .arg("--init-binary")
        .arg(init_binary())
        .arg("--firstboot-binary")
        .arg(firstboot_binary())
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    cmd
}

/// A running build and the lines of its stderr, as they come.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line received so far.
    pub seen: Vec<String>,
}

/// Starts [`command`] with stderr read line by line.
pub fn spawn(config: &str, dir: &Path, out: &Path, extra: &[&str]) -> Running {
    let mut child = command(config, dir, out, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Running {
    /// Waits (at most `limit`) for a line containing `text`; panics with
    /// everything printed when the build ends or the time runs out first.
    pub fn wait_for(&mut self, text: &str, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(text);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("no line with {text:?} ({e}):\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Waits for the end of the build; returns its exit code and all of
    /// its stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status.code(), self.seen.join("\n"))
    }
}
