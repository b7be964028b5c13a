//! What the audit trail records, also told to the people who run Keysmith (SPEC §11): the metric
//! of each audited action and its event on the account's default EventBridge bus (best effort:
//! the audit item is the record). Both are derived from the record here, after it is written, so
//! no code path can audit an action and forget to report it, and neither can carry a secret.

use super::{AuditRecord, Outcome, EVENT_ISSUE, EVENT_SHADOW_DELETED, EVENT_SHADOW_DETECTED};
use super::{
    EVENT_ACCESS_APPROVED, EVENT_ACCESS_REQUESTED, EVENT_BREAK_GLASS_USED, REQUEST_EVENTS,
};
use crate::aws::Lazy;
use crate::ops::{count, Metric};

pub const EVENT_SOURCE: &str = "keysmith";

/// The metric and the EventBridge `detail-type` of an audited action, if it is one to report.
pub fn classify(record: &AuditRecord) -> (Option<Metric>, Option<&'static str>) {
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
        (EVENT_SHADOW_DETECTED, _) => (None, Some(EVENT_SHADOW_DETECTED)),
        (EVENT_SHADOW_DELETED, _) => (None, Some(EVENT_SHADOW_DELETED)),
        // SPEC §15 `retire_unused_hours`: a key retired, and a rotation kept waiting past its
        // interval by a previous key still in use.
        ("Access Key Retired", _) => (None, Some("Access Key Retired")),
        ("Access Key Retirement Overdue", _) => (
            Some(Metric::RetirementOverdue),
            Some("Access Key Retirement Overdue"),
        ),
        // SPEC §12: every transition of an access request, and every approval, is an event of
        // its own detail-type, so chat and e-mail hooks subscribe by rule.
        (event, Outcome::Success) => match REQUEST_EVENTS.iter().find(|e| **e == event) {
            Some(&EVENT_BREAK_GLASS_USED) => {
                (Some(Metric::BreakGlassUsed), Some(EVENT_BREAK_GLASS_USED))
            }
            Some(&EVENT_ACCESS_REQUESTED) => {
                (Some(Metric::AccessRequested), Some(EVENT_ACCESS_REQUESTED))
            }
            Some(&EVENT_ACCESS_APPROVED) => {
                (Some(Metric::AccessApproved), Some(EVENT_ACCESS_APPROVED))
            }
            Some(other) => (None, Some(*other)),
            None => (None, None),
        },
        _ => (None, None),
    }
}

/// The EventBridge publisher. `None` client: events are off (tests that do not look at them).
#[derive(Clone, Debug, Default)]
pub struct Reporter {
    events: Option<Lazy<aws_sdk_eventbridge::Client>>,
}

impl Reporter {
    pub fn new(events: Lazy<aws_sdk_eventbridge::Client>) -> Self {
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
    fn audited_actions_map_to_metrics_and_events() {
        let origin = Origin::default();
        let r =
            |event: &str, outcome| AuditRecord::new(&origin, Category::Data, event, outcome, "m");
        assert_eq!(
            classify(&r(EVENT_ISSUE, Outcome::Success)),
            (Some(Metric::Issued), Some("Credentials Issued"))
        );
        assert_eq!(
            classify(&r(EVENT_ISSUE, Outcome::Denied)),
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
        for event in REQUEST_EVENTS {
            assert_eq!(classify(&r(event, Outcome::Success)).1, Some(*event));
            assert_eq!(classify(&r(event, Outcome::Denied)).1, None);
        }
        assert_eq!(
            classify(&r(EVENT_BREAK_GLASS_USED, Outcome::Success)).0,
            Some(Metric::BreakGlassUsed)
        );
    }
}
