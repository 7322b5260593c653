//! End to end: a tiny signed repository served over HTTP on 127.0.0.1 (only loopback
//! traffic), resolved, fetched in parallel, re-opened offline from a warm cache, and
//! a corrupted .deb rejected.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{release_text, Gpg};
use debrepo::{Error, Keyring, NetMode, Repository, Source};
use sha2::Digest;

struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
}

/// Serves files under `root` with GET; answers 503 while `fail` is set.
fn serve(root: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicBool::new(false));
    let (req, fl) = (requests.clone(), fail.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            req.fetch_add(1, Ordering::SeqCst);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = root.join(path.trim_start_matches('/'));
            let (status, body) = if fl.load(Ordering::SeqCst) {
                ("503 Service Unavailable", Vec::new())
            } else {
                match std::fs::read(&file) {
                    Ok(b) => ("200 OK", b),
                    Err(_) => ("404 Not Found", Vec::new()),
                }
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    Server {
        url,
        requests,
        fail,
    }
}

fn build_deb(work: &Path, name: &str, arch: &str, depends: Option<&str>) -> PathBuf {
    let dir = work.join(format!("build-{name}"));
    std::fs::create_dir_all(dir.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(dir.join("usr/share/doc").join(name)).unwrap();
    std::fs::write(dir.join("usr/share/doc").join(name).join("README"), name).unwrap();
    let mut control = format!(
        "Package: {name}\nVersion: 1.0-1\nArchitecture: {arch}\nMaintainer: T <t@test.invalid>\nDescription: test\n"
    );
    if let Some(d) = depends {
        control.push_str(&format!("Depends: {d}\n"));
    }
    std::fs::write(dir.join("DEBIAN/control"), control).unwrap();
    let out = work.join(format!("{name}.deb"));
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&dir)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

struct Fixture {
    _work: tempfile::TempDir,
    root: PathBuf,
    gpg: Gpg,
    ring: PathBuf,
}

/// A repository tree: pool/*.deb, dists/test/main/binary-amd64/Packages.xz,
/// dists/test/InRelease signed by a fresh key.
fn make_repo() -> Fixture {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("mirror");
    let pool = root.join("pool/main");
    std::fs::create_dir_all(&pool).unwrap();
    let debs = [
        (
            "hello",
            "amd64",
            Some("libhello (>= 1.0), base-files | busybox"),
        ),
        ("libhello", "all", None),
        ("busybox", "amd64", None),
    ];
    let mut packages = String::new();
    for (name, arch, dep) in debs {
        let deb = build_deb(work.path(), name, arch, dep);
        let data = std::fs::read(&deb).unwrap();
        let fname = format!("pool/main/{name}_1.0-1_{arch}.deb");
        std::fs::write(root.join(&fname), &data).unwrap();
        packages.push_str(&format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: {arch}\nFilename: {fname}\nSize: {}\nSHA256: {}\n",
            data.len(),
            hex::encode(sha2::Sha256::digest(&data))
        ));
        if let Some(d) = dep {
            packages.push_str(&format!("Depends: {d}\n"));
        }
        packages.push('\n');
    }
    let idx = root.join("dists/test/main/binary-amd64");
    std::fs::create_dir_all(&idx).unwrap();
    std::fs::write(idx.join("Packages"), &packages).unwrap();
    let st = Command::new("xz")
        .args(["-k", "-9"])
        .arg(idx.join("Packages"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(idx.join("Packages")).unwrap();
    let xz = std::fs::read(idx.join("Packages.xz")).unwrap();
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Repo <repo@test.invalid>", "never", None);
    let body = release_text("test", None, &[("main/binary-amd64/Packages.xz", &xz)]);
    let signed = gpg.clearsign(&fpr, &body, None);
    std::fs::write(root.join("dists/test/InRelease"), signed).unwrap();
    let ring = gpg.export(&[&fpr], &work.path().join("repo.gpg"));
    Fixture {
        _work: work,
        root,
        gpg,
        ring,
    }
}

#[test]
fn resolve_fetch_offline_and_corruption() {
    let fx = make_repo();
    let server = serve(fx.root.clone());
    let source = Source::new(
        &server.url,
        "test",
        &["main"],
        vec![Keyring::File(fx.ring.clone())],
    );
    let cache = tempfile::tempdir().unwrap();
    let req = vec!["hello".to_string()];

    // online: resolve and fetch
    let repo = Repository::open(
        std::slice::from_ref(&source),
        "amd64",
        cache.path(),
        NetMode::Online,
    )
    .unwrap();
    let pkgs = repo.resolve(&req).unwrap();
    let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["busybox", "hello", "libhello"]);
    let paths = repo.fetch(&pkgs, cache.path(), NetMode::Online).unwrap();
    for (p, path) in pkgs.iter().zip(&paths) {
        assert_eq!(*path, cache.path().join(format!("debs/{}.deb", p.sha256)));
        let data = std::fs::read(path).unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&data)), p.sha256);
        // the cached file is the .deb dpkg built
        let st = Command::new("dpkg-deb")
            .arg("--info")
            .arg(path)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&st.stdout).contains(&format!("Package: {}", p.name)));
    }
    let online_requests = server.requests.load(Ordering::SeqCst);
    assert!(online_requests >= 5, "{online_requests}");

    // a warm cache needs no network in offline mode
    let repo = Repository::open(
        std::slice::from_ref(&source),
        "amd64",
        cache.path(),
        NetMode::Offline,
    )
    .unwrap();
    let pkgs2 = repo.resolve(&req).unwrap();
    assert_eq!(pkgs2, pkgs);
    assert_eq!(
        repo.fetch(&pkgs2, cache.path(), NetMode::Offline).unwrap(),
        paths
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), online_requests);

    // online with the mirror failing: the cached InRelease is used (re-verified)
    server.fail.store(true, Ordering::SeqCst);
    let repo = Repository::open(
        std::slice::from_ref(&source),
        "amd64",
        cache.path(),
        NetMode::Online,
    )
    .unwrap();
    assert_eq!(repo.resolve(&req).unwrap(), pkgs);
    assert!(
        server.requests.load(Ordering::SeqCst) >= online_requests + 3,
        "retries expected"
    );
    server.fail.store(false, Ordering::SeqCst);

    // offline with a cold cache: a clear error
    let cold = tempfile::tempdir().unwrap();
    let e = Repository::open(
        std::slice::from_ref(&source),
        "amd64",
        cold.path(),
        NetMode::Offline,
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::NotCached { .. }), "{e}");

    // a corrupted .deb on the mirror is rejected and leaves nothing in the cache
    let bb = pkgs.iter().find(|p| p.name == "busybox").unwrap();
    std::fs::write(fx.root.join(&bb.filename), b"not the package").unwrap();
    let e = repo
        .fetch(std::slice::from_ref(bb), cold.path(), NetMode::Online)
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Mismatch { .. }), "{msg}");
    assert!(
        msg.contains("busybox") && msg.contains(&bb.url()) && msg.contains(&bb.sha256),
        "{msg}"
    );
    let actual = hex::encode(sha2::Sha256::digest(b"not the package"));
    assert!(msg.contains(&actual), "{msg}");
    let left: Vec<_> = std::fs::read_dir(cold.path().join("debs"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // a damaged cached .deb is detected and fetched again (here: fails, the mirror
    // copy is corrupt too) rather than returned
    let cached = cache.path().join(format!("debs/{}.deb", bb.sha256));
    std::fs::write(&cached, b"bit rot").unwrap();
    assert!(repo
        .fetch(std::slice::from_ref(bb), cache.path(), NetMode::Offline)
        .is_err());
}

#[test]
fn inrelease_signed_by_unknown_key_is_rejected() {
    let fx = make_repo();
    let server = serve(fx.root.clone());
    let other = fx.gpg.gen_key("Other <o@test.invalid>", "never", None);
    let ring = fx.gpg.export(&[&other], &fx.root.join("../other.gpg"));
    let source = Source::new(&server.url, "test", &["main"], vec![Keyring::File(ring)]);
    let cache = tempfile::tempdir().unwrap();
    let e = Repository::open(&[source], "amd64", cache.path(), NetMode::Online)
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(matches!(e, Error::Signature { .. }), "{msg}");
    assert!(
        msg.contains("suite test") && msg.contains(&server.url),
        "{msg}"
    );
}
