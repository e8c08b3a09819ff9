//! The command line itself (docs/contract.md §1 and §5): help, usage errors, and the rule
//! that every usage error is reported before anything connects.

use std::io::Read as _;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::{secops_with, Cluster, TempDir};

/// A loopback port that counts the connections made to it, standing in for both Vault and
/// the API server: a step that connects before validating shows up in the count.
struct Tripwire {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                // Never answer: a client that got this far would time out and retry (75).
                let mut stream = stream;
                let _ = stream.read(&mut [0u8; 64]);
                std::thread::sleep(std::time::Duration::from_secs(30));
            }
        });
        Tripwire { port, connections }
    }
}

#[test]
fn help_lists_every_command() {
    let run = secops_with(None, &["--help"], &[]);
    assert_eq!(run.code, 0);
    for command in [
        "read-bootstrap",
        "write-vault",
        "mark-consumed",
        "handover",
        "rotate",
        "push-secret",
        "status",
    ] {
        assert!(run.stdout.contains(command), "--help lacks {command}");
    }
    assert!(run.stdout.contains("EXIT CODES"));
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let run = secops_with(None, &["handover", "--no-such-flag"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "usage errors print no result document"
    );
}

#[test]
fn bad_values_exit_2_with_one_line() {
    let cluster = Cluster::start();
    for args in [
        &["write-vault", "--secret", "no-slash"][..],
        &["handover", "--shard", "5/4"][..],
        &["handover", "--allowed-path", "a//b"][..],
        &["handover", "-n", "Bad_NS"][..],
    ] {
        let run = secops_with(
            Some(&cluster),
            args,
            &[("VAULT_ADDR", "http://127.0.0.1:1"), ("VAULT_TOKEN", "x")],
        );
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        let result = run.json();
        assert_eq!(result["outcome"], "error");
        assert_eq!(
            result["error"]["message"].as_str().unwrap().lines().count(),
            1
        );
    }
}

#[test]
fn missing_vault_address_is_a_configuration_error() {
    let cluster = Cluster::start();
    let run = secops_with(Some(&cluster), &["read-bootstrap"], &[("VAULT_TOKEN", "x")]);
    assert_eq!(run.code, 2);
    assert!(run.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("VAULT_ADDR"));
}

#[test]
fn every_usage_error_exits_2_before_anything_connects() {
    let tripwire = Tripwire::start();
    let dir = TempDir::new("unreachable");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u, namespace: ns}}}}]\n\
             current-context: x\n",
            port = tripwire.port
        ),
    )
    .unwrap();
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, "a.b.c").unwrap();
    let vault = format!("http://127.0.0.1:{}", tripwire.port);
    // Kubernetes auth: the first remote call would be the login, which the tripwire swallows.
    let env = [
        ("VAULT_ADDR", vault.as_str()),
        ("SECOPS_VAULT_AUTH", "kubernetes"),
        ("SECOPS_VAULT_ROLE", "secops"),
        ("SECOPS_VAULT_JWT_FILE", jwt.to_str().unwrap()),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
    ];
    let rotate = [
        "rotate",
        "--key",
        "k",
        "--rotation-id",
        "r1",
        "--generator",
        "hex",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        rotate
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    };
    let cases: Vec<Vec<&str>> = vec![
        vec!["write-vault", "--secret", "no-slash"],
        vec!["mark-consumed", "--secret", "ns/Bad_Name"],
        vec!["handover", "--shard", "5/4"],
        vec!["handover", "-n", "Bad_NS"],
        vec!["handover", "--allowed-path", "a//b"],
        vec!["read-bootstrap", "--kv-mount", "../sys"],
        vec!["push-secret", "--path", "a/b"],
        vec!["push-secret", "--secret", "ns/s", "--path", "a/../b"],
        with(&["--path", "a/../b"]),
        with(&["--path", "a/b", "--refresh", "deployment/a/b"]),
        with(&["--path", "a/b", "--restart", "externalsecret/a/b"]),
        vec![
            "rotate",
            "--path",
            "a/b",
            "--key",
            "k",
            "--rotation-id",
            "../x",
            "--generator",
            "hex",
        ],
        vec![
            "rotate",
            "--path",
            "a/b",
            "--key",
            "k",
            "--rotation-id",
            "r",
            "--generator",
            "vault-policy",
        ],
        vec![
            "rotate",
            "--path",
            "a/b",
            "--key",
            "k",
            "--rotation-id",
            "r",
            "--generator",
            "password",
            "--length",
            "4",
        ],
        vec!["--timeout", "0", "status"],
        vec!["--timeout", "18446744073709551615", "status"],
        vec!["--timeout", "99999999999999999h", "status"],
        vec!["status", "--grace", "9223372036854775808"],
        with(&["--path", "a/b", "--claim-lease", "0s"]),
    ];
    for args in &cases {
        let run = secops_with(None, args, &env);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        if !run.stdout.is_empty() {
            let message = run.json()["error"]["message"].as_str().unwrap().to_string();
            assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        }
    }
    assert_eq!(
        tripwire.connections.load(Ordering::SeqCst),
        0,
        "a usage error reached the network"
    );
    // The tripwire works: a valid command does connect (and times out: 75).
    let run = secops_with(
        None,
        &[
            "--timeout",
            "200ms",
            "--max-attempts",
            "1",
            "write-vault",
            "--secret",
            "ns/s",
        ],
        &env,
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(tripwire.connections.load(Ordering::SeqCst) > 0);
}

#[test]
fn boolean_environment_variables_take_what_the_vault_cli_takes() {
    let cluster = Cluster::start();
    for (value, dry_run) in [("1", true), ("true", true), ("0", false), ("false", false)] {
        // Vault is unreachable (75): what matters is that the values parse, and that
        // VAULT_SKIP_VERIFY's value is honoured (the client warns when it is on).
        let run = secops_with(
            Some(&cluster),
            &["--max-attempts", "1", "--timeout", "200ms", "status"],
            &[
                ("VAULT_ADDR", "http://127.0.0.1:1"),
                ("VAULT_TOKEN", "x"),
                ("SECOPS_DRY_RUN", value),
                ("VAULT_SKIP_VERIFY", value),
            ],
        );
        assert_ne!(run.code, 2, "{value} must parse: {}", run.stderr);
        let warned = run.stderr.contains("TLS verification of Vault is OFF");
        assert_eq!(warned, dry_run, "VAULT_SKIP_VERIFY={value}: {}", run.stderr);
    }
    let run = secops_with(
        Some(&cluster),
        &["status"],
        &[
            ("VAULT_ADDR", "http://127.0.0.1:1"),
            ("VAULT_TOKEN", "x"),
            ("SECOPS_DRY_RUN", "maybe"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}
