//! Offline verification of a window of the audit trail against its signed checkpoints.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::{item_hash, merkle_root, Checkpoint};

/// An item after the last checkpoint and younger than this is merely not sealed yet: a period
/// is sealed a few minutes after it ends (SPEC §13: 5-minute periods, 2 minutes' lag, a job
/// every 5 minutes).
const SEAL_GRACE: TimeDelta = TimeDelta::minutes(15);

/// What [`verify`] found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Checkpoints examined.
    pub checkpoints: usize,
    /// Items examined: those at or after the first checkpoint's `period_start` (and those
    /// without a readable `time`).
    pub items: usize,
    /// Items after the last checkpoint, too recent to have been sealed (not a problem).
    pub unsealed: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing wrong with the trail. `Display` is one sentence for a person; serialised, it is
/// `{"kind": "<snake_case variant>", ...its fields}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The signature does not verify under the trusted key.
    BadSignature { period_start: String },
    /// The checkpoint names another key than the first one.
    KeyChanged {
        period_start: String,
        key_id: String,
        expected: String,
    },
    /// Two consecutive checkpoints leave a gap between their periods.
    CheckpointsMissing { after: String, before: String },
    /// Contiguous periods, but `previous` is not the hash of the checkpoint before.
    BrokenChain { period_start: String },
    /// The checkpoint starts before the one before it ends (out of order, or overlapping).
    OutOfOrder {
        period_start: String,
        previous_period_end: String,
    },
    /// The checkpoint's period cannot be read.
    MalformedCheckpoint {
        period_start: String,
        reason: String,
    },
    /// The item's content does not match its stored `hash`.
    ItemChanged { id: String },
    /// The item lacks `id`, `time` or `hash`, or its `time` cannot be read.
    MalformedItem { id: Option<String>, reason: String },
    /// Fewer items in the period than were sealed.
    ItemsDeleted {
        period_start: String,
        period_end: String,
        found: u64,
        sealed: u64,
    },
    /// More items in the period than were sealed.
    ItemsInserted {
        period_start: String,
        period_end: String,
        found: u64,
        sealed: u64,
    },
    /// As many items as sealed, but not the same ones (their Merkle root differs).
    ItemsDiffer {
        period_start: String,
        period_end: String,
    },
    /// The item is in no checkpoint's period: in a gap, or after the last one and too old to be
    /// waiting for its seal.
    ItemNotSealed { id: String, time: String },
}

fn items(n: u64) -> String {
    match n {
        1 => "1 item".into(),
        n => format!("{n} items"),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadSignature { period_start } => write!(
                f,
                "checkpoint {period_start} has a bad signature (re-signed, or another key)"
            ),
            Problem::KeyChanged {
                period_start,
                key_id,
                expected,
            } => write!(
                f,
                "checkpoint {period_start} names key {key_id}, not {expected} as the first one does"
            ),
            Problem::CheckpointsMissing { after, before } => {
                write!(f, "checkpoint(s) missing between {after} and {before}")
            }
            Problem::BrokenChain { period_start } => write!(
                f,
                "checkpoint {period_start} does not chain to the one before it"
            ),
            Problem::OutOfOrder {
                period_start,
                previous_period_end,
            } => write!(
                f,
                "checkpoint {period_start} is out of order: the one before it ends at {previous_period_end}"
            ),
            Problem::MalformedCheckpoint {
                period_start,
                reason,
            } => write!(f, "checkpoint {period_start} is malformed: {reason}"),
            Problem::ItemChanged { id } => write!(
                f,
                "item {id} was changed (its content does not match its hash)"
            ),
            Problem::MalformedItem { id, reason } => match id {
                Some(id) => write!(f, "item {id} is malformed: {reason}"),
                None => write!(f, "an item is malformed: {reason}"),
            },
            Problem::ItemsDeleted {
                period_start,
                period_end,
                found,
                sealed,
            } => write!(
                f,
                "period {period_start}–{period_end}: {} where the checkpoint sealed {sealed} (an item was deleted)",
                items(*found)
            ),
            Problem::ItemsInserted {
                period_start,
                period_end,
                found,
                sealed,
            } => write!(
                f,
                "period {period_start}–{period_end}: {} where the checkpoint sealed {sealed} (an item was inserted)",
                items(*found)
            ),
            Problem::ItemsDiffer {
                period_start,
                period_end,
            } => write!(
                f,
                "period {period_start}–{period_end}: the items differ from what was sealed"
            ),
            Problem::ItemNotSealed { id, time } => {
                write!(f, "item {id} ({time}) is in no checkpoint")
            }
        }
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A checkpoint's period, when it can be read: `[start, end)`.
fn period(c: &Checkpoint) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let start = parse_time(&c.period_start)
        .ok_or_else(|| format!("period_start {:?} is not RFC 3339", c.period_start))?;
    let end = parse_time(&c.period_end)
        .ok_or_else(|| format!("period_end {:?} is not RFC 3339", c.period_end))?;
    if end <= start {
        return Err(format!(
            "period_end {} is not after period_start",
            c.period_end
        ));
    }
    Ok((start, end))
}

/// An item placed in a period: the (time, id) it is ordered by and its recomputed hash.
struct Placed {
    time: String,
    id: String,
    hash: String,
}

/// Offline verification. `items` are audit items as `GET /v1/audit` returns them (JSON objects
/// with at least "id", "time", "hash"), in any order; `checkpoints` oldest first; `now` decides
/// what is merely not sealed yet.
///
/// Checks every signature under `spki_der` (and that every checkpoint names the first one's
/// key), the chain of `previous` and the periods' contiguity, each item against its hash, and
/// each period's count and Merkle root over the recomputed hashes of its items in (time, id)
/// order. Items before the first checkpoint are not looked at; items after the last one are
/// `unsealed` while younger than 15 minutes, a problem after that.
pub fn verify(
    checkpoints: &[Checkpoint],
    items: &[Value],
    spki_der: &[u8],
    now: DateTime<Utc>,
) -> Report {
    let mut problems = Vec::new();

    let periods: Vec<Option<(DateTime<Utc>, DateTime<Utc>)>> = checkpoints
        .iter()
        .map(|c| match period(c) {
            Ok(p) => Some(p),
            Err(reason) => {
                problems.push(Problem::MalformedCheckpoint {
                    period_start: c.period_start.clone(),
                    reason,
                });
                None
            }
        })
        .collect();

    check_checkpoints(checkpoints, &periods, spki_der, &mut problems);

    // Where each item belongs: the well-formed periods by start.
    let mut index: Vec<(DateTime<Utc>, DateTime<Utc>, usize)> = periods
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|(s, e)| (s, e, i)))
        .collect();
    index.sort_by_key(|(s, _, i)| (*s, *i));
    let first_start = index.iter().map(|(s, _, _)| *s).min();
    let last_end = index.iter().map(|(_, e, _)| *e).max();

    let mut placed: Vec<Vec<Placed>> = checkpoints.iter().map(|_| Vec::new()).collect();
    let mut examined = 0;
    let mut unsealed = 0;
    for item in items {
        let text = |k: &str| item.get(k).and_then(Value::as_str);
        let id = text("id");
        let malformed = |reason: String| Problem::MalformedItem {
            id: id.map(str::to_owned),
            reason,
        };
        let Some(time_text) = text("time") else {
            examined += 1;
            problems.push(malformed("it has no time".into()));
            continue;
        };
        let Some(time) = parse_time(time_text) else {
            examined += 1;
            problems.push(malformed(format!("its time {time_text:?} is not RFC 3339")));
            continue;
        };
        if first_start.is_some_and(|first| time < first) {
            continue;
        }
        examined += 1;

        let hash = item_hash(item);
        match (id, text("hash")) {
            (None, _) => problems.push(malformed("it has no id".into())),
            (Some(_), None) => problems.push(malformed("it has no hash".into())),
            (Some(id), Some(stored)) if stored != hash => {
                problems.push(Problem::ItemChanged { id: id.to_owned() })
            }
            _ => {}
        }

        // The last period starting at or before the item's time.
        let at = index.partition_point(|(s, _, _)| *s <= time);
        let home = at
            .checked_sub(1)
            .and_then(|k| index.get(k))
            .filter(|(_, end, _)| time < *end);
        match home {
            Some((_, _, i)) => {
                if let Some(list) = placed.get_mut(*i) {
                    list.push(Placed {
                        time: time_text.to_owned(),
                        id: id.unwrap_or_default().to_owned(),
                        hash,
                    });
                }
            }
            None => {
                let after_last = last_end.is_none_or(|end| time >= end);
                if after_last && time >= now - SEAL_GRACE {
                    unsealed += 1;
                } else {
                    problems.push(Problem::ItemNotSealed {
                        id: id.unwrap_or("(no id)").to_owned(),
                        time: time_text.to_owned(),
                    });
                }
            }
        }
    }

    for ((c, p), mut list) in checkpoints.iter().zip(&periods).zip(placed) {
        if p.is_none() {
            continue;
        }
        list.sort_by(|a, b| (&a.time, &a.id).cmp(&(&b.time, &b.id)));
        let found = list.len() as u64;
        let (period_start, period_end) = (c.period_start.clone(), c.period_end.clone());
        let sealed = c.count;
        if found < sealed {
            problems.push(Problem::ItemsDeleted {
                period_start,
                period_end,
                found,
                sealed,
            });
        } else if found > sealed {
            problems.push(Problem::ItemsInserted {
                period_start,
                period_end,
                found,
                sealed,
            });
        } else {
            let hashes: Vec<String> = list.into_iter().map(|p| p.hash).collect();
            // Recomputed hashes are always digests: the root cannot fail to compute.
            if merkle_root(&hashes).ok().as_deref() != Some(c.root.as_str()) {
                problems.push(Problem::ItemsDiffer {
                    period_start,
                    period_end,
                });
            }
        }
    }

    Report {
        checkpoints: checkpoints.len(),
        items: examined,
        unsealed,
        problems,
    }
}

/// Signatures, the key, the order and the chain of the checkpoints.
fn check_checkpoints(
    checkpoints: &[Checkpoint],
    periods: &[Option<(DateTime<Utc>, DateTime<Utc>)>],
    spki_der: &[u8],
    problems: &mut Vec<Problem>,
) {
    let Some(first) = checkpoints.first() else {
        return;
    };
    for (i, c) in checkpoints.iter().enumerate() {
        if !c.signature_valid(spki_der) {
            problems.push(Problem::BadSignature {
                period_start: c.period_start.clone(),
            });
        }
        if c.key_id != first.key_id {
            problems.push(Problem::KeyChanged {
                period_start: c.period_start.clone(),
                key_id: c.key_id.clone(),
                expected: first.key_id.clone(),
            });
        }
        let Some(prev) = i.checked_sub(1).and_then(|j| checkpoints.get(j)) else {
            continue;
        };
        let times = (
            i.checked_sub(1)
                .and_then(|j| periods.get(j))
                .copied()
                .flatten(),
            periods.get(i).copied().flatten(),
        );
        let chained = c.previous == prev.hash();
        match times {
            (Some((_, prev_end)), Some((start, _))) if start < prev_end => {
                problems.push(Problem::OutOfOrder {
                    period_start: c.period_start.clone(),
                    previous_period_end: prev.period_end.clone(),
                })
            }
            (Some((_, prev_end)), Some((start, _))) if start > prev_end => {
                problems.push(Problem::CheckpointsMissing {
                    after: prev.period_end.clone(),
                    before: c.period_start.clone(),
                })
            }
            _ if !chained => problems.push(Problem::BrokenChain {
                period_start: c.period_start.clone(),
            }),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
