//! `ETCD_*` environment variables: every flag is also settable as `ETCD_<FLAG>` (upper case,
//! `-` as `_`: `ETCD_LISTEN_CLIENT_URLS`), as etcd's `flags.SetFlagsFromEnv` reads them. A
//! variable for a flag also given on the command line is an error (etcd's), so that a
//! container's environment never silently loses to, or overrides, its command.

use std::collections::HashSet;
use std::ffi::OsString;

/// The prefix of etcd's variables.
pub const PREFIX: &str = "ETCD_";

/// Variables etcd reads that are not flags: not reported as unrecognized.
const NOT_FLAGS: &[&str] = &["ETCD_UNSUPPORTED_ARCH"];

/// What the environment adds to the command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FromEnv {
    /// `--flag=value` arguments, one per recognized variable.
    pub args: Vec<OsString>,
    /// Names (never values: they may be secrets) of `ETCD_` variables that name no flag.
    pub unrecognized: Vec<String>,
}

/// A variable shadowed by the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "conflicting environment variable {0:?} is shadowed by corresponding command-line flag \
     (either unset environment variable or disable flag)"
)]
pub struct Shadowed(pub String);

/// The flag `ETCD_<NAME>` sets: `name` in lower case, `_` as `-`.
pub fn flag_of(var: &str) -> Option<String> {
    let name = var.strip_prefix(PREFIX)?;
    (!name.is_empty()).then(|| name.to_ascii_lowercase().replace('_', "-"))
}

/// The variable for `flag` (`listen-client-urls` → `ETCD_LISTEN_CLIENT_URLS`).
pub fn var_of(flag: &str) -> String {
    format!("{PREFIX}{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Turns the `ETCD_*` variables among `vars` into arguments for the `known` flags (long
/// names), refusing one whose flag is in `on_command_line`.
pub fn args_from_env(
    known: &HashSet<String>,
    on_command_line: &HashSet<String>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<FromEnv, Shadowed> {
    let mut out = FromEnv::default();
    let mut vars: Vec<(String, OsString)> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    // The order of the environment is the process's; the arguments' is made stable.
    vars.sort();
    for (var, value) in vars {
        match flag_of(&var).filter(|f| known.contains(f)) {
            Some(flag) => {
                if on_command_line.contains(&flag) {
                    return Err(Shadowed(var));
                }
                // etcd sets a flag only from a non-empty variable.
                if value.is_empty() {
                    continue;
                }
                let mut arg = OsString::from(format!("--{flag}="));
                arg.push(value);
                out.args.push(arg);
            }
            None if NOT_FLAGS.contains(&var.as_str()) => {}
            None => out.unrecognized.push(var),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn names_map_both_ways() {
        assert_eq!(
            flag_of("ETCD_LISTEN_CLIENT_URLS").as_deref(),
            Some("listen-client-urls")
        );
        assert_eq!(flag_of("ETCDCTL_API"), None);
        assert_eq!(flag_of("ETCD_"), None);
        assert_eq!(
            var_of("initial-cluster-state"),
            "ETCD_INITIAL_CLUSTER_STATE"
        );
    }

    #[test]
    fn known_variables_become_arguments_and_others_are_named() {
        let known = set(&["name", "data-dir", "auto-tls"]);
        // An empty variable (ETCD_DATA_DIR) sets nothing, as in etcd.
        let env = vars(&[
            ("ETCD_NAME", "infra0"),
            ("ETCD_AUTO_TLS", "true"),
            ("ETCD_DATA_DIR", ""),
            ("ETCD_NO_SUCH_FLAG", "secret"),
            ("ETCD_UNSUPPORTED_ARCH", "arm64"),
            ("ETCDCTL_API", "3"),
            ("HOME", "/root"),
        ]);
        let out = args_from_env(&known, &HashSet::new(), env).unwrap();
        assert_eq!(
            out.args,
            vec![OsString::from("--auto-tls=true"), "--name=infra0".into()]
        );
        assert_eq!(out.unrecognized, vec!["ETCD_NO_SUCH_FLAG".to_owned()]);
    }

    #[test]
    fn a_variable_shadowed_by_the_command_line_is_etcds_error() {
        let known = set(&["name"]);
        let err = args_from_env(&known, &set(&["name"]), vars(&[("ETCD_NAME", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding \
             command-line flag (either unset environment variable or disable flag)"
        );
    }
}
