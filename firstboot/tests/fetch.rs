//! Fetching over HTTP from a real server on the loopback: headers are
//! sent, 5xx and dropped connections are retried a bounded number of
//! times, 4xx is final, hashes and gzip are checked on what arrived, and a
//! config whose resource cannot be fetched writes nothing.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use ignition_config::v3_6::{HttpHeadersItem, Resource, Verification};
use keel_firstboot::apply::{self, Fetch, FetchError, Network, RecordingSys};
use keel_firstboot::config;
use qemu_tests::http::{HttpServer, Response};
use sha2::{Digest, Sha512};

fn net(tries: u32) -> Network {
    Network::new(
        tries,
        Duration::from_millis(20),
        Duration::from_secs(5),
        Some(Duration::from_secs(20)),
    )
}

fn local(srv: &HttpServer, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", srv.port())
}

fn res(source: &str) -> Resource {
    Resource {
        source: Some(source.to_string()),
        ..Resource::default()
    }
}

fn status(code: u16) -> Response {
    Response {
        status: code,
        body: format!("status {code}\n").into_bytes(),
    }
}

#[test]
fn headers_are_sent_and_5xx_is_retried() {
    let srv = HttpServer::start().unwrap();
    srv.route_sequence(
        "/flaky",
        vec![status(503), status(500), Response::ok("finally")],
    );
    let mut r = res(&local(&srv, "/flaky"));
    r.http_headers = Some(vec![
        HttpHeadersItem {
            name: "X-Keel".into(),
            value: Some("yes".into()),
        },
        // A header without a value is not sent (Ignition uses it to drop a
        // header inherited from a parent config).
        HttpHeadersItem {
            name: "X-Dropped".into(),
            value: None,
        },
    ]);
    assert_eq!(
        net(5).get(r.source.as_deref().unwrap(), &r).unwrap(),
        b"finally"
    );
    assert_eq!(srv.requests().len(), 3);
    let heads = srv.request_headers();
    assert!(
        heads[0]
            .iter()
            .any(|h| h == "x-keel: yes" || h == "X-Keel: yes"),
        "{heads:?}"
    );
    assert!(!heads[0]
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("x-dropped")));
}

#[test]
fn retries_are_bounded_and_4xx_is_final() {
    let srv = HttpServer::start().unwrap();
    srv.route("/down", status(503));
    let t0 = Instant::now();
    let e = net(3).get(&local(&srv, "/down"), &res("")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("server answered 503 (after 3 tries)"),
        "{e}"
    );
    assert_eq!(srv.requests().len(), 3);
    assert!(t0.elapsed() < Duration::from_secs(10));

    let before = srv.requests().len();
    let e = net(5).get(&local(&srv, "/missing"), &res("")).unwrap_err();
    assert!(e.to_string().ends_with("server answered 404"), "{e}");
    assert_eq!(srv.requests().len(), before + 1, "a 404 was retried");

    // Nobody listening: connection refused is retried, then reported.
    let port = qemu_tests::net::free_local_port().unwrap();
    let e = net(2)
        .get(&format!("http://127.0.0.1:{port}/x"), &res(""))
        .unwrap_err();
    assert!(matches!(e, FetchError::Source { .. }), "{e}");
    assert!(e.to_string().contains("(after 2 tries)"), "{e}");
}

#[test]
fn hashes_and_gzip_are_checked_on_what_arrived() {
    let srv = HttpServer::start().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"over the wire\n").unwrap();
    srv.route("/f.gz", Response::ok(gz.finish().unwrap()));
    let hash = format!("sha512-{}", hex::encode(Sha512::digest(b"over the wire\n")));
    let mut r = res(&local(&srv, "/f.gz"));
    r.compression = Some("gzip".into());
    r.verification = Some(Verification {
        hash: Some(hash.clone()),
    });
    let data = apply::fetch::resource(&net(1), &r).unwrap().unwrap();
    assert_eq!(data, b"over the wire\n");
    r.verification = Some(Verification {
        hash: Some(format!("sha512-{}", "0".repeat(128))),
    });
    let e = apply::fetch::resource(&net(1), &r).unwrap_err();
    assert!(e.to_string().contains("hash mismatch"), "{e}");
}

#[test]
fn a_config_with_an_unfetchable_resource_writes_nothing() {
    let srv = HttpServer::start().unwrap();
    srv.route("/good", Response::ok("good\n"));
    let root = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[
            {{"path":"/etc/good","contents":{{"source":"{}"}}}},
            {{"path":"/etc/bad","contents":{{"source":"{}"}}}}]}}}}"#,
        local(&srv, "/good"),
        local(&srv, "/gone")
    );
    let p = config::parse(cfg.as_bytes()).unwrap();
    let e = apply::apply(root.path(), &p.config, &net(2), &RecordingSys::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("$.storage.files.1.contents: http://127.0.0.1:")
            && e.to_string().ends_with("/gone: server answered 404"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    let cfg = cfg.replace("/gone", "/good");
    let p = config::parse(cfg.as_bytes()).unwrap();
    apply::apply(root.path(), &p.config, &net(2), &RecordingSys::default()).unwrap();
    assert_eq!(
        std::fs::read(root.path().join("etc/bad")).unwrap(),
        b"good\n"
    );
}
