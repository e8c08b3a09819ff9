//! The emulator's stand-in for the deployment controller: there are no pods, so every
//! rollout completes the moment it is written.
//!
//! The API server bumps `metadata.generation` when a Deployment's spec changes; the
//! controller then reports `status.observedGeneration` and its replica counts. Here both
//! happen in the same write, so `kubectl rollout status` sees a finished rollout and
//! `kubectl rollout restart` (a patch of the pod template's annotations) starts and
//! finishes a new one.

use serde_json::{json, Value};

/// Sets generation and status on a Deployment being written over `previous` (if any).
pub fn reconcile_deployment(deployment: &mut Value, previous: Option<&Value>) {
    if deployment["spec"]["replicas"].is_null() {
        deployment["spec"]["replicas"] = json!(1);
    }
    let generation = match previous {
        None => 1,
        Some(previous) => {
            let current = previous["metadata"]["generation"].as_i64().unwrap_or(1);
            if previous["spec"] == deployment["spec"] {
                current
            } else {
                current + 1
            }
        }
    };
    deployment["metadata"]["generation"] = json!(generation);
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let since = previous
        .and_then(|p| p["status"]["conditions"][0]["lastTransitionTime"].as_str())
        .map(str::to_string)
        .unwrap_or_else(crate::cluster::now_rfc3339);
    let now = crate::cluster::now_rfc3339();
    deployment["status"] = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.",
             "lastUpdateTime": now, "lastTransitionTime": since},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": "the emulator completes every rollout at once",
             "lastUpdateTime": now, "lastTransitionTime": since},
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_follows_spec_changes_and_status_declares_the_rollout_done() {
        let mut created = json!({"metadata": {"name": "api"}, "spec": {"template": {}}});
        reconcile_deployment(&mut created, None);
        assert_eq!(created["metadata"]["generation"], 1);
        assert_eq!(
            created["spec"]["replicas"], 1,
            "defaulted as the API server does"
        );

        let mut relabelled = created.clone();
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        reconcile_deployment(&mut relabelled, Some(&created));
        assert_eq!(
            relabelled["metadata"]["generation"], 1,
            "metadata is not spec"
        );

        let mut restarted = relabelled.clone();
        restarted["spec"]["template"]["metadata"] =
            json!({"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}});
        reconcile_deployment(&mut restarted, Some(&relabelled));
        assert_eq!(restarted["metadata"]["generation"], 2);
        assert_eq!(restarted["status"]["observedGeneration"], 2);
        assert_eq!(restarted["status"]["updatedReplicas"], 1);
    }
}
