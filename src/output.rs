//! The output contract (`docs/contract.md` §4): one JSON document on stdout; with
//! `--output-dir`, the same document as `result.json`, one file per scalar field, and any
//! extra files, each written atomically (temp file + rename) so Argo never reads half a file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::domain::bootstrap::{SecretHeader, SourceSecret};
use crate::domain::outcome::Outcome;
use crate::error::{Error, ErrorReport, ExitStatus, Result};

/// What a command hands back to `main`: the result document, its exit status, extra files.
#[derive(Debug)]
pub struct Report {
    pub document: Value,
    pub status: ExitStatus,
    pub files: Vec<(String, Vec<u8>)>,
    /// A human rendering printed instead of the JSON document (`status` on a terminal).
    pub text: Option<String>,
}

impl Report {
    pub fn new(document: &impl Serialize) -> Self {
        Self {
            // Result documents are structs and string-keyed maps: always representable.
            document: serde_json::to_value(document).expect("result documents serialize"),
            status: ExitStatus::Ok,
            files: Vec::new(),
            text: None,
        }
    }

    pub fn with_status(mut self, status: ExitStatus) -> Self {
        self.status = status;
        self
    }

    pub fn with_file(mut self, name: &str, bytes: Vec<u8>) -> Self {
        self.files.push((name.to_string(), bytes));
        self
    }

    /// The document for a command that failed as a whole.
    pub fn failure(command: &str, error: &Error) -> Self {
        #[derive(Serialize)]
        struct Failure<'a> {
            command: &'a str,
            outcome: Outcome,
            error: ErrorReport,
            exit_code: ExitStatus,
        }
        Self::new(&Failure {
            command,
            outcome: Outcome::Error,
            error: error.into(),
            exit_code: error.exit_status(),
        })
        .with_status(error.exit_status())
    }
}

/// Which Secret an item or a single-Secret result is about.
#[derive(Debug, Clone, Serialize)]
pub struct SecretIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl From<&SecretHeader> for SecretIdentity {
    fn from(header: &SecretHeader) -> Self {
        SecretIdentity {
            namespace: header.reference.namespace.clone(),
            name: header.reference.name.clone(),
            uid: header.uid.clone(),
        }
    }
}

impl From<&SourceSecret> for SecretIdentity {
    fn from(secret: &SourceSecret) -> Self {
        SecretIdentity {
            namespace: secret.reference.namespace.clone(),
            name: secret.reference.name.clone(),
            uid: secret.uid.clone(),
        }
    }
}

/// A step's result fields that name its outcome.
pub trait HasOutcome {
    fn outcome(&self) -> Outcome;
}

/// One Secret of a batch: who it is, and what became of it.
#[derive(Debug, Serialize)]
pub struct Item<T> {
    #[serde(flatten)]
    pub secret: SecretIdentity,
    #[serde(flatten)]
    pub result: ItemResult<T>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ItemResult<T> {
    Done(T),
    Failed(FailedItem),
}

#[derive(Debug, Serialize)]
pub struct FailedItem {
    outcome: Outcome,
    exit_code: ExitStatus,
    error: ErrorReport,
}

impl<T> Item<T> {
    /// One bad Secret never stops the others: its error becomes its item.
    pub fn from_result(secret: SecretIdentity, result: Result<T>) -> Self {
        let result = match result {
            Ok(done) => ItemResult::Done(done),
            Err(error) => {
                tracing::warn!(secret = %format!("{}/{}", secret.namespace, secret.name), %error, "item failed");
                ItemResult::Failed(FailedItem {
                    outcome: Outcome::Failed,
                    exit_code: error.exit_status(),
                    error: (&error).into(),
                })
            }
        };
        Item { secret, result }
    }

    fn status(&self) -> ExitStatus {
        match &self.result {
            ItemResult::Done(_) => ExitStatus::Ok,
            ItemResult::Failed(failed) => failed.exit_code,
        }
    }

    pub fn sort_key(&self) -> (&str, &str) {
        (&self.secret.namespace, &self.secret.name)
    }
}

impl<T: HasOutcome> HasOutcome for Item<T> {
    fn outcome(&self) -> Outcome {
        match &self.result {
            ItemResult::Done(done) => done.outcome(),
            ItemResult::Failed(_) => Outcome::Failed,
        }
    }
}

/// How many of each: outcomes of a batch, states of a plan.
pub fn tally<K: Ord>(keys: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The result of a batch command: counts by outcome, the worst exit status, every item,
/// and the command's own `extra` fields.
#[derive(Serialize)]
struct Batch<'a, I, E> {
    command: &'a str,
    outcome: Outcome,
    total: usize,
    counts: BTreeMap<Outcome, usize>,
    exit_code: ExitStatus,
    dry_run: bool,
    items: &'a [Item<I>],
    #[serde(flatten)]
    extra: E,
}

pub fn batch_report<I: HasOutcome + Serialize, E: Serialize>(
    command: &str,
    items: Vec<Item<I>>,
    dry_run: bool,
    extra: E,
) -> Report {
    let status = items
        .iter()
        .map(Item::status)
        .max()
        .unwrap_or(ExitStatus::Ok);
    let outcome = match (status, dry_run) {
        (ExitStatus::Ok, true) => Outcome::Planned,
        (ExitStatus::Ok, false) => Outcome::Done,
        _ => Outcome::Failed,
    };
    let batch = Batch {
        command,
        outcome,
        total: items.len(),
        counts: tally(items.iter().map(HasOutcome::outcome)),
        exit_code: status,
        dry_run,
        items: &items,
        extra,
    };
    Report::new(&batch).with_status(status)
}

pub fn print(report: &Report) {
    // Buffered: stdout alone flushes every kilobyte, a write call per 4 items of a batch.
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    if let Some(text) = &report.text {
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        return;
    }
    let _ = serde_json::to_writer(&mut stdout, &report.document);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

/// Proves, before anything is written anywhere, that the result can be written: an output
/// directory found unusable after the Vault write would leave a step half done.
pub fn check_output_dir(dir: &Path) -> Result<()> {
    let unusable = |e: std::io::Error| {
        Error::Usage(format!(
            "--output-dir {}: cannot write there: {}",
            dir.display(),
            e.kind()
        ))
    };
    std::fs::create_dir_all(dir).map_err(unusable)?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(unusable)?;
    std::fs::remove_file(&probe).map_err(unusable)
}

pub fn write_output_dir(dir: &Path, report: &Report) -> Result<()> {
    let io_error = |what: &str, e: std::io::Error| {
        Error::Usage(format!(
            "--output-dir {}: cannot write {what}: {}",
            dir.display(),
            e.kind()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| io_error("the directory", e))?;
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "result.json".into(),
        serde_json::to_vec(&report.document).expect("JSON values serialize"),
    )];
    if let Some(fields) = report.document.as_object() {
        for (name, value) in fields {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            files.push((name.clone(), text.into_bytes()));
        }
    }
    files.extend(report.files.iter().cloned());
    for (name, bytes) in files {
        write_atomic(dir, &name, &bytes).map_err(|e| io_error(&name, e))?;
    }
    Ok(())
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn output_dir_holds_result_and_scalar_fields() {
        let dir = std::env::temp_dir().join(format!("secops-output-test-{}", std::process::id()));
        let report = Report::new(
            &json!({"command": "write-vault", "outcome": "written", "version": 3, "keys": ["a"]}),
        )
        .with_file("items.json", b"[]".to_vec());
        write_output_dir(&dir, &report).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("outcome")).unwrap(),
            "written"
        );
        assert_eq!(std::fs::read_to_string(dir.join("version")).unwrap(), "3");
        assert!(!dir.join("keys").exists(), "arrays are not scalar fields");
        let result: Value =
            serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
        assert_eq!(result, report.document);
        assert_eq!(std::fs::read(dir.join("items.json")).unwrap(), b"[]");
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp-")
            })
            .count();
        assert_eq!(leftovers, 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[derive(Serialize)]
    struct Done {
        outcome: Outcome,
    }

    impl HasOutcome for Done {
        fn outcome(&self) -> Outcome {
            self.outcome
        }
    }

    #[test]
    fn a_batch_counts_outcomes_and_exits_with_its_worst_item() {
        let identity = |name: &str| SecretIdentity {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        };
        let items = vec![
            Item::from_result(
                identity("a"),
                Ok(Done {
                    outcome: Outcome::Consumed,
                }),
            ),
            Item::from_result(identity("b"), Err(Error::NotFound { what: "b".into() })),
            Item::from_result(
                identity("c"),
                Err(Error::NotOwned {
                    path: "p".into(),
                    owner: "o".into(),
                    claimant: "c".into(),
                }),
            ),
        ];
        let report = batch_report("handover", items, false, json!({"mode": "annotate"}));
        assert_eq!(report.status, ExitStatus::Refused);
        let document = &report.document;
        assert_eq!(document["outcome"], "failed");
        assert_eq!(document["exit_code"], 3);
        assert_eq!(document["counts"], json!({"consumed": 1, "failed": 2}));
        assert_eq!(document["mode"], "annotate");
        assert_eq!(document["items"][0]["name"], "a");
        assert_eq!(document["items"][0]["outcome"], "consumed");
        assert_eq!(document["items"][1]["exit_code"], 4);
        assert_eq!(document["items"][2]["error"]["kind"], "not-owned");
    }

    #[test]
    fn a_failure_document_names_the_error_in_one_line() {
        let report = Report::failure("status", &Error::Usage("bad --grace".into()));
        assert_eq!(report.status, ExitStatus::Usage);
        assert_eq!(
            report.document,
            json!({"command": "status", "outcome": "error", "exit_code": 2,
                   "error": {"kind": "usage", "message": "bad --grace"}})
        );
    }
}
