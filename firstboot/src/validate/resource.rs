//! Resources (`contents`, `append[]`, `merge[]`, `replace`, CAs, key
//! files): compression, source URL, HTTP headers and verification hash.

use ignition_config::v3_6::{Resource, Verification};

use super::Ctx;
use crate::report::JsonPath;
use crate::url::{self, decode_data_url};

/// The messages Ignition uses.
pub const INVALID_SCHEME: &str = "invalid url scheme";
pub const UNPARSABLE: &str = "unable to parse url";

/// A hash specifier `function-hexdigest`: function and expected length.
fn hash_functions(minor: u64) -> &'static [(&'static str, usize)] {
    if minor == 0 {
        &[("sha512", 128)]
    } else {
        &[("sha512", 128), ("sha256", 64)]
    }
}

/// Checks a URL as Ignition's `validateURL` does; `None` when valid.
pub fn url_problem(minor: u64, source: &str) -> Option<String> {
    let parsed = match url::parse(source) {
        Ok(u) => u,
        Err(_) => return Some(UNPARSABLE.into()),
    };
    match parsed.scheme.as_str() {
        "http" | "https" | "tftp" => None,
        "gs" if minor >= 2 => None,
        "s3" => s3_version_problem(source),
        "arn" if minor >= 4 => arn_problem(parsed.rest).or_else(|| s3_version_problem(source)),
        "data" => decode_data_url(source).err().map(|e| e.to_string()),
        _ => Some(INVALID_SCHEME.into()),
    }
}

fn s3_version_problem(source: &str) -> Option<String> {
    let query = source.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k == "versionId" && v.is_empty()
        })
        .then(|| "invalid S3 object VersionId".into())
}

fn arn_problem(opaque: &str) -> Option<String> {
    let bad = || Some("invalid S3 ARN format".to_string());
    // arn:partition:service:region:account:resource
    let parts: Vec<&str> = opaque.splitn(5, ':').collect();
    if parts.len() < 5 || parts[1] != "s3" {
        return bad();
    }
    let resource = parts[4];
    let slashes = resource.matches('/').count();
    if slashes == 0 || (resource.starts_with("accesspoint/") && slashes < 2) {
        return bad();
    }
    None
}

/// Validates one resource at `path`. `compression` is checked where the
/// spec version validates it (every resource from 3.1, contents and
/// append in 3.0).
pub fn resource(cx: &mut Ctx, path: &JsonPath, r: &Resource, check_compression: bool) {
    if check_compression {
        if let Some(c) = r.compression.as_deref() {
            if !c.is_empty() && c != "gzip" {
                cx.error(path.key("compression"), "invalid compression method");
            }
        }
    }
    if r.verification
        .as_ref()
        .and_then(|v| v.hash.as_ref())
        .is_some()
        && r.source.is_none()
    {
        cx.error(
            path.key("verification").key("hash"),
            "source must be specified if verification is specified",
        );
    }
    if let Some(source) = r.source.as_deref().filter(|s| !s.is_empty()) {
        if let Some(p) = url_problem(cx.minor, source) {
            cx.error(path.key("source"), p);
        }
    }
    if let Some(headers) = r.http_headers.as_ref().filter(|h| !h.is_empty()) {
        let source = r.source.as_deref().unwrap_or("");
        match url::parse(source) {
            Ok(u) if !source.is_empty() => {
                if u.scheme != "http" && u.scheme != "https" {
                    cx.error(
                        path.key("httpHeaders"),
                        "cannot use HTTP headers with this source scheme",
                    );
                }
            }
            _ => cx.error(path.key("httpHeaders"), UNPARSABLE),
        }
        for (i, h) in headers.iter().enumerate() {
            let hp = path.key("httpHeaders").index(i);
            if h.name.is_empty() {
                cx.error(hp.key("name"), "HTTP header name can't be empty");
            }
            if h.value.as_deref() == Some("") {
                cx.error(hp.key("value"), "unable to parse HTTP header");
            }
        }
        cx.dups(
            &path.key("httpHeaders"),
            headers.iter().map(|h| h.name.clone()),
        );
    }
    if let Some(v) = &r.verification {
        verification(cx, &path.key("verification"), v);
    }
}

/// `verification.hash`: `sha512-<128 hex>` (and `sha256-<64 hex>` from
/// 3.1). Like Ignition, only the length of the digest is checked here.
pub fn verification(cx: &mut Ctx, path: &JsonPath, v: &Verification) {
    let Some(hash) = v.hash.as_deref() else {
        return;
    };
    let Some((function, sum)) = hash.split_once('-') else {
        cx.error(path.key("hash"), "malformed hash specifier");
        return;
    };
    match hash_functions(cx.minor)
        .iter()
        .find(|(f, _)| *f == function)
    {
        None => cx.error(path.key("hash"), "unrecognized hash function"),
        Some((_, len)) if sum.len() != *len => {
            cx.error(path.key("hash"), "incorrect size for hash sum")
        }
        Some(_) => {}
    }
}

/// A resource that must have a source (merge entries and CAs from 3.1).
pub fn required_source(cx: &mut Ctx, path: &JsonPath, r: &Resource) {
    match r.source.as_deref() {
        None | Some("") => cx.error(path.clone(), "source is required"),
        Some(s) => {
            if let Some(p) = url_problem(cx.minor, s) {
                cx.error(path.clone(), p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules_by_version() {
        assert_eq!(url_problem(0, "gs://b/o").as_deref(), Some(INVALID_SCHEME));
        assert_eq!(url_problem(2, "gs://b/o"), None);
        assert_eq!(
            url_problem(3, "arn:aws:s3:::b/o").as_deref(),
            Some(INVALID_SCHEME)
        );
        assert_eq!(url_problem(4, "arn:aws:s3:::b/o"), None);
        assert_eq!(
            url_problem(4, "arn:aws:s3:::bucket").as_deref(),
            Some("invalid S3 ARN format")
        );
        assert_eq!(
            url_problem(4, "s3://b/o?versionId=").as_deref(),
            Some("invalid S3 object VersionId")
        );
        assert_eq!(url_problem(6, "ftp://x/y").as_deref(), Some(INVALID_SCHEME));
        assert_eq!(url_problem(6, "/etc/x").as_deref(), Some(INVALID_SCHEME));
        assert_eq!(url_problem(6, ":x").as_deref(), Some(UNPARSABLE));
        assert_eq!(
            url_problem(6, "data:,a b").as_deref(),
            Some("invalid data character")
        );
        assert_eq!(url_problem(6, "tftp://10.0.2.2/x"), None);
    }
}
