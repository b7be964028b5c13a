//! `keysmith audit verify` (SPEC §13): the trail checked against its signed checkpoints, offline,
//! with a public key that does not come from the API.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use keysmith_audit_proof::{pem_to_der, Checkpoint, ProofError, Report};
use serde_json::Value;

use crate::admin::{all_pages, AdminError};
use crate::client::{encode, error_chain, Api, Target};
use crate::output::Format;

/// Verify the audit trail against its signed checkpoints (admin).
///
/// Checks every checkpoint's signature, the chain of checkpoints, each item's hash, and each
/// period's item count and Merkle root, then prints each problem found. Exits 0 only when there
/// is none.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  keysmith audit verify --public-key keysmith-audit.pem
  keysmith audit verify --since 2026-11-01T00:00:00Z --until 2026-11-02T00:00:00Z --output json

Without --public-key the key is the one the checkpoints name, fetched with kms:GetPublicKey. Pin it
instead: save it once from the stack's key and pass the file, so that the check trusts neither the
API nor KMS:
  aws kms get-public-key --key-id KEY --query PublicKey --output text \\
    | base64 -d | openssl pkey -pubin -inform DER -out keysmith-audit.pem")]
pub struct Args {
    /// Checkpoints whose period starts at or after this RFC 3339 time (default: 30 days ago).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    pub since: Option<DateTime<Utc>>,
    /// Checkpoints whose period starts at or before this RFC 3339 time (default: now).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    pub until: Option<DateTime<Utc>>,
    /// The signing key's public key: a PEM SubjectPublicKeyInfo file ("BEGIN PUBLIC KEY"). No
    /// KMS call is made. Default: kms:GetPublicKey for the key the checkpoints name.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

fn rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "not an RFC 3339 time such as 2026-11-21T00:00:00Z".into())
}

fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no checkpoints in that window (is sealing on?)")]
    NoCheckpoints,
    #[error("the API answered a checkpoint that cannot be read: {0}")]
    BadCheckpoint(String),
    #[error("cannot read {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pem { path: PathBuf, source: ProofError },
    #[error("kms:GetPublicKey for {key_id} failed: {reason}")]
    Kms { key_id: String, reason: String },
    #[error("kms:GetPublicKey for {key_id} returned no public key")]
    NoPublicKey { key_id: String },
}

pub async fn run(target: &Target, format: Format, args: &Args) -> Result<u8, AdminError> {
    let now = Utc::now();
    // A pinned key is read first: a missing file costs no request.
    let pinned = args.public_key.as_deref().map(key_from_file).transpose()?;
    let api = Api::connect(target).await?;

    let mut window = Vec::new();
    if let Some(since) = args.since {
        window.push(format!("since={}", encode(&format_time(since))));
    }
    if let Some(until) = args.until {
        window.push(format!("until={}", encode(&format_time(until))));
    }
    let mut path = "/v1/audit/checkpoints?limit=1000".to_owned();
    for w in &window {
        path.push('&');
        path.push_str(w);
    }
    let checkpoints = all_pages(&api, &path, "checkpoints")
        .await?
        .into_iter()
        .map(serde_json::from_value::<Checkpoint>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| VerifyError::BadCheckpoint(e.to_string()))?;
    let (Some(first), Some(last)) = (checkpoints.first(), checkpoints.last()) else {
        return Err(VerifyError::NoCheckpoints.into());
    };

    let spki = match pinned {
        Some(der) => der,
        None => key_from_kms(&api, &first.key_id).await?,
    };

    // Every item of every period fetched: the last period may end after `until`.
    let until = args.until.unwrap_or(now);
    let last_end = DateTime::parse_from_rfc3339(&last.period_end)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    let items_until = last_end.map_or(until, |end| end.max(until));
    let path = format!(
        "/v1/audit?since={}&until={}&limit=1000",
        encode(&first.period_start),
        encode(&format_time(items_until))
    );
    let items = all_pages(&api, &path, "items").await?;
    let items = match (args.until, last_end) {
        (Some(until), Some(end)) => within(items, until, end),
        _ => items,
    };

    let report = keysmith_audit_proof::verify(&checkpoints, &items, &spki, now);
    print!("{}", render(&report, format));
    Ok(if report.clean() { 0 } else { 1 })
}

/// The items of the window: those after both `--until` and the last sealed period were only
/// fetched to complete that period (an item exactly at its end belongs to the next one).
fn within(items: Vec<Value>, until: DateTime<Utc>, last_end: DateTime<Utc>) -> Vec<Value> {
    items
        .into_iter()
        .filter(|i| {
            let time = i["time"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            // An item without a readable time stays: verify names it.
            time.is_none_or(|t| t <= until || t < last_end)
        })
        .collect()
}

/// A pinned public key: no call to anyone.
fn key_from_file(path: &Path) -> Result<Vec<u8>, VerifyError> {
    let pem = std::fs::read_to_string(path).map_err(|source| VerifyError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    pem_to_der(&pem).map_err(|source| VerifyError::Pem {
        path: path.to_owned(),
        source,
    })
}

/// The region of a key ARN (`arn:aws:kms:<region>:<account>:key/<id>`).
fn region_of_arn(key_id: &str) -> Option<&str> {
    let mut parts = key_id.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

/// The public key of the key the checkpoints name, from KMS with the credentials the API calls
/// are signed with (and the SDK's `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_KMS`), in the key ARN's
/// region, else the API's.
async fn key_from_kms(api: &Api, key_id: &str) -> Result<Vec<u8>, VerifyError> {
    let (sdk, api_region) = api.sdk();
    let region = region_of_arn(key_id).unwrap_or(api_region).to_owned();
    let kms = aws_sdk_kms::config::Builder::from(sdk)
        .region(aws_config::Region::new(region))
        .build();
    let answer = aws_sdk_kms::Client::from_conf(kms)
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|e| VerifyError::Kms {
            key_id: key_id.to_owned(),
            reason: error_chain(&e),
        })?;
    let der = answer
        .public_key()
        .map(|b| b.as_ref().to_vec())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| VerifyError::NoPublicKey {
            key_id: key_id.to_owned(),
        })?;
    let arn = answer.key_id().unwrap_or(key_id);
    eprintln!(
        "keysmith: trusting KMS key {arn}, which the checkpoints name (its public key from \
         kms:GetPublicKey). Whoever can rewrite the checkpoints can name a key of their own: \
         pin the stack's key with --public-key FILE for a check that trusts neither the API nor KMS."
    );
    Ok(der)
}

/// Each problem on its own line and a summary, or the report as JSON.
fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => crate::output::json(&serde_json::to_value(report).unwrap_or(Value::Null)),
        Format::Table => {
            let mut out = String::new();
            for p in &report.problems {
                out.push_str(&p.to_string());
                out.push('\n');
            }
            out.push_str(&summary(report));
            out.push('\n');
            out
        }
    }
}

/// "verified 12 checkpoints and 3,456 items: clean (7 recent items not sealed yet)".
fn summary(report: &Report) -> String {
    let verdict = match report.problems.len() {
        0 => "clean".to_owned(),
        n => count(n, "problem"),
    };
    let waiting = match report.unsealed {
        0 => String::new(),
        1 => " (1 recent item not sealed yet)".to_owned(),
        n => format!(" ({} recent items not sealed yet)", thousands(n)),
    };
    format!(
        "verified {} and {}: {verdict}{waiting}",
        count(report.checkpoints, "checkpoint"),
        count(report.items, "item")
    )
}

fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{} {what}s", thousands(n)),
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysmith_audit_proof::Problem;
    use serde_json::json;

    fn report(problems: Vec<Problem>, unsealed: usize) -> Report {
        Report {
            checkpoints: 12,
            items: 3456,
            unsealed,
            problems,
        }
    }

    #[test]
    fn the_summary_says_what_was_verified() {
        assert_eq!(
            summary(&report(vec![], 7)),
            "verified 12 checkpoints and 3,456 items: clean (7 recent items not sealed yet)"
        );
        let one = Report {
            checkpoints: 1,
            items: 1,
            unsealed: 0,
            problems: vec![Problem::ItemChanged { id: "a".into() }],
        };
        assert_eq!(summary(&one), "verified 1 checkpoint and 1 item: 1 problem");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn each_problem_is_a_line_or_json() {
        let r = report(
            vec![
                Problem::ItemChanged { id: "a".into() },
                Problem::BrokenChain {
                    period_start: "2026-12-04T20:35:00Z".into(),
                },
            ],
            0,
        );
        assert_eq!(
            render(&r, Format::Table),
            "item a was changed (its content does not match its hash)\n\
             checkpoint 2026-12-04T20:35:00Z does not chain to the one before it\n\
             verified 12 checkpoints and 3,456 items: 2 problems\n"
        );
        let j: Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        assert_eq!(j["problems"][0], json!({"kind": "item_changed", "id": "a"}));
        assert_eq!(j["checkpoints"], 12);
    }

    #[test]
    fn items_past_until_and_the_last_period_are_left_out() {
        let t = |s: &str| rfc3339(s).unwrap();
        let items = vec![
            json!({"id": "in-window", "time": "2026-12-04T20:01:00Z"}),
            json!({"id": "in-last-period", "time": "2026-12-04T20:04:00Z"}),
            json!({"id": "at-the-end", "time": "2026-12-04T20:05:00Z"}),
            json!({"id": "no-time"}),
        ];
        let kept = within(items, t("2026-12-04T20:02:00Z"), t("2026-12-04T20:05:00Z"));
        let ids: Vec<&str> = kept.iter().filter_map(|i| i["id"].as_str()).collect();
        assert_eq!(ids, ["in-window", "in-last-period", "no-time"]);
    }

    #[test]
    fn a_key_arn_names_its_region() {
        assert_eq!(
            region_of_arn("arn:aws:kms:eu-west-1:123456789012:key/1234abcd"),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_arn("arn:aws-cn:kms:cn-north-1:123456789012:alias/a"),
            Some("cn-north-1")
        );
        assert_eq!(region_of_arn("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        assert_eq!(region_of_arn("alias/keysmith-audit"), None);
    }

    #[test]
    fn a_pinned_key_is_read_from_its_file_alone() {
        // No region, no credentials, no API: reading the file needs none of them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(
            &path,
            "-----BEGIN PUBLIC KEY-----\nAAECAw==\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        assert_eq!(key_from_file(&path).unwrap(), [0, 1, 2, 3]);

        std::fs::write(&path, "not a key").unwrap();
        let e = key_from_file(&path).unwrap_err();
        assert!(e.to_string().contains("BEGIN PUBLIC KEY"), "{e}");
        let e = key_from_file(&dir.path().join("absent.pem")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
    }

    #[test]
    fn times_must_be_rfc3339() {
        assert!(rfc3339("2026-11-01T00:00:00Z").is_ok());
        assert!(rfc3339("2026-11-01T01:00:00+01:00").is_ok());
        assert!(rfc3339("yesterday").is_err());
        assert_eq!(
            format_time(rfc3339("2026-11-01T01:00:00+01:00").unwrap()),
            "2026-11-01T00:00:00Z"
        );
    }
}
