//! InRelease signature checks with throwaway keys made by gpg at run time.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{release_text, Gpg};
use debrepo::{load_keys, verify_inrelease, Error, Keyring};

const SUITE: &str = "testing";
const URL: &str = "http://127.0.0.1/dists/testing/InRelease";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keyring(gpg: &Gpg, ids: &[&str]) -> Vec<Keyring> {
    let path = gpg.home.path().join(format!("ring-{}.gpg", ids.join("-")));
    vec![Keyring::File(gpg.export(ids, &path))]
}

fn sig_error(text: &str, ring: &[Keyring]) -> String {
    let keys = load_keys(ring).unwrap();
    let e = verify_inrelease(text, &keys, SUITE, URL, now()).unwrap_err();
    assert!(matches!(e, Error::Signature { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(SUITE) && msg.contains(URL), "{msg}");
    msg
}

#[test]
fn good_tampered_unsigned_and_wrong_key() {
    let gpg = Gpg::new();
    let good = gpg.gen_key("Good Key <good@test.invalid>", "never", None);
    let other = gpg.gen_key("Other Key <other@test.invalid>", "never", None);
    let body = release_text(SUITE, None, &[("main/binary-amd64/Packages", b"x")]);
    let signed = gpg.clearsign(&good, &body, None);
    let ring = keyring(&gpg, &[&good]);

    // good signature, binary keyring
    let keys = load_keys(&ring).unwrap();
    let r = verify_inrelease(&signed, &keys, SUITE, URL, now()).unwrap();
    assert_eq!(r.suite.as_deref(), Some(SUITE));
    assert_eq!(r.sha256["main/binary-amd64/Packages"].size, 1);

    // good signature, inline armored key
    let inline = vec![Keyring::Armored(gpg.export_armored(&good))];
    verify_inrelease(&signed, &load_keys(&inline).unwrap(), SUITE, URL, now()).unwrap();

    // a tampered body
    let tampered = signed.replace("Origin: Test", "Origin: Evil");
    assert_ne!(tampered, signed);
    let msg = sig_error(&tampered, &ring);
    assert!(msg.contains("bad signature"), "{msg}");

    // unsigned Release
    let msg = sig_error(&body, &ring);
    assert!(msg.contains("not signed"), "{msg}");

    // signed by a key that is not in the keyring
    let by_other = gpg.clearsign(&other, &body, None);
    let msg = sig_error(&by_other, &ring);
    assert!(msg.contains("not in the keyring"), "{msg}");

    // data appended after the signature
    let appended = format!("{signed}\nSuite: other\n");
    let msg = sig_error(&appended, &ring);
    assert!(msg.contains("after the signature"), "{msg}");

    // the right signature for the wrong suite
    let keys = load_keys(&ring).unwrap();
    let e = verify_inrelease(&signed, &keys, "stable", URL, now()).unwrap_err();
    assert!(matches!(e, Error::Release { .. }), "{e}");
}

#[test]
fn expired_revoked_future_and_subkeys() {
    let gpg = Gpg::new();
    // a key created in 2020; gpg refuses to sign with an expired key, so sign first
    // and give the key an expiry date before those signatures afterwards
    let expired = gpg.gen_key(
        "Expired <exp@test.invalid>",
        "never",
        Some("20200101T000000"),
    );
    let body = release_text(SUITE, None, &[]);
    let early_sig = gpg.clearsign(&expired, &body, Some("20200101T060000"));
    let late_sig = gpg.clearsign(&expired, &body, Some("20200105T000000"));
    gpg.run(&[
        "--faked-system-time",
        "20200101T010000",
        "--quick-set-expire",
        &expired,
        "1d",
    ]);
    let ring = keyring(&gpg, &[&expired]);
    let keys = load_keys(&ring).unwrap();
    // validity is judged at signature creation time: the early one is fine...
    verify_inrelease(&early_sig, &keys, SUITE, URL, 1_577_900_000).unwrap();
    // ...the late one was made after the key expired
    let msg = sig_error(&late_sig, &ring);
    assert!(msg.contains("expired"), "{msg}");

    // a signature from the future
    let good = gpg.gen_key("Good <good@test.invalid>", "never", None);
    let future = gpg.clearsign(&good, &body, Some("20990101T000000"));
    let msg = sig_error(&future, &keyring(&gpg, &[&good]));
    assert!(msg.contains("future"), "{msg}");

    // a signing subkey (the primary key is certify-only)
    let primary = {
        gpg.run(&[
            "--quick-gen-key",
            "Sub <sub@test.invalid>",
            "ed25519",
            "cert",
            "never",
        ]);
        gpg.fingerprint("Sub <sub@test.invalid>")
    };
    gpg.run(&["--quick-add-key", &primary, "ed25519", "sign", "never"]);
    let by_sub = gpg.clearsign(&primary, &body, None);
    let sub_ring = keyring(&gpg, &[&primary]);
    verify_inrelease(&by_sub, &load_keys(&sub_ring).unwrap(), SUITE, URL, now()).unwrap();
    // the subkey must be bound to its primary: a keyring holding the subkey's
    // primary without any subkey (gpg exports by fingerprint with `!` only that part)
    // does not validate it
    let without_sub = gpg.home.path().join("nosub.gpg");
    gpg.export(&[&format!("{primary}!")], &without_sub);
    let msg = sig_error(&by_sub, &[Keyring::File(without_sub)]);
    assert!(msg.contains("not in the keyring"), "{msg}");

    // revoke the good key with its pre-made revocation certificate
    let good_sig = gpg.clearsign(&good, &body, None);
    let rev: PathBuf = gpg.home.path().join(format!("openpgp-revocs.d/{good}.rev"));
    let cert = std::fs::read_to_string(&rev)
        .unwrap()
        .replace("\n:-----", "\n-----");
    gpg.run_stdin(&["--import"], Some(cert.as_bytes()));
    let msg = sig_error(&good_sig, &keyring(&gpg, &[&good]));
    assert!(msg.contains("revoked"), "{msg}");
}

#[test]
fn valid_until_is_enforced() {
    let gpg = Gpg::new();
    let good = gpg.gen_key("Good <good@test.invalid>", "never", None);
    let body = release_text(SUITE, Some("Sun, 02 Jan 2022 00:00:00 UTC"), &[]);
    let signed = gpg.clearsign(&good, &body, None);
    let keys = load_keys(&keyring(&gpg, &[&good])).unwrap();
    let e = verify_inrelease(&signed, &keys, SUITE, URL, now()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Release { .. }) && msg.contains("expired"),
        "{msg}"
    );
}
