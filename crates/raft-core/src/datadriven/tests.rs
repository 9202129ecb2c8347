//! Tests of the runner on small inline files.

use super::*;

/// Echoes the command's input, or for `args` the arguments, or for `blank` an output with a
/// blank line.
fn echo(d: &TestData) -> Result<String, Fatal> {
    match d.cmd.as_str() {
        "echo" => Ok(d.input.clone()),
        "args" => Ok(d
            .cmd_args
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")),
        "blank" => Ok("a\n\nb\n".to_owned()),
        "empty" => Ok(String::new()),
        other => Err(Fatal(format!("unknown command: {other}"))),
    }
}

#[test]
fn matching_file_passes_and_rewrites_to_itself() -> Result<(), RunError> {
    let text = "\
# A comment.

echo
hello
----
hello

args a b=1 c=(1, 2)
----
a b=1 c=(1, 2)


blank
----
----
a

b
----
----

empty
----
";
    let outcome = run_test("t.txt", text, echo)?;
    assert_eq!(outcome.directives, 4);
    assert!(outcome.passed(), "{:?}", outcome.mismatches);
    assert_eq!(outcome.rewritten, text);
    Ok(())
}

#[test]
fn mismatch_is_reported_and_rewritten() -> Result<(), RunError> {
    let text = "echo\nhello\n----\nbye\n\necho\nsame\n----\nsame\n";
    let outcome = run_test("t.txt", text, echo)?;
    assert_eq!(outcome.directives, 2);
    assert_eq!(outcome.mismatches.len(), 1);
    let m = &outcome.mismatches[0];
    assert_eq!(m.pos, "t.txt:1");
    assert_eq!(
        (m.expected.as_str(), m.actual.as_str()),
        ("bye\n", "hello\n")
    );
    assert_eq!(
        m.to_string(),
        "t.txt:1: echo\n  output line 1:\n  - \"bye\"\n  + \"hello\"\n"
    );
    assert_eq!(
        outcome.rewritten,
        "echo\nhello\n----\nhello\n\necho\nsame\n----\nsame\n"
    );
    Ok(())
}

#[test]
fn output_with_blank_lines_must_use_double_separators() -> Result<(), RunError> {
    // Single separator: the expected output stops at the first blank line.
    let text = "blank\n----\na\n\n# b\n";
    let outcome = run_test("t.txt", text, echo)?;
    assert!(!outcome.passed());
    assert_eq!(outcome.mismatches[0].expected, "a\n");
    assert_eq!(
        outcome.rewritten,
        "blank\n----\n----\na\n\nb\n----\n----\n\n# b\n"
    );
    Ok(())
}

#[test]
fn directive_without_separator_expects_nothing() -> Result<(), RunError> {
    let outcome = run_test("t.txt", "echo\nx", echo)?;
    assert_eq!(outcome.mismatches.len(), 1);
    assert_eq!(outcome.rewritten, "echo\nx\n----\nx\n");
    let outcome = run_test("t.txt", "empty\n", echo)?;
    assert!(outcome.passed());
    Ok(())
}

#[test]
fn continuation_lines_are_joined() -> Result<(), RunError> {
    let text = "args a \\\n   b=2\n----\na b=2\n";
    let outcome = run_test("t.txt", text, echo)?;
    assert!(outcome.passed(), "{:?}", outcome.mismatches);
    assert_eq!(outcome.rewritten, text);
    Ok(())
}

#[test]
fn fatal_and_parse_errors_stop_the_run() {
    assert_eq!(
        run_test("t.txt", "\n\nnope\n----\n", echo),
        Err(RunError::Fatal {
            pos: "t.txt:3".to_owned(),
            message: "unknown command: nope".to_owned()
        })
    );
    assert_eq!(
        run_test("t.txt", "args a=(1\n----\n", echo),
        Err(RunError::Parse {
            pos: "t.txt:1".to_owned(),
            message: "cannot parse directive at column 8: args a=(1".to_owned()
        })
    );
    assert!(matches!(
        run_test("t.txt", "blank\n----\n----\na\n----\n----\njunk\n", echo),
        Err(RunError::Parse { .. })
    ));
}

#[test]
fn go_number_parsing() {
    assert_eq!(parse_uint("42"), Ok(42));
    assert_eq!(
        parse_uint("x1"),
        Err("strconv.ParseUint: parsing \"x1\": invalid syntax".to_owned())
    );
    assert_eq!(
        parse_uint("-1"),
        Err("strconv.ParseUint: parsing \"-1\": invalid syntax".to_owned())
    );
    assert_eq!(
        parse_uint("18446744073709551616"),
        Err("strconv.ParseUint: parsing \"18446744073709551616\": value out of range".to_owned())
    );
    assert_eq!(parse_bool("True"), Ok(true));
    assert_eq!(parse_bool("0"), Ok(false));
    assert!(parse_bool("yes").is_err());
}

#[test]
fn suites_are_named_after_folders() {
    for suite in [Suite::Quorum, Suite::ConfChange, Suite::Interaction] {
        assert_eq!(Suite::from_dir_name(suite.dir_name()), Some(suite));
    }
    assert_eq!(Suite::from_dir_name("testdata"), None);
    assert_eq!(
        Suite::Interaction.run("x.txt", "").map(|o| o.directives),
        Ok(0)
    );
}
