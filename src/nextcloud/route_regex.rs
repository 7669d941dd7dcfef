//! Route `url` patterns are Python regular expressions (HaRP tests them with `re.match`).
//!
//! The `regex` crate compiles nearly every route AppAPI ships and matches in linear time, so it is
//! tried first. Python also accepts look-around, backreferences and a few other forms that crate
//! rejects; skipping such a route would change who may reach the ExApp (a `^/(?!public)` ADMIN
//! route skipped lets the request fall through to a later PUBLIC one), so those compile with
//! `fancy-regex`, whose backtracking is bounded by its step limit.

/// A compiled route pattern, anchored at the start like `re.match`.
#[derive(Debug)]
pub enum RouteRegex {
    Linear(regex::Regex),
    Backtracking(fancy_regex::Regex),
}

impl RouteRegex {
    pub fn compile(url: &str) -> Result<RouteRegex, String> {
        // Wrapping keeps a top-level alternation inside the anchor.
        let anchored = format!("^(?:{url})");
        match regex::Regex::new(&anchored) {
            Ok(re) => Ok(RouteRegex::Linear(re)),
            Err(linear) => fancy_regex::Regex::new(&anchored)
                .map(RouteRegex::Backtracking)
                .map_err(|fancy| format!("{linear}; as a backtracking pattern: {fancy}")),
        }
    }

    /// A pattern that exceeds the backtracking limit on this path does not match: the next
    /// route decides, as for any other non-matching route. Logged at debug only, because the
    /// path comes from the client and must not be able to flood the log.
    pub fn is_match(&self, path: &str) -> bool {
        match self {
            RouteRegex::Linear(re) => re.is_match(path),
            RouteRegex::Backtracking(re) => re.is_match(path).unwrap_or_else(|e| {
                log::debug!("route regex {:?} gave up on a path: {e}", re.as_str());
                false
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_patterns_use_the_linear_engine() {
        assert!(matches!(
            RouteRegex::compile(r"^api\/.*"),
            Ok(RouteRegex::Linear(_))
        ));
    }

    #[test]
    fn python_only_syntax_compiles_and_matches_like_python() {
        let cases: &[(&str, &str, bool)] = &[
            ("/(?!public)", "/admin", true),
            ("/(?!public)", "/public/x", false),
            ("/x(?<=x)y", "/xy", true),
            (r"/(a)\1", "/aa", true),
            (r"/(a)\1", "/ab", false),
            ("/(?P<x>a)(?P=x)", "/aa", true),
            (r"/a\Z", "/a", true),
            (r"/a\Z", "/ab", false),
            ("/a{,2}b", "/aab", true),
        ];
        for (url, path, expected) in cases {
            let re = RouteRegex::compile(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(matches!(re, RouteRegex::Backtracking(_)), "{url}");
            assert_eq!(re.is_match(path), *expected, "{url} on {path}");
        }
    }

    #[test]
    fn the_anchor_holds_for_both_engines() {
        for url in ["/a|/b", "/a|/(?=b)b"] {
            let re = RouteRegex::compile(url).unwrap();
            assert!(re.is_match("/b"), "{url}");
            assert!(!re.is_match("/x/b"), "{url}");
        }
    }

    #[test]
    fn invalid_in_both_engines_is_an_error() {
        assert!(RouteRegex::compile("(").is_err());
    }

    #[test]
    fn catastrophic_backtracking_gives_up_as_no_match() {
        let re = RouteRegex::compile(r"(a+)+\1$").unwrap();
        let path = format!("{}b", "a".repeat(64));
        assert!(!re.is_match(&path));
    }
}
