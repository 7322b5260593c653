//! Any bytes as a control-socket message, decoded the way keel-init's
//! server decodes a request line and keelctl decodes a response line
//! (`serde_json::from_slice` into `keel_init::control::{Request,
//! Response}`): nothing may panic.
//!
//! Invariants: whatever decodes, encoded again (`serde_json::to_vec`, as
//! the server and client write it), is one line (no newline byte, so the
//! line framing of the socket holds) and decodes to the same value; and
//! the encoding of that value is stable (encode, decode, encode gives the
//! same bytes).
#![no_main]

use keel_init::control::{Request, Response};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T>(data: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let line = serde_json::to_vec(&value).expect("encoding a decoded message");
    assert!(
        !line.contains(&b'\n'),
        "encoded message spans lines: {value:?}"
    );
    let back: T = serde_json::from_slice(&line).expect("decoding an encoded message");
    assert_eq!(back, value);
    let again = serde_json::to_vec(&back).expect("encoding a decoded message");
    assert_eq!(again, line);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Request>(data);
    round_trip::<Response>(data);
});
