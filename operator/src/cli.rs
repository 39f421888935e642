//! The command line of `telephony-operator`: `run` (the controller), `readiness` (the main app's
//! 200/503 API) and `crd`. Flags come in the groups the chart sets them by (scope, admin, lease,
//! workers, log), and every flag has an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

#[derive(Parser, Debug)]
#[command(version, about = "Dialtone operator: supervises telephony workers and serves their readiness")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (reconciles TelephonyServices).
    Run(RunArgs),
    /// Serve the readiness API and dashboard for the main app (200 ready / 503 not).
    Readiness(ReadinessArgs),
    /// Print the TelephonyService CRD as YAML.
    Crd {
        /// Print the field reference (Markdown, docs/telephonyservice.md) instead.
        #[arg(long, env = "DIALTONE_CRD_REFERENCE")]
        reference: bool,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub workers: WorkerArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Which TelephonyServices this operator supervises.
#[derive(Args, Debug)]
pub struct ScopeArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "DIALTONE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only TelephonyServices matching this label selector (shard services across operators).
    #[arg(long, env = "DIALTONE_SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "DIALTONE_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    pub admin_addr: SocketAddr,
}

/// Leader election: one replica reconciles, the others stand by.
#[derive(Args, Debug)]
pub struct LeaseArgs {
    /// Compete for a Lease so that only one replica reconciles.
    #[arg(long, env = "DIALTONE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (the chart passes the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "DIALTONE_LEASE_NAME", default_value = "dialtone-operator")]
    pub lease_name: String,
    /// Seconds after which a silent leader is replaced.
    #[arg(long, env = "DIALTONE_LEASE_DURATION", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration: u64,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Ask a running but not-Ready worker's /readyz why, to quote it in the status, and a draining
    /// one how its drain goes (`drainingCalls`, `DrainTimeout` Events). Needs to reach the worker
    /// pods. Off for the simulated node, whose pod IPs lead nowhere.
    #[arg(long, env = "DIALTONE_ASK_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub ask_workers: bool,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log lines as JSON (for collectors) or text (for people); the filter is RUST_LOG.
    #[arg(long, env = "DIALTONE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

#[derive(Args, Debug)]
pub struct ReadinessArgs {
    /// Address to serve on.
    #[arg(long, env = "DIALTONE_READINESS_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
    /// Only these namespaces (comma-separated; default: all).
    #[arg(long, env = "DIALTONE_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Answer `unknown` (503) once the watch has been unconfirmed this long: `10s`, `500ms`, `1m`,
    /// or bare seconds (`10`).
    #[arg(long, env = "DIALTONE_STALE_AFTER", default_value = "10s", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// Browser origins allowed by CORS (comma-separated; default: none).
    #[arg(long, env = "DIALTONE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Follow each worker pod's heartbeat stream, so a dead or hung worker is unavailable within
    /// milliseconds (needs get/list/watch on pods, and the workers' port reachable). Off: the
    /// answers follow Kubernetes alone, seconds later.
    #[arg(long, env = "DIALTONE_WORKER_HEARTBEAT", default_value_t = true, action = clap::ArgAction::Set)]
    pub worker_heartbeat: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A duration from 100 ms to 60 min, in jiff's friendly format (`10s`, `500ms`, `1m`, `1m 30s`) or
/// as bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let text =
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) { format!("{s}s") } else { s.to_string() };
    let signed: jiff::SignedDuration =
        text.parse().map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 1m"))?;
    let d = Duration::try_from(signed).map_err(|_| format!("{s:?} is negative"))?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
        return Err("must be between 100ms and 60m".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 10 "), Ok(Duration::from_secs(10)));
        assert!(parse_duration("50ms").unwrap_err().contains("between"));
        assert!(parse_duration("2h").unwrap_err().contains("between"));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn the_cli_is_consistent_and_every_flag_has_an_env_var() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_env().is_some(), "{} --{id} has no environment variable", sub.get_name());
            }
        }
    }

    #[test]
    fn the_charts_flags_parse() {
        let run = Cli::try_parse_from([
            "telephony-operator",
            "run",
            "--admin-addr=0.0.0.0:8081",
            "--leader-elect=true",
            "--lease-name=d-operator",
            "--lease-duration=20",
            "--log-format=text",
            "--namespace=shop",
            "--selector=tier=voice",
        ]);
        let Ok(Cli { command: Command::Run(args) }) = run else { panic!("{run:?}") };
        assert_eq!((args.lease.lease_duration, args.scope.namespace.as_deref()), (20, Some("shop")));
        let ready = Cli::try_parse_from([
            "telephony-operator",
            "readiness",
            "--addr=0.0.0.0:8080",
            "--stale-after=10s",
            "--log-format=json",
            "--namespaces=a,b",
            "--cors-origin=https://app.example.com",
        ]);
        let Ok(Cli { command: Command::Readiness(args) }) = ready else { panic!("{ready:?}") };
        assert_eq!((args.stale_after, args.namespaces.len()), (Duration::from_secs(10), 2));
    }
}
