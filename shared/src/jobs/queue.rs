//! RotationQueue (SPEC §14): the scheduled run and rotate-now send one message per rotation, and
//! scheduled-rotation's queue workers rotate them, as many at once as the event source mapping's
//! `MaximumConcurrency` allows. A message carries the policy's name and nothing else; the
//! per-policy lock makes a duplicate harmless.

use aws_lambda_events::sqs::SqsMessage;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::{RunReport, ScheduleError};
use crate::audit::Origin;
use crate::aws::{classify, FailureKind};
use crate::ops::{self, Metric};
use crate::rotation::policy::PolicyError;
use crate::rotation::queue::{enqueue, RotationMessage};
use crate::rotation::{run_due_policy, PolicyRotationError, PolicyRun};
use crate::App;

/// SQS's largest `SendMessageBatch`.
const BATCH: usize = 10;
/// Batches in flight at once while enqueueing: 10,000 due policies in about a second of calls.
const SENDERS: usize = 16;
/// A rotation throttled by IAM or STS (after the SDK's retries) comes back this much later, as a
/// new message: a retry that does not count towards the dead-letter queue's receive limit.
pub const THROTTLED_DELAY_SECONDS: i32 = 120;

/// The scheduled run with a queue: every due policy becomes a message, nothing rotates here. A
/// policy whose message could not be sent is reported failed and stays due for the next run.
pub async fn enqueue_due(
    app: &App,
    queue_url: &str,
    now: DateTime<Utc>,
) -> Result<RunReport, ScheduleError> {
    let due = app.policies.due(now).await?;
    let mut report = RunReport {
        policies_read: due.items_read,
        ..RunReport::default()
    };
    let names: Vec<String> = due.policies.iter().map(|p| p.name.to_string()).collect();
    let sqs = app.clients.sqs.get();
    let outcomes: Vec<_> = stream::iter(names.chunks(BATCH))
        .map(|chunk| send_batch(sqs, queue_url, chunk))
        .buffer_unordered(SENDERS)
        .collect()
        .await;
    for (sent, failed) in outcomes {
        report.enqueued += sent;
        for (name, why) in failed {
            tracing::error!(policy = %name, error = %why, "enqueueing a due rotation failed; the next run retries");
            report.failed.push((name, why));
        }
    }
    Ok(report)
}

/// One `SendMessageBatch`: how many were sent, and the ones that were not with the reason.
async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    names: &[String],
) -> (usize, Vec<(String, String)>) {
    let entries: Result<Vec<_>, _> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(RotationMessage::body(name))
                .build()
        })
        .collect();
    let all_failed = |why: String| names.iter().map(|n| (n.clone(), why.clone())).collect();
    let entries = match entries {
        Ok(e) => e,
        Err(e) => return (0, all_failed(e.to_string())),
    };
    match sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => {
            let failed: Vec<(String, String)> = out
                .failed
                .iter()
                .filter_map(|f| {
                    let name = names.get(f.id.parse::<usize>().ok()?)?;
                    Some((name.clone(), format!("SQS refused the message: {}", f.code)))
                })
                .collect();
            (names.len() - failed.len(), failed)
        }
        Err(e) => (0, all_failed(format!("SQS failed: {}", classify(e)))),
    }
}

/// What a worker did with one batch.
#[derive(Debug, Default)]
pub struct WorkReport {
    pub rotated: Vec<String>,
    /// Rotated by another delivery, or not due (any more): nothing to do, and done.
    pub skipped: Vec<String>,
    /// Throttled: sent again to come back later.
    pub deferred: Vec<String>,
    /// Message ids SQS delivers again (and, after 3 receives, moves to the dead-letter queue).
    pub failures: Vec<String>,
}

impl WorkReport {
    /// The answer SQS's event source mapping reads with `ReportBatchItemFailures`.
    pub fn batch_response(&self) -> Value {
        json!({
            "batchItemFailures": self.failures.iter()
                .map(|id| json!({"itemIdentifier": id}))
                .collect::<Vec<_>>(),
        })
    }
}

enum Outcome {
    Rotated(String),
    Skipped(String),
    Deferred(String),
    Failed(String),
}

/// One batch of RotationQueue, each message rotated under its policy's lock, all at once.
pub async fn work(
    app: &App,
    queue_url: Option<&str>,
    records: &[SqsMessage],
    origin: &Origin,
) -> WorkReport {
    let outcomes: Vec<_> = stream::iter(records)
        .map(|m| rotate_message(app, queue_url, m, origin))
        .buffer_unordered(BATCH)
        .collect()
        .await;
    let mut report = WorkReport::default();
    for o in outcomes {
        match o {
            Outcome::Rotated(p) => report.rotated.push(p),
            Outcome::Skipped(p) => report.skipped.push(p),
            Outcome::Deferred(p) => report.deferred.push(p),
            Outcome::Failed(id) => report.failures.push(id),
        }
    }
    report
}

async fn rotate_message(
    app: &App,
    queue_url: Option<&str>,
    m: &SqsMessage,
    origin: &Origin,
) -> Outcome {
    let id = m.message_id.clone().unwrap_or_default();
    let Some(name) = m.body.as_deref().and_then(RotationMessage::parse) else {
        tracing::error!(message_id = %id, "a RotationQueue message is not {{\"rotation\": \"<policy name>\"}}");
        return Outcome::Failed(id);
    };
    let name = name.to_string();
    match run_due_policy(&app.policies, &app.rotator, &name, Utc::now(), origin).await {
        Ok(PolicyRun::Rotated(..)) => Outcome::Rotated(name),
        // Only its previous key was due a check: done, nothing to deliver again.
        Ok(PolicyRun::Checked(..)) => Outcome::Skipped(name),
        Err(PolicyRotationError::Policy(PolicyError::Locked)) => Outcome::Skipped(name),
        Err(PolicyRotationError::Policy(PolicyError::NotFound)) => {
            tracing::error!(message_id = %id, policy = %name, "a RotationQueue message names no rotation policy");
            Outcome::Failed(id)
        }
        Err(e) if e.failure_kind() == FailureKind::Throttled => {
            ops::count(Metric::UpstreamThrottled, None);
            match defer(app, queue_url, &name).await {
                Ok(()) => {
                    tracing::warn!(policy = %name, delay_seconds = THROTTLED_DELAY_SECONDS, "rotation throttled by AWS; sent again for later");
                    Outcome::Deferred(name)
                }
                Err(why) => {
                    tracing::error!(policy = %name, error = %why, "rotation throttled and could not be sent again; SQS delivers it again");
                    Outcome::Failed(id)
                }
            }
        }
        Err(e) => {
            tracing::error!(message_id = %id, policy = %name, error = %e, "queued rotation failed; SQS delivers it again");
            Outcome::Failed(id)
        }
    }
}

async fn defer(app: &App, queue_url: Option<&str>, name: &str) -> Result<(), String> {
    let url = queue_url.ok_or("no KEYSMITH_ROTATION_QUEUE_URL to send it to")?;
    enqueue(&app.clients.sqs, url, name, Some(THROTTLED_DELAY_SECONDS))
        .await
        .map_err(|e| e.to_string())
}
