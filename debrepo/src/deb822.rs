//! Parser for deb822 control data: paragraphs of `Field: value` lines separated by blank
//! lines, with continuation lines (leading space or tab) and `#` comment lines.

use std::borrow::Cow;

/// One paragraph: fields in file order. Values of multi-line fields keep their
/// continuation lines (with the leading whitespace) joined by `\n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph<'a> {
    fields: Vec<(&'a str, Cow<'a, str>)>,
    /// 1-based line number of the paragraph's first field.
    pub line: usize,
}

impl<'a> Paragraph<'a> {
    /// The value of `name` (field names are case-insensitive), first line trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The value of `name` as logical lines: continuation whitespace removed, ` .` lines
    /// turned into empty lines (the deb822 convention for blank lines in a value).
    pub fn lines(&self, name: &str) -> Option<Vec<String>> {
        let value = self.get(name)?;
        Some(
            value
                .lines()
                .map(|l| {
                    let l = l.trim();
                    if l == "." {
                        String::new()
                    } else {
                        l.to_string()
                    }
                })
                .collect(),
        )
    }

    /// All fields in file order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (*k, v.as_ref()))
    }
}

/// A syntax error: 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Splits `text` into paragraphs.
pub fn parse(text: &str) -> Result<Vec<Paragraph<'_>>, SyntaxError> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    // (field name, start offset of value, end offset of value, owned value if a
    // comment interrupted the continuation lines)
    let mut open: Option<(&str, usize, usize, Option<String>)> = None;
    let mut offset = 0;
    for (idx, raw) in text.split_inclusive('\n').enumerate() {
        let lineno = idx + 1;
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        if line.starts_with('#') {
            if let Some((_, s, e, owned)) = open.as_mut() {
                if owned.is_none() {
                    *owned = Some(text[*s..*e].to_string());
                }
            }
            continue;
        }
        if line.trim().is_empty() {
            close_field(text, &mut open, &mut cur);
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match open.as_mut() {
                Some((_, _, e, owned)) => {
                    let end = start + line.len();
                    match owned {
                        Some(o) => {
                            o.push('\n');
                            o.push_str(line);
                        }
                        None => *e = end,
                    }
                }
                None => {
                    return Err(SyntaxError {
                        line: lineno,
                        message: "continuation line outside a field".to_string(),
                    })
                }
            }
            continue;
        }
        close_field(text, &mut open, &mut cur);
        let Some(colon) = line.find(':') else {
            return Err(SyntaxError {
                line: lineno,
                message: format!("expected \"Field: value\", got {line:?}"),
            });
        };
        let name = line[..colon].trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SyntaxError {
                line: lineno,
                message: format!("invalid field name {name:?}"),
            });
        }
        if cur.fields.is_empty() {
            cur.line = lineno;
        }
        let vstart = start + colon + 1;
        open = Some((name, vstart, start + line.len(), None));
    }
    close_field(text, &mut open, &mut cur);
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn close_field<'a>(
    text: &'a str,
    open: &mut Option<(&'a str, usize, usize, Option<String>)>,
    cur: &mut Paragraph<'a>,
) {
    if let Some((name, s, e, owned)) = open.take() {
        let value = match owned {
            Some(o) => Cow::Owned(o),
            None => Cow::Borrowed(&text[s..e]),
        };
        cur.fields.push((name, value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_continuations_comments() {
        let text = "# leading comment\nPackage: a\nDescription: short\n more\n .\n end\n\n\n\
                    Package: b\n# inside\nDepends: x,\n# between\n y\nversion:  1.0 \n";
        let ps = parse(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("package"), Some("a"));
        assert_eq!(ps[0].line, 2);
        assert_eq!(
            ps[0].lines("Description").unwrap(),
            vec!["short", "more", "", "end"]
        );
        assert_eq!(ps[1].get("Depends"), Some("x,\n y"));
        assert_eq!(ps[1].get("Version"), Some("1.0"));
        assert_eq!(ps[1].line, 9);
    }

    #[test]
    fn crlf_and_missing_trailing_newline() {
        let ps = parse("A: 1\r\nB: 2\r\n\r\nC: 3").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("B"), Some("2"));
        assert_eq!(ps[1].get("C"), Some("3"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A: 1\nnot a field\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse(" dangling\n").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
