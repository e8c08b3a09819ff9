//! Retries of temporary failures only, with exponential backoff and jitter (backon).

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};

use crate::error::{Error, Result};

/// How many times a step re-reads and re-decides after losing a conditional write (a Vault
/// `cas` mismatch, a Kubernetes 409, a path deleted under it) before it gives up with
/// [`Error::LostRace`], which Argo retries. The one limit for every such loop.
pub const RACE_ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }

    /// Runs `operation` until it succeeds, fails permanently, or uses up the attempts.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts as usize - 1)
            .with_jitter();
        operation
            .retry(backoff)
            .when(Error::is_transient)
            .notify(|error, delay| tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "temporary failure, retrying"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn temporary_failures_are_retried_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = fast(3)
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::temporary("x", "503"))
            })
            .await;
        assert_eq!(result.unwrap_err().exit_status().code(), 75);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = fast(5)
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::Usage("bad".into()))
            })
            .await;
        assert_eq!(result.unwrap_err().exit_status().code(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
