//! A runner for etcd's datadriven test files (the `cockroachdb/datadriven` format).
//!
//! A file is a sequence of directives, separated by blank lines and `#` comments:
//!
//! ```text
//! # comment
//! command arg key=val key=(v1, v2)
//! optional input lines
//! ----
//! expected output
//! ```
//!
//! Expected output that contains blank lines is wrapped in a second pair of separators
//! (`----` / `----` before, `----` / `----` after). [`run_test`] parses the text, calls a
//! handler for each directive, compares the handler's output with the expected output, and
//! rebuilds the file with the actual outputs (what `-rewrite` does in Go). The runner takes
//! the text as a string: reading files is the caller's business.
//!
//! The handlers for etcd's suites live in [`quorum`] and [`confchange`]; [`Suite`] picks one
//! by name.

pub mod confchange;
pub mod interaction;
mod parse;
pub mod quorum;

use std::fmt;

pub use parse::parse_line;

/// One `key=value` (or `key=(v1, v2)`, or bare `key`) argument of a directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdArg {
    /// The key.
    pub key: String,
    /// The values: none for a bare key, one for `key=val`, several for `key=(v1, v2)`.
    pub vals: Vec<String>,
}

impl CmdArg {
    /// Value `i`, or an error naming the argument.
    pub fn val(&self, i: usize) -> Result<&str, Fatal> {
        self.vals
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| Fatal(format!("cannot scan index {i} of key {}", self.key)))
    }

    /// Value `i` as an unsigned decimal integer.
    pub fn scan_u64(&self, i: usize) -> Result<u64, Fatal> {
        parse_uint(self.val(i)?).map_err(Fatal)
    }

    /// Value `i` as a boolean (Go's `strconv.ParseBool` spellings: `true`, `t`, `1`, ...).
    pub fn scan_bool(&self, i: usize) -> Result<bool, Fatal> {
        parse_bool(self.val(i)?).map_err(Fatal)
    }
}

impl fmt::Display for CmdArg {
    /// `key`, `key=val` or `key=(v1, v2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vals.as_slice() {
            [] => f.write_str(&self.key),
            [val] => write!(f, "{}={val}", self.key),
            vals => write!(f, "{}=({})", self.key, vals.join(", ")),
        }
    }
}

/// A directive, as handed to a handler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestData {
    /// `source:line` of the directive, for messages.
    pub pos: String,
    /// The directive line as parsed (continuation lines joined).
    pub line: String,
    /// The command: the first word of the directive line.
    pub cmd: String,
    /// The arguments after the command.
    pub cmd_args: Vec<CmdArg>,
    /// The lines between the directive line and the `----` separator, trimmed.
    pub input: String,
    /// The expected output below the separator.
    pub expected: String,
}

impl TestData {
    /// Whether the directive has an argument `key`.
    pub fn has_arg(&self, key: &str) -> bool {
        self.cmd_args.iter().any(|arg| arg.key == key)
    }

    /// The argument `key`, if present.
    pub fn arg(&self, key: &str) -> Option<&CmdArg> {
        self.cmd_args.iter().find(|arg| arg.key == key)
    }

    /// The single value of the required argument `key`, as a boolean.
    pub fn scan_bool(&self, key: &str) -> Result<bool, Fatal> {
        let arg = self.single_val_arg(key)?;
        arg.scan_bool(0)
            .map_err(|e| Fatal(format!("{key}: failed to scan argument 0: {e}")))
    }

    /// The single value of the required argument `key`, as an unsigned integer.
    pub fn scan_u64(&self, key: &str) -> Result<u64, Fatal> {
        let arg = self.single_val_arg(key)?;
        arg.scan_u64(0)
            .map_err(|e| Fatal(format!("{key}: failed to scan argument 0: {e}")))
    }

    fn single_val_arg(&self, key: &str) -> Result<&CmdArg, Fatal> {
        let arg = self
            .arg(key)
            .ok_or_else(|| Fatal(format!("missing argument: {key}")))?;
        if arg.vals.len() != 1 {
            return Err(Fatal(format!(
                "{key}: got 1 destinations, but {} values",
                arg.vals.len()
            )));
        }
        Ok(arg)
    }
}

/// A handler's refusal to go on with a file (Go's `t.Fatal`): bad arguments, unknown command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Why a file could not be run to the end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The file is not valid datadriven text.
    #[error("{pos}: {message}")]
    Parse {
        /// `source:line`.
        pos: String,
        /// What is wrong.
        message: String,
    },
    /// A handler gave up on a directive.
    #[error("{pos}: {message}")]
    Fatal {
        /// `source:line` of the directive.
        pos: String,
        /// The handler's message.
        message: String,
    },
    /// There is no runner for this suite yet.
    #[error("{0}")]
    Unsupported(String),
}

/// A directive whose actual output differs from the expected one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// `source:line` of the directive.
    pub pos: String,
    /// The directive line.
    pub line: String,
    /// The expected output.
    pub expected: String,
    /// The handler's output.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    /// The directive and the first differing output line, with a little context.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.pos, self.line)?;
        let expected: Vec<&str> = self.expected.split_inclusive('\n').collect();
        let actual: Vec<&str> = self.actual.split_inclusive('\n').collect();
        let first = expected
            .iter()
            .zip(&actual)
            .take_while(|(e, a)| e == a)
            .count();
        writeln!(f, "  output line {}:", first + 1)?;
        const CONTEXT: usize = 3;
        let show = |f: &mut fmt::Formatter<'_>, sign: char, lines: &[&str]| -> fmt::Result {
            let rest = lines.get(first..).unwrap_or_default();
            if rest.is_empty() {
                return writeln!(f, "  {sign} <end of output>");
            }
            for line in rest.iter().take(CONTEXT) {
                writeln!(f, "  {sign} {:?}", line.strip_suffix('\n').unwrap_or(line))?;
            }
            if rest.len() > CONTEXT {
                writeln!(f, "  {sign} ... ({} more lines)", rest.len() - CONTEXT)?;
            }
            Ok(())
        };
        show(f, '-', &expected)?;
        show(f, '+', &actual)
    }
}

/// What running a file produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// The number of directives run.
    pub directives: usize,
    /// The directives whose output differed from the expected output, in file order.
    pub mismatches: Vec<Mismatch>,
    /// The file rebuilt with the actual outputs (Go's `-rewrite`).
    pub rewritten: String,
}

impl RunOutcome {
    /// Whether every directive produced exactly its expected output.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Runs every directive of `text` through `handler`, comparing outputs with the expected ones.
///
/// `source` names the text in positions (`source:line`). The handler's output gets a final
/// newline if it is non-empty and lacks one, as in Go; a [`Fatal`] from the handler stops the
/// run.
pub fn run_test(
    source: &str,
    text: &str,
    mut handler: impl FnMut(&TestData) -> Result<String, Fatal>,
) -> Result<RunOutcome, RunError> {
    let mut reader = parse::Reader::new(source, text);
    let mut outcome = RunOutcome::default();
    while let Some(data) = reader.next_directive()? {
        let mut actual = handler(&data).map_err(|Fatal(message)| RunError::Fatal {
            pos: data.pos.clone(),
            message,
        })?;
        if !actual.is_empty() && !actual.ends_with('\n') {
            actual.push('\n');
        }
        reader.emit_output(&actual);
        outcome.directives += 1;
        if actual != data.expected {
            outcome.mismatches.push(Mismatch {
                pos: data.pos,
                line: data.line,
                expected: data.expected,
                actual,
            });
        }
    }
    outcome.rewritten = reader.into_rewritten();
    Ok(outcome)
}

/// The test suites of etcd's raft with a runner here, named after their folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `quorum/`: majority and joint commit indexes and votes.
    Quorum,
    /// `confchange/`: the configuration changer.
    ConfChange,
    /// `interaction/`: whole Raft nodes exchanging messages.
    Interaction,
}

impl Suite {
    /// The suite for a folder name (`quorum`, `confchange`, `interaction`).
    pub fn from_dir_name(name: &str) -> Option<Suite> {
        match name {
            "quorum" => Some(Suite::Quorum),
            "confchange" => Some(Suite::ConfChange),
            "interaction" => Some(Suite::Interaction),
            _ => None,
        }
    }

    /// The folder name of the suite.
    pub fn dir_name(self) -> &'static str {
        match self {
            Suite::Quorum => "quorum",
            Suite::ConfChange => "confchange",
            Suite::Interaction => "interaction",
        }
    }

    /// Runs one file of this suite (each file starts from a fresh state).
    pub fn run(self, source: &str, text: &str) -> Result<RunOutcome, RunError> {
        match self {
            Suite::Quorum => run_test(source, text, quorum::handle),
            Suite::ConfChange => {
                let mut suite = confchange::ConfChangeSuite::new();
                run_test(source, text, |d| suite.handle(d))
            }
            Suite::Interaction => {
                let mut env = interaction::InteractionEnv::new();
                run_test(source, text, |d| env.handle(d))
            }
        }
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)`, with its error messages.
pub(crate) fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    s.parse::<u64>()
        .map_err(|_| format!("strconv.ParseUint: parsing {s:?}: value out of range"))
}

/// Go's `strconv.ParseBool`, with its error message.
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

#[cfg(test)]
mod tests;
