//! Operations (SPEC §11): what the audit trail records, also told to the people who run Keysmith.
//! Metrics go to CloudWatch in Embedded Metric Format (a JSON line on stdout, which Lambda ships
//! to CloudWatch Logs and CloudWatch turns into metrics: no API call, no latency), events to the
//! account's default EventBridge bus (best effort: the audit item is the record).
//!
//! Both are derived from the audit record in one place ([`crate::audit::AuditLog`] calls
//! [`Ops::recorded`] after each write), so no code path can audit an action and forget to report
//! it. Neither can carry a secret: an audit record has no field that holds one.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::audit::{AuditRecord, Outcome};

pub const NAMESPACE: &str = "Keysmith";
pub const EVENT_SOURCE: &str = "keysmith";

/// The counters SPEC §11 names. Alarms in `template.yaml` watch the failure ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Issued,
    Denied,
    Revoked,
    Rotated,
    RotationFailed,
    SweepFailed,
    AuditWriteFailed,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Issued => "CredentialsIssued",
            Self::Denied => "RequestsDenied",
            Self::Revoked => "CredentialsRevoked",
            Self::Rotated => "KeysRotated",
            Self::RotationFailed => "RotationFailures",
            Self::SweepFailed => "SweepFailures",
            Self::AuditWriteFailed => "AuditWriteFailures",
        }
    }
}

/// One EMF document: the metric (count 1) under the `Service` dimension, which alarms watch, and,
/// when given, also by credential type (four values: low cardinality). Profiles are not a
/// dimension: their number is unbounded, and each dimension value is a billed metric.
pub fn emf(metric: Metric, credential_type: Option<&str>, now: DateTime<Utc>) -> Value {
    let mut dimensions = vec![json!(["Service"])];
    let mut root = Map::new();
    root.insert("Service".into(), json!("Keysmith"));
    if let Some(t) = credential_type {
        dimensions.push(json!(["Service", "CredentialType"]));
        root.insert("CredentialType".into(), json!(t));
    }
    root.insert(metric.name().into(), json!(1));
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": [{"Name": metric.name(), "Unit": "Count"}],
            }],
        }),
    );
    Value::Object(root)
}

/// Writes a metric: one line on stdout, which is where Lambda's EMF extraction reads it.
pub fn count(metric: Metric, credential_type: Option<&str>) {
    println!("{}", emf(metric, credential_type, Utc::now()));
}

/// The metric and the EventBridge `detail-type` of an audited action, if it is one to report.
pub fn classify(record: &AuditRecord) -> (Option<Metric>, Option<&'static str>) {
    use crate::audit::EVENT_ISSUE;
    match (record.event.as_str(), record.outcome) {
        (_, Outcome::Denied) => (Some(Metric::Denied), None),
        (EVENT_ISSUE, Outcome::Success) => (Some(Metric::Issued), Some("Credentials Issued")),
        ("Credentials Revoked" | "Lease Revoked", Outcome::Success) => {
            (Some(Metric::Revoked), Some("Credentials Revoked"))
        }
        ("Access Key Rotated", Outcome::Success) => {
            (Some(Metric::Rotated), Some("Access Key Rotated"))
        }
        ("Access Key Rotation Failed", _) => {
            (Some(Metric::RotationFailed), Some("Rotation Failed"))
        }
        // SPEC §6a: a key nobody recorded is told to the operators, found or deleted.
        (crate::rotation::EVENT_SHADOW_DETECTED, _) => {
            (None, Some(crate::rotation::EVENT_SHADOW_DETECTED))
        }
        (crate::rotation::EVENT_SHADOW_DELETED, _) => {
            (None, Some(crate::rotation::EVENT_SHADOW_DELETED))
        }
        _ => (None, None),
    }
}

/// The EventBridge publisher. `None` client: events are off (tests that do not look at them).
#[derive(Clone, Debug, Default)]
pub struct Ops {
    events: Option<aws_sdk_eventbridge::Client>,
}

impl Ops {
    pub fn new(events: aws_sdk_eventbridge::Client) -> Self {
        Self {
            events: Some(events),
        }
    }

    /// After an audit item is written: its metric, and its event on the default bus.
    pub async fn recorded(&self, record: &AuditRecord) {
        let (metric, detail_type) = classify(record);
        if let Some(m) = metric {
            count(m, record.credential_type.as_deref());
        }
        if let (Some(client), Some(detail_type)) = (&self.events, detail_type) {
            self.put(client, detail_type, record).await;
        }
    }

    async fn put(
        &self,
        client: &aws_sdk_eventbridge::Client,
        detail_type: &str,
        record: &AuditRecord,
    ) {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(EVENT_SOURCE)
            .detail_type(detail_type)
            .detail(record.to_json().to_string())
            .build();
        let result = client.put_events().entries(entry).send().await;
        // Best effort (SPEC §11): a lost event is logged, never a failed request.
        match result {
            Ok(out) if out.failed_entry_count() == 0 => {}
            Ok(_) => tracing::warn!(detail_type, "EventBridge refused the event"),
            Err(e) => {
                tracing::warn!(detail_type, error = %crate::aws::classify(e), "putting the event failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Category, Origin};

    #[test]
    fn emf_documents_name_their_metric_and_dimensions() {
        let doc = emf(Metric::Issued, Some("assumed_role"), Utc::now());
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Keysmith");
        assert_eq!(directive["Metrics"][0]["Name"], "CredentialsIssued");
        assert_eq!(doc["CredentialsIssued"], 1);
        // Every dimension named in a set is a member of the root (EMF's rule).
        for set in directive["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(doc.get(d.as_str().unwrap()).is_some(), "{d}");
            }
        }
    }

    #[test]
    fn audited_actions_map_to_metrics_and_events() {
        let origin = Origin::default();
        let r =
            |event: &str, outcome| AuditRecord::new(&origin, Category::Data, event, outcome, "m");
        assert_eq!(
            classify(&r(crate::audit::EVENT_ISSUE, Outcome::Success)),
            (Some(Metric::Issued), Some("Credentials Issued"))
        );
        assert_eq!(
            classify(&r(crate::audit::EVENT_ISSUE, Outcome::Denied)),
            (Some(Metric::Denied), None)
        );
        assert_eq!(
            classify(&r("Access Key Rotation Failed", Outcome::Failed)),
            (Some(Metric::RotationFailed), Some("Rotation Failed"))
        );
        assert_eq!(
            classify(&r("Profile Created", Outcome::Success)),
            (None, None)
        );
        // SPEC §6a: shadow keys are events of their own detail-type.
        for event in ["Shadow Access Key Detected", "Shadow Access Key Deleted"] {
            assert_eq!(classify(&r(event, Outcome::Success)), (None, Some(event)));
        }
    }
}
