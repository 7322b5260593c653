//! A tiny OCI image for container tests, built on the host: one
//! uncompressed layer holding a static busybox, packed as an OCI image
//! layout archive that `ctr image import` reads.

use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The busybox applets the layer links to `/bin/busybox`.
pub const APPLETS: &[&str] = &["sh", "echo", "cat", "wget", "ip", "sleep", "ls"];

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    // Paths here are short ASCII: set_path cannot fail for them.
    let _ = h.set_path(path);
    h
}

fn add_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut h = header(path, data.len() as u64, mode, tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, data)
}

/// The layer: `/bin/busybox` and its applet links, `/etc/hostname`,
/// `/tmp`.
pub fn layer(busybox: &[u8]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin/", "etc/", "tmp/"] {
        let mut h = header(
            dir,
            0,
            if dir == "tmp/" { 0o1777 } else { 0o755 },
            tar::EntryType::Directory,
        );
        h.set_cksum();
        b.append(&h, io::empty())?;
    }
    add_file(&mut b, "bin/busybox", busybox, 0o755)?;
    for applet in APPLETS {
        let mut h = header(&format!("bin/{applet}"), 0, 0o777, tar::EntryType::Symlink);
        h.set_link_name("busybox")?;
        h.set_cksum();
        b.append(&h, io::empty())?;
    }
    add_file(&mut b, "etc/hostname", b"keel-test\n", 0o644)?;
    b.into_inner()
}

/// Writes the image `name` (e.g. `docker.io/keel/busybox:latest`) as an
/// OCI image layout archive to `out`.
pub fn write_image(busybox: &Path, name: &str, out: &Path) -> io::Result<()> {
    let layer = layer(&std::fs::read(busybox)?)?;
    let layer_digest = digest(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let config_digest = digest(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_digest = digest(manifest.as_bytes());
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"io.containerd.image.name":"{name}","org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
        manifest.len()
    );
    let mut b = tar::Builder::new(std::fs::File::create(out)?);
    add_file(
        &mut b,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    add_file(&mut b, "index.json", index.as_bytes(), 0o644)?;
    for (d, data) in [
        (&layer_digest, layer.as_slice()),
        (&config_digest, config.as_bytes()),
        (&manifest_digest, manifest.as_bytes()),
    ] {
        let path = format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        add_file(&mut b, &path, data, 0o644)?;
    }
    b.into_inner()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn blobs_are_named_by_their_digest() {
        let t = tempfile::tempdir().unwrap();
        let bb = t.path().join("busybox");
        std::fs::write(&bb, b"\x7fELF fake").unwrap();
        let out = t.path().join("img.tar");
        write_image(&bb, "docker.io/keel/busybox:v1", &out).unwrap();
        let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
        let mut names = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if let Some(hash) = path.strip_prefix("blobs/sha256/") {
                assert_eq!(digest(&data), format!("sha256:{hash}"));
            }
            if path == "index.json" {
                let text = String::from_utf8(data).unwrap();
                assert!(text.contains(r#""io.containerd.image.name":"docker.io/keel/busybox:v1""#));
                assert!(text.contains(r#""org.opencontainers.image.ref.name":"v1""#));
            }
            names.push(path);
        }
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(&names[..2], ["oci-layout", "index.json"]);
    }
}
