//! Running one shell command over the serial console.
//!
//! The command is sent as one line:
//!
//! ```text
//! printf '%s-%s\n' KEEL-RUN-<id> BEGIN; command eval '<cmd>' </dev/null; printf '%s-%s:%d\n' KEEL-RUN-<id> END $?
//! ```
//!
//! `eval` (with the command single-quoted) runs it in the console shell itself
//! and lets it end in `&` or `;`. `command` keeps a syntax error in it from
//! aborting the rest of the line (it becomes exit code 2). Standard input is
//! `/dev/null` so that the command cannot swallow console input.
//!
//! The shell echoes the line back, but the echo only contains
//! `KEEL-RUN-<id> BEGIN` (with a space), while the output of `printf` contains
//! `KEEL-RUN-<id>-BEGIN` (with a dash), so the markers are only ever found in
//! real output. The command's output is what lies between the end of the BEGIN
//! line and the END marker; its exit code follows the END marker.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::console::{clean_for_display, find};

/// What a command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    /// The shell's `$?` after the command.
    pub exit_code: i32,
    /// stdout and stderr of the command as the console showed them, with `\r`
    /// and terminal escape sequences removed. Kernel messages printed to the
    /// console meanwhile end up here too.
    pub output: String,
}

impl CmdOutput {
    /// True when the exit code is 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// The two markers of one command run.
pub(crate) struct Markers {
    tag: String,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Markers {
    pub(crate) fn new() -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self {
            tag: format!("KEEL-RUN-{}-{id}", std::process::id()),
        }
    }

    /// The line to type into the guest's shell, newline included.
    pub(crate) fn wrap(&self, cmd: &str) -> String {
        let tag = &self.tag;
        let quoted = cmd.replace('\'', "'\\''");
        format!(
            "printf '%s-%s\\n' {tag} BEGIN; command eval '{quoted}' </dev/null; \
             printf '%s-%s:%d\\n' {tag} END $?\n"
        )
    }

    /// Parse the command's result from console output captured since `from`,
    /// or `None` while it is not complete.
    pub(crate) fn parse(&self, buf: &[u8], from: usize) -> Option<CmdOutput> {
        let begin = format!("{}-BEGIN", self.tag);
        let end = format!("{}-END:", self.tag);
        let begin_at = find(buf, begin.as_bytes(), from)?;
        let nl = find(buf, b"\n", begin_at)?;
        let out_start = nl + 1;
        let end_at = find(buf, end.as_bytes(), out_start)?;
        let code_start = end_at + end.len();
        let code_end = find(buf, b"\n", code_start)?;
        let code_text = clean_for_display(&buf[code_start..code_end]);
        // A garbled exit code (console noise) is reported as -1 rather than
        // waiting forever for a marker that already went by.
        let exit_code = code_text.trim().parse().unwrap_or(-1);
        Some(CmdOutput {
            exit_code,
            output: clean_for_display(&buf[out_start..end_at]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console_for(m: &Markers, cmd: &str, output: &str, code: i32) -> Vec<u8> {
        // What a busybox shell on a serial line shows: prompt, echo, output.
        let tag = &m.tag;
        let echo = m.wrap(cmd).replace('\n', "\r\n");
        format!("~ # {echo}{tag}-BEGIN\r\n{output}{tag}-END:{code}\r\n~ # ").into_bytes()
    }

    #[test]
    fn parses_output_and_exit_code_ignoring_echo() {
        let m = Markers::new();
        let buf = console_for(&m, "echo hi; false", "hi\r\n", 1);
        let out = m.parse(&buf, 0).unwrap();
        assert_eq!(out.exit_code, 1);
        assert_eq!(out.output, "hi\n");
        assert!(!out.success());
    }

    #[test]
    fn output_without_trailing_newline() {
        let m = Markers::new();
        let buf = console_for(&m, "printf abc", "abc", 0);
        let out = m.parse(&buf, 0).unwrap();
        assert_eq!(
            out,
            CmdOutput {
                exit_code: 0,
                output: "abc".into()
            }
        );
    }

    #[test]
    fn incomplete_output_is_none() {
        let m = Markers::new();
        let buf = console_for(&m, "true", "", 42);
        // Cut before the newline that ends the exit code.
        let cut = buf.len() - "\r\n~ # ".len();
        assert!(m.parse(&buf[..cut - 1], 0).is_none());
        assert_eq!(m.parse(&buf, 0).unwrap().exit_code, 42);
        // Only the echo has arrived: no marker may match.
        let echo = m.wrap("true");
        assert!(m.parse(echo.as_bytes(), 0).is_none());
    }

    #[test]
    fn command_is_quoted_for_eval() {
        let m = Markers::new();
        let line = m.wrap("echo 'a b' &");
        assert!(
            line.contains(r#"eval 'echo '\''a b'\'' &' </dev/null"#),
            "{line}"
        );
        assert!(line.ends_with(" END $?\n"), "{line}");
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn markers_are_unique() {
        assert_ne!(Markers::new().tag, Markers::new().tag);
    }
}
