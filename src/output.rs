//! The output contract (section 4): one JSON document on stdout; with `--output-dir`, the
//! same document as `result.json`, one file per scalar field, and any extra files, each
//! written atomically (temp file + rename) so Argo never reads half a file.

use std::io::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{exit, Error, Result};

/// What a command hands back to `main`: the result document, its exit code, extra files.
#[derive(Debug)]
pub struct Report {
    pub document: Value,
    pub exit_code: i32,
    pub files: Vec<(String, Vec<u8>)>,
    /// A human rendering printed instead of the JSON document (`status` on a terminal).
    pub text: Option<String>,
}

impl Report {
    pub fn new(document: Value) -> Self {
        Self {
            document,
            exit_code: exit::OK,
            files: Vec::new(),
            text: None,
        }
    }

    pub fn with_exit_code(mut self, code: i32) -> Self {
        self.exit_code = code;
        self
    }

    pub fn with_file(mut self, name: &str, bytes: Vec<u8>) -> Self {
        self.files.push((name.to_string(), bytes));
        self
    }

    /// The document for a command that failed as a whole.
    pub fn failure(command: &str, error: &Error) -> Self {
        let document = json!({
            "command": command,
            "outcome": "error",
            "error": {"kind": error.kind(), "message": error.to_string()},
            "exit_code": error.exit_code(),
        });
        Self::new(document).with_exit_code(error.exit_code())
    }
}

/// Counts items by the value of `field` and picks the worst `exit_code` among them (see
/// [`severity`](crate::error::severity)), for the batch commands.
pub fn summarize(items: &[Value], field: &str) -> (serde_json::Map<String, Value>, i32) {
    let mut counts = serde_json::Map::new();
    let mut exit_code = exit::OK;
    for item in items {
        let name = item[field].as_str().unwrap_or("failed").to_string();
        let entry = counts.entry(name).or_insert(json!(0));
        *entry = json!(entry.as_u64().unwrap_or(0) + 1);
        let code = item["exit_code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(exit::OK);
        if crate::error::severity(code) > crate::error::severity(exit_code) {
            exit_code = code;
        }
    }
    (counts, exit_code)
}

/// The result of a batch command: counts by outcome, the worst exit code, every item, and
/// the command's own `extra` fields.
pub fn batch_report(command: &str, items: Vec<Value>, dry_run: bool, extra: Value) -> Report {
    let (counts, exit_code) = summarize(&items, "outcome");
    let outcome = match (exit_code, dry_run) {
        (exit::OK, true) => "planned",
        (exit::OK, false) => "done",
        _ => "failed",
    };
    let mut document = json!({
        "command": command,
        "outcome": outcome,
        "total": items.len(),
        "counts": counts,
        "exit_code": exit_code,
        "dry_run": dry_run,
    });
    // Moved in, not passed to `json!`: that would copy every item (10,000 in a big batch).
    document["items"] = Value::Array(items);
    if let (Some(document), Some(extra)) = (document.as_object_mut(), extra.as_object()) {
        document.extend(extra.clone());
    }
    Report::new(document).with_exit_code(exit_code)
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
    use super::*;

    #[test]
    fn output_dir_holds_result_and_scalar_fields() {
        let dir = std::env::temp_dir().join(format!("secops-output-test-{}", std::process::id()));
        let report = Report::new(
            json!({"command": "write-vault", "outcome": "written", "version": 3, "keys": ["a"]}),
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
}
