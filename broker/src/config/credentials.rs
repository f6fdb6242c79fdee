//! Credentials and URLs an operator could leave weak: API tokens and the peer secret that
//! are short or copied from an example, and a plain-HTTP callback base that would send
//! every callback token over the Internet in the clear.

/// Shortest API token or peer secret accepted.
pub(super) const MIN_SECRET_LEN: usize = 16;

/// Values seen in examples and tutorials (compared without case).
const EXAMPLES: &[&str] = &[
    "change-me",
    "changeme",
    "change-me-too",
    "change_me",
    "secret",
    "password",
    "token",
    "api-token",
    "example",
    "test",
    "admin",
    "default",
    "herald",
    "letmein",
    "replace-me",
];

/// Why `secret` is weak, if it is.
pub(super) fn weakness(secret: &str) -> Option<String> {
    let lower = secret.trim().to_ascii_lowercase();
    if EXAMPLES.contains(&lower.as_str()) {
        return Some("is a well-known example value".to_owned());
    }
    if secret.len() < MIN_SECRET_LEN {
        return Some(format!("is shorter than {MIN_SECRET_LEN} characters"));
    }
    let mut chars = secret.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Some("repeats one character".to_owned());
    }
    None
}

/// Why a `public_url` of `http://` is refused: only a loopback host (a node on a laptop)
/// or `node.insecure_public_url` allows it.
pub(super) fn plain_http_problem(url: &str, allowed: bool) -> Option<String> {
    let scheme = url.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = &url[7..];
    if allowed || is_loopback(host_of(rest)) {
        return None;
    }
    Some(format!(
        "node.public_url '{url}' is plain http: Exchange would send every callback token in the clear; use https (TLS at the node or a load balancer), or set node.insecure_public_url = true for a test setup"
    ))
}

/// The host of `[user@]host[:port][/path]`, IPv6 brackets kept.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_example_and_repeated_secrets_are_weak() {
        assert!(weakness("change-me").is_some());
        assert!(weakness("Change-Me-Too").is_some());
        assert!(weakness("short-token").is_some());
        assert!(weakness("aaaaaaaaaaaaaaaaaaaa").is_some());
        assert!(weakness("x7Gq-93kd-PQ2m-zz81").is_none());
    }

    #[test]
    fn plain_http_is_refused_unless_loopback_or_allowed() {
        assert!(plain_http_problem("https://push.example.com", false).is_none());
        assert!(plain_http_problem("http://push.example.com", false).is_some());
        assert!(plain_http_problem("http://push.example.com", true).is_none());
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost/base",
            "http://[::1]:8080",
        ] {
            assert!(plain_http_problem(local, false).is_none(), "{local}");
        }
        assert!(plain_http_problem("http://127.0.0.1.example.com", false).is_some());
        assert!(plain_http_problem("HTTP://push.example.com", false).is_some());
        assert!(plain_http_problem("http://localhost@evil.example", false).is_some());
        assert!(plain_http_problem("http://evil.example@localhost:8080", false).is_none());
    }
}
