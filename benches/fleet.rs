//! Fleet-scale figures (not a test): start-up and one write-vault next to the shell-step
//! alternative (`kubectl` + `bao kv put`), batch handover throughput and Vault requests per
//! handover (counted by OpenBao's file audit device) against the raw KV v2 write ceiling
//! (measured by `wrk`), peak RSS, and binary size. Run with `scripts/bench`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_emulator::Emulator;
use serde_json::json;

const ROOT_TOKEN: &str = "root";

struct Measured {
    wall: Duration,
    peak_rss_kib: i64,
    /// CPU seconds (user + system) of the measured process itself.
    cpu: f64,
    code: i32,
    stdout: String,
}

/// Runs a command and reads its peak RSS. The command runs under GNU time when present: a
/// child forked from this (large) process would otherwise report the parent's RSS as its
/// own high-water mark.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which reports its rusage
fn measure(command: &mut Command) -> Measured {
    let report = std::env::temp_dir().join(format!("secops-bench-rss-{}", std::process::id()));
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut command = if gnu_time {
        let mut wrapped = Command::new("/usr/bin/time");
        wrapped
            .arg("-f")
            .arg("%M %U %S")
            .arg("-o")
            .arg(&report)
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                wrapped.env(key, value);
            }
        }
        wrapped
    } else {
        std::mem::replace(command, Command::new("true"))
    };
    let start = Instant::now();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).ok();
        text
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage are valid out-pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let wall = start.elapsed();
    let rusage_cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (peak_rss_kib, cpu) = match gnu_time {
        true => {
            let line = std::fs::read_to_string(&report)
                .ok()
                .and_then(|t| t.trim().lines().last().map(String::from))
                .unwrap_or_default();
            let fields: Vec<f64> = line
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or(0.0);
            (field(0) as i64, field(1) + field(2))
        }
        false => (
            usage.ru_maxrss,
            rusage_cpu(usage.ru_utime) + rusage_cpu(usage.ru_stime),
        ),
    };
    Measured {
        wall,
        peak_rss_kib,
        cpu,
        code: libc::WEXITSTATUS(status),
        stdout: reader.join().unwrap_or_default(),
    }
}

struct Bao {
    addr: String,
    audit: PathBuf,
    child: std::process::Child,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::zombie_processes)] // on the error path the bench aborts anyway
fn start_bao(dir: &Path) -> Bao {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let audit = dir.join("audit.log");
    let config = dir.join("audit.hcl");
    std::fs::write(
        &config,
        format!(
            "audit \"file\" \"bench\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            audit.display()
        ),
    )
    .unwrap();
    let child = Command::new("bao")
        .args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={ROOT_TOKEN}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            "-dev-no-store-token",
        ])
        .arg(format!("-config={}", config.display()))
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bao on PATH (scripts/bench installs it)");
    let addr = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &format!("{addr}/v1/sys/health")])
            .status()
            .is_ok_and(|s| s.success())
        {
            return Bao { addr, audit, child };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("OpenBao did not start");
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU seconds of this process: the in-process emulator's threads, while a run is measured.
fn own_cpu() -> f64 {
    process_cpu(std::process::id())
}

fn audited_requests(audit: &Path) -> usize {
    use std::io::BufRead as _;
    let Ok(file) = std::fs::File::open(audit) else {
        return 0;
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("\"type\":\"request\""))
        .count()
}

/// The wrk script for the ceiling: a KV v2 write to a distinct path per request.
fn ceiling_script(dir: &Path) -> PathBuf {
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "counter = 0\nrequest = function()\n  counter = counter + 1\n  local path = \"/v1/secret/data/ceiling/\" .. math.random(1, 1000000000) .. \"-\" .. counter\n  \
             return wrk.format(\"POST\", path, {{[\"X-Vault-Token\"] = \"{ROOT_TOKEN}\", [\"Content-Type\"] = \"application/json\"}}, '{{\"data\":{{\"v\":\"x\"}}}}')\nend\n"
        ),
    )
    .unwrap();
    script
}

/// The raw KV v2 write ceiling: wrk running `script` for `seconds` over `connections`
/// connections; `None` without wrk.
fn write_ceiling(bao: &Bao, script: &Path, connections: u32, seconds: u32) -> Option<f64> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "-s",
        ])
        .arg(script)
        .arg(&bao.addr)
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
}

fn seed(emulator: &Emulator, namespace: &str, count: usize) {
    let mut cluster = emulator.cluster();
    cluster
        .create_object(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
        .unwrap();
    for i in 0..count {
        cluster
            .create_object(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("s{i}"), "namespace": namespace, "labels": {"secops.dev/class": "bootstrap"}, "annotations": {"secops.dev/vault-path": format!("{namespace}/s{i}")}},
                "stringData": {"password": format!("bench-value-{i}"), "user": "app"},
            }))
            .unwrap();
    }
}

fn secops(bin: &str, bao: &Bao, kubeconfig: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", ROOT_TOKEN)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn");
    command
}

/// Peak RSS when Secrets are many or large: each command walks metadata-only pages and
/// holds only the Secrets it is handling, so neither count nor size should move it much.
fn memory_under_hostile_sizes(
    out: &mut impl std::io::Write,
    bin: &str,
    bao: &Bao,
    kubeconfig: &Path,
    emulator: &Emulator,
) {
    let large = 700 * 1024;
    {
        let mut cluster = emulator.cluster();
        cluster
            .create_object(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "large"}}),
            )
            .unwrap();
        for i in 0..100 {
            // Text that does not compress or repeat: every Secret a distinct 700 KiB value.
            let value: String = (0..large)
                .map(|j| char::from(b'a' + ((i * 7919 + j * 104_729) % 26) as u8))
                .collect();
            cluster
                .create_object(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("l{i}"), "namespace": "large", "labels": {"secops.dev/class": "bootstrap"}, "annotations": {"secops.dev/vault-path": format!("large/l{i}")}},
                    "stringData": {"blob": value},
                }))
                .unwrap();
        }
    }
    seed(emulator, "many", 10_000);
    writeln!(
        out,
        "\n| Secrets | command | peak RSS | wall |\n|---|---|---|---|"
    )
    .unwrap();
    for (label, args) in [
        ("100 x 700 KiB", &["read-bootstrap", "-n", "large"][..]),
        ("100 x 700 KiB", &["handover", "-n", "large"]),
        (
            "100 x 700 KiB",
            &["status", "-n", "large", "--output", "json"],
        ),
        ("10,000 small", &["read-bootstrap", "-n", "many"]),
        (
            "10,000 small",
            &["status", "-n", "many", "--output", "json"],
        ),
    ] {
        let run = measure(&mut secops(bin, bao, kubeconfig, args));
        assert!(
            run.code == 0 || args[0] == "status",
            "{args:?}: {}",
            run.stdout
        );
        writeln!(
            out,
            "| {label} | {} | {:.1} MiB | {:.2} s |",
            args[0],
            run.peak_rss_kib as f64 / 1024.0,
            run.wall.as_secs_f64()
        )
        .unwrap();
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_secops");
    let dir = std::env::temp_dir().join(format!("secops-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bao = start_bao(&dir);
    let emulator = Emulator::start().unwrap();
    let kubeconfig = dir.join("kubeconfig");
    emulator.write_kubeconfig(&kubeconfig).unwrap();
    let mut out = std::io::stdout().lock();

    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    writeln!(
        out,
        "secops binary ({}): {:.1} MiB",
        if bin.contains("release") {
            "release, stripped"
        } else {
            "debug"
        },
        size as f64 / 1_048_576.0
    )
    .unwrap();

    // 1. One write-vault, whole process, against the shell-step alternative.
    seed(&emulator, "single", 12);
    let (mut ours, mut ours_rss, mut theirs, mut theirs_rss) = (vec![], vec![], vec![], vec![]);
    for i in 0..10 {
        let secret = format!("single/s{i}");
        let run = measure(&mut secops(
            bin,
            &bao,
            &kubeconfig,
            &["write-vault", "--secret", &secret],
        ));
        assert_eq!(run.code, 0, "{}", run.stdout);
        ours.push(run.wall.as_secs_f64());
        ours_rss.push(run.peak_rss_kib as f64);
        // What an Argo shell step does today: read the Secret with kubectl, write with bao.
        let get = measure(
            Command::new("kubectl")
                .args([
                    "-n",
                    "single",
                    "get",
                    "secret",
                    &format!("s{}", i + 1),
                    "-o",
                    "json",
                ])
                .env("KUBECONFIG", &kubeconfig),
        );
        let put = measure(
            Command::new("bao")
                .args([
                    "kv",
                    "put",
                    "-mount=secret",
                    &format!("shell/s{i}"),
                    "password=value",
                    "user=app",
                ])
                .env("VAULT_ADDR", &bao.addr)
                .env("VAULT_TOKEN", ROOT_TOKEN),
        );
        assert_eq!((get.code, put.code), (0, 0));
        theirs.push((get.wall + put.wall).as_secs_f64());
        theirs_rss.push(get.peak_rss_kib.max(put.peak_rss_kib) as f64);
    }
    writeln!(
        out,
        "\n| one Secret, whole process (median of 10) | wall | peak RSS |\n|---|---|---|"
    )
    .unwrap();
    writeln!(
        out,
        "| secops write-vault | {:.3} s | {:.1} MiB |",
        median(ours.clone()),
        median(ours_rss.clone()) / 1024.0
    )
    .unwrap();
    writeln!(
        out,
        "| kubectl get + bao kv put | {:.3} s | {:.1} MiB |",
        median(theirs.clone()),
        median(theirs_rss.clone()) / 1024.0
    )
    .unwrap();
    writeln!(
        out,
        "| ratio | {:.2} | {:.2} |",
        median(ours) / median(theirs),
        median(ours_rss) / median(theirs_rss)
    )
    .unwrap();

    // 2. Batch handover throughput and efficiency. The ceiling is measured again right
    // before and right after each batch (best of 4/8/16 connections each time) and
    // averaged: the shared cores here drift by a third within minutes, and a ceiling taken
    // at another moment would move the efficiency more than anything secops does.
    let script = ceiling_script(&dir);
    let best_ceiling = |seconds| {
        [4, 8, 16]
            .into_iter()
            .filter_map(|c| write_ceiling(&bao, &script, c, seconds))
            .max_by(f64::total_cmp)
    };
    let start_ceiling = best_ceiling(4);
    match start_ceiling {
        Some(rate) => writeln!(
            out,
            "\nraw KV v2 write ceiling at the start (wrk, best of 4/8/16 connections): {rate:.0} writes/s"
        )
        .unwrap(),
        None => writeln!(
            out,
            "\nraw KV v2 write ceiling: wrk not installed; efficiency not computed"
        )
        .unwrap(),
    }
    memory_under_hostile_sizes(&mut out, bin, &bao, &kubeconfig, &emulator);
    let sizes: Vec<usize> = std::env::var("SECOPS_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let concurrencies: Vec<u32> = std::env::var("SECOPS_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8,32,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    writeln!(out, "\n| secrets | concurrency | wall | CPU: secops / emulator / OpenBao | handovers/s | Vault requests/handover | ceiling | efficiency | against the start ceiling | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|").unwrap();
    for count in sizes {
        for &concurrency in &concurrencies {
            let namespace = format!("batch-{count}-{concurrency}");
            seed(&emulator, &namespace, count);
            let ceiling_before = best_ceiling(2);
            let before = audited_requests(&bao.audit);
            let (bao_cpu_before, emulator_cpu_before) = (process_cpu(bao.child.id()), own_cpu());
            let run = measure(&mut secops(
                bin,
                &bao,
                &kubeconfig,
                &[
                    "handover",
                    "-n",
                    &namespace,
                    "--concurrency",
                    &concurrency.to_string(),
                ],
            ));
            assert_eq!(run.code, 0, "{}", run.stdout);
            let bao_cpu = process_cpu(bao.child.id()) - bao_cpu_before;
            let emulator_cpu = own_cpu() - emulator_cpu_before;
            let requests = audited_requests(&bao.audit) - before;
            let ceiling_after = best_ceiling(2);
            let ceiling = ceiling_before
                .zip(ceiling_after)
                .map(|(before, after)| (before + after) / 2.0);
            let per_handover = requests as f64 / count as f64;
            let rate = count as f64 / run.wall.as_secs_f64();
            let efficiency_against = |c: f64| format!("{:.0}%", 100.0 * rate * per_handover / c);
            let (ceiling, efficiency, against_start) = match (ceiling, start_ceiling) {
                (Some(c), Some(start)) => (
                    format!("{c:.0}/s"),
                    efficiency_against(c),
                    efficiency_against(start),
                ),
                _ => ("n/a".into(), "n/a".into(), "n/a".into()),
            };
            writeln!(
                out,
                "| {count} | {concurrency} | {:.2} s | {:.2} / {emulator_cpu:.2} / {bao_cpu:.2} s | {rate:.0} | {per_handover:.3} | {ceiling} | {efficiency} | {against_start} | {:.1} MiB |",
                run.wall.as_secs_f64(),
                run.cpu,
                run.peak_rss_kib as f64 / 1024.0
            )
            .unwrap();
        }
    }
    drop(emulator);
    drop(bao);
    let _ = std::fs::remove_dir_all(&dir);
}
