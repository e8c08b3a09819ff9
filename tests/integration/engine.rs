//! Engine-backed rotation (issue #18 item 1, docs/contract.md §6.4): `rotate --static-role`
//! asks OpenBao's database engine to rotate a PostgreSQL role exactly once per rotation id.
//! The tests prove the revocation against a real PostgreSQL: the old password is refused,
//! the new one (from `static-creds`) logs in, a repeated id changes nothing, and a fault at
//! every step of the protocol converges on exactly one rotation per id.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::consumers::{Eso, EsoMode};
use crate::proxy::{FaultProxy, ProxyFault};
use crate::support::{
    chart_policy_with, free_port, secops, secops_with, token_of, Canaries, Cluster, TempDir, BAO,
    ROOT_TOKEN,
};

/// PostgreSQL's binaries: `pg_config --bindir`, else Debian's versioned directory.
fn postgres_bin() -> PathBuf {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .max();
    from_config
        .filter(|p| p.join("initdb").exists())
        .or(debian)
        .unwrap_or_else(|| {
            eprintln!("\nPostgreSQL is not installed. Run ./scripts/test once (it installs it), or apt-get install postgresql.\n");
            std::process::exit(2);
        })
}

/// A throwaway PostgreSQL cluster on a free loopback port, run as an unprivileged user
/// (PostgreSQL refuses root), with scram-sha-256 for password logins.
pub struct Postgres {
    pub port: u16,
    pub superuser_password: String,
    bin: PathBuf,
    dir: TempDir,
    /// Prefix that runs a command as the cluster's owner (empty when not root).
    as_owner: Vec<String>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = TempDir::new("postgres");
        let as_owner: Vec<String> = if is_root() {
            let owner = ["postgres", "nobody"]
                .into_iter()
                .find(|user| {
                    Command::new("id")
                        .arg(user)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                })
                .expect("an unprivileged user to run PostgreSQL");
            let status = Command::new("chown")
                .args(["-R", owner])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
            vec!["runuser".into(), "-u".into(), owner.into(), "--".into()]
        } else {
            Vec::new()
        };
        let superuser_password = format!("super-{}", free_port());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &superuser_password).unwrap();
        let postgres = Postgres {
            port: free_port(),
            superuser_password,
            bin,
            dir,
            as_owner,
        };
        if is_root() {
            Command::new("chown")
                .args([&postgres.as_owner[2]])
                .arg(&pwfile)
                .status()
                .unwrap();
        }
        let data = postgres.dir.path().join("data");
        let initdb = postgres
            .owner_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c password_encryption=scram-sha-256",
            postgres.port,
            postgres.dir.path().display()
        );
        let started = postgres
            .owner_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(postgres.dir.path().join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(postgres.dir.path().join("log")).unwrap_or_default()
        );
        postgres
    }

    fn owner_command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        match self.as_owner.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Runs SQL as the superuser over the local socket.
    pub fn sql(&self, statement: &str) {
        let output = self
            .owner_command("psql")
            .args(["-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Whether `user` logs in over TCP with `password` (scram-sha-256).
    pub fn logs_in(&self, user: &str, password: &str) -> bool {
        Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-w",
                "-c",
                "select 1",
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .owner_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A database secrets engine at `mount` managing the static role `app` of `postgres`.
fn database_engine(postgres: &Postgres, mount: &str) {
    postgres.sql("CREATE ROLE app LOGIN PASSWORD 'initial-password'");
    let (code, body) = BAO.api(
        "POST",
        &format!("sys/mounts/{mount}"),
        Some(json!({"type": "database"})),
    );
    assert!(code == 204 || code == 200, "{body}");
    let (code, body) = BAO.api(
        "POST",
        &format!("{mount}/config/pg"),
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "allowed_roles": "*",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", postgres.port),
            "username": "postgres",
            "password": postgres.superuser_password,
        })),
    );
    assert!(code == 204 || code == 200, "{body}");
    let (code, body) = BAO.api(
        "POST",
        &format!("{mount}/static-roles/app"),
        Some(json!({"db_name": "pg", "username": "app", "rotation_period": "24h"})),
    );
    assert!(code == 204 || code == 200, "{body}");
}

/// The role's current password and Vault's `last_vault_rotation`.
fn static_creds(mount: &str) -> (String, String) {
    let (code, body) = BAO.api("GET", &format!("{mount}/static-creds/app"), None);
    assert_eq!(code, 200, "{body}");
    (
        body["data"]["password"].as_str().unwrap().to_string(),
        body["data"]["last_vault_rotation"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

fn rotate_role(mount: &str, id: &str, extra: &[&str]) -> crate::support::Run {
    let role = format!("{mount}/app");
    let mut args = vec!["rotate", "--static-role", &role, "--rotation-id", id];
    args.extend_from_slice(extra);
    secops(None, &args)
}

#[test]
fn a_static_role_rotates_once_per_id_and_the_old_password_is_refused() {
    let canaries = Canaries::new();
    let postgres = Postgres::start();
    let mount = "db-once";
    database_engine(&postgres, mount);
    let (old, _) = static_creds(mount);
    canaries.plant_bytes(old.clone().into_bytes());
    assert!(postgres.logs_in("app", &old));

    let planned = rotate_role(mount, "db-1", &["--dry-run"]);
    assert_eq!(
        (planned.code, planned.json()["outcome"].clone()),
        (0, json!("planned")),
        "{}",
        planned.stderr
    );
    assert_eq!(static_creds(mount).0, old, "a dry run rotates nothing");

    let first = rotate_role(mount, "db-1", &[]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(first.json()["outcome"], "rotated");
    let (new, rotated_at) = static_creds(mount);
    canaries.plant_bytes(new.clone().into_bytes());
    assert_ne!(new, old);
    assert_eq!(
        first.json()["last_vault_rotation"],
        rotated_at.parse::<jiff::Timestamp>().unwrap().to_string()
    );
    assert!(
        !postgres.logs_in("app", &old),
        "the old password is revoked"
    );
    assert!(postgres.logs_in("app", &new), "the new password logs in");
    // One audit event per state change (issue #19 item 4): the engine call is one of them.
    let audited: Vec<(String, String)> = first
        .stderr
        .lines()
        .filter(|l| l.contains("\"audit\":true"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    let record = "secret/secops/rotation-ids/db-1";
    let expected = [
        ("rotation-claim", record),
        ("rotate", "db-once/static-roles/app"),
        ("rotation-complete", record),
        (
            "record-rotation",
            "secret/secops/engine-rotations/db-once/app",
        ),
    ]
    .map(|(action, target)| (action.to_string(), target.to_string()));
    assert_eq!(audited, expected, "{}", first.stderr);

    let again = rotate_role(mount, "db-1", &[]);
    assert_eq!(
        (again.code, again.json()["outcome"].clone()),
        (0, json!("already-rotated"))
    );
    assert_eq!(
        again.json()["last_vault_rotation"],
        first.json()["last_vault_rotation"],
        "a repeated id reports the rotation it made"
    );
    assert_eq!(
        static_creds(mount),
        (new.clone(), rotated_at),
        "a repeated id changes nothing"
    );
    assert!(postgres.logs_in("app", &new));

    let kv = secops(
        None,
        &[
            "rotate",
            "--path",
            "x/y",
            "--key",
            "k",
            "--generator",
            "hex",
            "--rotation-id",
            "db-1",
        ],
    );
    assert_eq!(kv.code, 3, "the id names the static role: {}", kv.stdout);

    let second = rotate_role(mount, "db-2", &[]);
    assert_eq!(second.json()["outcome"], "rotated");
    let (newest, _) = static_creds(mount);
    canaries.plant_bytes(newest.clone().into_bytes());
    assert!(!postgres.logs_in("app", &new) && postgres.logs_in("app", &newest));
    let missing = secops(
        None,
        &[
            "rotate",
            "--static-role",
            "db-once/nope",
            "--rotation-id",
            "db-3",
        ],
    );
    assert_eq!(missing.code, 4, "{}", missing.stdout);
    for run in [&first, &again, &kv, &second, &missing] {
        canaries.assert_run_clean(run);
    }
}

#[test]
fn engine_rotations_refresh_consumers_and_show_in_status() {
    let canaries = Canaries::new();
    let postgres = Postgres::start();
    let cluster = Cluster::start();
    let mount = "db-status";
    let ns = "engine-status";
    database_engine(&postgres, mount);
    crate::consumers::consumed_secret(&cluster, ns, &canaries);
    let eso = Eso::new(&cluster, &[ns], EsoMode::Sync(Duration::from_millis(300)));
    let role = format!("{mount}/app");
    let refresh = format!("externalsecret/{ns}/db");
    let restart = format!("deployment/{ns}/api");
    let run = eso.run_while(|| {
        secops(
            Some(&cluster),
            &[
                "rotate",
                "--static-role",
                &role,
                "--rotation-id",
                "engine-st-1",
                "--refresh",
                &refresh,
                "--restart",
                &restart,
            ],
        )
    });
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let refreshed: Vec<(Value, Value)> = run.json()["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["target"].clone(), c["outcome"].clone()))
        .collect();
    assert_eq!(
        refreshed,
        [
            (json!(refresh), json!("refreshed")),
            (json!(restart), json!("refreshed"))
        ],
        "{}",
        run.stdout
    );
    // status as the chart deploys it: the status policy rendered for this rotation reads
    // its record; the one rendered without it does not, and status shows no engine row.
    let values = |rotations: Value| {
        json!({
            "namespaces": [ns],
            "vault": {"address": "http://unused", "kvMount": "secret"},
            "rotations": rotations,
        })
    };
    let status_as = |rotations: Value| {
        let token = token_of("status", &chart_policy_with("status", values(rotations)));
        let env = [("VAULT_ADDR", BAO.addr.as_str()), ("VAULT_TOKEN", &token)];
        secops_with(
            Some(&cluster),
            &["status", "-n", ns, "--output", "json"],
            &env,
        )
    };
    let rotation = json!([{"name": "app", "schedule": "0 3 * * *", "staticRole": role}]);
    let blind = status_as(json!([]));
    assert!(
        blind.json()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] != "engine"),
        "a status policy without the rotation's record reads no engine row: {}",
        blind.stdout
    );
    let status = status_as(rotation);
    assert_eq!(status.code, 0, "{}", status.stdout);
    let rows = status.json()["rows"].as_array().unwrap().clone();
    let engine: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "engine").collect();
    assert_eq!(engine.len(), 1, "{rows:?}");
    assert_eq!(engine[0]["mount"], mount);
    assert_eq!(engine[0]["path"], "static-roles/app");
    assert_eq!(engine[0]["rotation_id"], "engine-st-1");
    assert_eq!(engine[0]["phase"], "rotated 1 time");
    assert_eq!(engine[0]["consumers"], json!([refresh, restart]));
    let (_, rotated_at) = static_creds(mount);
    assert_eq!(
        engine[0]["last_rotation"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap(),
        rotated_at.parse::<jiff::Timestamp>().unwrap()
    );
    let other = secops(
        Some(&cluster),
        &["status", "-n", "default", "--output", "json"],
    );
    assert!(
        other.json()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] != "engine"),
        "an engine row belongs to its consumers' namespaces"
    );
    canaries.assert_run_clean(&run);
    canaries.assert_run_clean(&status);
}

/// The crash matrix of issue #18: a fault before the rotate call, on it (sent, answer lost),
/// after it, on the record, and after the record; each converges with one rotation per id,
/// counted as rotate-role requests that reached Vault, and proven in PostgreSQL.
#[test]
fn the_engine_crash_matrix_converges_on_one_rotation_per_id() {
    let postgres = Postgres::start();
    let mount = "db-crash";
    database_engine(&postgres, mount);
    let proxy = FaultProxy::start(&BAO.addr);
    // Requests counted from the claim (the first write of the id's record): the claim, the
    // rotate call, the read of last_vault_rotation, the completed record, the state for
    // `status` after it.
    let claim = "POST /v1/secret/data/secops/rotation-ids/";
    let points: [(&str, usize); 5] = [
        ("the claim", 0),
        ("the rotate call", 1),
        ("just after the call", 2),
        ("the completed record", 3),
        ("just after the record", 4),
    ];
    let faults = [
        ProxyFault::Reset,
        ProxyFault::Status(503),
        ProxyFault::DropAfter,
    ];
    let (mut cases, mut converged) = (0, 0);
    let mut per_id = Vec::new();
    for (p, (point, offset)) in points.iter().enumerate() {
        for (f, fault) in faults.iter().enumerate() {
            let id = format!("crash-{p}-{f}");
            let (before, _) = static_creds(mount);
            let role = format!("{mount}/app");
            let args = [
                "--max-attempts",
                "1",
                "--timeout",
                "2s",
                "rotate",
                "--static-role",
                &role,
                "--rotation-id",
                &id,
                "--claim-lease",
                "1s",
            ];
            let through = || {
                secops_with(
                    None,
                    &args,
                    &[
                        ("VAULT_ADDR", proxy.addr.as_str()),
                        ("VAULT_TOKEN", ROOT_TOKEN),
                    ],
                )
            };
            proxy.arm_at(claim, *offset, *fault);
            let calls_before = proxy.forwarded("rotate-role");
            let faulted = through();
            cases += 1;
            // A lost answer to the call itself is settled in the same run by the proof.
            assert!(
                [0, 75].contains(&faulted.code),
                "{fault:?} at {point}: {}",
                faulted.stdout
            );
            proxy.arm(usize::MAX, ProxyFault::Reset);
            std::thread::sleep(Duration::from_millis(1100));
            let rerun = through();
            assert_eq!(
                rerun.code, 0,
                "{fault:?} at {point}, re-run: {}\n{}",
                rerun.stdout, rerun.stderr
            );
            let again = through();
            assert_eq!(
                again.json()["outcome"],
                "already-rotated",
                "{fault:?} at {point}"
            );
            // Whichever run proved the rotation, each reports Vault's own time of it.
            let vault_rotation = static_creds(mount).1.parse::<jiff::Timestamp>().unwrap();
            for run in [&rerun, &again] {
                assert_eq!(
                    run.json()["last_vault_rotation"],
                    vault_rotation.to_string(),
                    "{fault:?} at {point}: {}",
                    run.stdout
                );
            }
            let state = BAO
                .read("secret", &format!("secops/engine-rotations/{mount}/app"))
                .unwrap();
            assert_eq!(
                (&state["rotation_id"], &state["last_vault_rotation"]),
                (&json!(id), &json!(vault_rotation.to_string())),
                "{fault:?} at {point}: the state status reads names the rotation"
            );
            let rotations = proxy.forwarded("rotate-role") - calls_before;
            per_id.push(rotations);
            let (after, _) = static_creds(mount);
            let proven = after != before
                && !postgres.logs_in("app", &before)
                && postgres.logs_in("app", &after);
            converged += usize::from(rotations == 1 && proven);
            assert_eq!(rotations, 1, "{fault:?} at {point}: rotations for one id");
            assert!(
                proven,
                "{fault:?} at {point}: the new password replaced the old in PostgreSQL"
            );
        }
    }
    eprintln!(
        "engine crash matrix: {cases} faults injected at {} points, rotations per id {per_id:?}, {converged}/{cases} converged",
        points.len()
    );
}

/// Phase 4, on age: `--if-older-than` rotates only a role that is due.
#[test]
fn a_static_role_rotates_only_when_due() {
    let postgres = Postgres::start();
    let mount = "db-due";
    database_engine(&postgres, mount);
    let (before, _) = static_creds(mount);
    let fresh = rotate_role(mount, "due-1", &["--if-older-than", "1h"]);
    assert_eq!(
        (fresh.code, fresh.json()["outcome"].clone()),
        (0, json!("not-due")),
        "{}",
        fresh.stdout
    );
    assert_eq!(static_creds(mount).0, before);
    std::thread::sleep(Duration::from_millis(2100));
    let due = rotate_role(mount, "due-2", &["--if-older-than", "1s"]);
    assert_eq!(due.json()["outcome"], "rotated", "{}", due.stdout);
    assert_ne!(static_creds(mount).0, before);
}

/// A rotate call that failed without rotating releases the id's claim, so the retry rotates
/// at once instead of waiting out the lease; the failed run never reports a rotation.
#[test]
fn a_failed_engine_call_releases_its_claim_for_the_retry() {
    let postgres = Postgres::start();
    let mount = "db-failed";
    database_engine(&postgres, mount);
    let (before, rotated_before) = static_creds(mount);
    let proxy = FaultProxy::start(&BAO.addr);
    proxy.arm_at("rotate-role", 0, ProxyFault::Status(500));
    let role = format!("{mount}/app");
    let args = [
        "rotate",
        "--static-role",
        &role,
        "--rotation-id",
        "failed-1",
    ];
    let failed = secops_with(
        None,
        &[&["--max-attempts", "1"][..], &args].concat(),
        &[
            ("VAULT_ADDR", proxy.addr.as_str()),
            ("VAULT_TOKEN", ROOT_TOKEN),
        ],
    );
    assert_eq!(failed.code, 75, "{}", failed.stdout);
    assert_eq!(static_creds(mount), (before.clone(), rotated_before));
    // The default lease (120 s) is far longer than the retry's wait for a held claim.
    let retry = secops(None, &args);
    assert_eq!(
        (retry.code, retry.json()["outcome"].clone()),
        (0, json!("rotated")),
        "{}\n{}",
        retry.stdout,
        retry.stderr
    );
    assert_ne!(static_creds(mount).0, before);
}

/// Argo Events delivers at least once: runs of one id racing each other make one rotate call,
/// and one of them reports it.
#[test]
fn racing_runs_of_one_id_rotate_the_role_once() {
    let postgres = Postgres::start();
    let mount = "db-race";
    database_engine(&postgres, mount);
    let proxy = FaultProxy::start(&BAO.addr);
    let role = format!("{mount}/app");
    let args = ["rotate", "--static-role", &role, "--rotation-id", "race-1"];
    let runs: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    secops_with(
                        None,
                        &args,
                        &[
                            ("VAULT_ADDR", proxy.addr.as_str()),
                            ("VAULT_TOKEN", ROOT_TOKEN),
                        ],
                    )
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut outcomes: Vec<String> = runs
        .iter()
        .map(|run| {
            assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
            run.json()["outcome"].as_str().unwrap().to_string()
        })
        .collect();
    outcomes.sort();
    assert_eq!(proxy.forwarded("rotate-role"), 1, "{outcomes:?}");
    assert_eq!(
        outcomes,
        [vec!["already-rotated"; 5], vec!["rotated"]].concat(),
    );
}
