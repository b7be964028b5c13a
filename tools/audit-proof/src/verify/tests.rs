//! A synthetic trail sealed as the sealer seals it, with a real P-256 key, then tampered with.

use super::*;
use crate::{pem_to_der, GENESIS};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::SecondsFormat;
use serde_json::json;

const KEY_ID: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

struct Signer {
    key: EcdsaKeyPair,
    spki: Vec<u8>,
}

impl Signer {
    fn new() -> Signer {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = AsDer::<PublicKeyX509Der>::as_der(key.public_key())
            .unwrap()
            .as_ref()
            .to_vec();
        Signer { key, spki }
    }

    fn sign(&self, c: &mut Checkpoint) {
        let sig = self
            .key
            .sign(&SystemRandom::new(), &c.signed_message())
            .unwrap();
        c.signature = Some(STANDARD.encode(sig.as_ref()));
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn item(n: u32, time: &str) -> Value {
    let mut v = json!({
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "time": time,
        "event": "AWS STS Temporary Credentials Issued",
        "category": "Data",
        "outcome": "allowed",
        "principal": "arn:aws:iam::123456789012:user/alice",
        "profile": "deploy",
        "duration_seconds": 3600
    });
    v["hash"] = json!(item_hash(&v));
    v
}

/// `periods` 5-minute checkpoints from `start` over `items`, chained from GENESIS.
fn seal(items: &[Value], start: DateTime<Utc>, periods: i64, signer: &Signer) -> Vec<Checkpoint> {
    let mut previous = GENESIS.to_owned();
    let mut out = Vec::new();
    for p in 0..periods {
        let s = start + TimeDelta::minutes(5 * p);
        let e = s + TimeDelta::minutes(5);
        let mut inside: Vec<&Value> = items
            .iter()
            .filter(|i| {
                let t = at(i["time"].as_str().unwrap());
                s <= t && t < e
            })
            .collect();
        inside.sort_by_key(|i| (i["time"].as_str(), i["id"].as_str()));
        let hashes: Vec<String> = inside
            .iter()
            .map(|i| i["hash"].as_str().unwrap().to_owned())
            .collect();
        let mut c = Checkpoint {
            period_start: rfc3339(s),
            period_end: rfc3339(e),
            count: inside.len() as u64,
            root: merkle_root(&hashes).unwrap(),
            previous,
            key_id: KEY_ID.into(),
            signature: None,
        };
        signer.sign(&mut c);
        previous = c.hash();
        out.push(c);
    }
    out
}

struct Trail {
    signer: Signer,
    items: Vec<Value>,
    checkpoints: Vec<Checkpoint>,
    now: DateTime<Utc>,
}

impl Trail {
    /// Four periods 20:00–20:20 (the second empty), an item before them and a recent one after.
    fn new() -> Trail {
        let signer = Signer::new();
        let items = vec![
            item(1, "2026-12-04T19:59:59.999999Z"), // before the window: not looked at
            item(3, "2026-12-04T20:00:00.000000Z"),
            item(5, "2026-12-04T20:01:30.250000Z"),
            item(4, "2026-12-04T20:01:30.250000Z"), // same time: ordered by id
            item(6, "2026-12-04T20:12:00.000001Z"),
            item(7, "2026-12-04T20:14:59.999999Z"),
            item(8, "2026-12-04T20:15:00.000000Z"), // a period's start belongs to it
            item(9, "2026-12-04T20:19:59.999999Z"),
            item(10, "2026-12-04T20:24:00.000000Z"), // after the last checkpoint, recent
        ];
        let checkpoints = seal(&items, at("2026-12-04T20:00:00Z"), 4, &signer);
        Trail {
            signer,
            items,
            checkpoints,
            now: at("2026-12-04T20:30:00Z"),
        }
    }

    fn verify(&self) -> Report {
        // Any order will do.
        let items: Vec<Value> = self.items.iter().rev().cloned().collect();
        verify(&self.checkpoints, &items, &self.signer.spki, self.now)
    }

    fn id(&self, i: usize) -> String {
        self.items[i]["id"].as_str().unwrap().to_owned()
    }
}

fn period(start: &str, end: &str) -> (String, String) {
    (
        format!("2026-12-04T{start}:00Z"),
        format!("2026-12-04T{end}:00Z"),
    )
}

#[test]
fn a_sealed_trail_is_clean() {
    let trail = Trail::new();
    assert_eq!(trail.checkpoints[0].previous, GENESIS);
    assert_eq!(trail.checkpoints[1].count, 0);
    let report = trail.verify();
    assert!(report.clean(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 4);
    assert_eq!(report.items, 8);
    assert_eq!(report.unsealed, 1);
}

#[test]
fn a_changed_byte_names_the_item_and_its_period() {
    let mut trail = Trail::new();
    let principal = trail.items[5]["principal"]
        .as_str()
        .unwrap()
        .replace("alice", "alicf");
    trail.items[5]["principal"] = json!(principal);
    let (period_start, period_end) = period("20:10", "20:15");
    assert_eq!(
        trail.verify().problems,
        [
            Problem::ItemChanged { id: trail.id(5) },
            Problem::ItemsDiffer {
                period_start,
                period_end
            }
        ]
    );
}

#[test]
fn a_deleted_item_shows_in_its_period_count() {
    let mut trail = Trail::new();
    trail.items.remove(4);
    let (period_start, period_end) = period("20:10", "20:15");
    let problems = trail.verify().problems;
    assert_eq!(
        problems,
        [Problem::ItemsDeleted {
            period_start,
            period_end,
            found: 1,
            sealed: 2
        }]
    );
    assert_eq!(
        problems[0].to_string(),
        "period 2026-12-04T20:10:00Z–2026-12-04T20:15:00Z: 1 item where the checkpoint sealed 2 (an item was deleted)"
    );
}

#[test]
fn an_item_inserted_with_an_old_time_and_a_good_hash_shows_in_its_period_count() {
    let mut trail = Trail::new();
    trail.items.push(item(99, "2026-12-04T20:02:00.000000Z"));
    let (period_start, period_end) = period("20:00", "20:05");
    let problems = trail.verify().problems;
    assert_eq!(
        problems,
        [Problem::ItemsInserted {
            period_start,
            period_end,
            found: 4,
            sealed: 3
        }]
    );
    assert!(problems[0]
        .to_string()
        .ends_with(": 4 items where the checkpoint sealed 3 (an item was inserted)"));
}

#[test]
fn an_item_swapped_for_another_changes_the_root() {
    let mut trail = Trail::new();
    trail.items.remove(4);
    trail.items.push(item(98, "2026-12-04T20:11:00.000000Z"));
    let (period_start, period_end) = period("20:10", "20:15");
    assert_eq!(
        trail.verify().problems,
        [Problem::ItemsDiffer {
            period_start,
            period_end
        }]
    );
}

#[test]
fn a_removed_checkpoint_is_a_gap_and_its_items_are_unsealed() {
    let mut trail = Trail::new();
    trail.checkpoints.remove(2);
    let report = trail.verify();
    assert_eq!(
        report.problems,
        [
            Problem::CheckpointsMissing {
                after: "2026-12-04T20:10:00Z".into(),
                before: "2026-12-04T20:15:00Z".into()
            },
            Problem::ItemNotSealed {
                id: trail.id(5),
                time: "2026-12-04T20:14:59.999999Z".into()
            },
            Problem::ItemNotSealed {
                id: trail.id(4),
                time: "2026-12-04T20:12:00.000001Z".into()
            },
        ]
    );
    assert_eq!(
        report.problems[0].to_string(),
        "checkpoint(s) missing between 2026-12-04T20:10:00Z and 2026-12-04T20:15:00Z"
    );
}

#[test]
fn a_checkpoint_re_signed_with_another_key_is_caught_and_breaks_the_chain() {
    let mut trail = Trail::new();
    let forger = Signer::new();
    trail.checkpoints[1].count = 1;
    forger.sign(&mut trail.checkpoints[1]);
    let problems = trail.verify().problems;
    assert_eq!(
        problems[..2],
        [
            Problem::BadSignature {
                period_start: "2026-12-04T20:05:00Z".into()
            },
            Problem::BrokenChain {
                period_start: "2026-12-04T20:10:00Z".into()
            },
        ]
    );
    assert_eq!(
        problems[0].to_string(),
        "checkpoint 2026-12-04T20:05:00Z has a bad signature (re-signed, or another key)"
    );
    assert_eq!(
        problems[1].to_string(),
        "checkpoint 2026-12-04T20:10:00Z does not chain to the one before it"
    );

    // The last one re-signed as it was: only its signature is wrong.
    let mut trail = Trail::new();
    forger.sign(&mut trail.checkpoints[3]);
    assert_eq!(
        trail.verify().problems,
        [Problem::BadSignature {
            period_start: "2026-12-04T20:15:00Z".into()
        }]
    );
}

#[test]
fn a_wrong_previous_breaks_the_chain_even_when_signed() {
    let mut trail = Trail::new();
    trail.checkpoints[2].previous = GENESIS.into();
    trail.signer.sign(&mut trail.checkpoints[2]);
    // The next one chained to the old checkpoint 2.
    assert_eq!(
        trail.verify().problems,
        [
            Problem::BrokenChain {
                period_start: "2026-12-04T20:10:00Z".into()
            },
            Problem::BrokenChain {
                period_start: "2026-12-04T20:15:00Z".into()
            },
        ]
    );
}

#[test]
fn every_checkpoint_names_the_first_ones_key() {
    let mut trail = Trail::new();
    trail.checkpoints[3].key_id = "arn:aws:kms:eu-west-1:123456789012:key/other".into();
    trail.signer.sign(&mut trail.checkpoints[3]);
    assert_eq!(
        trail.verify().problems,
        [Problem::KeyChanged {
            period_start: "2026-12-04T20:15:00Z".into(),
            key_id: "arn:aws:kms:eu-west-1:123456789012:key/other".into(),
            expected: KEY_ID.into(),
        }]
    );
}

#[test]
fn checkpoints_out_of_order_are_a_problem() {
    let mut trail = Trail::new();
    trail.checkpoints.swap(1, 2);
    let problems = trail.verify().problems;
    assert!(
        problems.contains(&Problem::OutOfOrder {
            period_start: "2026-12-04T20:05:00Z".into(),
            previous_period_end: "2026-12-04T20:15:00Z".into(),
        }),
        "{problems:?}"
    );
}

#[test]
fn an_old_item_after_the_last_checkpoint_is_in_none() {
    let mut trail = Trail::new();
    trail.now = at("2026-12-04T20:39:00.000001Z");
    let report = trail.verify();
    assert_eq!(
        report.problems,
        [Problem::ItemNotSealed {
            id: trail.id(8),
            time: "2026-12-04T20:24:00.000000Z".into()
        }]
    );
    assert_eq!(report.unsealed, 0);
    assert_eq!(
        report.problems[0].to_string(),
        format!(
            "item {} (2026-12-04T20:24:00.000000Z) is in no checkpoint",
            trail.id(8)
        )
    );
    // Fifteen minutes exactly is still waiting for its seal.
    trail.now = at("2026-12-04T20:39:00Z");
    assert!(trail.verify().clean());
}

#[test]
fn items_without_what_they_need_are_problems() {
    let mut trail = Trail::new();
    trail.items[2].as_object_mut().unwrap().remove("hash");
    trail.items[6].as_object_mut().unwrap().remove("time");
    trail.items[7]["time"] = json!("yesterday");
    let report = trail.verify();
    let (s3, e3) = period("20:15", "20:20");
    assert_eq!(
        report.problems,
        [
            Problem::MalformedItem {
                id: Some(trail.id(7)),
                reason: "its time \"yesterday\" is not RFC 3339".into()
            },
            Problem::MalformedItem {
                id: Some(trail.id(6)),
                reason: "it has no time".into()
            },
            // Still counted in its period: only the stored hash is gone.
            Problem::MalformedItem {
                id: Some(trail.id(2)),
                reason: "it has no hash".into()
            },
            Problem::ItemsDeleted {
                period_start: s3,
                period_end: e3,
                found: 0,
                sealed: 2
            },
        ]
    );
}

#[test]
fn a_malformed_checkpoint_is_named() {
    let mut trail = Trail::new();
    trail.checkpoints[3].period_end = "2026-12-04T20:15:00Z".into();
    trail.signer.sign(&mut trail.checkpoints[3]);
    let problems = trail.verify().problems;
    assert_eq!(
        problems[0],
        Problem::MalformedCheckpoint {
            period_start: "2026-12-04T20:15:00Z".into(),
            reason: "period_end 2026-12-04T20:15:00Z is not after period_start".into()
        }
    );
}

#[test]
fn the_wrong_key_fails_every_signature() {
    let trail = Trail::new();
    let other = Signer::new();
    let report = verify(&trail.checkpoints, &trail.items, &other.spki, trail.now);
    assert_eq!(report.problems.len(), 4);
    assert!(report
        .problems
        .iter()
        .all(|p| matches!(p, Problem::BadSignature { .. })));
    let report = verify(&trail.checkpoints, &trail.items, b"garbage", trail.now);
    assert_eq!(report.problems.len(), 4);
}

#[test]
fn a_pem_public_key_file_works_like_kms_der() {
    let trail = Trail::new();
    let b64 = STANDARD.encode(&trail.signer.spki);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let der = pem_to_der(&pem).unwrap();
    assert_eq!(der, trail.signer.spki);
    assert!(trail.checkpoints[0].signature_valid(&der));
    assert!(verify(&trail.checkpoints, &trail.items, &der, trail.now).clean());
}

#[test]
fn reports_serialise_with_a_kind_per_problem() {
    let mut trail = Trail::new();
    trail.items.remove(4);
    let json = serde_json::to_value(trail.verify()).unwrap();
    assert_eq!(
        json,
        json!({
            "checkpoints": 4,
            "items": 7,
            "unsealed": 1,
            "problems": [{
                "kind": "items_deleted",
                "period_start": "2026-12-04T20:10:00Z",
                "period_end": "2026-12-04T20:15:00Z",
                "found": 1,
                "sealed": 2
            }]
        })
    );
    assert_eq!(
        serde_json::to_value(Problem::ItemChanged { id: "x".into() }).unwrap(),
        json!({"kind": "item_changed", "id": "x"})
    );
}

#[test]
fn no_checkpoints_seal_nothing() {
    let trail = Trail::new();
    let report = verify(&[], &trail.items, &trail.signer.spki, trail.now);
    assert_eq!(report.checkpoints, 0);
    assert_eq!(report.items, 9);
    // 20:15 and later is within 15 minutes of now.
    assert_eq!(report.unsealed, 3);
    assert_eq!(report.problems.len(), 6);
}
