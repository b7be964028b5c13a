//! Time as every table stores it. A module of its own so that `audit` and `state`, which both
//! write times, need not import each other.

use chrono::{DateTime, Utc};

/// RFC 3339, UTC, fixed width (microseconds), so that string order is time order.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
