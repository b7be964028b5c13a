//! Metrics (SPEC §11) in CloudWatch's Embedded Metric Format: a JSON line on stdout, which Lambda
//! ships to CloudWatch Logs and CloudWatch turns into metrics — no API call, no latency. Below
//! everything: it imports nothing of the crate. What audited actions count is decided by
//! [`crate::audit::Reporter`]; failures nobody audits (a sweep, an audit write) count here directly.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Keysmith";

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
    /// IAM or STS throttling that outlived the SDK's retries (SPEC §14): an API `429`, or a
    /// queued rotation deferred.
    UpstreamThrottled,
    /// SPEC §15: the canary's round trip (milliseconds) and whether it failed (0 or 1).
    CanaryLatency,
    CanaryFailure,
    /// SPEC §15: a due rotation waits for a previous key still in use.
    RetirementOverdue,
    /// SPEC §12: access requests made, approvals given, break glass used (an alarm watches it).
    AccessRequested,
    AccessApproved,
    BreakGlassUsed,
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
            Self::UpstreamThrottled => "UpstreamThrottled",
            Self::CanaryLatency => "CanaryLatency",
            Self::CanaryFailure => "CanaryFailure",
            Self::RetirementOverdue => "KeyRetirementOverdue",
            Self::AccessRequested => "AccessRequested",
            Self::AccessApproved => "AccessApproved",
            Self::BreakGlassUsed => "BreakGlassUsed",
        }
    }
}

/// One EMF document: the metric (count 1) under the `Service` dimension, which alarms watch, and,
/// when given, also by credential type (four values: low cardinality). Profiles are not a
/// dimension: their number is unbounded, and each dimension value is a billed metric.
pub fn emf(metric: Metric, credential_type: Option<&str>, now: DateTime<Utc>) -> Value {
    emf_value(metric, credential_type, 1.0, "Count", now)
}

/// One EMF document with a value and unit of its own (a latency, a 0-or-1 failure).
pub fn emf_value(
    metric: Metric,
    credential_type: Option<&str>,
    value: f64,
    unit: &str,
    now: DateTime<Utc>,
) -> Value {
    let mut dimensions = vec![json!(["Service"])];
    let mut root = Map::new();
    root.insert("Service".into(), json!("Keysmith"));
    if let Some(t) = credential_type {
        dimensions.push(json!(["Service", "CredentialType"]));
        root.insert("CredentialType".into(), json!(t));
    }
    // Whole values as integers (a count reads `1`, not `1.0`).
    let value = if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    };
    root.insert(metric.name().into(), value);
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": [{"Name": metric.name(), "Unit": unit}],
            }],
        }),
    );
    Value::Object(root)
}

/// Writes a metric: one line on stdout, which is where Lambda's EMF extraction reads it.
pub fn count(metric: Metric, credential_type: Option<&str>) {
    println!("{}", emf(metric, credential_type, Utc::now()));
}

/// Writes a measured value: milliseconds for latencies, a count otherwise.
pub fn measure(metric: Metric, value: f64) {
    let unit = match metric {
        Metric::CanaryLatency => "Milliseconds",
        _ => "Count",
    };
    println!("{}", emf_value(metric, None, value, unit, Utc::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
