//! Reading an Ignition config: JSON syntax, the spec version (3.0.0
//! through 3.6.0), the version's schema (the `ignition-config` crate's
//! types), unknown keys as warnings at their JSON path; then the config is
//! carried over to the 3.6.0 types, a superset of every earlier 3.x, so
//! that everything after parsing handles one shape.

use ignition_config::{v3_0, v3_1, v3_2, v3_3, v3_4, v3_5, v3_6};
use semver::Version;
use serde::de::DeserializeOwned;

use crate::report::{JsonPath, Report};

/// The spec versions Keel accepts, oldest first.
pub const SUPPORTED: [&str; 7] = [
    "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0", "3.6.0",
];

/// The config in the 3.6.0 types, with the version it was written for.
pub type Config = v3_6::Config;

#[derive(Debug, Clone)]
pub struct Parsed {
    /// The spec version the config declared.
    pub version: Version,
    pub config: Config,
    /// Warnings found while parsing (unknown keys).
    pub report: Report,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("error at line {line} col {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("error at $.ignition.version: {0}")]
    Version(String),
    #[error("error at {path}: {message}")]
    Schema { path: JsonPath, message: String },
}

fn supported_list() -> String {
    format!(
        "Keel accepts Ignition spec {} through {}",
        SUPPORTED[0],
        SUPPORTED[SUPPORTED.len() - 1]
    )
}

/// Reads the declared version, or says why there is none.
fn declared_version(value: &serde_json::Value) -> Result<Version, ParseError> {
    let raw = value
        .get("ignition")
        .and_then(|i| i.get("version"))
        .filter(|v| !v.is_null())
        .ok_or_else(|| ParseError::Version(format!("no config version; {}", supported_list())))?;
    let Some(text) = raw.as_str() else {
        return Err(ParseError::Version(format!(
            "version {raw} is not a string; {}",
            supported_list()
        )));
    };
    let version = Version::parse(text).map_err(|e| {
        ParseError::Version(format!(
            "invalid version {text:?}: {e}; {}",
            supported_list()
        ))
    })?;
    if !SUPPORTED.contains(&version.to_string().as_str()) || !version.pre.is_empty() {
        return Err(ParseError::Version(format!(
            "unsupported config version {version}; {}",
            supported_list()
        )));
    }
    Ok(version)
}

/// The JSON path of a serde_ignored path, Ignition-style (`$.a.0.b`).
fn ignored_path(path: &serde_ignored::Path<'_>) -> JsonPath {
    use serde_ignored::Path as P;
    match path {
        P::Root => JsonPath::root(),
        P::Seq { parent, index } => ignored_path(parent).index(*index),
        P::Map { parent, key } => ignored_path(parent).key(key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// The JSON path serde_path_to_error tracked.
fn tracked_path(path: &serde_path_to_error::Path) -> JsonPath {
    use serde_path_to_error::Segment;
    let mut out = JsonPath::root();
    for seg in path.iter() {
        out = match seg {
            Segment::Seq { index } => out.index(*index),
            Segment::Map { key } => out.key(key),
            Segment::Enum { variant } => out.key(variant),
            Segment::Unknown => out,
        };
    }
    out
}

/// How many times [`typed`] fills in absent or null strings at most
/// (each time, at one field of every entry of its list).
const MAX_FILLS: usize = 4096;
/// How many unknown keys are warned about one by one; the rest are
/// counted in one warning.
pub const MAX_UNKNOWN_WARNINGS: usize = 100;

/// Calls `fill` on every JSON value below `v` at `path` with any index
/// in place of each list index: the same field of every entry of those
/// lists, which has the same type. Returns how many it changed.
fn fill_all(
    v: &mut serde_json::Value,
    path: &[serde_path_to_error::Segment],
    fill: &mut dyn FnMut(&mut serde_json::Value) -> bool,
) -> usize {
    use serde_path_to_error::Segment;
    let Some((first, rest)) = path.split_first() else {
        return usize::from(fill(v));
    };
    match first {
        Segment::Seq { .. } => match v.as_array_mut() {
            Some(items) => items.iter_mut().map(|i| fill_all(i, rest, fill)).sum(),
            None => 0,
        },
        Segment::Map { key } => match v.get_mut(key.as_str()) {
            Some(child) => fill_all(child, rest, fill),
            None => 0,
        },
        _ => 0,
    }
}

/// The unknown keys met: the first ones by path, the rest only counted, so
/// that a config of nothing but unknown keys costs no memory for each.
#[derive(Default)]
struct Unknown {
    paths: Vec<JsonPath>,
    more: usize,
}

impl Unknown {
    fn record(&mut self, p: &serde_ignored::Path<'_>) {
        if self.paths.len() < MAX_UNKNOWN_WARNINGS {
            self.paths.push(ignored_path(p));
        } else {
            self.more += 1;
        }
    }

    fn warn(self, report: &mut Report) {
        for path in self.paths {
            let key = path.to_string();
            let last = key.rsplit('.').next().unwrap_or(&key).to_string();
            report.warning(path, format!("Unused key {last}"));
        }
        if self.more > 0 {
            report.warning(
                JsonPath::root(),
                format!("and {} more unknown keys (not listed)", self.more),
            );
        }
    }
}

/// `T` read straight from `bytes`, with no JSON value tree in between (a
/// config of many unknown keys then costs the config, not a tree of them);
/// `None` on anything [`typed`] treats specially or reports (a repeated
/// key, an absent or null string, any error), which [`parse`] then
/// decides the full way.
fn direct<T: DeserializeOwned>(bytes: &[u8], report: &mut Report) -> Option<T> {
    let mut unknown = Unknown::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = {
        let mut record = |p: serde_ignored::Path<'_>| unknown.record(&p);
        T::deserialize(serde_ignored::Deserializer::new(&mut de, &mut record)).ok()?
    };
    de.end().ok()?;
    unknown.warn(report);
    Some(v)
}

/// The declared version, read straight from `bytes`, when it is one Keel
/// accepts (anything else is for [`declared_version`] to report).
fn direct_version(bytes: &[u8]) -> Option<Version> {
    #[derive(serde::Deserialize)]
    struct Head {
        ignition: HeadIgnition,
    }
    #[derive(serde::Deserialize)]
    struct HeadIgnition {
        version: String,
    }
    let head: Head = serde_json::from_slice(bytes).ok()?;
    let version = Version::parse(&head.ignition.version).ok()?;
    (SUPPORTED.contains(&version.to_string().as_str()) && version.pre.is_empty()).then_some(version)
}

/// Deserializes `value` as `T`, with unknown keys as warnings and type
/// errors at their path.
///
/// A string field that is absent or null is the empty string, as in Go,
/// where Ignition's required strings are plain strings: the rules then
/// say what is wrong with it (`path not specified`), or nothing where an
/// empty string is fine (a 3.0 link's target).
fn typed<T: DeserializeOwned>(
    mut value: serde_json::Value,
    report: &mut Report,
) -> Result<T, ParseError> {
    for _ in 0..MAX_FILLS {
        let mut unknown = Unknown::default();
        let mut track = serde_path_to_error::Track::new();
        let result = {
            let mut record = |p: serde_ignored::Path<'_>| unknown.record(&p);
            let ignored = serde_ignored::Deserializer::new(&value, &mut record);
            let tracked = serde_path_to_error::Deserializer::new(ignored, &mut track);
            T::deserialize(tracked)
        };
        let e = match result {
            Ok(v) => {
                unknown.warn(report);
                return Ok(v);
            }
            Err(e) => e,
        };
        let path = track.path();
        let message = e.to_string();
        let segments: Vec<serde_path_to_error::Segment> = path.iter().cloned().collect();
        // Filled in at every entry of the lists on the way at once: a
        // config of many entries without that field costs one more pass,
        // not one per entry.
        let filled = if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            fill_all(&mut value, &segments, &mut |v| match v.as_object_mut() {
                Some(o) if o.get(field).is_none_or(|f| f.is_null()) => {
                    o.insert(field.to_string(), serde_json::Value::from(""));
                    true
                }
                _ => false,
            }) > 0
        } else if message.starts_with("invalid type: null, expected a string") {
            fill_all(&mut value, &segments, &mut |v| {
                let null = v.is_null();
                if null {
                    *v = serde_json::Value::from("");
                }
                null
            }) > 0
        } else {
            false
        };
        if !filled {
            return Err(ParseError::Schema {
                path: tracked_path(&path),
                message: strip_position(&message),
            });
        }
    }
    Err(ParseError::Schema {
        path: JsonPath::root(),
        message: format!("more than {MAX_FILLS} absent strings"),
    })
}

/// serde_json appends " at line L column C"; the path says where already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn upgrade<T: serde::Serialize>(config: &T) -> Result<Config, ParseError> {
    // Every 3.x schema is a subset of 3.6.0's, with the same JSON names.
    let value = serde_json::to_value(config).map_err(|e| ParseError::Schema {
        path: JsonPath::root(),
        message: format!("internal error converting to spec 3.6.0: {e}"),
    })?;
    serde_json::from_value(value).map_err(|e| ParseError::Schema {
        path: JsonPath::root(),
        message: format!("internal error converting to spec 3.6.0: {e}"),
    })
}

/// Parses a config of any supported version.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    if let Some(parsed) = parse_direct(bytes) {
        return Ok(parsed);
    }
    // Parsed as a value first: a repeated key then keeps its last value,
    // as in Go, instead of being an error.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax {
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
    let version = declared_version(&value)?;
    let mut report = Report::default();
    let r = &mut report;
    let mut config = match version.minor {
        0 => upgrade(&typed::<v3_0::Config>(value, r)?)?,
        1 => upgrade(&typed::<v3_1::Config>(value, r)?)?,
        2 => upgrade(&typed::<v3_2::Config>(value, r)?)?,
        3 => upgrade(&typed::<v3_3::Config>(value, r)?)?,
        4 => upgrade(&typed::<v3_4::Config>(value, r)?)?,
        5 => upgrade(&typed::<v3_5::Config>(value, r)?)?,
        _ => typed::<v3_6::Config>(value, r)?,
    };
    config.ignition.version = version.to_string();
    Ok(Parsed {
        version,
        config,
        report,
    })
}

/// [`parse`] for the common case, without a JSON value tree; `None` when
/// the config needs the full way (see [`direct`]).
fn parse_direct(bytes: &[u8]) -> Option<Parsed> {
    let version = direct_version(bytes)?;
    let mut report = Report::default();
    let r = &mut report;
    let mut config = match version.minor {
        0 => upgrade(&direct::<v3_0::Config>(bytes, r)?).ok()?,
        1 => upgrade(&direct::<v3_1::Config>(bytes, r)?).ok()?,
        2 => upgrade(&direct::<v3_2::Config>(bytes, r)?).ok()?,
        3 => upgrade(&direct::<v3_3::Config>(bytes, r)?).ok()?,
        4 => upgrade(&direct::<v3_4::Config>(bytes, r)?).ok()?,
        5 => upgrade(&direct::<v3_5::Config>(bytes, r)?).ok()?,
        _ => direct::<v3_6::Config>(bytes, r)?,
    };
    config.ignition.version = version.to_string();
    Some(Parsed {
        version,
        config,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn every_supported_version_parses_into_the_same_shape() {
        for v in SUPPORTED {
            let text = format!(
                r#"{{"ignition":{{"version":"{v}"}},"storage":{{"files":[{{"path":"/etc/x","mode":420,"contents":{{"source":"data:,hi"}}}}]}}}}"#
            );
            let p = parse(text.as_bytes()).unwrap();
            assert_eq!(p.version.to_string(), v);
            assert_eq!(p.config.ignition.version, v);
            let files = p.config.storage.unwrap().files.unwrap();
            assert_eq!(files[0].path, "/etc/x");
            assert_eq!(files[0].mode, Some(420));
            assert!(p.report.entries.is_empty(), "{}", p.report);
        }
    }

    #[test]
    fn versions_outside_3_0_to_3_6_are_refused_naming_the_range() {
        for v in ["2.2.0", "3.7.0", "3.4.0-experimental", "4.0.0"] {
            let e = err(&format!(r#"{{"ignition":{{"version":"{v}"}}}}"#));
            assert!(e.contains("unsupported config version"), "{v}: {e}");
            assert!(e.contains("3.0.0 through 3.6.0"), "{e}");
        }
        assert!(err(r#"{"ignition":{"version":"x"}}"#).contains("invalid version \"x\""));
        assert!(err(r#"{"ignition":{}}"#).contains("no config version"));
        assert!(err(r#"{}"#).contains("no config version"));
        assert!(err(r#"{"ignition":{"version":3}}"#).contains("not a string"));
        let e = err("{\"ignition\": {\"version\": \"3.0.0\"}");
        assert!(e.starts_with("error at line 1 col "), "{e}");
        assert!(err("garbage").starts_with("error at line 1 col 1: "));
    }

    #[test]
    fn unknown_keys_warn_at_their_path_and_types_fail_at_theirs() {
        let p = parse(
            br#"{"ignition":{"version":"3.3.0"},"foo":1,"storage":{"files":[{"path":"/a","colour":"red"}]}}"#,
        )
        .unwrap();
        let w: Vec<String> = p.report.warnings().map(ToString::to_string).collect();
        assert_eq!(
            w,
            [
                "warning at $.foo: Unused key foo",
                "warning at $.storage.files.0.colour: Unused key colour"
            ]
        );
        // A key of a later spec is unknown in an earlier one.
        let p = parse(br#"{"ignition":{"version":"3.0.0"},"kernelArguments":{}}"#).unwrap();
        assert_eq!(p.report.warnings().count(), 1);
        let e = err(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a"},{"path":"/b","mode":"x"}]}}"#,
        );
        assert!(
            e.starts_with("error at $.storage.files.1.mode: invalid type: string \"x\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_beyond_the_first_hundred_are_counted_not_kept() {
        let keys: String = (0..5000).map(|i| format!(r#","k{i}":{{"x":1}}"#)).collect();
        let text = format!(r#"{{"ignition":{{"version":"3.4.0"}}{keys}}}"#);
        let p = parse(text.as_bytes()).unwrap();
        let w: Vec<String> = p.report.warnings().map(ToString::to_string).collect();
        assert_eq!(w.len(), MAX_UNKNOWN_WARNINGS + 1);
        assert_eq!(w[0], "warning at $.k0: Unused key k0");
        assert_eq!(
            w[MAX_UNKNOWN_WARNINGS],
            format!(
                "warning at $: and {} more unknown keys (not listed)",
                5000 - MAX_UNKNOWN_WARNINGS
            )
        );
    }

    #[test]
    fn absent_strings_of_many_entries_are_filled_in_at_once() {
        // More entries without a path than there are fill passes: each
        // list's field is filled in everywhere in one pass.
        let files: Vec<String> = (0..2 * MAX_FILLS)
            .map(|i| {
                format!(
                    r#"{{"mode":420,"user":{{"name":null}},"append":[{{"source":"data:,{i}"}}]}}"#
                )
            })
            .collect();
        let units: Vec<String> = (0..2 * MAX_FILLS)
            .map(|_| r#"{"enabled":true,"dropins":[{"contents":"x"}]}"#.to_string())
            .collect();
        let text = format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{}]}},"systemd":{{"units":[{}]}}}}"#,
            files.join(","),
            units.join(",")
        );
        let p = parse(text.as_bytes()).unwrap();
        let s = p.config.storage.unwrap();
        let files = s.files.unwrap();
        assert_eq!(files.len(), 2 * MAX_FILLS);
        assert!(files.iter().all(|f| f.path.is_empty()));
        let units = p.config.systemd.unwrap().units.unwrap();
        assert!(units
            .iter()
            .all(|u| u.name.is_empty() && u.dropins.as_ref().unwrap()[0].name.is_empty()));
    }

    #[test]
    fn absent_and_null_strings_are_empty_and_repeated_keys_keep_the_last() {
        let p = parse(
            br#"{"ignition":{"version":"3.2.0"},"storage":{"files":[{"mode":420},{"path":null}],"links":[{"path":"/l"}]}}"#,
        )
        .unwrap();
        let s = p.config.storage.unwrap();
        let files = s.files.unwrap();
        assert_eq!((files[0].path.as_str(), files[1].path.as_str()), ("", ""));
        assert_eq!(s.links.unwrap()[0].target.as_deref(), Some(""));
        let p = parse(br#"{"ignition":{"version":"3.3.0","version":"3.2.0"}}"#).unwrap();
        assert_eq!(p.version.to_string(), "3.2.0");
        // Other types are not filled in.
        let e = err(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","mode":null,"overwrite":"yes"}]}}"#,
        );
        assert!(
            e.starts_with("error at $.storage.files.0.overwrite: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn butane_style_nulls_and_empty_strings_parse() {
        let p = parse(
            br#"{"ignition":{"version":"3.4.0","config":{"replace":{"verification":{}}},"proxy":{},"security":{"tls":{}},"timeouts":{}},
                "kernelArguments":{},"passwd":{},"storage":{"files":[{"path":"/a","contents":{"compression":"","source":null,"verification":{}},"user":{},"group":{}}]},"systemd":{}}"#,
        )
        .unwrap();
        assert!(p.report.entries.is_empty(), "{}", p.report);
        let f = &p.config.storage.unwrap().files.unwrap()[0];
        assert_eq!(
            f.contents.as_ref().unwrap().compression.as_deref(),
            Some("")
        );
    }
}
