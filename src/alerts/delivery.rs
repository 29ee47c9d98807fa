//! Delivering one alert: attempts bounded by a timeout, retried with a
//! growing wait (or as long as a 429 asks), given up when a retry cannot
//! help, every error message cleaned of secrets. The channels' workers
//! (channels.rs) call [`deliver`]; `unitwatchd alert test` too, with fewer
//! attempts.

use std::time::Duration;

use super::secret::Redactor;
use super::{Alert, DeliveryError, Notifier, Retry};

/// How long and how often one alert is tried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// The first wait after a failure; doubled after each.
    pub first_wait: Duration,
    /// A `retry_after` longer than this is not waited for.
    pub max_wait: Duration,
}

/// The daemon's: 6 attempts over about half a minute (1, 2, 4, 8, 16 s
/// between them), or as long as a 429 asks, up to 5 minutes.
pub const DELIVERY: RetryPolicy = RetryPolicy {
    attempts: 6,
    first_wait: Duration::from_secs(1),
    max_wait: Duration::from_secs(300),
};

/// One alert delivered: how many attempts it took.
pub type Delivered = Result<u32, (DeliveryError, u32)>;

/// Tries `alert` until it is delivered or `policy` says stop; each attempt
/// is bounded by `timeout`, and every message is cleaned of secrets.
pub async fn deliver(
    n: &dyn Notifier,
    alert: &Alert,
    policy: RetryPolicy,
    timeout: Duration,
    redactor: &Redactor,
) -> Delivered {
    let mut wait = policy.first_wait;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match tokio::time::timeout(timeout, n.send(alert)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::new(
                Retry::Backoff,
                format!("no answer within {}", humantime::format_duration(timeout)),
            )),
        };
        let err = match result {
            Ok(()) => return Ok(attempt),
            Err(mut e) => {
                e.message = redactor.clean(&e.message);
                e
            }
        };
        let pause = match err.retry {
            Retry::Never => return Err((err, attempt)),
            Retry::After(d) if d > policy.max_wait => return Err((err, attempt)),
            Retry::After(d) => d,
            Retry::Backoff => {
                let w = wait;
                wait *= 2;
                w
            }
        };
        if attempt >= policy.attempts {
            return Err((err, attempt));
        }
        log::debug!(
            "alert {}: attempt {attempt} failed ({}); next in {}",
            alert.event,
            err.message,
            humantime::format_duration(pause)
        );
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::secret::Secret;
    use crate::alerts::SendFuture;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    /// Answers from a script, one per attempt (pure retry logic: the real
    /// channels are tested against a real receiver in tests/alerts.rs).
    struct Scripted {
        answers: Mutex<VecDeque<Option<Result<(), DeliveryError>>>>,
        calls: AtomicU32,
    }

    impl Notifier for Scripted {
        fn send<'a>(&'a self, _: &'a Alert) -> SendFuture<'a> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let next = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Some(Ok(())));
            Box::pin(async move {
                match next {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            })
        }
        fn destination(&self) -> String {
            "scripted".into()
        }
    }

    fn scripted(a: Vec<Option<Result<(), DeliveryError>>>) -> Scripted {
        Scripted {
            answers: Mutex::new(a.into()),
            calls: AtomicU32::new(0),
        }
    }

    const FAST: RetryPolicy = RetryPolicy {
        attempts: 4,
        first_wait: Duration::from_millis(10),
        max_wait: Duration::from_secs(1),
    };

    fn alert() -> Alert {
        Alert::test("t", "h")
    }

    async fn run(n: &Scripted, timeout: Duration) -> Delivered {
        deliver(n, &alert(), FAST, timeout, &Redactor::default()).await
    }

    #[tokio::test]
    async fn retries_until_delivered_and_counts_attempts() {
        let n = scripted(vec![
            Some(Err(DeliveryError::new(Retry::Backoff, "500"))),
            None, // hangs: the timeout ends it
            Some(Err(DeliveryError::new(
                Retry::After(Duration::from_millis(5)),
                "429",
            ))),
        ]);
        let r = run(&n, Duration::from_millis(50)).await;
        assert_eq!(r, Ok(4));
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_or_at_once_when_pointless() {
        let e = || Some(Err(DeliveryError::new(Retry::Backoff, "HTTP 503")));
        let n = scripted(vec![e(), e(), e(), e(), e()]);
        let (err, attempts) = run(&n, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!((attempts, err.message.as_str()), (4, "HTTP 503"));
        let n = scripted(vec![Some(Err(DeliveryError::new(
            Retry::Never,
            "HTTP 404",
        )))]);
        let r = run(&n, Duration::from_secs(1)).await;
        assert_eq!(r.unwrap_err().1, 1);
        // A 429 asking for longer than max_wait is not waited for.
        let n = scripted(vec![Some(Err(DeliveryError::new(
            Retry::After(Duration::from_secs(3600)),
            "HTTP 429",
        )))]);
        let r = run(&n, Duration::from_secs(1)).await;
        assert_eq!(r.unwrap_err().1, 1);
    }

    #[tokio::test]
    async fn messages_are_cleaned_of_secrets() {
        let mut red = Redactor::default();
        red.add(&Secret::new("https://hooks.test/T000/B000/XXXXsecret"));
        let n = scripted(vec![Some(Err(DeliveryError::new(
            Retry::Never,
            "HTTP 404: no such hook /T000/B000/XXXXsecret",
        )))]);
        let (e, _) = deliver(&n, &alert(), FAST, Duration::from_secs(1), &red)
            .await
            .unwrap_err();
        assert_eq!(e.message, "HTTP 404: no such hook [redacted]");
    }
}
