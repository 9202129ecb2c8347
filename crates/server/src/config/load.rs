//! Where the configuration comes from, with etcd's precedence: the command line; then an
//! `ETCD_<FLAG>` variable for each flag the command line leaves unset (one it sets is an error);
//! then, if `--config-file` (or `ETCD_CONFIG_FILE`) names a file, that file alone: the other
//! flags and variables are ignored, as etcd ignores them.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use super::Config;
use super::env::{self, Shadowed};
use super::file::{self, FileError};

/// The configuration and what there is to say about how it was found.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration (not validated yet: [`Config::validate`]).
    pub config: Config,
    /// The config file it was read from, if any.
    pub from_file: Option<PathBuf>,
    /// Names of `ETCD_` variables that name no flag (their values are never reported).
    pub unrecognized_env: Vec<String>,
}

/// A configuration that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A command-line or environment problem clap reports itself, `--help` and `--version`
    /// included ([`clap::Error::exit`] prints it and exits as etcd's flag parsing does).
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// An `ETCD_*` variable for a flag the command line sets too.
    #[error(transparent)]
    Shadowed(#[from] Shadowed),
    /// The config file cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// A value in the config file that its flag refuses.
    #[error("config file {path}: {message}")]
    FileValue {
        /// The file.
        path: PathBuf,
        /// clap's complaint, naming the flag.
        message: String,
    },
}

/// Reads the configuration from `args` (the program name first) and `vars` (the environment).
pub fn load(
    args: impl IntoIterator<Item = OsString>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Loaded, LoadError> {
    let args: Vec<OsString> = args.into_iter().collect();
    let program = args
        .first()
        .cloned()
        .unwrap_or_else(|| OsString::from("ferrocd"));
    let command = Config::command();
    let known: HashSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .filter(|l| l != "help" && l != "version")
        .collect();
    let matches = command.clone().try_get_matches_from(&args)?;
    let on_command_line: HashSet<String> = command
        .get_arguments()
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let vars: Vec<(OsString, OsString)> = vars.into_iter().collect();
    // etcd 3.4 reads `ETCD_CONFIG_FILE` only without `--config-file`, and with a file reads
    // no other variable at all.
    let file_var = env::var_of("config-file");
    let config_file = matches
        .get_one::<String>("config_file")
        .filter(|f| !f.is_empty())
        .map(OsString::from)
        .or_else(|| {
            vars.iter()
                .find(|(k, v)| k.to_str() == Some(file_var.as_str()) && !v.is_empty())
                .map(|(_, v)| v.clone())
        });
    let Some(config_file) = config_file else {
        let from_env = env::args_from_env(&known, &on_command_line, vars)?;
        let mut combined = vec![program.clone()];
        combined.extend(from_env.args.iter().cloned());
        combined.extend(args.iter().skip(1).cloned());
        let config = parse(&command, &combined)?;
        return Ok(Loaded {
            config: with_default_cluster_from_name(config),
            from_file: None,
            unrecognized_env: from_env.unrecognized,
        });
    };
    let path = PathBuf::from(config_file);
    let mut from_file = vec![program];
    from_file.extend(
        file::args_from_file(&path, &known)?
            .into_iter()
            .map(OsString::from),
    );
    let mut config = parse(&command, &from_file).map_err(|e| LoadError::FileValue {
        path: path.clone(),
        message: first_line(&e),
    })?;
    config.config_file = path.display().to_string();
    Ok(Loaded {
        config: with_default_cluster_from_name(config),
        from_file: Some(path),
        unrecognized_env: Vec::new(),
    })
}

fn parse(command: &clap::Command, args: &[OsString]) -> Result<Config, clap::Error> {
    let matches = command.clone().try_get_matches_from(args)?;
    Config::from_arg_matches(&matches)
}

/// clap's message without its `error: ` prefix, usage and tips.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// etcd's default `--initial-cluster`.
const DEFAULT_INITIAL_CLUSTER: &str = "default=http://localhost:2380";

/// A member named anything but `default` whose initial cluster was left at the default is a
/// one-member cluster of itself at its advertised peer URLs (etcd's
/// `UpdateDefaultClusterFromName`): `ferrocd --name infra0` starts, as `etcd --name infra0` does.
fn with_default_cluster_from_name(mut config: Config) -> Config {
    if config.name != "default" && config.initial_cluster == DEFAULT_INITIAL_CLUSTER {
        config.initial_cluster = config
            .initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{}={u}", config.name))
            .collect::<Vec<_>>()
            .join(",");
    }
    config
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;

    use super::*;
    use crate::logging::{LogLevel, Logger};

    fn os(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn yaml_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn the_environment_fills_what_the_command_line_leaves() {
        let loaded = load(
            os(&[
                "ferrocd",
                "--name",
                "m1",
                "--initial-cluster",
                "m1=http://h:2380",
            ]),
            vars(&[
                ("ETCD_DATA_DIR", "/var/lib/etcd"),
                ("ETCD_SNAPSHOT_COUNT", "500"),
                ("ETCD_AUTO_TLS", "true"),
                ("ETCD_LISTEN_CLIENT_URLS", "http://a:1,http://b:2"),
                ("ETCD_PASSWORD_OF_SOMETHING", "hunter2"),
            ]),
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.name, "m1");
        assert_eq!(c.data_dir, "/var/lib/etcd");
        assert_eq!(c.snapshot_count, 500);
        assert!(c.tls.auto_tls);
        assert_eq!(c.listen_client_urls, vec!["http://a:1", "http://b:2"]);
        assert_eq!(
            loaded.unrecognized_env,
            vec!["ETCD_PASSWORD_OF_SOMETHING".to_owned()]
        );
        assert!(loaded.from_file.is_none());
    }

    #[test]
    fn a_flag_given_both_ways_is_an_error() {
        let err = load(
            os(&["ferrocd", "--name", "m1"]),
            vars(&[("ETCD_NAME", "m2")]),
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::Shadowed(_)), "{err}");
    }

    #[test]
    fn a_bad_value_in_the_environment_names_the_flag() {
        let err = load(os(&["ferrocd"]), vars(&[("ETCD_SNAPSHOT_COUNT", "many")])).unwrap_err();
        assert!(err.to_string().contains("--snapshot-count"), "{err}");
    }

    #[test]
    fn a_config_file_replaces_the_command_line_and_the_environment() {
        let f = yaml_file(
            "name: infra0\nsnapshot-count: 42\nlogger: zap\nlog-level: debug\n\
             initial-cluster: infra0=http://127.0.0.1:2380\n\
             listen-peer-urls: http://127.0.0.1:2380\n\
             initial-advertise-peer-urls: http://127.0.0.1:2380\n\
             client-transport-security:\n  client-cert-auth: false\n",
        );
        let path = f.path().to_str().unwrap();
        let loaded = load(
            os(&[
                "ferrocd",
                "--config-file",
                path,
                "--heartbeat-interval",
                "7",
            ]),
            vars(&[("ETCD_SNAPSHOT_COUNT", "9")]),
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.name, "infra0");
        assert_eq!(c.snapshot_count, 42);
        assert_eq!(c.heartbeat_interval, 100, "the command line is ignored");
        assert_eq!(c.logger, Logger::Zap);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.config_file, path);
        assert_eq!(loaded.from_file.as_deref(), Some(f.path()));
        assert_eq!(c.validate(), Ok(()));
        // ETCD_CONFIG_FILE names it too, and then no other variable is read: not even one
        // that would conflict with the command line, or one that would not parse.
        let by_env = load(
            os(&["ferrocd", "--name", "x"]),
            vars(&[
                ("ETCD_CONFIG_FILE", path),
                ("ETCD_NAME", "y"),
                ("ETCD_SNAPSHOT_COUNT", "many"),
            ]),
        )
        .unwrap();
        assert_eq!(by_env.config.name, "infra0");
        assert!(by_env.unrecognized_env.is_empty());
    }

    #[test]
    fn a_bad_value_in_a_config_file_names_the_file_and_the_flag() {
        let f = yaml_file("heartbeat-interval: soon\n");
        let err = load(
            os(&["ferrocd", "--config-file", f.path().to_str().unwrap()]),
            vars(&[]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(f.path().to_str().unwrap()), "{text}");
        assert!(text.contains("--heartbeat-interval"), "{text}");
        let missing = load(
            os(&["ferrocd", "--config-file", "/nonexistent/etcd.yml"]),
            vars(&[]),
        )
        .unwrap_err();
        assert!(matches!(missing, LoadError::File(FileError::Read { .. })));
    }

    #[test]
    fn a_named_member_without_an_initial_cluster_is_a_cluster_of_itself() {
        let c = load(os(&["ferrocd", "--name", "infra0"]), vars(&[]))
            .unwrap()
            .config;
        assert_eq!(c.initial_cluster, "infra0=http://localhost:2380");
        assert_eq!(c.validate(), Ok(()));
        let explicit = load(
            os(&[
                "ferrocd",
                "--name",
                "a",
                "--initial-cluster",
                "a=http://x:1",
            ]),
            vars(&[]),
        )
        .unwrap()
        .config;
        assert_eq!(explicit.initial_cluster, "a=http://x:1");
    }
}
