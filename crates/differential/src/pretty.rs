//! Readable renderings of requests and responses: `Debug` output with byte strings shown as
//! quoted text (long ones abbreviated) instead of lists of numbers.

use std::fmt::Debug;

/// Values longer than this are abbreviated.
const MAX_SHOWN: usize = 40;

/// `{:?}` of `value`, with byte strings made readable and fields at their default value
/// (`false`, `0`, `""`, `[]`, `None`: what protobuf leaves off the wire) left out.
pub fn show<T: Debug>(value: &T) -> String {
    drop_defaults(&readable(&format!("{value:?}")))
}

/// The length of `ident: DEFAULT` at the start of `text`, if it is one.
fn default_field_len(text: &str) -> Option<usize> {
    let ident = text
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count();
    if ident == 0 || !text[ident..].starts_with(": ") {
        return None;
    }
    let value = &text[ident + 2..];
    ["false", "0", "\"\"", "[]", "None"]
        .iter()
        .find(|d| value.starts_with(*d))
        .map(|d| ident + 2 + d.len())
}

/// Removes `ident: DEFAULT` fields from a one-line `Debug` rendering.
fn drop_defaults(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    'outer: while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with("{ ") || rest.starts_with(", ") {
            let sep = &rest[..2];
            let mut j = i + 2;
            while let Some(n) = default_field_len(&s[j..]) {
                if s[j + n..].starts_with(", ") {
                    j += n + 2;
                } else if s[j + n..].starts_with(" }") {
                    // The last field: drop it with its separator.
                    if sep == "{ " {
                        out.push('{');
                        i = j + n + 1;
                    } else {
                        i = j + n;
                    }
                    continue 'outer;
                } else {
                    break;
                }
            }
            out.push_str(sep);
            i = j;
            continue;
        }
        let Some(c) = rest.chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// `{:#?}` of `value`, with byte strings made readable.
pub fn show_pretty<T: Debug>(value: &T) -> String {
    readable(&format!("{value:#?}"))
}

/// Fields whose `Vec<i32>` `Debug` output is not bytes.
const NOT_BYTES: [&str; 1] = ["filters: "];

/// Fields that are byte strings even when empty (`[]` becomes `""`).
const BYTE_FIELDS: [&str; 3] = ["key: ", "range_end: ", "value: "];

/// Rewrites every `[n, n, ...]` list of bytes in a `Debug` rendering as a quoted string.
fn readable(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len().min(1 << 16));
    let mut rest = debug;
    while let Some(open) = rest.find('[') {
        let (before, from) = rest.split_at(open);
        out.push_str(before);
        let close = from.find(']');
        let converted = close.and_then(|close| {
            let inner = &from[1..close];
            let skip = NOT_BYTES.iter().any(|f| out.ends_with(f));
            if skip {
                return None;
            }
            let inner_trim = inner.trim();
            if inner_trim.is_empty() {
                return BYTE_FIELDS
                    .iter()
                    .any(|f| out.ends_with(f))
                    .then(|| ("\"\"".to_owned(), close));
            }
            let bytes: Option<Vec<u8>> = inner_trim
                .split(',')
                .map(|n| n.trim())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse::<u8>().ok())
                .collect();
            bytes.map(|b| (quote(&b), close))
        });
        match converted {
            Some((text, close)) => {
                out.push_str(&text);
                rest = &from[close + 1..];
            }
            None => {
                out.push('[');
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A byte string as an escaped, quoted string, abbreviated when long.
pub fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(MAX_SHOWN)];
    let text = shown.escape_ascii().to_string();
    if bytes.len() > MAX_SHOWN {
        format!("\"{text}\"...({} bytes)", bytes.len())
    } else {
        format!("\"{text}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_left_out() {
        assert_eq!(
            drop_defaults("P { key: \"a\", lease: 0, prev_kv: false }"),
            "P { key: \"a\" }"
        );
        assert_eq!(drop_defaults("P { a: 0, b: [], c: 1 }"), "P { c: 1 }");
        assert_eq!(
            drop_defaults("P { a: 0 }, Q { b: 10 }"),
            "P {}, Q { b: 10 }"
        );
        assert_eq!(
            drop_defaults("R { h: Some(H { x: 0, r: 2 }), kvs: [], more: false }"),
            "R { h: Some(H { r: 2 }) }"
        );
    }

    #[test]
    fn bytes_become_strings() {
        assert_eq!(
            readable("key: [97, 47], filters: [1]"),
            "key: \"a/\", filters: [1]"
        );
        assert_eq!(readable("value: [], kvs: []"), "value: \"\", kvs: []");
        assert_eq!(
            readable("keys: [[97], [98, 0]]"),
            "keys: [\"a\", \"b\\x00\"]"
        );
    }
}
