//! Fetching over HTTP from a real server on the loopback: headers are
//! sent, 5xx and dropped connections are retried a bounded number of
//! times, 4xx is final, hashes and gzip are checked on what arrived, and a
//! config whose resource cannot be fetched writes nothing.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use ignition_config::v3_6::{HttpHeadersItem, Resource, Verification};
use keel_firstboot::apply::{self, FetchError, Network, RecordingSys};
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
        apply::fetch::bytes(&net(5), r.source.as_deref().unwrap(), &r).unwrap(),
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
    let e = apply::fetch::bytes(&net(3), &local(&srv, "/down"), &res("")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("server answered 503 (after 3 tries)"),
        "{e}"
    );
    assert_eq!(srv.requests().len(), 3);
    assert!(t0.elapsed() < Duration::from_secs(10));

    let before = srv.requests().len();
    let e = apply::fetch::bytes(&net(5), &local(&srv, "/missing"), &res("")).unwrap_err();
    assert!(e.to_string().ends_with("server answered 404"), "{e}");
    assert_eq!(srv.requests().len(), before + 1, "a 404 was retried");

    // Nobody listening: connection refused is retried, then reported.
    let port = qemu_tests::net::free_local_port().unwrap();
    let e =
        apply::fetch::bytes(&net(2), &format!("http://127.0.0.1:{port}/x"), &res("")).unwrap_err();
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

/// `openssl s_server -WWW` on the loopback: a real TLS server that serves
/// the files of its directory, with a certificate for 127.0.0.1 signed
/// by a CA of its own (`cert`). Killed when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    cert: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start(files: &[(&str, &[u8])]) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A CA, and a server certificate for 127.0.0.1 that it signs.
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &["-days", "2", "-subj", "/CN=keel-test-ca"],
            ]
            .concat()
            .iter()
            .copied()
            .chain(["-keyout", "ca-key.pem", "-out", "ca.pem"])
            .collect::<Vec<_>>(),
        );
        openssl(
            &[
                &["req"],
                &ec[..],
                &[
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "req.pem",
                ],
            ]
            .concat(),
        );
        // The name is for the proxy test: it is only ever sent to the
        // proxy, never resolved.
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:keel-test.invalid\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "req.pem",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "cert.pem",
        ]);
        for (name, body) in files {
            std::fs::write(d.join(name), body).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("openssl")
            .args([
                "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
            ])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .current_dir(d)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "openssl s_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let cert = std::fs::read(d.join("ca.pem")).unwrap();
        TlsServer {
            child,
            port,
            cert,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_trusts_the_configs_certificate_authorities() {
    use keel_firstboot::provision::{Fetchers, NodeFetchers};
    let srv = TlsServer::start(&[("motd", b"over tls\n")]);
    let root = tempfile::tempdir().unwrap();
    let fetchers = NodeFetchers::new(root.path(), apply::NetworkUp::new(Vec::new()));
    let config = |cas: serde_json::Value| {
        let text = serde_json::json!({
            "ignition": {"version": "3.4.0", "security": {"tls": {"certificateAuthorities": cas}}}
        });
        config::parse(text.to_string().as_bytes()).unwrap().config
    };
    let file = res(&srv.url("/motd"));

    // The Mozilla roots do not know the server's certificate: refused, at
    // once (a TLS error is not retried).
    let plain = config(serde_json::json!([]));
    let started = Instant::now();
    let e = apply::fetch::resource(fetchers.for_config(Some(&plain)).as_ref(), &file).unwrap_err();
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // With the server's CA (a data URL, as Butane writes it), the
    // same fetch works.
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &srv.cert);
    let with_ca = config(serde_json::json!([{"source": format!("data:;base64,{b64}")}]));
    let got = apply::fetch::resource(fetchers.for_config(Some(&with_ca)).as_ref(), &file)
        .unwrap()
        .unwrap();
    assert_eq!(got, b"over tls\n");

    // A CA that is not a certificate is named, and nothing is fetched.
    let bad = config(serde_json::json!([{"source": "data:,not%20a%20certificate"}]));
    let e = apply::fetch::resource(fetchers.for_config(Some(&bad)).as_ref(), &file).unwrap_err();
    assert_eq!(
        e.to_string(),
        "certificate authority 0 (data:,not%20a%20certificate): no PEM certificate in it"
    );
}

/// A CONNECT proxy on the loopback that records each CONNECT line and
/// tunnels every one to `target` on 127.0.0.1, whatever host it names:
/// nothing leaves the machine.
struct ConnectProxy {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start(target: u16) -> ConnectProxy {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming().take(8) {
                let Ok(client) = conn else { return };
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || {
                    let timeout = Some(Duration::from_secs(20));
                    client.set_read_timeout(timeout).unwrap();
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    log.lock().unwrap().push(line.trim_end().to_string());
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let upstream = std::net::TcpStream::connect(("127.0.0.1", target)).unwrap();
                    upstream.set_read_timeout(timeout).unwrap();
                    let mut c = client;
                    c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .unwrap();
                    let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
                    let mut c_w = c.try_clone().unwrap();
                    let back = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut up_r, &mut c_w);
                    });
                    // Whatever the reader buffered, then the rest.
                    let buffered = reader.buffer().to_vec();
                    let _ = up_w.write_all(&buffered);
                    let mut rest = reader.into_inner();
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = rest.read(&mut buf) {
                        if n == 0 || up_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = up_w.shutdown(std::net::Shutdown::Write);
                    let _ = back.join();
                });
            }
        });
        ConnectProxy { port, seen }
    }
}

#[test]
fn https_goes_through_the_configs_proxy_unless_no_proxy_names_the_host() {
    let srv = TlsServer::start(&[("motd", b"via the proxy\n")]);
    let proxy = ConnectProxy::start(srv.port);
    let client = apply::Client {
        roots: Some(apply::fetch::pem_certificates(&srv.cert).unwrap()),
        https_proxy: Some(format!("http://127.0.0.1:{}", proxy.port)),
        ..apply::Client::default()
    };
    let n = Network::with_client(1, Duration::ZERO, &client).unwrap();
    // A name that must never be resolved: the request has to go to the
    // proxy, checked before anything is sent.
    let source = "https://keel-test.invalid/motd";
    assert!(n.proxied(source));
    let got = apply::fetch::resource(&n, &res(source)).unwrap().unwrap();
    assert_eq!(got, b"via the proxy\n");
    assert_eq!(
        proxy.seen.lock().unwrap().as_slice(),
        ["CONNECT keel-test.invalid:443 HTTP/1.1"]
    );
    // noProxy takes the host around the proxy (not fetched: it would be
    // resolved).
    let direct = apply::Client {
        no_proxy: vec![".invalid".into()],
        ..client
    };
    let n = Network::with_client(1, Duration::ZERO, &direct).unwrap();
    assert!(!n.proxied(source));
}
