//! `--config-file`: etcd's YAML configuration file. Its keys are the flags' long names
//! (`listen-client-urls: http://localhost:2379`), but for the TLS settings, which are grouped
//! under `client-transport-security` and `peer-transport-security` as in etcd; lists may be
//! YAML sequences (`log-outputs: [stderr]`) or comma-separated strings; an empty value (`wal-dir:`)
//! leaves the default, as in etcd. Each entry becomes a `--flag=value` argument, so that a value
//! is parsed and checked exactly as on the command line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use yaml_serde::Value;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML.
    #[error("config file {path} is not valid YAML: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: yaml_serde::Error,
    },
    /// YAML, but not a mapping of etcd's keys.
    #[error("config file {path}: {what}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        what: String,
    },
}

/// `etcd`'s grouping of the TLS settings: `(section, key, flag)`.
const SECURITY: &[(&str, &str, &str)] = &[
    ("client-transport-security", "cert-file", "cert-file"),
    ("client-transport-security", "key-file", "key-file"),
    (
        "client-transport-security",
        "client-cert-auth",
        "client-cert-auth",
    ),
    (
        "client-transport-security",
        "trusted-ca-file",
        "trusted-ca-file",
    ),
    ("client-transport-security", "auto-tls", "auto-tls"),
    ("client-transport-security", "crl-file", "client-crl-file"),
    ("peer-transport-security", "cert-file", "peer-cert-file"),
    ("peer-transport-security", "key-file", "peer-key-file"),
    (
        "peer-transport-security",
        "client-cert-auth",
        "peer-client-cert-auth",
    ),
    (
        "peer-transport-security",
        "trusted-ca-file",
        "peer-trusted-ca-file",
    ),
    ("peer-transport-security", "auto-tls", "peer-auto-tls"),
    ("peer-transport-security", "crl-file", "peer-crl-file"),
    (
        "peer-transport-security",
        "allowed-cn",
        "peer-cert-allowed-cn",
    ),
    (
        "peer-transport-security",
        "allowed-hostname",
        "peer-cert-allowed-hostname",
    ),
];

/// Reads `path` and returns its settings as arguments for the `known` flags (long names).
pub fn args_from_file(path: &Path, known: &HashSet<String>) -> Result<Vec<String>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    args_from_yaml(&text, known).map_err(|e| match e {
        YamlError::Syntax(source) => FileError::Yaml {
            path: path.to_owned(),
            source,
        },
        YamlError::Content(what) => FileError::Content {
            path: path.to_owned(),
            what,
        },
    })
}

/// Why a YAML text is refused.
#[derive(Debug)]
pub enum YamlError {
    /// Not YAML.
    Syntax(yaml_serde::Error),
    /// Not etcd's keys and values.
    Content(String),
}

/// The settings of a configuration file's text, as arguments.
pub fn args_from_yaml(text: &str, known: &HashSet<String>) -> Result<Vec<String>, YamlError> {
    let doc: Value = yaml_serde::from_str(text).map_err(YamlError::Syntax)?;
    let top = match doc {
        // An empty file: every default.
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        _ => return Err(content("expected a mapping of etcd's configuration keys")),
    };
    let mut args = Vec::new();
    let mut seen = HashSet::new();
    for (key, value) in top {
        let key = key_name(&key)?;
        if !seen.insert(key.clone()) {
            return Err(content(format!("{key} is given twice")));
        }
        if SECURITY.iter().any(|(section, _, _)| *section == key) {
            security(&key, value, &mut args)?;
            continue;
        }
        if key == "config-file" {
            return Err(content("config-file cannot be set inside a config file"));
        }
        if !known.contains(&key) {
            return Err(content(format!(
                "unknown key {key:?} (not one of etcd's configuration keys that ferrocd knows)"
            )));
        }
        if let Some(v) = scalar_or_list(&key, &value)? {
            args.push(format!("--{key}={v}"));
        }
    }
    Ok(args)
}

fn content(what: impl Into<String>) -> YamlError {
    YamlError::Content(what.into())
}

fn key_name(key: &Value) -> Result<String, YamlError> {
    match key {
        Value::String(s) => Ok(s.clone()),
        other => Err(content(format!("key {other:?} is not a string"))),
    }
}

/// `client-transport-security:` or `peer-transport-security:`, a mapping of TLS settings.
fn security(section: &str, value: Value, args: &mut Vec<String>) -> Result<(), YamlError> {
    let map = match value {
        Value::Null => return Ok(()),
        Value::Mapping(m) => m,
        _ => return Err(content(format!("{section} must be a mapping"))),
    };
    for (key, value) in map {
        let key = key_name(&key)?;
        let Some((_, _, flag)) = SECURITY.iter().find(|(s, k, _)| *s == section && *k == key)
        else {
            return Err(content(format!("unknown key {section}.{key}")));
        };
        if let Some(v) = scalar_or_list(&format!("{section}.{key}"), &value)? {
            args.push(format!("--{flag}={v}"));
        }
    }
    Ok(())
}

/// A value as the flag takes it: scalars as written, sequences comma-joined; `None` for an
/// empty value (the flag's default).
fn scalar_or_list(key: &str, value: &Value) -> Result<Option<String>, YamlError> {
    match value {
        Value::Null => Ok(None),
        Value::Sequence(items) => {
            let items = items
                .iter()
                .map(|v| scalar(key, v))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(items.join(",")))
        }
        other => scalar(key, other).map(Some),
    }
}

fn scalar(key: &str, value: &Value) -> Result<String, YamlError> {
    match value {
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        _ => Err(content(format!(
            "{key} must be a string, a number, a boolean or a list of them"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn known() -> HashSet<String> {
        [
            "name",
            "snapshot-count",
            "listen-client-urls",
            "log-outputs",
            "cert-file",
            "peer-client-cert-auth",
            "peer-cert-allowed-cn",
            "wal-dir",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    fn args(yaml: &str) -> Vec<String> {
        match args_from_yaml(yaml, &known()) {
            Ok(a) => a,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn refused(yaml: &str) -> String {
        match args_from_yaml(yaml, &known()) {
            Err(YamlError::Content(what)) => what,
            other => panic!("expected a content error, got {other:?}"),
        }
    }

    #[test]
    fn keys_become_flags_and_empty_values_keep_defaults() {
        let yaml = "name: 'infra0'\nsnapshot-count: 10000\nwal-dir:\n\
                    listen-client-urls: http://a:1,http://b:2\nlog-outputs: [stderr, /tmp/l]\n";
        assert_eq!(
            args(yaml),
            vec![
                "--name=infra0",
                "--snapshot-count=10000",
                "--listen-client-urls=http://a:1,http://b:2",
                "--log-outputs=stderr,/tmp/l",
            ]
        );
        assert!(args("").is_empty());
        assert!(args("# only a comment\n").is_empty());
    }

    #[test]
    fn transport_security_sections_map_to_the_tls_flags() {
        let yaml = "client-transport-security:\n  cert-file: /c.pem\n\
                    peer-transport-security:\n  client-cert-auth: true\n  allowed-cn: m1\n";
        assert_eq!(
            args(yaml),
            vec![
                "--cert-file=/c.pem",
                "--peer-client-cert-auth=true",
                "--peer-cert-allowed-cn=m1",
            ]
        );
    }

    #[test]
    fn unknown_misplaced_and_malformed_keys_are_refused_by_name() {
        assert!(refused("listen-client-url: http://a:1\n").contains("listen-client-url"));
        assert!(refused("client-transport-security:\n  certfile: x\n").contains("certfile"));
        assert!(refused("name: {a: 1}\n").contains("name"));
        assert!(refused("config-file: /etc/x.yml\n").contains("config-file"));
        assert!(refused("- name\n").contains("mapping"));
        assert!(matches!(
            args_from_yaml("name: [unclosed\n", &known()),
            Err(YamlError::Syntax(_))
        ));
    }
}
