//! The README's first command: the demo runs end to end, says what it did, and leaves
//! nothing running.

use std::net::TcpStream;
use std::process::Command;

#[test]
fn the_demo_walks_every_phase_and_stops_what_it_started() {
    let root = env!("CARGO_MANIFEST_DIR");
    let binaries = std::path::Path::new(crate::support::secops_bin())
        .parent()
        .unwrap();
    assert!(
        binaries.join("kube-emulator").exists(),
        "the workspace build makes the emulator binary"
    );
    let output = Command::new(format!("{root}/scripts/demo"))
        .current_dir(root)
        .env("SECOPS_BIN_DIR", binaries)
        .output()
        .expect("run scripts/demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "Phase 2: the GitOps controller materializes bootstrap Secrets",
        "payments/db-password  secret/payments/db-password  git        pending",
        "outcome=\"done\"  total=2  counts={\"consumed\": 2}",
        "payments/db-password  secret/payments/db-password  vault      consumed",
        "outcome=\"rotated\"  version=2",
        "outcome=\"pushed\"  path=\"payments/webhook-cert\"  version=1",
        "outcome=\"done\"  counts={\"already-consumed\": 2}",
        "outcome=\"already-rotated\"  version=2",
        "outcome=\"done\"  counts={\"unchanged\": 1}",
        "payments/sneaky: failed",
        "exit code 3",
        "billing/db exists: 404",
        "ExternalSecret synced by ESO at 20",
        "Demo finished",
    ] {
        assert!(
            stdout.contains(line),
            "demo output lacks {line:?}:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            (fields.next(), fields.next()) == (Some("handover-write"), Some("written"))
        }),
        "the audit trail shows the handover's write:\n{stdout}"
    );
    if !stdout.contains("Engine-backed rotation: skipped") {
        for line in [
            "outcome=\"rotated\"  static_role=\"app\"",
            "old password: refused by PostgreSQL; new password (database/static-creds/app): logs in",
            "outcome=\"already-rotated\"",
            "the same id again: password unchanged: yes",
        ] {
            assert!(stdout.contains(line), "demo output lacks {line:?}:\n{stdout}");
        }
    }
    for prefix in [
        "OpenBao (dev) at http://",
        "Kubernetes API emulator at http://",
    ] {
        let address = stdout
            .split(prefix)
            .nth(1)
            .and_then(|rest| rest.split([';', '\n', ' ']).next())
            .expect("address printed");
        assert!(
            TcpStream::connect(address).is_err(),
            "{address} is still listening after the demo"
        );
    }
}
