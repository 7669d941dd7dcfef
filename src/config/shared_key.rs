//! The shared key, processed in exactly HaRP's order (spec §13.1) so a key that worked with HaRP
//! yields the same secret here. Never puts the key into an error message.
//!
//! Deliberate differences from HaRP: the shell `echo` quirk that turns a key such as `-n` into
//! an empty string is not emulated, and a key that is empty after quote stripping is refused
//! (Q5: HaRP accepts it, and then an empty `harp-shared-key` header authenticates).

use super::validate::strip_quotes;
use std::path::Path;

/// Where the key comes from: the value of `HP_SHARED_KEY` and/or the path in `HP_SHARED_KEY_FILE`.
pub(crate) struct KeySource<'a> {
    pub key: Option<&'a str>,
    pub file: Option<&'a str>,
}

/// Which of the two settings a problem belongs to, so the message names the right one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Culprit {
    Key,
    File,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyProblem {
    pub culprit: Culprit,
    pub problem: &'static str,
}

const BOTH_SET: &str = "HP_SHARED_KEY_FILE (shared_key_file) is set too; expected only one of \
                        the key and the key file";
const UNSET: &str = "not set; expected the key in HP_SHARED_KEY or a file holding it in \
                     HP_SHARED_KEY_FILE (or shared_key / shared_key_file in the config file)";

fn fail(culprit: Culprit, problem: &'static str) -> Result<String, KeyProblem> {
    Err(KeyProblem { culprit, problem })
}

/// Steps 1-6 of §13.1 (plus Q5). `None` from both sources is reported as unset.
pub(crate) fn resolve(source: KeySource<'_>) -> Result<String, KeyProblem> {
    let key = source.key.filter(|k| !k.is_empty());
    let file = source.file.filter(|f| !f.is_empty());
    let (raw, culprit) = match (key, file) {
        (Some(_), Some(_)) => return fail(Culprit::Key, BOTH_SET),
        (Some(key), None) => (key.as_bytes().to_vec(), Culprit::Key),
        (None, Some(path)) => (read_key_file(Path::new(path))?, Culprit::File),
        (None, None) => return fail(Culprit::Key, UNSET),
    };
    if raw.is_empty() {
        return fail(
            culprit,
            "the file holds only newlines; expected the shared key",
        );
    }
    if raw.iter().any(|b| !(0x20..=0x7e).contains(b)) {
        return fail(
            culprit,
            "contains non-ASCII characters; expected printable ASCII only (0x20-0x7E)",
        );
    }
    // Printable ASCII checked above, so this cannot fail.
    let text = String::from_utf8(raw).unwrap_or_default();
    let stripped = strip_quotes(&text);
    if stripped.is_empty() {
        return fail(
            culprit,
            "is empty once surrounding quotes are removed; expected a non-empty key",
        );
    }
    if stripped.contains(['"', '\\']) {
        return fail(
            culprit,
            "contains a forbidden character; expected no double quote (\") and no backslash (\\)",
        );
    }
    Ok(stripped.to_string())
}

/// Step 2: the file must exist and not be empty; trailing newlines go, as with `$(cat file)`
/// (CRLF too, so a key file saved on Windows works).
fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyProblem> {
    let mut content = match std::fs::read(path) {
        Ok(content) => content,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyProblem {
                culprit: Culprit::File,
                problem: "the file does not exist",
            })
        }
        Err(_) => {
            return Err(KeyProblem {
                culprit: Culprit::File,
                problem: "the file cannot be read",
            })
        }
    };
    if content.is_empty() {
        return Err(KeyProblem {
            culprit: Culprit::File,
            problem: "the file is empty; expected the shared key",
        });
    }
    while content.last() == Some(&b'\n') {
        content.pop();
        if content.last() == Some(&b'\r') {
            content.pop();
        }
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::temp_file;

    fn from_env(key: &str) -> Result<String, KeyProblem> {
        resolve(KeySource {
            key: Some(key),
            file: None,
        })
    }

    fn from_file(content: &[u8]) -> Result<String, KeyProblem> {
        let path = temp_file("key", content);
        resolve(KeySource {
            key: None,
            file: Some(path.to_str().unwrap()),
        })
    }

    #[test]
    fn b63_quotes_are_stripped() {
        assert_eq!(from_env("'abc'"), Ok("abc".into()));
        assert_eq!(from_env("\"abc\""), Ok("abc".into()));
        assert_eq!(from_env("\"'abc'\""), Ok("abc".into()));
        assert_eq!(from_env("'abc"), Ok("abc".into()));
        assert_eq!(from_env("ab'c"), Ok("ab'c".into()));
    }

    #[test]
    fn b63_both_key_and_file_is_an_error() {
        let err = resolve(KeySource {
            key: Some("k"),
            file: Some("/x"),
        })
        .unwrap_err();
        assert_eq!(err.culprit, Culprit::Key);
        assert!(err.problem.contains("only one of"));
    }

    #[test]
    fn b63_forbidden_characters() {
        assert!(from_env("a\"b").unwrap_err().problem.contains("forbidden"));
        assert!(from_env("a\\b").unwrap_err().problem.contains("forbidden"));
    }

    #[test]
    fn b63_non_ascii_is_an_error() {
        assert!(from_env("schlüssel")
            .unwrap_err()
            .problem
            .contains("non-ASCII"));
        assert!(from_env("a\tb").unwrap_err().problem.contains("non-ASCII"));
    }

    #[test]
    fn q5_key_empty_after_stripping_is_an_error() {
        assert!(from_env("\"\"").unwrap_err().problem.contains("empty"));
        assert!(from_env("''").unwrap_err().problem.contains("empty"));
    }

    #[test]
    fn echo_options_are_kept_as_keys() {
        assert_eq!(from_env("-n"), Ok("-n".into()));
    }

    #[test]
    fn unset_is_an_error() {
        assert!(resolve(KeySource {
            key: Some(""),
            file: Some("")
        })
        .unwrap_err()
        .problem
        .starts_with("not set"));
    }

    #[test]
    fn file_trailing_newlines_are_removed() {
        assert_eq!(from_file(b"secret\n"), Ok("secret".into()));
        assert_eq!(from_file(b"secret\r\n\n"), Ok("secret".into()));
        assert_eq!(from_file(b"'secret'\n"), Ok("secret".into()));
    }

    #[test]
    fn file_problems_name_the_file_setting() {
        let err = from_file(b"").unwrap_err();
        assert_eq!(
            (err.culprit, err.problem.contains("empty")),
            (Culprit::File, true)
        );
        let err = from_file(b"\n\n").unwrap_err();
        assert_eq!(
            (err.culprit, err.problem.contains("only newlines")),
            (Culprit::File, true)
        );
        let err = from_file(b"two\nlines").unwrap_err();
        assert!(err.problem.contains("non-ASCII"));
        let err = resolve(KeySource {
            key: None,
            file: Some("/nonexistent/harp-key"),
        })
        .unwrap_err();
        assert_eq!(
            (err.culprit, err.problem),
            (Culprit::File, "the file does not exist")
        );
    }
}
