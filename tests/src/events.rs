//! Reading what Keysmith puts on the default EventBridge bus: a rule (`source: keysmith`) to an
//! SQS queue, as an operator would wire it; moto delivers `PutEvents` to such a target.

use aws_config::SdkConfig;
use serde_json::Value;

pub struct EventQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl EventQueue {
    pub async fn subscribe(sdk: &SdkConfig) -> EventQueue {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .create_queue()
            .queue_name(format!("events-{id}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        let events = aws_sdk_eventbridge::Client::new(sdk);
        let rule = format!("keysmith-{id}");
        events
            .put_rule()
            .name(&rule)
            .event_pattern(r#"{"source": ["keysmith"]}"#)
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule(&rule)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        EventQueue { sqs, url }
    }

    /// Every event delivered so far (the queue is drained).
    pub async fn drain(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for m in messages {
                let body = m.body.unwrap_or_default();
                crate::leaks::check(&body, "an EventBridge event");
                events.push(serde_json::from_str(&body).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}
