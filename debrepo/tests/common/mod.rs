//! Test helpers: throwaway OpenPGP keys made with gpg in a temp GNUPGHOME.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        use std::io::Write;
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("running gpg");
        {
            let mut si = child.stdin.take().unwrap();
            if let Some(data) = stdin {
                si.write_all(data).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Creates a key for `uid` (ed25519, sign-only, optional expiry like "1d") and
    /// returns its fingerprint.
    pub fn gen_key(&self, uid: &str, expire: &str, faked_time: Option<&str>) -> String {
        let mut args = vec![];
        if let Some(t) = faked_time {
            args.extend(["--faked-system-time", t]);
        }
        args.extend(["--quick-gen-key", uid, "ed25519", "sign", expire]);
        self.run(&args);
        self.fingerprint(uid)
    }

    pub fn fingerprint(&self, uid: &str) -> String {
        let out = String::from_utf8(self.run(&["--with-colons", "--list-keys", uid])).unwrap();
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    /// Writes the binary public keyring with the keys `ids` to `path`.
    pub fn export(&self, ids: &[&str], path: &Path) -> PathBuf {
        let mut args = vec!["--export"];
        args.extend_from_slice(ids);
        let data = self.run(&args);
        assert!(!data.is_empty(), "nothing exported for {ids:?}");
        std::fs::write(path, data).unwrap();
        path.to_path_buf()
    }

    pub fn export_armored(&self, id: &str) -> String {
        String::from_utf8(self.run(&["--armor", "--export", id])).unwrap()
    }

    /// Clearsigns `text` with `signer` (fingerprint; append `!` to force a subkey).
    pub fn clearsign(&self, signer: &str, text: &str, faked_time: Option<&str>) -> String {
        let mut args = vec![];
        if let Some(t) = faked_time {
            args.extend(["--faked-system-time", t]);
        }
        args.extend([
            "--digest-algo",
            "SHA256",
            "--local-user",
            signer,
            "--clearsign",
        ]);
        String::from_utf8(self.run_stdin(&args, Some(text.as_bytes()))).unwrap()
    }
}

/// A minimal Release text for `suite` listing `files` (path, bytes).
pub fn release_text(suite: &str, valid_until: Option<&str>, files: &[(&str, &[u8])]) -> String {
    use sha2::Digest;
    let mut t = format!(
        "Origin: Test\nSuite: {suite}\nCodename: {suite}\nDate: Sat, 01 Jan 2022 00:00:00 UTC\n"
    );
    if let Some(v) = valid_until {
        t.push_str(&format!("Valid-Until: {v}\n"));
    }
    t.push_str("Architectures: amd64\nComponents: main\nSHA256:\n");
    for (name, data) in files {
        t.push_str(&format!(
            " {} {} {name}\n",
            hex::encode(sha2::Sha256::digest(data)),
            data.len()
        ));
    }
    t
}
