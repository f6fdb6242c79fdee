//! The `herald` binary as an operator runs it: exit codes and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_remove("RUST_LOG");
    cmd
}

#[test]
fn check_config_accepts_the_defaults() {
    let out = herald().arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configuration ok"
    );
}

#[test]
fn check_config_lists_every_problem_and_exits_64() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[node]\nid = \"\"\nregion = \"mars-1\"").unwrap();
    let out = herald()
        .args(["check-config", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("node.id is empty") && stderr.contains("mars-1"),
        "{stderr}"
    );

    let out = herald()
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = herald()
        .arg("check-config")
        .env("HERALD__NODE__NOPE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let mut child = herald()
        .arg("serve")
        .env("HERALD__GRPC__LISTEN", "127.0.0.1:0")
        .env("HERALD__ADMIN__LISTEN", "127.0.0.1:0")
        .env("HERALD__GATEWAY__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let started = line.contains("node started");
        seen.push(line);
        if started {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("in memory only")),
        "warns it is not durable: {seen:#?}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("API token for this run: "), "{stdout}");
}

#[test]
fn the_demo_replays_an_exchange_day_and_exits_0() {
    let out = herald().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Alice's day: 4, then 6 (two pages), 5, 4; the retry of the first burst pushes nothing.
    let alice: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("push → Alice's iPhone"))
        .collect();
    assert_eq!(alice.len(), 4, "{stdout}");
    for (line, badge) in alice.iter().zip([4, 6, 5, 4]) {
        assert!(
            line.ends_with(&format!(r#"{{"aps":{{"badge":{badge}}}}}"#)),
            "{line}"
        );
    }
    // Android phones get FCM data messages through the mock FCM.
    assert!(
        stdout
            .contains("push → Dave's Android phone: FCM data {badge: 5, kind: mail, new_mail: 0}"),
        "{stdout}"
    );
    // Carol's token dies on her second push; Exchange is then told to unsubscribe.
    assert!(stdout.contains("registration marked dead"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("folder events after the token died [")
                && l.ends_with("→ HTTP 200 Unsubscribe")),
        "{stdout}"
    );
    assert!(
        stdout.contains("registrations: 3 active, 1 dead"),
        "{stdout}"
    );
}

/// Answers one connection with `status`, then stops.
fn answer_once(status: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    });
    port
}

#[test]
fn probe_exits_0_only_for_a_2xx_answer() {
    let probe = |port: u16| {
        herald()
            .args(["probe", &format!("http://127.0.0.1:{port}/readyz")])
            .output()
            .unwrap()
    };
    assert!(probe(answer_once("200 OK")).status.success());
    let unready = probe(answer_once("503 Service Unavailable"));
    assert_eq!(unready.status.code(), Some(1));
    let said = String::from_utf8_lossy(&unready.stderr);
    assert!(said.contains("503"), "{said}");
    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(probe(closed).status.code(), Some(1));
}
