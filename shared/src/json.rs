//! JSON request bodies, parsed with the offending field named (every JSON body the API and the
//! use cases accept goes through here).

use crate::names::Invalid;

/// A body that may be left empty (or whitespace): empty is `T::default()`, anything else must
/// parse as [`parse_json`] does.
pub fn parse_optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, Invalid> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

/// Parses a JSON body into a value of type `T`, naming the offending field on failure. Shared by
/// every JSON body the API accepts.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Invalid> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        // The path ends at an unknown field, but stops at the parent of a missing one, which serde
        // names only in its message: "missing field `x`".
        let missing = text
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        if inner.is_syntax() || inner.is_eof() {
            return Invalid::new("body", "is not valid JSON");
        }
        let field = match (missing, path.as_str()) {
            (Some(f), ".") => f.to_owned(),
            (Some(f), parent) => format!("{parent}.{f}"),
            (None, ".") => "body".to_owned(),
            (None, _) => path,
        };
        // serde's message without its " at line 1 column 7" suffix.
        Invalid::new(field, text.split(" at line ").next().unwrap_or(&text))
    })
}
