//! etcd flags for features ferrocd does not have (discovery, the v2 API, the v2 proxy, CORS,
//! Go's pprof): accepted so that a command line, a manifest or a config file written for etcd
//! starts ferrocd, as long as each is at a value that needs none of those features. Any other
//! value is a start-up error that names the flag, never a silently ignored setting.

/// The flags, parsed with etcd's names and defaults.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CompatFlags {
    /// Discovery URL used to bootstrap the cluster (not supported: must be empty).
    #[arg(long, default_value = "")]
    pub discovery: String,
    /// DNS domain used to bootstrap the cluster through SRV records (not supported: must be
    /// empty).
    #[arg(long, default_value = "")]
    pub discovery_srv: String,
    /// Suffix of the DNS SRV name (only with --discovery-srv).
    #[arg(long, default_value = "")]
    pub discovery_srv_name: String,
    /// What to do when discovery fails: `exit` or `proxy` (only with --discovery).
    #[arg(long, default_value = "proxy")]
    pub discovery_fallback: String,
    /// HTTP proxy for the discovery service (only with --discovery).
    #[arg(long, default_value = "")]
    pub discovery_proxy: String,
    /// Serve the v2 API (not supported: ferrocd serves etcd's v3 API only).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_v2: bool,
    /// Reject reconfigurations that could lose quorum (not implemented: only `false` is
    /// accepted, and it is ferrocd's default where etcd's is `true`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub strict_reconfig_check: bool,
    /// Restart as a one-member cluster that forgets the other members (not implemented: only
    /// `false` is accepted).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub force_new_cluster: bool,
    /// Go's runtime profiling over HTTP (`/debug/pprof`): no Go runtime to profile, so it has
    /// no effect; a warning says so.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_pprof: bool,
    /// Origins allowed for cross-origin requests (ferrocd sends no CORS headers: must be empty).
    #[arg(long, default_value = "")]
    pub cors: String,
    /// Host whitelist for HTTP requests (`*`: any; ferrocd checks no Host header).
    #[arg(long, default_value = "*")]
    pub host_whitelist: String,
    /// The v2 proxy mode: `off`, `readonly` or `on` (not supported: must be `off`).
    #[arg(long, default_value = "off")]
    pub proxy: String,
    /// Milliseconds an endpoint is held failed (v2 proxy only).
    #[arg(long, default_value_t = 5000)]
    pub proxy_failure_wait: u64,
    /// Milliseconds between endpoint refreshes (v2 proxy only).
    #[arg(long, default_value_t = 30000)]
    pub proxy_refresh_interval: u64,
    /// Milliseconds for a dial to time out (v2 proxy only).
    #[arg(long, default_value_t = 1000)]
    pub proxy_dial_timeout: u64,
    /// Milliseconds for a write to time out (v2 proxy only).
    #[arg(long, default_value_t = 5000)]
    pub proxy_write_timeout: u64,
    /// Milliseconds for a read to time out (v2 proxy only).
    #[arg(long, default_value_t = 0)]
    pub proxy_read_timeout: u64,
}

/// A compatibility flag at a value that needs a feature ferrocd lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag}={value}: {why}")]
pub struct Unsupported {
    /// The flag.
    pub flag: &'static str,
    /// Its value.
    pub value: String,
    /// What ferrocd lacks, and what to do instead.
    pub why: &'static str,
}

impl CompatFlags {
    /// Refuses every value that needs a missing feature; returns the warnings for values that
    /// are accepted but have no effect.
    pub fn check(&self) -> Result<Vec<String>, Unsupported> {
        let refuse = |flag: &'static str, value: &str, why: &'static str| {
            Err(Unsupported {
                flag,
                value: value.to_owned(),
                why,
            })
        };
        const STATIC: &str = "discovery is not supported; list the members in --initial-cluster";
        if !self.discovery.is_empty() {
            return refuse("discovery", &self.discovery, STATIC);
        }
        if !self.discovery_srv.is_empty() {
            return refuse("discovery-srv", &self.discovery_srv, STATIC);
        }
        if !matches!(self.discovery_fallback.as_str(), "exit" | "proxy") {
            return refuse(
                "discovery-fallback",
                &self.discovery_fallback,
                "expected exit or proxy",
            );
        }
        if self.enable_v2 {
            return refuse(
                "enable-v2",
                "true",
                "the v2 API is not supported; ferrocd serves etcd's v3 API only",
            );
        }
        if self.strict_reconfig_check {
            return refuse(
                "strict-reconfig-check",
                "true",
                "not supported yet: ferrocd does not check member changes against the \
                 members' health; use --strict-reconfig-check=false",
            );
        }
        if self.force_new_cluster {
            return refuse(
                "force-new-cluster",
                "true",
                "not supported yet: recover a lost quorum from a snapshot \
                 (ferrocdutl snapshot restore) instead",
            );
        }
        if !self.cors.is_empty() {
            return refuse(
                "cors",
                &self.cors,
                "ferrocd sends no CORS headers; leave --cors empty",
            );
        }
        match self.proxy.as_str() {
            "off" => {}
            "readonly" | "on" => {
                return refuse(
                    "proxy",
                    &self.proxy,
                    "the v2 proxy is not supported; use --proxy=off",
                );
            }
            _ => return refuse("proxy", &self.proxy, "expected off, readonly or on"),
        }
        let mut warnings = Vec::new();
        if self.enable_pprof {
            warnings.push(
                "--enable-pprof has no effect: ferrocd has no Go runtime to profile".to_owned(),
            );
        }
        if self.host_whitelist != "*" && !self.host_whitelist.is_empty() {
            warnings.push(format!(
                "--host-whitelist={} has no effect: ferrocd checks no Host header",
                self.host_whitelist
            ));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        compat: CompatFlags,
    }

    fn check(args: &[&str]) -> Result<Vec<String>, Unsupported> {
        let mut argv = vec!["ferrocd"];
        argv.extend_from_slice(args);
        Cmd::try_parse_from(argv).unwrap().compat.check()
    }

    #[test]
    fn etcds_defaults_are_accepted_without_a_warning() {
        assert_eq!(check(&[]), Ok(vec![]));
        assert_eq!(
            check(&[
                "--enable-v2=false",
                "--proxy",
                "off",
                "--cors=",
                "--strict-reconfig-check=false",
                "--force-new-cluster=false"
            ]),
            Ok(vec![])
        );
    }

    #[test]
    fn values_that_need_a_missing_feature_are_refused_by_name() {
        for (args, flag) in [
            (
                &["--discovery", "https://discovery.etcd.io/x"][..],
                "discovery",
            ),
            (&["--discovery-srv", "example.com"], "discovery-srv"),
            (&["--discovery-fallback", "retry"], "discovery-fallback"),
            (&["--enable-v2"], "enable-v2"),
            (&["--strict-reconfig-check"], "strict-reconfig-check"),
            (&["--force-new-cluster=true"], "force-new-cluster"),
            (&["--cors", "https://example.com"], "cors"),
            (&["--proxy", "on"], "proxy"),
            (&["--proxy", "sideways"], "proxy"),
        ] {
            let err = check(args).unwrap_err();
            assert_eq!(err.flag, flag, "{args:?}");
            assert!(err.to_string().starts_with(&format!("--{flag}=")), "{err}");
        }
    }

    #[test]
    fn values_without_an_effect_are_warned_about() {
        let warnings = check(&["--enable-pprof"]).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("--enable-pprof"), "{warnings:?}");
    }
}
