//! All human output: cargo-style status lines, warnings and errors on stderr.
//! Machine output (`--message-format json`) goes to stdout, also only from here.

use std::io::{IsTerminal, Write};

/// `--color`: when to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// `--message-format`: human lines on stderr, or JSON objects (one per line) on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    #[default]
    Human,
    Json,
}

pub struct Output {
    color: bool,
    quiet: bool,
    verbose: u8,
    tty: bool,
    /// Stdout is gone (a closed pipe, as with `| head`): stop writing there, quietly.
    stdout_closed: std::cell::Cell<bool>,
    /// The first other error writing to stdout; the command then fails (see [`Shell::finish`]).
    stdout_error: std::cell::RefCell<Option<std::io::Error>>,
}

/// How a finding is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Error,
    Warning,
    Note,
}

impl Tone {
    fn label(self) -> &'static str {
        match self {
            Tone::Error => "error",
            Tone::Warning => "warning",
            Tone::Note => "note",
        }
    }
}

/// A progress bar on stderr for long writes; drawn only on a terminal, at most ten times a
/// second, and erased when done.
pub struct Progress {
    total: u64,
    done: u64,
    last: std::time::Instant,
    drawn: bool,
    color: bool,
}

/// Bundles smaller than this finish before a bar would help.
const PROGRESS_MIN: u64 = 16 << 20;

impl Progress {
    pub fn advance(&mut self, bytes: u64) {
        self.done = (self.done + bytes).min(self.total);
        if self.last.elapsed() < std::time::Duration::from_millis(100) {
            return;
        }
        self.last = std::time::Instant::now();
        let width = 30;
        let filled = (self.done * width / self.total.max(1)) as usize;
        let bar: String = (0..width as usize)
            .map(|i| {
                if i < filled {
                    '='
                } else if i == filled {
                    '>'
                } else {
                    ' '
                }
            })
            .collect();
        let verb = if self.color {
            format!("{CYAN}{:>12}{RESET}", "Writing")
        } else {
            format!("{:>12}", "Writing")
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{verb} [{bar}] {}/{} MiB",
            self.done >> 20,
            self.total >> 20
        );
        let _ = err.flush();
        self.drawn = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

const GREEN: &str = "\x1b[1m\x1b[92m";
const CYAN: &str = "\x1b[1m\x1b[96m";
const YELLOW: &str = "\x1b[1m\x1b[93m";
const RED: &str = "\x1b[1m\x1b[91m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Decide colour the way cargo does: `--color`, then `CARGO_TERM_COLOR`, `NO_COLOR`,
/// `CLICOLOR_FORCE`, then whether stderr is a terminal.
pub fn use_color(
    choice: Option<ColorChoice>,
    env: impl Fn(&str) -> Option<String>,
    tty: bool,
) -> bool {
    let choice = choice.or_else(|| match env("CARGO_TERM_COLOR").as_deref() {
        Some("always") => Some(ColorChoice::Always),
        Some("never") => Some(ColorChoice::Never),
        _ => None,
    });
    match choice {
        Some(ColorChoice::Always) => true,
        Some(ColorChoice::Never) => false,
        _ => {
            if env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                false
            } else if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
                true
            } else {
                tty
            }
        }
    }
}

impl Output {
    pub fn new(color: Option<ColorChoice>, quiet: bool, verbose: u8) -> Output {
        let tty = std::io::stderr().is_terminal();
        Output {
            color: use_color(color, |k| std::env::var(k).ok(), tty),
            quiet,
            verbose,
            tty,
            stdout_closed: std::cell::Cell::new(false),
            stdout_error: std::cell::RefCell::new(None),
        }
    }

    /// Write to stdout: a closed pipe ends the output quietly (as cargo does); any other error
    /// is kept for [`Shell::finish`], so a consumer never gets truncated output with exit 0.
    fn stdout(&self, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
        if self.stdout_closed.get() || self.stdout_error.borrow().is_some() {
            return;
        }
        let mut out = std::io::stdout().lock();
        match write(&mut out).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => self.stdout_closed.set(true),
            Err(e) => *self.stdout_error.borrow_mut() = Some(e),
        }
    }

    /// The error, if writing to stdout failed other than by a closed pipe.
    pub fn finish(&self) -> anyhow::Result<()> {
        match self.stdout_error.borrow_mut().take() {
            Some(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
            None => Ok(()),
        }
    }

    /// A progress bar for writing `total` bytes, when stderr is a terminal and the write is
    /// long enough to want one.
    pub fn progress(&self, total: u64) -> Option<Progress> {
        (self.tty && !self.quiet && total >= PROGRESS_MIN).then(|| Progress {
            total,
            done: 0,
            // Draw the first frame at once.
            last: std::time::Instant::now() - std::time::Duration::from_secs(1),
            drawn: false,
            color: self.color,
        })
    }

    pub fn color(&self) -> bool {
        self.color
    }

    pub fn verbose(&self) -> u8 {
        self.verbose
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// `    Bundling billing v1.2.0 (...)`: verb right-aligned in 12 columns, bold green.
    pub fn status(&self, verb: &str, message: impl std::fmt::Display) {
        if !self.quiet {
            self.line(&format!(
                "{} {message}",
                self.paint(GREEN, &format!("{verb:>12}"))
            ));
        }
    }

    /// Like [`Shell::status`], shown only with `-v`.
    pub fn verbose_status(&self, verb: &str, message: impl std::fmt::Display) {
        if self.verbose > 0 && !self.quiet {
            self.line(&format!(
                "{} {message}",
                self.paint(CYAN, &format!("{verb:>12}"))
            ));
        }
    }

    pub fn warn(&self, message: impl std::fmt::Display) {
        self.line(&format!(
            "{}{} {message}",
            self.paint(YELLOW, "warning"),
            self.paint(BOLD, ":")
        ));
    }

    pub fn error(&self, message: impl std::fmt::Display) {
        self.line(&format!(
            "{}{} {message}",
            self.paint(RED, "error"),
            self.paint(BOLD, ":")
        ));
    }

    /// An error and its causes, the one way every command reports one: the message, then each
    /// cause under `Caused by:`.
    pub fn error_chain(&self, err: &anyhow::Error) {
        let mut text = err.to_string();
        for cause in err.chain().skip(1) {
            text.push_str(&format!("\n\nCaused by:\n  {cause}"));
        }
        self.error(text);
    }

    /// A line of a command's own output on stdout (e.g. a verification report).
    pub fn out(&self, text: impl std::fmt::Display) {
        self.stdout(|out| writeln!(out, "{text}"));
    }

    /// `error[code]: ...` / `warning[code]: ...` / `note[code]: ...` on stdout.
    pub fn finding(&self, tone: Tone, code: &str, text: impl std::fmt::Display) {
        let style = match tone {
            Tone::Error => RED,
            Tone::Warning => YELLOW,
            Tone::Note => CYAN,
        };
        self.out(format!(
            "{}{} {text}",
            self.paint(style, &format!("{}[{code}]", tone.label())),
            self.paint(BOLD, ":")
        ));
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// One line of JSON on stdout.
    pub fn json(&self, value: &serde_json::Value) {
        self.stdout(|out| writeln!(out, "{value}"));
    }

    /// One JSON line: the object `head` with `key` set to the items of `list`, written as they
    /// come so the list is never held. Stops at the first item that is an error.
    pub fn json_with_list(
        &self,
        head: &serde_json::Value,
        key: &str,
        list: impl Iterator<Item = anyhow::Result<serde_json::Value>>,
    ) -> anyhow::Result<()> {
        if self.stdout_closed.get() {
            return Ok(());
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut head = head.to_string();
        // Invariant: `head` is an object (it ends in `}`); an empty one gets no comma.
        let close = head.pop();
        debug_assert_eq!(close, Some('}'));
        let comma = if head.len() > 1 { "," } else { "" };
        write!(out, "{head}{comma}{}:[", serde_json::Value::from(key))?;
        for (i, item) in list.enumerate() {
            let item = item?;
            write!(out, "{}{item}", if i == 0 { "" } else { "," })?;
        }
        writeln!(out, "]}}")?;
        out.flush()?;
        Ok(())
    }
}

/// What a line from elsewhere (a host's log or stderr) may show at most, in characters.
pub const MAX_LINE: usize = 1000;

/// Text from elsewhere (a service's log, a host's stderr) made safe for a terminal: control
/// characters other than tab shown escaped (`\x1b`), invalid UTF-8 replaced, each line cut at
/// [`MAX_LINE`] characters (saying how much was cut), only the last `max_lines` lines kept.
/// Callers bound the bytes they read; this bounds what is printed.
pub fn printable(text: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max_lines);
    let mut out = String::new();
    for line in &lines[skip..] {
        let mut shown = 0;
        let mut cut = 0;
        for c in line.chars() {
            if shown >= MAX_LINE {
                cut += 1;
                continue;
            }
            shown += 1;
            if c.is_control() && c != '\t' {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        if cut > 0 {
            out.push_str(&format!(" [… {cut} more characters]"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_from_elsewhere_is_printable() {
        let long = "x".repeat(super::MAX_LINE + 5);
        let cases: [(&[u8], usize, String); 5] = [
            (b"plain\nlines\n", 10, "plain\nlines\n".into()),
            (
                b"\x1b[31mred\x1b[0m\r\n",
                10,
                "\\x1b[31mred\\x1b[0m\n".into(),
            ),
            (b"a\nb\nc\n", 2, "b\nc\n".into()),
            (b"\xff\x07tab\tkept", 10, "\u{fffd}\\x07tab\tkept\n".into()),
            (
                long.as_bytes(),
                1,
                format!("{} [… 5 more characters]\n", "x".repeat(super::MAX_LINE)),
            ),
        ];
        for (input, lines, want) in cases {
            assert_eq!(super::printable(input, lines), want, "{input:?}");
        }
    }

    use super::*;

    #[test]
    fn color_choice() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!use_color(None, env(&[]), false));
        assert!(use_color(None, env(&[]), true));
        assert!(!use_color(None, env(&[("NO_COLOR", "1")]), true));
        assert!(use_color(None, env(&[("CLICOLOR_FORCE", "1")]), false));
        assert!(!use_color(None, env(&[("CLICOLOR_FORCE", "0")]), false));
        assert!(use_color(
            Some(ColorChoice::Always),
            env(&[("NO_COLOR", "1")]),
            false
        ));
        assert!(!use_color(Some(ColorChoice::Never), env(&[]), true));
        assert!(use_color(
            None,
            env(&[("CARGO_TERM_COLOR", "always")]),
            false
        ));
    }
}
