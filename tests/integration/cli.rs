//! The command line itself (contract section 1 and 5): help, usage errors, stubs.

use crate::support::{secops_with, Cluster};

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
