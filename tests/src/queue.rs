//! RotationQueue as the template builds it (SPEC §14), in moto: the queue with its dead-letter
//! queue after 3 receives, what the event source mapping does (receive, invoke with a standard
//! SQS event, delete what the answer does not list as failed), and rotatable secrets with their
//! policies to fill it.

use aws_config::SdkConfig;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use serde_json::{json, Value};

use crate::api::TestApp;

pub struct RotationQueues {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub dead_letter_url: String,
}

impl RotationQueues {
    /// A fresh queue and its dead-letter queue (`maxReceiveCount` 3). `visibility` 0 lets a test
    /// receive a message again at once (each receive counts).
    pub async fn create(sdk: &SdkConfig, visibility: u32) -> RotationQueues {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let dead_letter_url = sqs
            .create_queue()
            .queue_name(format!("rotation-dlq-{id}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        let url = sqs
            .create_queue()
            .queue_name(format!("rotation-{id}"))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility.to_string(),
            )
            .attributes(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}).to_string(),
            )
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        RotationQueues {
            sqs,
            url,
            dead_letter_url,
        }
    }

    /// Up to `max` messages (in receives of 10) of `url`, waiting at most about a second for each.
    pub async fn receive(&self, url: &str, max: usize) -> Vec<Message> {
        let mut all = Vec::new();
        let mut empty = 0;
        while all.len() < max && empty < 3 {
            let got = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10.min((max - all.len()) as i32))
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default();
            if got.is_empty() {
                empty += 1;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            all.extend(got);
        }
        all
    }

    /// One `ReceiveMessage` of up to 10 (with visibility 0, the only safe way: the next receive
    /// would return the same messages under new receipt handles).
    pub async fn receive_once(&self, url: &str) -> Vec<Message> {
        self.try_receive_once(url).await.unwrap()
    }

    /// As [`Self::receive_once`], the SDK's error returned: for the long-running `make dev` loop,
    /// which must outlive a failed receive.
    pub async fn try_receive_once(
        &self,
        url: &str,
    ) -> Result<Vec<Message>, aws_sdk_sqs::error::SdkError<ReceiveMessageError>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Deletes the messages the worker's answer does not name as failed: the event source
    /// mapping's half of `ReportBatchItemFailures`.
    pub async fn settle(&self, batch: &[Message], answer: &Value) {
        let failed = failures(answer);
        for m in batch {
            if !failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// `ApproximateNumberOfMessages` of `url`.
    pub async fn depth(&self, url: &str) -> usize {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default()
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// The standard SQS event Lambda's event source mapping sends for `batch`.
pub fn sqs_event(batch: &[Message], queue_arn: &str) -> Value {
    json!({"Records": batch.iter().map(|m| json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0",
            "SenderId": "test", "ApproximateFirstReceiveTimestamp": "0"},
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": crate::moto::REGION,
    })).collect::<Vec<_>>()})
}

/// The message ids a worker's answer reports failed.
pub fn failures(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

/// A user with one key, bound to a secret that records it, and a rotation policy `name` due at
/// once; returns (secret name, user, key id).
pub async fn due_policy(t: &TestApp, name: &str) -> (String, String, String) {
    let (secret, user, key) = crate::rotation::rotatable(&t.sdk, "q").await;
    t.put_rotation(name, json!({"secret_id": secret, "interval_days": 30}))
        .await;
    (secret, user, key)
}
