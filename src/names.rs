//! Validation of project and session names.

use crate::error::{Error, ErrorCode};

/// Longest accepted name (the first character plus 127 more).
pub const MAX_NAME_LEN: usize = 128;

/// Checks `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`. `what` names the kind of object
/// ("project", "session") for the message.
pub fn validate(what: &str, name: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        let shown: String = name.chars().take(40).collect();
        let ellipsis = if name.chars().count() > 40 { "…" } else { "" };
        Err(Error::new(
            ErrorCode::InvalidName,
            format!(
                "invalid {what} name {shown:?}{ellipsis}: {why}; use 1-{MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
            ),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is too long");
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or('-');
    if !first.is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!("it contains {c:?}"));
    }
    if name.contains("..") {
        return bad("it contains \"..\"");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_plain_names() {
        for n in ["web", "a", "A-1.b_c", "0", &"x".repeat(128)] {
            assert!(validate("project", n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for n in [
            "",
            ".",
            "..",
            "a/b",
            "-a",
            "_a",
            "a..b",
            "a\0b",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            let err = validate("session", n).unwrap_err();
            assert!(err.message.contains("invalid session name"), "{n}: {err}");
        }
    }
}
