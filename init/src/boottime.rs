//! Where the boot's time goes, as seconds since the kernel started
//! (`/proc/uptime`, CLOCK_BOOTTIME): stage 1 writes when it started and
//! when it switched root to [`TIMES_FILE`] on /run (which moves into the
//! real root); stage 2 adds when every unit was up and when the boot was
//! judged healthy, and prints one `startup:` line, much like systemd's
//! "Startup finished in …".

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::stage1::at;

/// Stage 1's times, `<name> <seconds>` per line.
pub const TIMES_FILE: &str = "/run/keel/boot-times";

/// Seconds since the kernel started, from `root`'s /proc/uptime.
pub fn uptime(root: &Path) -> Option<Duration> {
    let text = fs::read_to_string(at(root, "/proc/uptime")).ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// What stage 1 records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage1Times {
    /// When the kernel started stage 1 (/init) — the end of the kernel's
    /// own start-up, near enough.
    pub started: Duration,
    /// When stage 1 handed over to the real root.
    pub switched: Duration,
}

impl Stage1Times {
    pub fn render(&self) -> String {
        format!(
            "initrd {:.3}\nswitch-root {:.3}\n",
            self.started.as_secs_f64(),
            self.switched.as_secs_f64()
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        let get = |key: &str| -> Option<Duration> {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))?;
            let secs: f64 = line.trim().parse().ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
        };
        Some(Self {
            started: get("initrd")?,
            switched: get("switch-root")?,
        })
    }

    /// Reads [`TIMES_FILE`] below `root`.
    pub fn read(root: &Path) -> Option<Self> {
        Self::parse(&fs::read_to_string(at(root, TIMES_FILE)).ok()?)
    }

    /// Writes [`TIMES_FILE`] below `root` (best effort: timing must never
    /// stop a boot).
    pub fn write(&self, root: &Path) {
        let path = at(root, TIMES_FILE);
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let _ = fs::write(path, self.render());
    }
}

/// The whole start-up, for the `startup:` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Startup {
    pub stage1: Option<Stage1Times>,
    /// When every unit of the boot transaction was up (the health grace
    /// period started).
    pub units_up: Duration,
    /// When the boot was judged healthy.
    pub complete: Duration,
}

impl fmt::Display for Startup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: Duration| d.as_secs_f64();
        f.write_str("startup: ")?;
        if let Some(t) = self.stage1 {
            write!(
                f,
                "kernel {:.2} s, initramfs {:.2} s, ",
                s(t.started),
                s(t.switched.saturating_sub(t.started))
            )?;
        }
        write!(
            f,
            "units up at {:.2} s, boot complete at {:.2} s (seconds since the kernel started)",
            s(self.units_up),
            s(self.complete)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage1_times_round_trip_and_bad_input_is_none() {
        let t = Stage1Times {
            started: Duration::from_millis(3_520),
            switched: Duration::from_millis(4_625),
        };
        assert_eq!(t.render(), "initrd 3.520\nswitch-root 4.625\n");
        assert_eq!(Stage1Times::parse(&t.render()), Some(t));
        assert_eq!(Stage1Times::parse("initrd 1.0\n"), None);
        assert_eq!(Stage1Times::parse("initrd x\nswitch-root 2\n"), None);
        assert_eq!(Stage1Times::parse("initrd -1\nswitch-root 2\n"), None);
    }

    #[test]
    fn uptime_and_files_under_a_root() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(uptime(root.path()), None);
        fs::create_dir_all(root.path().join("proc")).unwrap();
        fs::write(root.path().join("proc/uptime"), "12.34 20.00\n").unwrap();
        assert_eq!(uptime(root.path()), Some(Duration::from_millis(12_340)));
        let t = Stage1Times {
            started: Duration::from_secs(3),
            switched: Duration::from_secs(4),
        };
        t.write(root.path());
        assert_eq!(Stage1Times::read(root.path()), Some(t));
    }

    #[test]
    fn the_startup_line() {
        let st = Startup {
            stage1: Some(Stage1Times {
                started: Duration::from_millis(3_520),
                switched: Duration::from_millis(4_625),
            }),
            units_up: Duration::from_millis(12_840),
            complete: Duration::from_millis(22_850),
        };
        assert_eq!(
            st.to_string(),
            "startup: kernel 3.52 s, initramfs 1.10 s, units up at 12.84 s, \
             boot complete at 22.85 s (seconds since the kernel started)"
        );
        let none = Startup { stage1: None, ..st };
        assert!(none.to_string().starts_with("startup: units up at 12.84 s"));
    }
}
