//! Any text through osbuild's image config parser
//! (`osbuild::config::ImageConfig::parse`: TOML, unknown keys, sizes and
//! the validation of names, versions, partitions, trees and the kernel
//! command line), and through the size parser alone
//! (`osbuild::config::Size::parse`): nothing may panic.
//!
//! Invariants: an error names the config file; a config that parses has
//! whole-MiB partition sizes, and every whole-MiB size, written as osbuild
//! prints it (`512 MiB`), parses to the same size.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use osbuild::config::{ImageConfig, Size};

const PATH: &str = "fuzz/image.toml";

fn check_size(size: Size) {
    if size.0 % (1 << 20) == 0 {
        let printed = size.to_string();
        assert_eq!(Size::parse(&printed), Ok(size), "printed as {printed:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ImageConfig::parse(text, Path::new(PATH)) {
        Ok(cfg) => {
            for size in [cfg.partitions.esp, cfg.partitions.root, cfg.partitions.var] {
                assert_eq!(size.0 % (1 << 20), 0, "{size:?} accepted");
                check_size(size);
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(PATH), "error without the file: {message}");
        }
    }
    if text.len() <= 64 {
        if let Ok(size) = Size::parse(text) {
            check_size(size);
        }
    }
});
