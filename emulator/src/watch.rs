//! Watches (`?watch=1` on a list path): a chunked stream of JSON lines
//! `{"type": "ADDED|MODIFIED|DELETED", "object": {...}}`, as `kubectl get -w` and
//! client-go's informers (`kubectl rollout status`) read it.
//!
//! The stream replays the store's change history after the requested resourceVersion,
//! then follows new writes. A watcher takes the cluster lock only to copy out what is new;
//! it waits for the next write on the store's change signal, never on the lock.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// The API server picks a random timeout of 30 to 60 minutes when the client sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// A watch accepted by the handler, with the state it starts from, taken under the lock.
pub struct Watch {
    pub rt: &'static ResourceType,
    /// `None` watches every namespace.
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// Events after this revision follow the initial ones.
    pub since: u64,
    /// Synthetic ADDED events for what exists, when the client asked for the current state.
    pub initial: Vec<Value>,
    /// Ends the initial events with a bookmark (`sendInitialEvents=true`).
    pub initial_bookmark: bool,
    pub timeout: Duration,
    pub changes: tokio::sync::watch::Receiver<u64>,
}

impl Watch {
    fn selects(&self, storage_key: &str, namespace: &str, object: &Value) -> bool {
        storage_key == self.rt.storage_key()
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(object["metadata"].get("labels"))
            && self.fields.matches(object)
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    Bytes::from(line)
}

/// Starts following the cluster for one watch; the returned body streams its events and
/// ends at the timeout, on a 410, or when the client goes away.
pub fn stream(mut watch: Watch, cluster: Arc<Mutex<Cluster>>) -> WatchBody {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + watch.timeout;
        for object in std::mem::take(&mut watch.initial) {
            if tx.send(line("ADDED", &object)).await.is_err() {
                return;
            }
        }
        if watch.initial_bookmark {
            let bookmark = json!({
                "kind": watch.rt.kind,
                "apiVersion": watch.rt.api_version(),
                "metadata": {
                    "resourceVersion": watch.since.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            });
            if tx.send(line("BOOKMARK", &bookmark)).await.is_err() {
                return;
            }
        }
        let mut since = watch.since;
        loop {
            let batch = {
                let cluster = cluster.lock().unwrap_or_else(|p| p.into_inner());
                // Marked seen under the lock: a write after this copy wakes `changed` below.
                watch.changes.borrow_and_update();
                cluster.store.changes_after(since).map(|changes| {
                    changes
                        .inspect(|c| since = c.revision)
                        .filter(|c| watch.selects(&c.storage_key, &c.namespace, &c.object))
                        .map(|c| line(c.kind, &c.object))
                        .collect::<Vec<_>>()
                })
            };
            match batch {
                Ok(lines) => {
                    for line in lines {
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
                Err(compacted) => {
                    let _ = tx
                        .send(line("ERROR", &ApiError::expired(since, compacted).body()))
                        .await;
                    return;
                }
            }
            tokio::select! {
                changed = watch.changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    WatchBody(rx)
}

/// The response body of a watch: each event is one chunk, sent as soon as it is known.
pub struct WatchBody(mpsc::Receiver<Bytes>);

impl Body for WatchBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok(Frame::data(l))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
