//! Reading directives out of datadriven text, and writing the text back with new outputs.

use super::{CmdArg, RunError, TestData};

/// Splits a directive line into its command and arguments.
///
/// `cmd a key=val key=(v1, v2) key=(nested(1, 2), x)`: values in parentheses are separated by
/// top-level commas (spaces after a comma are skipped). An empty (or blank) line gives an empty
/// command. The error says at which column parsing failed.
pub fn parse_line(line: &str) -> Result<(String, Vec<CmdArg>), String> {
    let orig = line.trim();
    let mut rest = orig;
    if rest.is_empty() {
        return Ok((String::new(), Vec::new()));
    }
    let error = |rest: &str| {
        let column = orig.len() - rest.len() + 1;
        format!("cannot parse directive at column {column}: {orig}")
    };
    // Splits `rest` at the first of `chars` (or its end).
    fn until<'a>(rest: &mut &'a str, chars: &[char]) -> &'a str {
        let idx = rest.find(chars).unwrap_or(rest.len());
        let (head, tail) = rest.split_at(idx);
        *rest = tail;
        head
    }

    let cmd = until(&mut rest, &[' ']);
    if cmd.is_empty() {
        return Err(error(rest));
    }
    rest = rest.trim();
    let mut args = Vec::new();
    while !rest.is_empty() {
        let key = until(&mut rest, &[' ', '=']);
        if key.is_empty() {
            return Err(error(rest));
        }
        let mut vals = Vec::new();
        if let Some(after_eq) = rest.strip_prefix('=') {
            rest = after_eq;
            if rest.is_empty() || rest.starts_with(' ') {
                vals.push(String::new());
            } else if !rest.starts_with('(') {
                vals.push(until(&mut rest, &[' ']).to_owned());
            } else {
                // A parenthesised list: cut values at top-level commas.
                let mut nest = 1;
                let mut val_start = 1;
                let mut chars = rest.char_indices().skip(1);
                let end = loop {
                    let Some((pos, c)) = chars.next() else {
                        return Err(error(rest));
                    };
                    match c {
                        ',' if nest == 1 => {
                            vals.push(rest[val_start..pos].to_owned());
                            val_start = pos + 1;
                            // Skip spaces after the comma.
                            while rest[val_start..].starts_with(' ') {
                                val_start += 1;
                                chars.next();
                            }
                        }
                        '(' => nest += 1,
                        ')' => {
                            nest -= 1;
                            if nest == 0 {
                                break pos;
                            }
                        }
                        _ => {}
                    }
                };
                vals.push(rest[val_start..end].to_owned());
                rest = rest[end + 1..].trim();
            }
        }
        args.push(CmdArg {
            key: key.to_owned(),
            vals,
        });
        rest = rest.trim();
    }
    Ok((cmd.to_owned(), args))
}

/// Walks the lines of a datadriven file, keeping the rewritten text as it goes.
pub(super) struct Reader<'a> {
    source: &'a str,
    lines: Vec<&'a str>,
    /// The index of the next line to read.
    next: usize,
    rewritten: String,
}

impl<'a> Reader<'a> {
    pub(super) fn new(source: &'a str, text: &'a str) -> Self {
        Reader {
            source,
            // Like Go's line scanner: split at '\n', drop a trailing '\r', no empty last line.
            lines: text.lines().collect(),
            next: 0,
            rewritten: String::new(),
        }
    }

    fn scan(&mut self) -> Option<&'a str> {
        let line = self.lines.get(self.next).copied()?;
        self.next += 1;
        Some(line)
    }

    fn emit(&mut self, line: &str) {
        self.rewritten.push_str(line);
        self.rewritten.push('\n');
    }

    /// The next directive, or `None` at the end of the text.
    pub(super) fn next_directive(&mut self) -> Result<Option<TestData>, RunError> {
        while let Some(raw) = self.scan() {
            self.emit(raw);
            let pos = format!("{}:{}", self.source, self.next);
            let mut line = raw.trim().to_owned();
            if line.starts_with('#') {
                continue;
            }
            // A trailing backslash continues the directive on the next line.
            while line.ends_with('\\') {
                let Some(continued) = self.scan() else { break };
                self.emit(continued);
                line.pop();
                line.push(' ');
                line.push_str(continued.trim());
            }
            let (cmd, cmd_args) = parse_line(&line).map_err(|message| RunError::Parse {
                pos: pos.clone(),
                message,
            })?;
            if cmd.is_empty() {
                continue;
            }
            if cmd == "subtest" {
                return Err(RunError::Parse {
                    pos,
                    message: "subtest directives are not supported".to_owned(),
                });
            }

            let mut input = String::new();
            let mut separator = false;
            while let Some(input_line) = self.scan() {
                if input_line == "----" {
                    separator = true;
                    break;
                }
                self.emit(input_line);
                input.push_str(input_line);
                input.push('\n');
            }
            let expected = if separator {
                self.read_expected(&pos)?
            } else {
                String::new()
            };
            return Ok(Some(TestData {
                pos,
                line,
                cmd,
                cmd_args,
                input: input.trim().to_owned(),
                expected,
            }));
        }
        Ok(None)
    }

    /// Reads the expected output after the first `----` (not emitted: the actual output replaces
    /// it).
    fn read_expected(&mut self, pos: &str) -> Result<String, RunError> {
        let mut expected = String::new();
        let first = self.scan();
        if first == Some("----") {
            // Blank lines allowed: the output ends at two successive `----` lines.
            while let Some(line) = self.scan() {
                if line == "----"
                    && let Some(line2) = self.scan()
                {
                    if line2 == "----" {
                        // The blank line after the closing separators belongs to them.
                        if self.scan().is_some_and(|after| !after.is_empty()) {
                            return Err(RunError::Parse {
                                pos: pos.to_owned(),
                                message:
                                    "non-blank line after end of double ---- separator section"
                                        .to_owned(),
                            });
                        }
                        break;
                    }
                    expected.push_str(line);
                    expected.push('\n');
                    expected.push_str(line2);
                    expected.push('\n');
                    continue;
                }
                expected.push_str(line);
                expected.push('\n');
            }
        } else {
            // The output ends at the first blank line (which is consumed).
            let mut line = first;
            while let Some(l) = line {
                if l.trim().is_empty() {
                    break;
                }
                expected.push_str(l);
                expected.push('\n');
                line = self.scan();
            }
        }
        Ok(expected)
    }

    /// Writes the actual output of the directive just read.
    pub(super) fn emit_output(&mut self, actual: &str) {
        self.emit("----");
        if has_blank_line(actual) {
            self.emit("----");
            self.rewritten.push_str(actual);
            self.emit("----");
            self.emit("----");
            self.emit("");
        } else {
            // `actual` ends in a newline (or is empty), so this adds the separating blank line.
            self.emit(actual);
        }
    }

    /// The rewritten text, without a trailing blank line.
    pub(super) fn into_rewritten(mut self) -> String {
        if self.rewritten.len() > 2 && self.rewritten.ends_with("\n\n") {
            self.rewritten.pop();
        }
        self.rewritten
    }
}

/// Whether `s` contains a blank line (only spaces and tabs, then a newline).
fn has_blank_line(s: &str) -> bool {
    s.split_inclusive('\n').any(|line| {
        line.strip_suffix('\n')
            .is_some_and(|content| content.chars().all(|c| c == ' ' || c == '\t'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(key: &str, vals: &[&str]) -> CmdArg {
        CmdArg {
            key: key.to_owned(),
            vals: vals.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn parses_commands_and_arguments() {
        assert_eq!(parse_line("  "), Ok((String::new(), vec![])));
        assert_eq!(parse_line("cmd"), Ok(("cmd".to_owned(), vec![])));
        assert_eq!(
            parse_line("cmd a b=1 c=(1, 2,3) d= e=(f(x, y), _) g=h=i"),
            Ok((
                "cmd".to_owned(),
                vec![
                    arg("a", &[]),
                    arg("b", &["1"]),
                    arg("c", &["1", "2", "3"]),
                    arg("d", &[""]),
                    arg("e", &["f(x, y)", "_"]),
                    arg("g", &["h=i"]),
                ]
            ))
        );
        assert_eq!(
            parse_line("committed cfg=(1, 2) idx=()"),
            Ok((
                "committed".to_owned(),
                vec![arg("cfg", &["1", "2"]), arg("idx", &[""])]
            ))
        );
    }

    #[test]
    fn reports_the_column_of_a_parse_error() {
        assert_eq!(
            parse_line("cmd a=(1, 2"),
            Err("cannot parse directive at column 7: cmd a=(1, 2".to_owned())
        );
        assert_eq!(
            parse_line("cmd =1"),
            Err("cannot parse directive at column 5: cmd =1".to_owned())
        );
    }

    #[test]
    fn blank_line_detection() {
        assert!(!has_blank_line("a\nb\n"));
        assert!(has_blank_line("a\n\nb\n"));
        assert!(has_blank_line("\n"));
        assert!(has_blank_line("a\n \t\nb"));
        assert!(!has_blank_line("a\n  "));
        assert!(!has_blank_line(""));
    }
}
