//! The `keysmith-revocations` inline policy as a value: what it denies, when each entry may go,
//! and how large it is. Pure: reading and writing it in IAM is the parent module's job.
//!
//! Three kinds of `Deny` `*` on `*` (SPEC §10):
//! - lease ids, `StringEquals` on `aws:PrincipalTag/keysmith:lease` (and, as every such session
//!   carries it, on `aws:PrincipalTag/keysmith:profile`), grouped by profile and by the hour their
//!   credentials have all expired; the `Sid` (`KeysmithLeasesUntil<yyyymmddThhmmss>Z<hash of the
//!   profile>`, unique as IAM requires) carries that hour, so the policy describes its own pruning
//!   without a second record, and a profile's entries can be folded into its cut-off when the
//!   quota is reached;
//! - a profile cut-off: `aws:PrincipalTag/keysmith:profile` and `DateLessThan`
//!   `aws:TokenIssueTime` (one per profile, the latest time wins: it covers the earlier);
//! - every session token of a base user: `DateLessThan` `aws:TokenIssueTime` alone (requests
//!   signed with the user's long-term key have no `aws:TokenIssueTime`, so the key itself goes on
//!   working);
//! - untagged sessions of named source identities (a profile revoke on a role, SPEC §18): the
//!   callers of the profile's live leases by `aws:SourceIdentity`, issued before the cut-off, when
//!   the session carries no `keysmith:profile` tag (`Null`) — a session chained from a lease
//!   where the tags could not follow. Tagged sessions of other profiles are left alone.
//!
//! Statements Keysmith did not write are kept as they are.

mod entry;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Value};

use entry::{ceil_hour, entry_of, iso};
pub use entry::{Entry, TargetKind};

pub const POLICY_NAME: &str = "keysmith-revocations";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    pub entries: Vec<Entry>,
    /// Statements Keysmith did not write: kept verbatim.
    pub foreign: Vec<Value>,
}

/// Whole seconds, rounded up, so "before now" includes a token issued this very second.
pub fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = t.duration_trunc(Duration::seconds(1)).unwrap_or(t);
    if floor < t {
        floor + Duration::seconds(1)
    } else {
        floor
    }
}

/// A cut-off in words, for answers and audit items.
pub fn cutoff_statement(profile: Option<&str>, before: DateTime<Utc>) -> String {
    let before = iso(before);
    match profile {
        Some(p) => format!(
            "Deny aws:PrincipalTag/keysmith:profile = {p} when aws:TokenIssueTime < {before}"
        ),
        None => format!("Deny every session token when aws:TokenIssueTime < {before}"),
    }
}
impl Document {
    /// Parses a policy document; `None` if it is not a JSON policy at all.
    pub fn parse(text: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(text).ok()?;
        let statements = match &v["Statement"] {
            Value::Array(a) => a.clone(),
            s @ Value::Object(_) => vec![s.clone()],
            _ => return None,
        };
        let mut doc = Self::default();
        for s in statements {
            match entry_of(&s) {
                Some(e) => doc.entries.push(e),
                None => doc.foreign.push(s),
            }
        }
        Some(doc)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.foreign.is_empty()
    }

    /// The compact JSON written to IAM.
    pub fn to_json(&self) -> String {
        let statements: Vec<Value> = self
            .entries
            .iter()
            .map(Entry::to_statement)
            .chain(self.foreign.iter().cloned())
            .collect();
        json!({"Version": "2012-10-17", "Statement": statements}).to_string()
    }

    /// Characters IAM counts against its quota (whitespace excluded).
    pub fn size(&self) -> usize {
        self.to_json()
            .chars()
            .filter(|c| !c.is_whitespace())
            .count()
    }

    /// The statement that already denies lease `id` of `profile` (issued at `created_at`): its
    /// own entry, or a cut-off of its profile after it was issued.
    pub fn covering(&self, profile: &str, id: &str, created_at: DateTime<Utc>) -> Option<String> {
        if self.contains_lease(id) {
            return Some(format!("Deny aws:PrincipalTag/keysmith:lease = {id}"));
        }
        self.entries.iter().find_map(|e| match e {
            Entry::Profile { profile: p, before } if p == profile && *before > created_at => {
                Some(cutoff_statement(Some(p), *before))
            }
            _ => None,
        })
    }

    pub fn contains_lease(&self, id: &str) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Leases { ids, .. } if ids.contains(id)))
    }

    /// Denies lease `id` of `profile`, whose credentials expire at `expires_at`. False if it
    /// already was.
    pub fn add_lease(&mut self, profile: &str, id: &str, expires_at: DateTime<Utc>) -> bool {
        if self.contains_lease(id) {
            return false;
        }
        let until = ceil_hour(expires_at);
        for e in &mut self.entries {
            if let Entry::Leases {
                profile: p,
                until: u,
                ids,
            } = e
            {
                if *u == until && p == profile {
                    ids.insert(id.to_owned());
                    return true;
                }
            }
        }
        self.entries.push(Entry::Leases {
            profile: profile.to_owned(),
            until,
            ids: BTreeSet::from([id.to_owned()]),
        });
        true
    }

    /// Replaces every per-lease entry of `profile` by its cut-off at `before` (which must be
    /// after those leases were issued: then it denies all of them, and more).
    pub fn fold_into_cutoff(&mut self, profile: &str, before: DateTime<Utc>) {
        self.entries
            .retain(|e| !matches!(e, Entry::Leases { profile: p, .. } if p == profile));
        self.add_cutoff(Some(profile), before);
    }

    /// Replaces every per-lease entry, of every profile, by that profile's cut-off at `before`
    /// (an admin's way to make room: a cut-off never takes more room than the lease entries it
    /// replaces). Returns the profiles folded.
    pub fn fold_all_into_cutoffs(&mut self, before: DateTime<Utc>) -> Vec<String> {
        let mut folded: Vec<String> = Vec::new();
        for e in &self.entries {
            if let Entry::Leases { profile, .. } = e {
                if !folded.contains(profile) {
                    folded.push(profile.clone());
                }
            }
        }
        for p in &folded {
            self.fold_into_cutoff(p, before);
        }
        folded
    }

    /// Room kept free of per-lease entries so that an admin's cut-off always fits: one
    /// statement for the longest profile name, and its separator.
    pub fn reserve() -> usize {
        let widest = Entry::Profile {
            profile: "p".repeat(64),
            before: DateTime::<Utc>::MIN_UTC,
        };
        widest
            .to_statement()
            .to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .count()
            + 1
    }

    /// Denies sessions of `profile` (or, with `None`, every session token) issued before
    /// `before`; an existing cut-off of the same scope moves to the later time.
    pub fn add_cutoff(&mut self, profile: Option<&str>, before: DateTime<Utc>) {
        for e in &mut self.entries {
            match (e, profile) {
                (
                    Entry::Profile {
                        profile: p,
                        before: b,
                    },
                    Some(want),
                ) if p == want => {
                    *b = (*b).max(before);
                    return;
                }
                (Entry::AllTokens { before: b }, None) => {
                    *b = (*b).max(before);
                    return;
                }
                _ => {}
            }
        }
        self.entries.push(match profile {
            Some(p) => Entry::Profile {
                profile: p.to_owned(),
                before,
            },
            None => Entry::AllTokens { before },
        });
    }

    /// Denies untagged sessions of `sources` issued before `before` (merged into an entry of the
    /// same time). False if there was nothing to add.
    pub fn add_sources(&mut self, before: DateTime<Utc>, sources: &[String]) -> bool {
        if sources.is_empty() {
            return false;
        }
        for e in &mut self.entries {
            if let Entry::Sources {
                before: b,
                sources: s,
            } = e
            {
                if *b == before {
                    let n = s.len();
                    s.extend(sources.iter().cloned());
                    return s.len() > n;
                }
            }
        }
        self.entries.push(Entry::Sources {
            before,
            sources: sources.iter().cloned().collect(),
        });
        true
    }

    /// Takes back [`Self::add_sources`] of `before` (it did not fit: the tags are the primary
    /// match, this one a second net).
    pub fn remove_sources(&mut self, before: DateTime<Utc>) {
        self.entries
            .retain(|e| !matches!(e, Entry::Sources { before: b, .. } if *b == before));
    }

    /// Drops every entry whose credentials have all expired by `now`; returns how many.
    pub fn prune(&mut self, now: DateTime<Utc>, kind: TargetKind) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.obsolete_at(kind) > now);
        before - self.entries.len()
    }

    /// When the next entry can be pruned.
    pub fn next_prune(&self, kind: TargetKind) -> Option<DateTime<Utc>> {
        self.entries.iter().map(|e| e.obsolete_at(kind)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_document_survives_its_own_round_trip_and_keeps_foreign_statements() {
        let mut d = Document::default();
        d.add_lease("p", "a", t("2026-11-23T12:10:00Z"));
        d.add_lease("p", "b", t("2026-11-23T12:50:00Z"));
        d.add_lease("p", "c", t("2026-11-23T13:00:00Z"));
        assert!(!d.add_lease("p", "a", t("2026-11-23T12:10:00Z")));
        d.add_cutoff(Some("deploy"), t("2026-11-23T10:00:00Z"));
        d.add_cutoff(Some("deploy"), t("2026-11-23T09:00:00Z"));
        d.add_cutoff(None, t("2026-11-23T11:00:00Z"));
        d.add_sources(t("2026-11-23T10:00:00Z"), &["alice".into(), "bob".into()]);
        assert!(!d.add_sources(t("2026-11-23T10:00:00Z"), &["alice".into()]));
        d.foreign
            .push(json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}));
        let back = Document::parse(&d.to_json()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.entries.len(), 4, "{}", d.to_json());
        let v: Value = serde_json::from_str(&d.to_json()).unwrap();
        assert!(
            v["Statement"][0]["Sid"]
                .as_str()
                .unwrap()
                .starts_with("KeysmithLeasesUntil20261123T130000Z"),
            "a and b and c (13:00 exactly) share the hour"
        );
        assert_eq!(
            v["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalTag/keysmith:lease"],
            json!(["a", "b", "c"])
        );
        assert_eq!(
            v["Statement"][1]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2026-11-23T10:00:00Z",
            "the later cut-off wins"
        );
    }

    #[test]
    fn entries_go_once_every_credential_they_match_has_expired() {
        let mut d = Document::default();
        d.add_lease("p", "a", t("2026-11-23T12:10:00Z"));
        d.add_cutoff(Some("p"), t("2026-11-23T10:00:00Z"));
        assert_eq!(d.prune(t("2026-11-23T12:59:59Z"), TargetKind::Role), 0);
        assert_eq!(d.prune(t("2026-11-23T13:00:00Z"), TargetKind::Role), 1);
        assert_eq!(
            d.next_prune(TargetKind::Role),
            Some(t("2026-11-23T22:00:00Z"))
        );
        assert_eq!(d.prune(t("2026-11-23T22:00:00Z"), TargetKind::Role), 1);
        assert!(d.is_empty());
        d.add_cutoff(None, t("2026-11-23T10:00:00Z"));
        assert_eq!(
            d.next_prune(TargetKind::User),
            Some(t("2026-11-24T22:00:00Z"))
        );
    }

    #[test]
    fn a_profiles_leases_fold_into_its_cut_off_and_no_other() {
        let mut d = Document::default();
        d.add_lease("p", "a", t("2026-11-23T12:10:00Z"));
        d.add_lease("q", "b", t("2026-11-23T12:10:00Z"));
        let sids: Vec<String> = serde_json::from_str::<Value>(&d.to_json()).unwrap()["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap().to_owned())
            .collect();
        assert_ne!(sids[0], sids[1], "Sids are unique");
        assert!(sids
            .iter()
            .all(|s| s.chars().all(|c| c.is_ascii_alphanumeric())));
        d.fold_into_cutoff("p", t("2026-11-23T12:00:00Z"));
        assert!(!d.contains_lease("a"));
        assert!(d.contains_lease("b"));
        assert_eq!(Document::parse(&d.to_json()).unwrap(), d);
    }

    #[test]
    fn times_round_up_to_include_this_second() {
        assert_eq!(
            ceil_second(t("2026-11-23T12:00:00.2Z")),
            t("2026-11-23T12:00:01Z")
        );
        assert_eq!(
            ceil_second(t("2026-11-23T12:00:00Z")),
            t("2026-11-23T12:00:00Z")
        );
    }
}
