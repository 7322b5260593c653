//! What validation says about a config: errors and warnings, each at a
//! JSON path, printed the way Ignition prints them
//! (`error at $.storage.files.0.path: path not absolute`).

use std::fmt;

/// A place in the config: `$`, `$.storage.files.0.path`, …
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct JsonPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

impl JsonPath {
    /// `$`, the whole config.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path with `.key` added.
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Step::Key(key.to_string()));
        p
    }

    /// This path with `.index` added.
    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Step::Index(index));
        p
    }

    /// Parses the form [`fmt::Display`] writes (`$.a.0.b`); numbers are
    /// indexes.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix('$')?;
        let mut p = Self::root();
        if rest.is_empty() {
            return Some(p);
        }
        for part in rest.strip_prefix('.')?.split('.') {
            p = match part.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(part),
            };
        }
        Some(p)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for step in &self.0 {
            match step {
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(i) => write!(f, ".{i}")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub severity: Severity,
    pub path: JsonPath,
    pub message: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{kind} at {}: {}", self.path, self.message)
    }
}

/// Every finding about one config, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub entries: Vec<Entry>,
}

impl Report {
    pub fn error(&mut self, path: JsonPath, message: impl Into<String>) {
        self.entries.push(Entry {
            severity: Severity::Error,
            path,
            message: message.into(),
        });
    }

    pub fn warning(&mut self, path: JsonPath, message: impl Into<String>) {
        self.entries.push(Entry {
            severity: Severity::Warning,
            path,
            message: message.into(),
        });
    }

    pub fn is_fatal(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.severity == Severity::Warning)
    }

    pub fn merge(&mut self, other: Report) {
        self.entries.extend(other.entries);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_and_parse_like_ignition() {
        let p = JsonPath::root()
            .key("storage")
            .key("files")
            .index(0)
            .key("path");
        assert_eq!(p.to_string(), "$.storage.files.0.path");
        assert_eq!(JsonPath::parse("$.storage.files.0.path"), Some(p));
        assert_eq!(JsonPath::parse("$"), Some(JsonPath::root()));
        assert_eq!(JsonPath::parse("storage"), None);
        let mut r = Report::default();
        r.warning(JsonPath::root().key("foo"), "Unused key foo");
        assert!(!r.is_fatal());
        r.error(
            JsonPath::root()
                .key("storage")
                .key("files")
                .index(0)
                .key("path"),
            "path not absolute",
        );
        assert!(r.is_fatal());
        assert_eq!(
            r.to_string(),
            "warning at $.foo: Unused key foo\nerror at $.storage.files.0.path: path not absolute\n"
        );
    }
}
