//! `username_template` of `iam_user` profiles (SPEC §16): how a lease user is named. Checked at
//! `PUT` so that every name it renders is a valid IAM user name of at most 64 characters that
//! keeps its 8 random characters (what makes two leases' users distinct).

use crate::names::{sanitize_iam_name, Invalid, SessionName};

const FIELD: &str = "username_template";
/// IAM's longest user name.
pub const MAX_USER_NAME: usize = 64;
const RANDOM_LEN: usize = 8;
const UNIX_TIME_LEN: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Profile,
    Caller,
    Random,
    UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNameTemplate {
    source: String,
    parts: Vec<Part>,
}

impl UserNameTemplate {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(text(&rest[..start])?);
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| Invalid::new(FIELD, "has a {{ without its }}"))?;
            parts.push(match &after[..end] {
                "profile" => Part::Profile,
                "caller" => Part::Caller,
                "random" => Part::Random,
                "unix_time" => Part::UnixTime,
                other => {
                    return Err(Invalid::new(
                        FIELD,
                        format!("has an unknown placeholder {{{{{other}}}}}: use {{{{profile}}}}, {{{{caller}}}}, {{{{random}}}}, {{{{unix_time}}}}"),
                    ))
                }
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(text(rest)?);
        }
        if !parts.contains(&Part::Random) {
            return Err(Invalid::new(
                FIELD,
                "must contain {{random}}: it keeps two leases' users apart",
            ));
        }
        // What no cutting can shorten: the text, the random characters, the times.
        let fixed: usize = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Random => RANDOM_LEN,
                Part::UnixTime => UNIX_TIME_LEN,
                Part::Profile | Part::Caller => 0,
            })
            .sum();
        if fixed > MAX_USER_NAME {
            return Err(Invalid::new(
                FIELD,
                format!("leaves no room: its fixed parts take {fixed} of an IAM user name's {MAX_USER_NAME} characters"),
            ));
        }
        Ok(Self {
            source: s.to_owned(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The user name for `profile` and the caller `principal`. When it would pass 64
    /// characters, the profile and caller names are cut (the longer first), never the random
    /// characters.
    pub fn render(&self, profile: &str, principal: &str, random: &str, unix_time: i64) -> String {
        let mut profile = sanitize_iam_name(profile);
        let mut caller = SessionName::for_caller(principal).to_string();
        let uses = |p: &Part| self.parts.iter().filter(|x| *x == p).count();
        let (np, nc) = (uses(&Part::Profile), uses(&Part::Caller));
        let time = unix_time.to_string();
        let length = |profile: &str, caller: &str| -> usize {
            self.parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    Part::Profile => profile.len(),
                    Part::Caller => caller.len(),
                    Part::Random => random.len(),
                    Part::UnixTime => time.len(),
                })
                .sum()
        };
        while length(&profile, &caller) > MAX_USER_NAME {
            // Both are ASCII (sanitized), so popping a char removes one byte.
            if (nc > 0 && caller.len() * nc >= profile.len() * np) || np == 0 {
                caller.pop();
            } else {
                profile.pop();
            }
        }
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Profile => profile.as_str(),
                Part::Caller => caller.as_str(),
                Part::Random => random,
                Part::UnixTime => time.as_str(),
            })
            .collect()
    }
}

/// 8 random lowercase letters and digits.
pub fn random_part() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(RANDOM_LEN)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

fn text(s: &str) -> Result<Part, Invalid> {
    if s.contains("}}") {
        return Err(Invalid::new(FIELD, "has a }} without its {{"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(Invalid::new(
            FIELD,
            format!("\"{s}\" has characters an IAM user name cannot hold (letters, digits and +=,.@_- only)"),
        ));
    }
    Ok(Part::Text(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_USER_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    }

    #[test]
    fn a_long_rendering_is_cut_to_64_and_keeps_its_random_part() {
        let t = UserNameTemplate::parse("lease-{{profile}}-{{caller}}-{{random}}").unwrap();
        // 6 + 24 + 1 + 30 + 1 + 8 = 70 characters before cutting.
        let caller = format!("arn:aws:iam::123456789012:user/{}", "c".repeat(30));
        let name = t.render(&"p".repeat(24), &caller, "ab12cd34", 1_796_400_000);
        assert_eq!(name.len(), 64, "{name}");
        assert!(
            name.ends_with("-ab12cd34") && name.starts_with("lease-p"),
            "{name}"
        );
        assert!(valid(&name), "{name}");
        let short = t.render(
            "deploy",
            "arn:aws:sts::1:assumed-role/R/alice",
            "zz99yy88",
            0,
        );
        assert_eq!(short, "lease-deploy-alice-zz99yy88");
        let timed = UserNameTemplate::parse("{{random}}.{{unix_time}}").unwrap();
        assert_eq!(
            timed.render("p", "c", "aaaaaaaa", 1_796_400_000),
            "aaaaaaaa.1796400000"
        );
        let r = random_part();
        assert!(
            r.len() == 8
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn templates_are_checked_when_saved() {
        for bad in [
            "lease-{{profile}}",
            "{{random}}-{{user}}",
            "{{random",
            "x}}{{random}}",
            "a b-{{random}}",
            &format!("{}{{{{random}}}}", "x".repeat(57)),
        ] {
            assert_eq!(
                UserNameTemplate::parse(bad).unwrap_err().field,
                FIELD,
                "{bad}"
            );
        }
        assert!(UserNameTemplate::parse(&format!("{}{{{{random}}}}", "x".repeat(56))).is_ok());
    }
}
