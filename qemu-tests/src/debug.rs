//! Debug copies of an image: the same disk with more kernel arguments on
//! every boot entry. Images have no shell on the console (an installed
//! container host must not give one to whoever is at it); the tests get in
//! with [`CONSOLE_SHELL`] added to a copy, which is what
//! [`crate::GuestBuilder::console_shell`] boots.
//!
//! The copy is raw (`qemu-img convert`, sparse); the entries on its ESP are
//! edited with mtools like [`crate::releases`] does. Nothing else changes:
//! the root hash, slot and the rest of each `options` line stay as built.

use std::fs;
use std::path::Path;
use std::process::Command;

use keel_core::layout::{ESP_ENTRIES_DIR, ESP_LABEL};

use crate::releases::{entries, esp_image, fixture, partition, tool};
use crate::{host, HarnessError};

/// The kernel argument that makes keel-init keep a root shell on the console.
pub const CONSOLE_SHELL: &str = "keel.console=shell";

/// Writes to `out` a raw copy of `image` (qcow2 or raw) whose boot entries
/// carry `args` too, appended to their `options` line (an argument already
/// there is not repeated). `work` holds the entry files while they are
/// edited. Returns the names of the entries edited.
pub fn with_kernel_args(
    image: &Path,
    out: &Path,
    args: &[&str],
    work: &Path,
) -> Result<Vec<String>, HarnessError> {
    if let Some(bad) = args
        .iter()
        .find(|a| a.is_empty() || a.contains(char::is_whitespace))
    {
        return Err(fixture(format!(
            "kernel argument {bad:?} is empty or has white space"
        )));
    }
    let format = crate::builder::image_format(image)?;
    tool(
        Command::new(host::QEMU_IMG)
            .args(["convert", "-q", "-f", format, "-O", "raw"])
            .arg(image)
            .arg(out),
    )?;
    let esp = partition(out, ESP_LABEL)?;
    let names = entries(out)?;
    if names.is_empty() {
        return Err(fixture(format!("{} has no boot entries", image.display())));
    }
    for name in &names {
        let path = format!("::/{ESP_ENTRIES_DIR}/{name}");
        let local = work.join(format!("debug-entry-{name}"));
        tool(
            Command::new("mcopy")
                .args(["-n", "-i"])
                .arg(esp_image(out, esp))
                .arg(&path)
                .arg(&local),
        )?;
        let text = fs::read_to_string(&local).map_err(|e| fixture(format!("{name}: {e}")))?;
        let edited = add_options(&text, args).map_err(|e| fixture(format!("{name} {e}")))?;
        fs::write(&local, edited).map_err(|e| fixture(format!("{name}: {e}")))?;
        tool(
            Command::new("mcopy")
                .args(["-o", "-i"])
                .arg(esp_image(out, esp))
                .arg(&local)
                .arg(&path),
        )?;
    }
    Ok(names)
}

/// The entry with `args` appended to its one `options` line.
fn add_options(entry: &str, args: &[&str]) -> Result<String, String> {
    let count = entry.lines().filter(|l| l.starts_with("options ")).count();
    if count != 1 {
        return Err(format!("has {count} options lines, not one:\n{entry}"));
    }
    let mut out = String::with_capacity(entry.len() + 64);
    for line in entry.lines() {
        out.push_str(line);
        if line.starts_with("options ") {
            let have: Vec<&str> = line.split_whitespace().collect();
            for arg in args.iter().filter(|a| !have.contains(a)) {
                out.push(' ');
                out.push_str(arg);
            }
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "title Keel 0.1.0 (containerd)\nversion 0.1.0\nsort-key keel\n\
        linux keel/0.1.0/vmlinuz\ninitrd keel/0.1.0/initrd\n\
        options keel.slot=a keel.roothash=0123 console=ttyS0,115200 panic=10\n";

    #[test]
    fn appends_to_the_options_line_only_once() {
        let out = add_options(ENTRY, &[CONSOLE_SHELL]).unwrap();
        assert_eq!(
            out,
            ENTRY.replace("panic=10\n", "panic=10 keel.console=shell\n")
        );
        assert_eq!(add_options(&out, &[CONSOLE_SHELL]).unwrap(), out);
        let two = format!("{ENTRY}options quiet\n");
        assert!(add_options(&two, &[CONSOLE_SHELL])
            .unwrap_err()
            .contains("2 options lines"));
        assert!(add_options("title x\n", &[CONSOLE_SHELL])
            .unwrap_err()
            .contains("0 options lines"));
    }

    /// A disk with a FAT ESP and two entries, made with sgdisk and mtools.
    fn disk_with_entries(dir: &Path) -> std::path::PathBuf {
        let disk = dir.join("d.raw");
        fs::File::create(&disk).unwrap().set_len(40 << 20).unwrap();
        tool(
            Command::new("sgdisk")
                .args(["-n", "1:2048:+34M", "-c"])
                .arg(format!("1:{ESP_LABEL}"))
                .arg(&disk),
        )
        .unwrap();
        let esp = partition(&disk, ESP_LABEL).unwrap();
        let img = esp_image(&disk, esp);
        tool(
            Command::new("mformat")
                .args(["-T", &(esp.size / 512).to_string(), "-i"])
                .arg(&img)
                .arg("::"),
        )
        .unwrap();
        for d in ["::/loader", "::/loader/entries"] {
            tool(Command::new("mmd").arg("-i").arg(&img).arg(d)).unwrap();
        }
        for (name, slot) in [("keel-0.1.0+3.conf", "b"), ("keel-0.2.0.conf", "a")] {
            let local = dir.join(name);
            fs::write(
                &local,
                ENTRY.replace("keel.slot=a", &format!("keel.slot={slot}")),
            )
            .unwrap();
            tool(
                Command::new("mcopy")
                    .arg("-i")
                    .arg(&img)
                    .arg(&local)
                    .arg(format!("::/{ESP_ENTRIES_DIR}/{name}")),
            )
            .unwrap();
        }
        disk
    }

    #[test]
    fn edits_every_entry_of_a_copy_and_leaves_the_image_alone() {
        let t = tempfile::tempdir().unwrap();
        let disk = disk_with_entries(t.path());
        let before = fs::read(&disk).unwrap();
        let copy = t.path().join("debug.raw");
        let names = with_kernel_args(&disk, &copy, &[CONSOLE_SHELL], t.path()).unwrap();
        assert_eq!(names, ["keel-0.1.0+3.conf", "keel-0.2.0.conf"]);
        assert_eq!(fs::read(&disk).unwrap(), before, "the image was written");
        let esp = partition(&copy, ESP_LABEL).unwrap();
        for (name, slot) in [("keel-0.1.0+3.conf", "b"), ("keel-0.2.0.conf", "a")] {
            let back = t.path().join(format!("back-{name}"));
            tool(
                Command::new("mcopy")
                    .arg("-i")
                    .arg(esp_image(&copy, esp))
                    .arg(format!("::/{ESP_ENTRIES_DIR}/{name}"))
                    .arg(&back),
            )
            .unwrap();
            let text = fs::read_to_string(&back).unwrap();
            assert!(
                text.contains(&format!(
                    "options keel.slot={slot} keel.roothash=0123 console=ttyS0,115200 panic=10 keel.console=shell\n"
                )),
                "{text}"
            );
        }
        let err = with_kernel_args(&disk, &t.path().join("x.raw"), &["a b"], t.path()).unwrap_err();
        assert!(err.to_string().contains("\"a b\""), "{err}");
    }
}
