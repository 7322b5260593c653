//! URLs as Ignition reads them: the scheme, the checks Go's `net/url`
//! makes that Ignition's validation relies on, and RFC 2397 `data:` URLs
//! (parsed as strictly as the `dataurl` library Ignition uses).

use base64::Engine;

/// A parsed URL: just what validation and fetching need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    /// Lower-cased; empty for a relative reference such as `/etc/x`.
    pub scheme: String,
    /// Everything after `scheme:`.
    pub rest: &'a str,
}

/// Why a URL does not parse (Ignition reports all of these as
/// `unable to parse url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("missing protocol scheme")]
    MissingScheme,
    #[error("invalid control character in URL")]
    Control,
    #[error("missing ']' in host")]
    Bracket,
    #[error("invalid character {0:?} in host name")]
    HostChar(char),
    #[error("invalid port {0:?}")]
    Port(String),
    #[error("invalid URL escape {0:?}")]
    Escape(String),
}

fn is_scheme_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || (!first && (c.is_ascii_digit() || matches!(c, '+' | '-' | '.')))
}

/// Checks `%XX` escapes in `s`.
fn check_escapes(s: &str) -> Result<(), UrlError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                b.len() >= i + 3 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                let end = (i + 3).min(b.len());
                return Err(UrlError::Escape(
                    String::from_utf8_lossy(&b[i..end]).into_owned(),
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn check_authority(auth: &str) -> Result<(), UrlError> {
    let host_port = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (_, after) = rest.split_once(']').ok_or(UrlError::Bracket)?;
        ("", after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%".contains(*c) || !c.is_ascii()))
    {
        return Err(UrlError::HostChar(c));
    }
    check_escapes(host)?;
    if let Some(p) = port {
        if !p.chars().all(|c| c.is_ascii_digit()) {
            return Err(UrlError::Port(p.to_string()));
        }
    }
    Ok(())
}

/// Parses `s` the way Go's `url.Parse` accepts or refuses it.
pub fn parse(s: &str) -> Result<Url<'_>, UrlError> {
    if s.chars().any(|c| c.is_ascii_control()) {
        return Err(UrlError::Control);
    }
    let mut scheme = String::new();
    let mut rest = s;
    for (i, c) in s.char_indices() {
        if c == ':' {
            if i == 0 {
                return Err(UrlError::MissingScheme);
            }
            scheme = s[..i].to_ascii_lowercase();
            rest = &s[i + 1..];
            break;
        }
        if !is_scheme_char(c, i == 0) {
            break;
        }
    }
    let (before_fragment, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    check_escapes(fragment)?;
    let without_query = before_fragment
        .split_once('?')
        .map_or(before_fragment, |(p, _)| p);
    if scheme.is_empty() || without_query.starts_with('/') {
        // Hierarchical: [//authority]path; the path's escapes are checked.
        let path = match without_query.strip_prefix("//") {
            Some(after) => {
                let (auth, path) = after.find('/').map_or((after, ""), |i| after.split_at(i));
                check_authority(auth)?;
                path
            }
            None => without_query,
        };
        check_escapes(path)?;
    }
    Ok(Url { scheme, rest })
}

/// Why a `data:` URL is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataUrlError {
    #[error("missing data prefix")]
    Prefix,
    #[error("missing comma before data")]
    Comma,
    #[error("missing media type slash")]
    Slash,
    #[error("invalid media type {0:?}")]
    MediaType(String),
    #[error("invalid parameter {0:?}")]
    Parameter(String),
    /// Ignition's wording, which does not name the character.
    #[error("invalid data character")]
    DataChar(char),
    #[error("invalid percent escape in data")]
    Escape,
    #[error("invalid base64 data: {0}")]
    Base64(String),
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c))
}

/// RFC 2396 `uric`: reserved, unreserved or an escape's `%`.
fn is_uric(c: char) -> bool {
    c.is_ascii_alphanumeric() || ";/?:@&=+$,-_.!~*'()%".contains(c)
}

fn unescape(data: &str) -> Result<Vec<u8>, DataUrlError> {
    let b = data.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(DataUrlError::Escape)?;
            let text = std::str::from_utf8(hex).map_err(|_| DataUrlError::Escape)?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| DataUrlError::Escape)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Decodes a `data:` URL (RFC 2397) to its bytes.
pub fn decode_data_url(s: &str) -> Result<Vec<u8>, DataUrlError> {
    let rest = s.strip_prefix("data:").ok_or(DataUrlError::Prefix)?;
    let (meta, data) = rest.split_once(',').ok_or(DataUrlError::Comma)?;
    let mut parts = meta.split(';');
    let media = parts.next().unwrap_or("");
    if !media.is_empty() {
        let (t, sub) = media.split_once('/').ok_or(DataUrlError::Slash)?;
        if !is_token(t) || !is_token(sub) {
            return Err(DataUrlError::MediaType(media.to_string()));
        }
    }
    let params: Vec<&str> = parts.collect();
    let mut base64 = false;
    for (i, p) in params.iter().enumerate() {
        if *p == "base64" && i == params.len() - 1 {
            base64 = true;
            continue;
        }
        match p.split_once('=') {
            Some((k, v)) if is_token(k) && !v.is_empty() => {}
            _ => return Err(DataUrlError::Parameter(p.to_string())),
        }
    }
    if let Some(c) = data.chars().find(|c| !is_uric(*c)) {
        return Err(DataUrlError::DataChar(c));
    }
    let bytes = unescape(data)?;
    if !base64 {
        return Ok(bytes);
    }
    // Go's StdEncoding: padding required; CR and LF are skipped.
    let clean: Vec<u8> = bytes
        .into_iter()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| DataUrlError::Base64(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_go_parse_failures() {
        assert_eq!(parse("HTTPS://example.com/x").unwrap().scheme, "https");
        assert_eq!(parse("/etc/x").unwrap().scheme, "");
        assert_eq!(parse("data:,hi").unwrap().scheme, "data");
        assert_eq!(parse("s3://bucket/key?versionId=1").unwrap().scheme, "s3");
        assert_eq!(parse(":foo"), Err(UrlError::MissingScheme));
        assert_eq!(parse("http://[::1"), Err(UrlError::Bracket));
        assert_eq!(parse("http://a b/"), Err(UrlError::HostChar(' ')));
        assert_eq!(parse("http://a:xx/"), Err(UrlError::Port("xx".into())));
        assert_eq!(parse("http://a/%zz"), Err(UrlError::Escape("%zz".into())));
        assert_eq!(parse("http://a/\n"), Err(UrlError::Control));
        assert!(parse("http://[::1]:8080/x").is_ok());
        assert!(parse("http://10.0.2.2:8080/config.ign?x=%zz").is_ok());
        // Opaque data URLs are not unescaped by the URL parser.
        assert!(parse("data:,%zz").is_ok());
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            decode_data_url("data:,hello%20world").unwrap(),
            b"hello world"
        );
        assert_eq!(decode_data_url("data:;base64,aGk=").unwrap(), b"hi");
        assert_eq!(
            decode_data_url("data:text/plain;charset=utf-8;base64,aGk=").unwrap(),
            b"hi"
        );
        assert_eq!(
            decode_data_url("data:text/plain;charset=utf-8,x").unwrap(),
            b"x"
        );
        assert_eq!(decode_data_url("data:,").unwrap(), b"");
        assert_eq!(decode_data_url("data:"), Err(DataUrlError::Comma));
        assert_eq!(decode_data_url("data:text,x"), Err(DataUrlError::Slash));
        assert_eq!(
            decode_data_url("data:,a b"),
            Err(DataUrlError::DataChar(' '))
        );
        assert_eq!(decode_data_url("data:,%zz"), Err(DataUrlError::Escape));
        assert!(matches!(
            decode_data_url("data:;base64,YQ"),
            Err(DataUrlError::Base64(_))
        ));
        assert!(decode_data_url("DATA:,x").is_err());
    }
}
