//! Reading many requests: the lists of `GET /v1/requests` (through the indexes, filtered to
//! what the caller may see) and the scheduled run's expiry of the due ones.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{store, AccessRequest, Actor, Index, RequestError, Requests, Status};
use crate::audit::Origin;
use crate::names::{Invalid, ProfileName};

impl Requests<'_> {
    /// The scheduled run: every pending request past its expiry and every approved one past its
    /// grant is recorded `expired` (one item each, however many runs see it).
    pub async fn expire_due(
        &self,
        now: DateTime<Utc>,
        origin: &Origin,
    ) -> Result<usize, RequestError> {
        let mut expired = 0;
        for status in [Status::Pending, Status::Approved] {
            for r in self.store.due(status, now).await? {
                if self.settle(origin, r).await?.status == Status::Expired {
                    expired += 1;
                }
            }
        }
        Ok(expired)
    }

    /// `GET /v1/requests`: admins see all; anyone else their own and those they may approve.
    /// A page reads at most `limit` items a round and a few rounds, so it may hold fewer than
    /// `limit` with a `next` to follow.
    pub async fn list(
        &self,
        actor: &Actor<'_>,
        status: Option<Status>,
        profile: Option<&ProfileName>,
        limit: usize,
        next: Option<&str>,
    ) -> Result<(Vec<AccessRequest>, Option<String>), RequestError> {
        let (mut phase, mut start) = match next {
            None => (0, None),
            Some(n) => {
                let (p, k) = store::decode_cursor(n)
                    .ok_or_else(|| Invalid::new("next", "is not a cursor from a previous page"))?;
                (p, (!k.is_empty()).then_some(k))
            }
        };
        let me = actor.identity();
        let union = !actor.admin && status.is_none() && profile.is_none();
        // (index, status filter on the profile index)
        let index_of = |phase: u8| match (profile, status) {
            (Some(p), s) => (Index::Profile(p.to_string()), s),
            (None, Some(s)) => (Index::Status(s), None),
            (None, None) if actor.admin => (Index::All, None),
            (None, None) if phase == 0 => (Index::Owner(me.clone()), None),
            (None, None) => (Index::Status(Status::Pending), None),
        };
        if phase > u8::from(union) || start.as_ref().is_some_and(|k| !index_of(phase).0.fits(k)) {
            return Err(Invalid::new("next", "is not a cursor of this query").into());
        }
        let now = Utc::now();
        let mut cache = HashMap::new();
        let mut found = Vec::new();
        for _round in 0..8 {
            let (index, filter) = index_of(phase);
            let (items, last) = self
                .store
                .page(&index, filter, limit - found.len(), start.take())
                .await?;
            for r in items {
                let keep = match (union, phase) {
                    (true, 1) => {
                        r.requester_identity != me
                            && self.approves(actor, &r.profile, &mut cache).await?
                    }
                    _ => self.visible(actor, &r, &mut cache).await?,
                };
                // A status filter means the status a reader sees (an overdue request is expired).
                if keep && status.is_none_or(|s| r.status_at(now) == s) {
                    found.push(r);
                }
            }
            start = last;
            if start.is_none() {
                if union && phase == 0 {
                    phase = 1;
                    if found.len() >= limit {
                        return Ok((found, Some(store::encode_cursor(1, &HashMap::new()))));
                    }
                    continue;
                }
                return Ok((found, None));
            }
            if found.len() >= limit {
                break;
            }
        }
        Ok((found, start.map(|k| store::encode_cursor(phase, &k))))
    }
}
