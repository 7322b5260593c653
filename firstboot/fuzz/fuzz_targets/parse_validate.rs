//! Any bytes through the config parser, and whatever parses through
//! validation (Ignition's rules and Keel's limits) and the report's
//! printing: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match keel_firstboot::config::parse(data) {
        Ok(parsed) => {
            let report = keel_firstboot::validate::validate(&parsed);
            let _ = report.to_string();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
