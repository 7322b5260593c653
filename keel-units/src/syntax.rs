//! systemd's INI dialect (systemd.syntax(7)): sections, `Key=value`
//! assignments, comments and continuation lines.

use std::path::{Path, PathBuf};

/// One `Key=value` assignment, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Section name without brackets, e.g. `Service`.
    pub section: String,
    /// Directive name, e.g. `ExecStart`.
    pub key: String,
    /// Value with surrounding whitespace removed; empty for a reset.
    pub value: String,
    /// File the assignment is in.
    pub file: PathBuf,
    /// 1-based line on which the assignment starts.
    pub line: usize,
}

/// A syntax error: the whole file is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct SyntaxError {
    /// File the error is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses the text of a unit file or drop-in named `file`.
///
/// Lines whose first non-blank character is `#` or `;` are comments, also
/// between continuation lines. A line ending in `\` continues on the next
/// line; the backslash becomes a space.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let err = |line: usize, message: String| SyntaxError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let mut entries = Vec::new();
    let mut section: Option<String> = None;
    // Logical line being assembled from continuation lines, and where it began.
    let mut pending: Option<(usize, String)> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let trimmed = raw.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let (start, mut logical) = match pending.take() {
            Some((start, mut acc)) => {
                acc.push_str(trimmed);
                (start, acc)
            }
            None => (lineno, trimmed.to_string()),
        };
        if logical.ends_with('\\') {
            logical.pop();
            logical.push(' ');
            pending = Some((start, logical));
            continue;
        }
        handle_line(&logical, start, &mut section, &mut entries, file)
            .map_err(|m| err(start, m))?;
    }
    if let Some((start, logical)) = pending {
        handle_line(&logical, start, &mut section, &mut entries, file)
            .map_err(|m| err(start, m))?;
    }
    Ok(entries)
}

fn handle_line(
    line: &str,
    lineno: usize,
    section: &mut Option<String>,
    entries: &mut Vec<Entry>,
    file: &Path,
) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix('[') {
        let name = rest
            .strip_suffix(']')
            .ok_or_else(|| format!("invalid section header {line:?}"))?;
        if name.is_empty() || name.contains(['[', ']']) {
            return Err(format!("invalid section header {line:?}"));
        }
        *section = Some(name.to_string());
        return Ok(());
    }
    if line.starts_with(".include") {
        return Err(".include is not supported".to_string());
    }
    let Some(current) = section.as_ref() else {
        return Err(format!("assignment outside of any section: {line:?}"));
    };
    let (key, value) = line
        .split_once('=')
        .ok_or_else(|| format!("missing '=' in {line:?}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("missing directive name in {line:?}"));
    }
    entries.push(Entry {
        section: current.clone(),
        key: key.to_string(),
        value: value.trim().to_string(),
        file: file.to_path_buf(),
        line: lineno,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Entry>, SyntaxError> {
        parse(Path::new("/x.service"), text)
    }

    fn kv(e: &[Entry]) -> Vec<(String, String, String, usize)> {
        e.iter()
            .map(|e| (e.section.clone(), e.key.clone(), e.value.clone(), e.line))
            .collect()
    }

    #[test]
    fn sections_comments_whitespace() {
        let e = p(
            "# c\n; c\n[Unit]\n  Description = a b  \n\n[Service]\nExecStart=/bin/x\nExecStart=\n",
        )
        .unwrap();
        assert_eq!(
            kv(&e),
            vec![
                ("Unit".into(), "Description".into(), "a b".into(), 4),
                ("Service".into(), "ExecStart".into(), "/bin/x".into(), 7),
                ("Service".into(), "ExecStart".into(), "".into(), 8),
            ]
        );
    }

    #[test]
    fn continuation_with_interleaved_comment() {
        let e = p("[Service]\nExecStart=/bin/a \\\n  -x \\\n# comment\n  -y\nUser=u\n").unwrap();
        assert_eq!(e[0].value, "/bin/a  -x  -y");
        assert_eq!(e[0].line, 2);
        assert_eq!(e[1].key, "User");
        assert_eq!(e[1].line, 6);
    }

    #[test]
    fn continuation_at_eof_and_value_with_equals() {
        let e = p("[Service]\nEnvironment=A=b \\").unwrap();
        assert_eq!(e[0].value, "A=b");
        let e = p("[Service]\nEnvironment=A=b=c").unwrap();
        assert_eq!(e[0].value, "A=b=c");
    }

    #[test]
    fn hash_inside_value_is_not_comment() {
        let e = p("[Unit]\nDescription=a # b\n").unwrap();
        assert_eq!(e[0].value, "a # b");
    }

    #[test]
    fn errors_carry_file_and_line() {
        let e = p("[Unit]\nDescription=x\nbogus line\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "/x.service:3: missing '=' in \"bogus line\"");
        assert_eq!(p("Description=x\n").unwrap_err().line, 1);
        assert_eq!(p("[Unit\n").unwrap_err().line, 1);
        assert_eq!(p("\n[Unit]\n=x\n").unwrap_err().line, 3);
    }
}
