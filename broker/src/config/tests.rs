use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A configuration file holding `text`, its `{KEY}` and `{SA}` naming the committed test
/// credentials.
fn file(text: &str) -> tempfile::NamedTempFile {
    let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");
    let text = text
        .replace("{KEY}", &format!("{testdata}/apns/test-key.p8"))
        .replace("{SA}", &format!("{testdata}/fcm/test-service-account.json"));
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// `problems` are `expected`, each found by its start, and no more.
fn assert_problems(problems: &[String], expected: &[&str]) {
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

/// DESIGN.md §5.1's minimal file, with the committed test credentials.
const DESIGN_EXAMPLE: &str = r#"
[node]
id = "use1-a"
region = "us-east-1"
public_url = "https://push.example.com"
[gateway]
listen = "127.0.0.1:8080"
[grpc]
listen = "127.0.0.1:50051"
[admin]
listen = "127.0.0.1:9090"
[redis]
url = "redis://127.0.0.1:6379"
[auth]
api_tokens = ["change-me"]
[coalesce]
quiet = "1s"
max_delay = "3s"
[[apps]]
id = "com.example.mail"
platform = "apns"
team_id = "ABCDE12345"
key_id = "KEY1234567"
key_file = "{KEY}"
base_url = "https://api.push.apple.com"
ca_file = ""
[[apps]]
id = "com.example.mail.android"
platform = "fcm"
project_id = "example-mail"
service_account_file = "{SA}"
base_url = "https://fcm.googleapis.com"
ca_file = ""
"#;

#[test]
fn the_design_example_loads_and_only_its_example_token_is_refused() {
    let f = file(DESIGN_EXAMPLE);
    let config = Config::load(Some(f.path()), &HashMap::new()).unwrap();
    assert_eq!(
        config.problems().0,
        ["auth.api_tokens[0] is a well-known example value"]
    );
    assert_eq!(config.node.id, "use1-a");
    assert_eq!(config.coalesce.max_delay, Duration::from_secs(3));
    assert_eq!(config.apps.len(), 2);
    assert_eq!(config.redis.url.as_deref(), Some("redis://127.0.0.1:6379"));
}

#[test]
fn no_file_means_valid_embedded_defaults() {
    let config = Config::load(None, &HashMap::new()).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.problems(), Problems::default());
    assert!(config.redis.url.is_none());
    assert_eq!(config.grpc.listen.to_string(), "127.0.0.1:50051");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let f = file(DESIGN_EXAMPLE);
    let env = env(&[
        ("HERALD__NODE__ID", "use1-b"),
        ("HERALD__COALESCE__QUIET", "250ms"),
        ("HERALD__GATEWAY__MAX_BODY", "4096"),
        ("HERALD__AUTH__API_TOKENS", r#"["a", "b"]"#),
        ("HERALD__APPS__1__BASE_URL", "http://127.0.0.1:9999"),
        ("herald__telemetry__log_format", "json"),
        ("UNRELATED", "x"),
    ]);
    let config = Config::load(Some(f.path()), &env).unwrap();
    assert_eq!(config.node.id, "use1-b");
    assert_eq!(config.coalesce.quiet, Duration::from_millis(250));
    assert_eq!(config.gateway.max_body, 4096);
    assert_eq!(config.auth.api_tokens, vec!["a".to_owned(), "b".to_owned()]);
    let AppConfig::Fcm(fcm) = &config.apps[1] else {
        panic!("second app is FCM")
    };
    assert_eq!(fcm.base_url, "http://127.0.0.1:9999");
    // Lower-case names are not the documented form, so they are not applied.
    assert_eq!(config.telemetry.log_format, LogFormat::Text);
}

#[test]
fn bad_overrides_and_unknown_keys_are_errors() {
    let err = Config::load(None, &env(&[("HERALD__APPS__3__ID", "x")])).unwrap_err();
    assert!(err.to_string().contains("HERALD__APPS__3__ID"), "{err}");
    let err = Config::load(None, &env(&[("HERALD__NODE__ID__X", "x")])).unwrap_err();
    assert!(err.to_string().contains("node.id"), "{err}");
    let err = Config::load(None, &env(&[("HERALD__NODE__COLOUR", "x")])).unwrap_err();
    assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    let f = file("[grpc]\nlisten = \"nowhere\"\n");
    let err = Config::load(Some(f.path()), &HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("invalid socket address"), "{err}");
}

#[test]
fn every_problem_is_listed_at_once() {
    let f = file(
        r#"
[node]
id = ""
region = "mars-1"
public_url = "ftp://x"
[grpc]
listen = "127.0.0.1:9090"
[redis]
url = "nonsense://"
[coalesce]
quiet = "5s"
max_delay = "1s"
[[apps]]
id = "a"
platform = "apns"
team_id = "short"
key_id = "KEY1234567"
key_file = "/nonexistent/key.p8"
[[apps]]
id = "a"
platform = "fcm"
project_id = ""
service_account_file = "/dev/null"
[[apps]]
id = "c"
platform = "apns"
key_file = "/dev/null"
cert_file = "/nonexistent/cert.pem"
[[apps]]
id = "d"
platform = "apns"
cert_file = "/dev/null"
"#,
    );
    let problems = Config::load(Some(f.path()), &HashMap::new())
        .unwrap()
        .problems()
        .0;
    let expected = [
        "node.id is empty",
        "node.region 'mars-1'",
        "node.public_url 'ftp://x'",
        "grpc.listen and admin.listen are both 127.0.0.1:9090",
        "redis.url is not a Redis URL",
        "coalesce.quiet must be above zero",
        "apps[0] (a): team_id must be 10 letters or digits",
        "apps[0] (a): key_file /nonexistent/key.p8",
        "apps[1] (a): the id is configured twice",
        "apps[1] (a): project_id is empty",
        "apps[2] (c): set key_file (token auth) or cert_file (certificate auth), not both",
        "apps[1] (a): service_account_file is not a service-account JSON file",
        "apps[2] (c): cert_file /nonexistent/cert.pem",
        "apps[3] (d): cert_file is not a PEM certificate and private key",
    ];
    assert_problems(&problems, &expected);
}

#[test]
fn secrets_are_redacted_from_debug() {
    let config = Config {
        auth: AuthConfig {
            api_tokens: vec!["hunter2-token".into()],
            ..AuthConfig::default()
        },
        redis: RedisConfig {
            url: Some("redis://:pw-secret@10.0.0.1".into()),
            ..RedisConfig::default()
        },
        homes: [(
            "eu-west-1".to_owned(),
            super::HomeCopyConfig {
                url: "redis://:copy-secret@10.0.0.2".into(),
            },
        )]
        .into(),
        cluster: herald_cluster::ClusterConfig {
            peer_secret: "peer-secret-xyz".into(),
            ..Default::default()
        },
        ..Config::default()
    };
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hunter2")
            && !shown.contains("pw-secret")
            && !shown.contains("peer-secret-xyz")
            && !shown.contains("copy-secret"),
        "{shown}"
    );
}

#[test]
fn cluster_settings_that_cannot_work_are_problems() {
    let f = file(
        r#"
[node]
id = "use1 a"
[cluster]
advertise = "10.0.0.7"
peer_secret = "with space"
heartbeat = "5s"
member_ttl = "5s"
lease_ttl = "6s"
"#,
    );
    let problems = Config::load(Some(f.path()), &HashMap::new())
        .unwrap()
        .problems()
        .0;
    let expected = [
        "node.id \"use1 a\" must be printable ASCII without spaces",
        "cluster.advertise \"10.0.0.7\" is not host:port",
        "cluster.peer_secret must be printable ASCII",
        "cluster.heartbeat must be above zero and below cluster.member_ttl",
        "cluster.lease_ttl must be at least five cluster.heartbeat",
    ];
    assert_problems(&problems, &expected);
}

/// Flattens a serialised configuration into `section.key` names (`apps[].key` for lists).
fn keys(prefix: &str, value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                keys(&name, v, out);
            }
        }
        toml::Value::Array(items)
            if items.iter().all(toml::Value::is_table) && !items.is_empty() =>
        {
            for item in items {
                keys(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn docs_configuration_lists_exactly_the_keys_of_the_code() {
    let f = file(DESIGN_EXAMPLE);
    let mut config = Config::load(Some(f.path()), &HashMap::new()).unwrap();
    config.auth.api_tokens_file = Some("/x".into());
    config.telemetry.otlp_endpoint = Some("http://127.0.0.1:4317".into());
    config.delivery.record_file = Some("/pushes.jsonl".into());
    config.gateway.tls = Some(herald_gateway::tls::TlsFiles {
        cert_file: "/gateway.crt".into(),
        key_file: "/gateway.key".into(),
    });
    config.grpc.tls = Some(super::GrpcTlsConfig {
        cert_file: "/node.crt".into(),
        key_file: "/node.key".into(),
        ca_file: "/ca.crt".into(),
        client_auth: true,
        peer_server_name: Some("herald".into()),
    });
    config.redis.ca_file = Some("/redis-ca.crt".into());
    config.redis.client_cert_file = Some("/node.crt".into());
    config.redis.client_key_file = Some("/node.key".into());
    config.homes.insert(
        "<region>".into(),
        super::HomeCopyConfig {
            url: "redis://127.0.0.1:6380".into(),
        },
    );
    let mut in_code = BTreeSet::new();
    keys("", &toml::Value::try_from(&config).unwrap(), &mut in_code);

    let doc = include_str!("../../../docs/configuration.md");
    let in_doc: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.replace('"', "")))
        .collect();
    assert_eq!(
        in_doc, in_code,
        "docs/configuration.md and the code disagree"
    );
}

#[test]
fn home_copies_must_name_other_known_regions_and_need_a_redis_of_their_own() {
    let f = file(
        r#"
[node]
region = "us-east-1"
[homes."us-east-1"]
url = "redis://127.0.0.1:6380"
[homes."mars-1"]
url = "redis://127.0.0.1:6381"
[homes."eu-west-1"]
url = "http://not-redis"
"#,
    );
    let problems = Config::load(Some(f.path()), &HashMap::new())
        .unwrap()
        .problems()
        .0;
    let expected = [
        "homes.\"us-east-1\" is this node's own region",
        "homes.\"mars-1\" is not one of cluster.regions",
        "homes.\"eu-west-1\".url is not a Redis URL",
        "[homes] needs a [redis] of this region",
    ];
    assert_problems(&problems, &expected);

    let f = file(
        r#"
[redis]
url = "redis://127.0.0.1:6379"
[homes."eu-west-1"]
url = "redis://127.0.0.1:6380"
[homes."ap-southeast-1"]
url = "redis://127.0.0.1:6381"
"#,
    );
    let config = Config::load(Some(f.path()), &HashMap::new()).unwrap();
    assert_eq!(config.problems(), Problems::default());
    assert_eq!(config.homes.len(), 2);
}
