//! The principal-pattern matcher against a small reference implementation of IAM's `ArnLike`
//! (written here from AWS's definition, not from the matcher): "each of the six colon-delimited
//! components of the ARN is checked separately and each can include multi-character match
//! wildcards (`*`) or single-character match wildcards (`?`)".

#![allow(clippy::unwrap_used)]

use keysmith::names::PrincipalPattern;
use proptest::prelude::*;

/// Plain recursive wildcard match: obviously right, exponential, fine for short strings.
fn reference_glob(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|i| reference_glob(rest, &t[i..])),
        Some(('?', rest)) => !t.is_empty() && reference_glob(rest, &t[1..]),
        Some((c, rest)) => t.first() == Some(c) && reference_glob(rest, &t[1..]),
    }
}

fn reference_arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6
        && a.len() == 6
        && p.iter().zip(&a).all(|(p, a)| {
            let (p, a): (Vec<char>, Vec<char>) = (p.chars().collect(), a.chars().collect());
            reference_glob(&p, &a)
        })
}

fn account() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["123456789012", "123456789013", "999999999999"])
        .prop_map(str::to_owned)
}

/// Patterns over a tiny alphabet, so that matches are frequent and wildcards meet colons.
fn pattern() -> impl Strategy<Value = String> {
    let part = "[ab*?/]{1,4}";
    (part, part, "[ab*?]{0,3}", account(), "[ab*?/:]{1,6}")
        .prop_map(|(p, s, r, acct, res)| format!("arn:{p}:{s}:{r}:{acct}:{res}"))
}

/// Principals, some with extra colons where a loose matcher would let `*` run across components.
fn principal() -> impl Strategy<Value = String> {
    (
        "[ab:/]{1,4}",
        "[ab:/]{1,4}",
        "[ab]{0,3}",
        account(),
        "[ab/:]{1,6}",
    )
        .prop_map(|(p, s, r, acct, res)| format!("arn:{p}:{s}:{r}:{acct}:{res}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn matcher_equals_arn_like(p in pattern(), arn in principal()) {
        let parsed = PrincipalPattern::parse("allowed_principals[0]", &p);
        prop_assert!(parsed.is_ok(), "{p}: {parsed:?}");
        prop_assert_eq!(parsed.unwrap().matches(&arn), reference_arn_like(&p, &arn), "{} vs {}", p, arn);
    }

    #[test]
    fn a_pattern_never_reaches_another_account(res in "[ab*?/]{1,6}", other in "[ab/]{1,6}") {
        let p = PrincipalPattern::parse("p", &format!("arn:aws:iam::123456789012:{res}")).unwrap();
        let elsewhere = format!("arn:aws:iam::999999999999:{other}");
        prop_assert!(!p.matches(&elsewhere));
    }
}

#[test]
fn reference_agrees_on_known_cases() {
    assert!(reference_arn_like(
        "arn:aws:iam::123456789012:user/*",
        "arn:aws:iam::123456789012:user/a"
    ));
    assert!(!reference_arn_like(
        "arn:aws:*::123456789012:user/a",
        "arn:aws:iam:x::123456789012:user/a"
    ));
}
