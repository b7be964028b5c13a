//! RFC 8785 (JSON Canonicalization Scheme) and the item hash built on it.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// RFC 8785 (JCS) for JSON made of objects, arrays, strings, booleans, null and integers (keys
/// sorted by UTF-16 code units, no whitespace, strings escaped as serde_json does). A number with
/// a fraction or an exponent is written as ECMAScript writes it, as RFC 8785 says; audit items
/// hold none.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                if let Some(field) = m.get(k) {
                    write(field, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::String(s) => string(s, out),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&ecmascript_number(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

/// A JSON string as RFC 8785 writes it, which is what serde_json does: `"` and `\` escaped, the
/// control characters as `\b \t \n \f \r` or `\u00xx` (lowercase hex), everything else as it is.
fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript's Number.prototype.toString for a finite double (RFC 8785 §3.2.2.3): the shortest
/// digits that round-trip (what Rust prints too), laid out by ECMAScript's rules.
fn ecmascript_number(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    // `{:e}` is the shortest round-trip form: "d.ddde-7" or "de21".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let k = digits.len() as i32;
    let n = exponent + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        format!("{int}.{frac}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let (first, rest) = digits.split_at(1);
        let e = n - 1;
        let e_sign = if e < 0 { "-" } else { "+" };
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        format!("{first}{rest}e{e_sign}{}", e.abs())
    };
    format!("{sign}{body}")
}

/// Lowercase hex SHA-256 of an item's canonical JSON without its `hash` key.
pub fn item_hash(item: &Value) -> String {
    let mut item = item.clone();
    if let Value::Object(m) = &mut item {
        m.remove("hash");
    }
    sha256_hex(canonical(&item).as_bytes())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_sort_their_keys_at_every_depth_without_whitespace() {
        let v = json!({"b": [3, {"z": null, "a": true}], "a": {"y": false, "x": "s"}, "": 0});
        assert_eq!(
            canonical(&v),
            r#"{"":0,"a":{"x":"s","y":false},"b":[3,{"a":true,"z":null}]}"#
        );
        assert_eq!(canonical(&json!({})), "{}");
        assert_eq!(canonical(&json!([])), "[]");
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 is D83D DE00 in UTF-16: before U+FB33 (and after it in UTF-8 or by code
        // point). RFC 8785 §3.2.3's own example keys, in its order.
        let v = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{80}": "Control",
            "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        let c = canonical(&v);
        let order: Vec<&str> = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .to_vec();
        let mut at = 0;
        for key in order {
            let pos = c[at..]
                .find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("{key:?} out of order in {c}"));
            at += pos + 1;
        }
    }

    #[test]
    fn strings_escape_only_what_json_must() {
        let v = json!("a\"b\\c/d\u{8}\t\n\u{c}\r\u{0}\u{1f}\u{7f}é€😀");
        assert_eq!(
            canonical(&v),
            "\"a\\\"b\\\\c/d\\b\\t\\n\\f\\r\\u0000\\u001f\u{7f}é€😀\""
        );
        // The same as serde_json writes any string.
        for s in ["plain", "\u{1}\u{2}\u{1e}", "line\nbreak", "ünïcödé ✓"] {
            assert_eq!(canonical(&json!(s)), serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn integers_are_digits() {
        let v = json!([
            0,
            -1,
            42,
            9007199254740993_u64,
            -9223372036854775808_i64,
            u64::MAX
        ]);
        assert_eq!(
            canonical(&v),
            "[0,-1,42,9007199254740993,-9223372036854775808,18446744073709551615]"
        );
    }

    #[test]
    fn other_numbers_as_ecmascript_writes_them() {
        // RFC 8785 Appendix B, and a few by hand.
        for (f, s) in [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (123.456, "123.456"),
            (-1.5e-10, "-1.5e-10"),
            (4.50, "4.5"),
            (2e-3, "0.002"),
            (9007199254740994.0, "9007199254740994"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (333333333.3333332, "333333333.3333332"),
        ] {
            assert_eq!(canonical(&json!(f)), s, "{f:e}");
        }
    }

    #[test]
    fn item_hash_leaves_out_the_hash() {
        let item = json!({"id": "x", "time": "t", "hash": "whatever"});
        assert_eq!(
            item_hash(&item),
            sha256_hex(br#"{"id":"x","time":"t"}"#),
            "without its hash"
        );
        assert_eq!(
            item_hash(&item),
            item_hash(&json!({"time": "t", "id": "x"}))
        );
    }

    /// Python: `hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":"),
    /// ensure_ascii=False).encode()).hexdigest()` of this item (without `hash`).
    #[test]
    fn item_hash_matches_python() {
        let item = json!({
            "id": "0d5f3c52-86a1-4f5e-9c0e-7b3a2f1e4d6c",
            "time": "2026-12-04T20:35:01.123456Z",
            "event": "AWS STS Temporary Credentials Issued",
            "category": "Data",
            "outcome": "allowed",
            "principal": "arn:aws:iam::123456789012:user/zoë",
            "profile": "deploy",
            "duration_seconds": 3600,
            "message": "tab\there \"quoted\" back\\slash \u{1} ctl, ünïcode €, emoji 😀",
            "tags": ["b", "a", {"z": 1, "y": null, "x": true}],
            "hash": "ignored"
        });
        assert_eq!(
            item_hash(&item),
            "792e492db149671fc17657006cfb9b34da963998f06f715b70092af15c1f7191"
        );
    }
}
