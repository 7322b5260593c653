//! Manual smoke run against the mirrors of the host's apt configuration:
//! `cargo run -p debrepo --example resolve -- CACHE_DIR [--offline] [--fetch] PKG...`
//! Suites: bookworm, bookworm-updates, bookworm-security.

use std::path::Path;
use std::process::ExitCode;

use debrepo::{apt_sources, NetMode, Repository};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: resolve CACHE_DIR [--offline] [--fetch] PKG...");
        return ExitCode::FAILURE;
    }
    let cache = args.remove(0);
    let mode = if args.iter().any(|a| a == "--offline") {
        NetMode::Offline
    } else {
        NetMode::Online
    };
    let fetch = args.iter().any(|a| a == "--fetch");
    args.retain(|a| !a.starts_with("--"));
    match run(Path::new(&cache), mode, fetch, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cache: &Path, mode: NetMode, fetch: bool, pkgs: &[String]) -> Result<(), debrepo::Error> {
    let suites: Vec<String> = ["bookworm", "bookworm-updates", "bookworm-security"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let sources = apt_sources(Path::new("/"), &suites)?;
    for s in &sources {
        println!(
            "source: {} {} {:?} ({} keyrings)",
            s.uri,
            s.suite,
            s.components,
            s.keyrings.len()
        );
    }
    let t = std::time::Instant::now();
    let repo = Repository::open(&sources, "amd64", cache, mode)?;
    println!(
        "opened {} packages in {:.1?}",
        repo.packages().len(),
        t.elapsed()
    );
    let mut all = Vec::new();
    for p in pkgs {
        let closure = repo.resolve(std::slice::from_ref(p))?;
        let bytes: u64 = closure.iter().map(|p| p.size).sum();
        println!(
            "{p}: {} packages, {:.1} MiB",
            closure.len(),
            bytes as f64 / 1048576.0
        );
        all.push(p.clone());
    }
    let closure = repo.resolve(&all)?;
    let bytes: u64 = closure.iter().map(|p| p.size).sum();
    println!(
        "all together: {} packages, {:.1} MiB",
        closure.len(),
        bytes as f64 / 1048576.0
    );
    for p in &closure {
        println!("  {} {} {} {}", p.name, p.version, p.architecture, p.suite);
    }
    if fetch {
        let t = std::time::Instant::now();
        let paths = repo.fetch(&closure, cache, mode)?;
        println!("fetched {} .debs in {:.1?}", paths.len(), t.elapsed());
    }
    Ok(())
}
