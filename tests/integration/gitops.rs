//! GitOps that fights back (#19 item 3, `docs/gitops.md`): each consume mode, then the sync
//! a GitOps controller makes from Git, acted out with the real `kubectl apply -f` of the
//! same manifest (Argo CD's default client-side apply: a three-way strategic merge against
//! `kubectl.kubernetes.io/last-applied-configuration`). The marking must survive the sync, or
//! the next handover must find and re-mark the Secret without a second Vault version.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use crate::support::{chart_token, secops_with, Canaries, Cluster, Run, BAO};

/// A bootstrap Secret as it sits in Git (decrypted): one key as `data`, one as `stringData`,
/// the two forms a SOPS- or SealedSecrets-rendered manifest uses.
fn write_manifest(dir: &Path, namespace: &str, user: &[u8], password: &[u8]) -> PathBuf {
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {namespace}\n  \
         labels:\n    secops.dev/class: bootstrap\n  annotations:\n    \
         secops.dev/vault-path: {namespace}/db\ntype: Opaque\ndata:\n  user: {}\n\
         stringData:\n  password: \"{}\"\n",
        STANDARD.encode(user),
        String::from_utf8(password.to_vec()).unwrap(),
    );
    let file = dir.join(format!("{namespace}-db.yaml"));
    std::fs::write(&file, manifest).unwrap();
    file
}

/// `kubectl apply -f FILE`, as a sync does it; kubectl's one-line verdict.
fn sync(cluster: &Cluster, manifest: &Path) -> String {
    let output = Command::new("kubectl")
        .args(["apply", "-f"])
        .arg(manifest)
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .expect("kubectl is installed");
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(output.status.success(), "kubectl apply failed: {stdout}");
    stdout
}

/// secops under the Vault policies the chart renders for each step's role.
struct Steps<'a> {
    cluster: &'a Cluster,
    namespace: &'a str,
    handover_token: String,
    status_token: String,
    canaries: &'a Canaries,
}

impl<'a> Steps<'a> {
    fn new(cluster: &'a Cluster, namespace: &'a str, canaries: &'a Canaries) -> Self {
        let namespaces = [namespace.to_string()];
        Steps {
            cluster,
            namespace,
            handover_token: chart_token("handover", &namespaces),
            status_token: chart_token("status", &namespaces),
            canaries,
        }
    }

    fn run(&self, token: &str, args: &[&str]) -> Run {
        let env = [("VAULT_ADDR", BAO.addr.as_str()), ("VAULT_TOKEN", token)];
        let run = secops_with(Some(self.cluster), args, &env);
        self.canaries.assert_run_clean(&run);
        run
    }

    /// One `handover --mode MODE`; the Secret's item.
    fn handover(&self, mode: &str, code: i32) -> Value {
        let args = ["handover", "-n", self.namespace, "--mode", mode];
        let run = self.run(&self.handover_token, &args);
        assert_eq!(run.code, code, "{}\n{}", run.stdout, run.stderr);
        let items = run.json()["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "{}", run.stdout);
        items[0].clone()
    }

    /// `status`: its exit code and the violation kinds of the Secret's rows.
    fn status(&self) -> (i32, Vec<String>) {
        let args = ["status", "-n", self.namespace, "--output", "json"];
        let run = self.run(&self.status_token, &args);
        assert!(
            run.json()["rows"].is_array(),
            "{}\n{}",
            run.stdout,
            run.stderr
        );
        let kinds = run.json()["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["violations"].as_array().cloned().unwrap_or_default())
            .map(|v| v["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        (run.code, kinds)
    }

    fn secret(&self) -> Option<Value> {
        self.cluster.secret(self.namespace, "db")
    }

    fn vault_version(&self) -> u64 {
        BAO.current_version("secret", &format!("{}/db", self.namespace))
    }

    /// Backdates the path's claim past `--path-claim-lease`: a re-created Secret's run waits
    /// out a younger claim of the deleted uid (exit 75, `docs/contract.md` §6.8).
    fn age_claim(&self) {
        let at = format!("secops/claims/{}/db", self.namespace);
        let mut claim = BAO.read("secret", &at).expect("the handover's claim");
        claim["claimed_at"] = serde_json::json!("1");
        BAO.write("secret", &at, claim);
    }
}

fn consumed_label(secret: &Value) -> &Value {
    &secret["metadata"]["labels"]["secops.dev/state"]
}

fn annotation<'v>(secret: &'v Value, name: &str) -> &'v Value {
    &secret["metadata"]["annotations"][name]
}

fn data_keys(secret: &Value) -> Vec<String> {
    secret["data"]
        .as_object()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn annotate_marking_survives_a_sync_of_the_git_manifest() {
    let cluster = Cluster::start();
    let ns = "gitops-annotate";
    cluster.namespace(ns);
    let canaries = Canaries::new();
    let steps = Steps::new(&cluster, ns, &canaries);
    let (user, password) = (canaries.plant("user"), canaries.plant("password"));
    let manifest = write_manifest(cluster.dir.path(), ns, &user, &password);
    assert_eq!(sync(&cluster, &manifest), "secret/db created");

    let item = steps.handover("annotate", 0);
    assert_eq!(item["outcome"], "consumed", "{item}");
    let marked = steps.secret().unwrap();
    assert_eq!(steps.vault_version(), 1);

    // The sync: labels and annotations Git does not name are not the manifest's to remove.
    // (`configured`, not `unchanged`: `stringData` is write-only, so every apply sends it.)
    assert_eq!(sync(&cluster, &manifest), "secret/db configured");
    let synced = steps.secret().unwrap();
    assert_eq!(consumed_label(&synced), "consumed");
    for name in [
        "secops.dev/consumed-at",
        "secops.dev/vault-version",
        "secops.dev/fingerprint",
        "secops.dev/consumed-mode",
    ] {
        assert_eq!(
            annotation(&synced, name),
            annotation(&marked, name),
            "{name}"
        );
    }

    let item = steps.handover("annotate", 0);
    assert_eq!(item["outcome"], "already-consumed", "{item}");
    assert_eq!(steps.vault_version(), 1, "no second Vault version");
    assert_eq!(steps.status(), (0, vec![]));
}

#[test]
fn strip_is_undone_by_a_sync_and_the_next_handover_strips_again_without_a_vault_write() {
    let cluster = Cluster::start();
    let ns = "gitops-strip";
    cluster.namespace(ns);
    let canaries = Canaries::new();
    let steps = Steps::new(&cluster, ns, &canaries);
    let (user, password) = (canaries.plant("user"), canaries.plant("password"));
    let manifest = write_manifest(cluster.dir.path(), ns, &user, &password);
    assert_eq!(sync(&cluster, &manifest), "secret/db created");

    let item = steps.handover("strip", 0);
    assert_eq!(item["outcome"], "consumed", "{item}");
    assert!(data_keys(&steps.secret().unwrap()).is_empty(), "stripped");
    // kubectl's last-applied-configuration annotation holds a copy of the manifest, values
    // included: a tombstone keeps no copy anywhere.
    let path = format!("{ns}/db");
    canaries.assert_state_clean(&cluster, ns, "secret", &[&path]);
    let consumed_at = annotation(&steps.secret().unwrap(), "secops.dev/consumed-at").clone();

    // The fight: the three-way merge puts back every key the last applied manifest had.
    assert_eq!(sync(&cluster, &manifest), "secret/db configured");
    let synced = steps.secret().unwrap();
    assert_eq!(
        data_keys(&synced),
        ["password", "user"],
        "the sync re-adds the data"
    );
    assert_eq!(consumed_label(&synced), "consumed", "and keeps the marking");
    assert_eq!(steps.status(), (3, vec!["not-stripped".to_string()]));

    // Re-detected: the data is the handed-over data, so it is stripped again; Vault is not
    // written, and the marking keeps its first instant.
    let item = steps.handover("strip", 0);
    assert_eq!(item["outcome"], "consumed", "{item}");
    assert_eq!(item["written"], false, "{item}");
    let restripped = steps.secret().unwrap();
    assert!(data_keys(&restripped).is_empty(), "{restripped}");
    canaries.assert_state_clean(&cluster, ns, "secret", &[&path]);
    assert_eq!(
        annotation(&restripped, "secops.dev/consumed-at"),
        &consumed_at
    );
    assert_eq!(steps.vault_version(), 1, "no second Vault version");
    assert_eq!(steps.status(), (0, vec![]));
    let again = steps.handover("strip", 0);
    assert_eq!(again["outcome"], "already-consumed", "{again}");

    // The workflow's path (plan, then write-vault and mark-consumed per item) does the same,
    // whatever mode the run was given: a tombstone stays a tombstone.
    assert_eq!(sync(&cluster, &manifest), "secret/db configured");
    let secret = format!("{ns}/db");
    let plan = steps.run(&steps.handover_token, &["read-bootstrap", "-n", ns]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    assert_eq!(
        plan.json()["items"][0]["state"],
        "handed-over",
        "actionable: {}",
        plan.stdout
    );
    let write = steps.run(&steps.handover_token, &["write-vault", "--secret", &secret]);
    assert_eq!(
        (write.code, write.json()["outcome"].as_str()),
        (0, Some("unchanged")),
        "{}",
        write.stdout
    );
    let mark = ["mark-consumed", "--secret", &secret, "--mode", "annotate"];
    let mark = steps.run(&steps.handover_token, &mark);
    assert_eq!(
        (mark.code, mark.json()["outcome"].as_str()),
        (0, Some("consumed")),
        "{}",
        mark.stdout
    );
    assert_eq!(mark.json()["mode"], "strip");
    assert!(data_keys(&steps.secret().unwrap()).is_empty());
    canaries.assert_state_clean(&cluster, ns, "secret", &[&path]);
    assert_eq!(steps.vault_version(), 1, "no second Vault version");

    // Git changed the value after the handover: that is drift, never stripped away unseen.
    let changed = canaries.plant("changed");
    let edited = write_manifest(cluster.dir.path(), ns, &user, &changed);
    assert_eq!(sync(&cluster, &edited), "secret/db configured");
    let item = steps.handover("strip", 3);
    assert_eq!(item["error"]["kind"], "drifted", "{item}");
    assert_eq!(data_keys(&steps.secret().unwrap()), ["password", "user"]);
    assert_eq!(steps.vault_version(), 1, "Vault stays authoritative");
    assert_eq!(steps.status().0, 3);
}

#[test]
fn delete_is_undone_by_a_sync_and_the_re_created_secret_is_re_adopted_without_a_vault_write() {
    let cluster = Cluster::start();
    let ns = "gitops-delete";
    cluster.namespace(ns);
    let canaries = Canaries::new();
    let steps = Steps::new(&cluster, ns, &canaries);
    let (user, password) = (canaries.plant("user"), canaries.plant("password"));
    let manifest = write_manifest(cluster.dir.path(), ns, &user, &password);
    assert_eq!(sync(&cluster, &manifest), "secret/db created");
    let first_uid = steps.secret().unwrap()["metadata"]["uid"].clone();

    let item = steps.handover("delete", 0);
    assert_eq!(item["outcome"], "consumed", "{item}");
    assert!(steps.secret().is_none(), "deleted");

    // Self-heal re-creates it from Git: another object, the same data.
    assert_eq!(sync(&cluster, &manifest), "secret/db created");
    let recreated = steps.secret().unwrap();
    assert_ne!(recreated["metadata"]["uid"], first_uid);
    let item = steps.handover("delete", 75);
    assert_eq!(
        item["error"]["kind"], "temporary",
        "within the claim's lease: {item}"
    );
    steps.age_claim();

    let item = steps.handover("delete", 0);
    assert!(
        ["consumed", "already-consumed"].contains(&item["outcome"].as_str().unwrap_or("")),
        "re-adopted: {item}"
    );
    assert!(steps.secret().is_none(), "consumed again, by deletion");
    assert_eq!(steps.vault_version(), 1, "no second Vault version");
    assert_eq!(steps.status(), (0, vec![]));
}
