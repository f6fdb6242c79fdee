//! `herald check-config`: every problem of a configuration, not only the first.

use std::collections::HashSet;
use std::fmt;

use herald_workers::AppConfig;

use super::Config;

/// The problems found in a configuration; empty means valid.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.0 {
            writeln!(f, "- {problem}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Everything wrong with this configuration that would stop a node or make it misbehave.
    fn cluster_problems(&self, p: &mut Vec<String>) {
        let cluster = &self.cluster;
        if !cluster.advertise.is_empty()
            && (cluster.advertise.contains(char::is_whitespace)
                || cluster
                    .advertise
                    .rsplit_once(':')
                    .is_none_or(|(_, port)| port.parse::<u16>().is_err()))
        {
            p.push(format!(
                "cluster.advertise {:?} is not host:port",
                cluster.advertise
            ));
        }
        if cluster.peer_secret.chars().any(|c| !c.is_ascii_graphic()) {
            p.push("cluster.peer_secret must be printable ASCII without spaces".to_owned());
        } else if !cluster.peer_secret.is_empty()
            && let Some(weak) = super::credentials::weakness(&cluster.peer_secret)
        {
            p.push(format!("cluster.peer_secret {weak}"));
        }
        if cluster.heartbeat.is_zero() || cluster.heartbeat >= cluster.member_ttl {
            p.push("cluster.heartbeat must be above zero and below cluster.member_ttl".to_owned());
        }
        if cluster.lease_ttl < cluster.heartbeat * 5 {
            p.push(
                "cluster.lease_ttl must be at least five cluster.heartbeat (leases are renewed every third of it, at a heartbeat, and one renewal may fail)".to_owned(),
            );
        }
        if let Some((host, _)) = cluster.advertise.rsplit_once(':')
            && host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified())
        {
            p.push(format!(
                "cluster.advertise {:?} is an unspecified address: the other nodes cannot call it",
                cluster.advertise
            ));
        }
        if cluster.forward_timeout.is_zero() {
            p.push("cluster.forward_timeout must be above zero".to_owned());
        }
    }

    /// `[homes."<region>"]`: other configured regions, each a Redis URL, beside a Redis of
    /// this region's own.
    fn home_problems(&self, p: &mut Vec<String>) {
        for (home, copy) in &self.homes {
            if *home == self.node.region {
                p.push(format!(
                    "homes.\"{home}\" is this node's own region: its Redis is [redis]"
                ));
            } else if !self.cluster.regions.contains(home) {
                p.push(format!(
                    "homes.\"{}\" is not one of cluster.regions ({})",
                    home.escape_debug(),
                    self.cluster.regions.join(", ")
                ));
            }
            if let Err(e) = redis::Client::open(copy.url.as_str()) {
                p.push(format!("homes.\"{home}\".url is not a Redis URL: {e}"));
            }
        }
        let mut tags = std::collections::HashMap::new();
        for region in &self.cluster.regions {
            if let Some(other) = tags.insert(crate::domain::home_tag(region), region) {
                p.push(format!(
                    "cluster.regions {other:?} and {region:?} share a registration id tag: rename one"
                ));
            }
        }
        if !self.homes.is_empty() && self.redis.cluster {
            p.push(
                "[homes] needs [redis] to be one server (redis.cluster = false): a home on a Redis Cluster cannot be replicated to the other regions"
                    .to_owned(),
            );
        }
        if !self.homes.is_empty() && self.redis.url.is_none() {
            p.push(
                "[homes] needs a [redis] of this region: a node on the in-memory store serves its own region alone"
                    .to_owned(),
            );
        }
    }

    pub fn problems(&self) -> Problems {
        let mut p = Vec::new();
        if self.node.id.trim().is_empty() {
            p.push("node.id is empty".to_owned());
        } else if self
            .node
            .id
            .chars()
            .any(|c| !c.is_ascii_graphic() || c == '/')
        {
            p.push(format!(
                "node.id {:?} must be printable ASCII without spaces or '/' (it names the node in the member table, its leases and peer calls)",
                self.node.id
            ));
        }
        self.cluster_problems(&mut p);
        if !self.cluster.regions.contains(&self.node.region) {
            p.push(format!(
                "node.region '{}' is not one of cluster.regions ({})",
                self.node.region,
                self.cluster.regions.join(", ")
            ));
        }
        let url = &self.node.public_url;
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
            p.push(format!(
                "node.public_url '{url}' is not an http(s) URL with a host"
            ));
        } else if let Some(problem) =
            super::credentials::plain_http_problem(url, self.node.insecure_public_url)
        {
            p.push(problem);
        }
        let listeners = [
            ("gateway.listen", self.gateway.listen),
            ("grpc.listen", self.grpc.listen),
            ("admin.listen", self.admin.listen),
        ];
        for (i, (name, addr)) in listeners.iter().enumerate() {
            for (other, other_addr) in &listeners[i + 1..] {
                if addr == other_addr && addr.port() != 0 {
                    p.push(format!("{name} and {other} are both {addr}"));
                }
            }
        }
        p.extend(self.gateway.problems());
        if let Some(url) = &self.redis.url
            && let Err(e) = redis::Client::open(url.as_str())
        {
            p.push(format!("redis.url is not a Redis URL: {e}"));
        }
        self.home_problems(&mut p);
        self.tls_problems(&mut p);
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}', ' ']) {
            p.push("redis.key_prefix must be non-empty, without braces or spaces".to_owned());
        }
        match self.api_tokens() {
            Ok(tokens) if tokens.iter().any(|t| t.trim().is_empty()) => {
                p.push("auth.api_tokens has an empty token".to_owned());
            }
            Ok(tokens) => {
                for (i, token) in tokens.iter().enumerate() {
                    if let Some(weak) = super::credentials::weakness(token) {
                        p.push(format!("auth.api_tokens[{i}] {weak}"));
                    }
                }
                if !self.cluster.peer_secret.is_empty()
                    && tokens.iter().any(|t| t.trim() == self.cluster.peer_secret)
                {
                    p.push(
                        "cluster.peer_secret is also an API token: an API caller could call Peer"
                            .to_owned(),
                    );
                }
            }
            Err(e) => p.push(format!("auth.api_tokens_file: {e}")),
        }
        if self.coalesce.quiet.is_zero() || self.coalesce.quiet > self.coalesce.max_delay {
            p.push("coalesce.quiet must be above zero and at most coalesce.max_delay".to_owned());
        }
        if self.actors.max_live == 0 || self.actors.idle_timeout.is_zero() {
            p.push("actors.max_live and actors.idle_timeout must be above zero".to_owned());
        }
        if self.actors.call_timeout.is_zero() {
            p.push("actors.call_timeout must be above zero".to_owned());
        }
        if self.liveness.status_frequency < std::time::Duration::from_secs(60)
            || self.liveness.status_frequency > std::time::Duration::from_secs(1440 * 60)
        {
            p.push(
                "liveness.status_frequency must be between 1m and 1440m, as Exchange allows"
                    .to_owned(),
            );
        }
        if self.liveness.sweep_interval.is_zero() {
            p.push("liveness.sweep_interval must be above zero".to_owned());
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            p.push(format!(
                "telemetry.otlp_endpoint '{endpoint}' is not an http(s) URL"
            ));
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            p.push(format!(
                "telemetry.trace_sample_ratio {} is not between 0 and 1",
                self.telemetry.trace_sample_ratio
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_filter).is_err() {
            p.push(format!(
                "telemetry.log_filter '{}' is not a valid filter",
                self.telemetry.log_filter
            ));
        }
        p.extend(self.delivery.problems());
        self.app_problems(&mut p);
        Problems(p)
    }

    fn app_problems(&self, p: &mut Vec<String>) {
        let mut seen = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{i}] ({})", app.id());
            if app.id().is_empty() {
                p.push(format!("apps[{i}].id is empty"));
            } else if !seen.insert(app.id()) {
                p.push(format!("{at}: the id is configured twice"));
            }
            let (files, base_url) = match app {
                AppConfig::Apns(a) if a.certificate_auth() => {
                    if !a.key_file.as_os_str().is_empty() {
                        p.push(format!(
                            "{at}: set key_file (token auth) or cert_file (certificate auth), not both"
                        ));
                    }
                    (
                        vec![("cert_file", &a.cert_file), ("ca_file", &a.ca_file)],
                        &a.base_url,
                    )
                }
                AppConfig::Apns(a) => {
                    for (name, value) in [("team_id", &a.team_id), ("key_id", &a.key_id)] {
                        if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                            p.push(format!("{at}: {name} must be 10 letters or digits"));
                        }
                    }
                    (
                        vec![("key_file", &a.key_file), ("ca_file", &a.ca_file)],
                        &a.base_url,
                    )
                }
                AppConfig::Fcm(a) => {
                    if a.project_id.is_empty() {
                        p.push(format!("{at}: project_id is empty"));
                    }
                    let files = vec![
                        ("service_account_file", &a.service_account_file),
                        ("ca_file", &a.ca_file),
                    ];
                    (files, &a.base_url)
                }
            };
            for (name, path) in files {
                let optional = name == "ca_file";
                if path.as_os_str().is_empty() {
                    if !optional {
                        p.push(format!("{at}: {name} is empty"));
                    }
                } else if let Err(e) = std::fs::metadata(path) {
                    p.push(format!("{at}: {name} {}: {e}", path.display()));
                }
            }
            if !base_url.starts_with("https://") && !base_url.starts_with("http://") {
                p.push(format!("{at}: base_url '{base_url}' is not an http(s) URL"));
            }
            if let Some(problem) = app.credential_problem() {
                p.push(format!("{at}: {problem}"));
            }
        }
    }
}
