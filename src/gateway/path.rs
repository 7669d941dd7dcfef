//! Reading the request path the way HaRP does: traversal check, app id, target path.
//! Pure functions on the raw (still percent-encoded) path; no allocation unless a path changes.

use std::borrow::Cow;

fn is_dot(p: &[u8], i: usize) -> Option<usize> {
    match p.get(i) {
        Some(b'.') => Some(1),
        Some(b'%') if p.get(i + 1) == Some(&b'2') && matches!(p.get(i + 2), Some(b'e' | b'E')) => {
            Some(3)
        }
        _ => None,
    }
}

fn separator_len(p: &[u8], i: usize) -> Option<usize> {
    match p.get(i) {
        Some(b'/') => Some(1),
        Some(b'%') if p.get(i + 1) == Some(&b'2') && matches!(p.get(i + 2), Some(b'f' | b'F')) => {
            Some(3)
        }
        _ => None,
    }
}

/// HaRP D3: a `..` segment, each dot literal or `%2e`, separated by `/` or `%2f`, or at either end.
pub fn has_parent_segment(path: &str) -> bool {
    let p = path.as_bytes();
    let mut i = 0;
    while i <= p.len() {
        let segment_start = if i == 0 {
            Some(0)
        } else {
            separator_len(p, i).map(|n| i + n)
        };
        if let Some(s) = segment_start {
            if let Some(d1) = is_dot(p, s) {
                if let Some(d2) = is_dot(p, s + d1) {
                    let end = s + d1 + d2;
                    if end == p.len() || separator_len(p, end).is_some() {
                        return true;
                    }
                }
            }
        }
        i += 1;
    }
    false
}

/// HaRP D4: the first `exapps/<id>` at the start of the path or after a `/`.
pub fn app_id(path: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(pos) = path[from..].find("exapps/") {
        let at = from + pos;
        if at == 0 || path.as_bytes()[at - 1] == b'/' {
            let rest = &path[at + "exapps/".len()..];
            let id = rest.split('/').next().unwrap_or("");
            if !id.is_empty() {
                return Some(id);
            }
        }
        from = at + 1;
    }
    None
}

/// HaRP D5 with our Q12 fix: the path the ExApp sees; `/exapps/<id>` alone becomes `/`.
pub fn target_path<'a>(path: &'a str, app_id: &str) -> &'a str {
    let Some(rest) = path
        .strip_prefix("/exapps/")
        .and_then(|r| r.strip_prefix(app_id))
    else {
        return path;
    };
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Our Q3 fix: decode `%XX` escapes of unreserved characters so `/%61dmin` is `/admin` for the
/// route rules and for the ExApp alike; `%2F` and other escapes stay encoded.
pub fn normalize_unreserved(path: &str) -> Cow<'_, str> {
    let p = path.as_bytes();
    let needs = p.windows(3).any(|w| {
        w[0] == b'%'
            && matches!((hex(w[1]), hex(w[2])), (Some(h), Some(l)) if is_unreserved(h << 4 | l))
    });
    if !needs {
        return Cow::Borrowed(path);
    }
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (hex(p[i + 1]), hex(p[i + 2])) {
                let c = h << 4 | l;
                if is_unreserved(c) {
                    out.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(p[i]);
        i += 1;
    }
    // Only ASCII bytes were substituted for ASCII escapes, so UTF-8 validity is preserved.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Full percent-decoding, for the Docker allowlist (HAProxy matches it on the decoded path).
pub fn percent_decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let p = path.as_bytes();
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (hex(p[i + 1]), hex(p[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(p[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b5_traversal_forms_are_detected() {
        for p in [
            "/exapps/app/../x",
            "/exapps/app/%2e%2E/x",
            "/exapps/app%2F..%2Fx",
            "..",
            "/a/..",
            "../x",
            "/a/.%2e",
        ] {
            assert!(has_parent_segment(p), "{p}");
        }
    }

    #[test]
    fn b6_lookalikes_are_not_traversal() {
        for p in [
            "/exapps/app/.../x",
            "/exapps/app/..x",
            "/a/..;/b",
            "/a/..%5c",
            "/a/%252e%252e/b",
            "/a/x..",
        ] {
            assert!(!has_parent_segment(p), "{p}");
        }
    }

    #[test]
    fn app_id_follows_d4() {
        assert_eq!(app_id("/exapps/app/x"), Some("app"));
        assert_eq!(app_id("/foo/exapps/bar/x"), Some("bar"));
        assert_eq!(app_id("/exapps/MyApp"), Some("MyApp"));
        for p in [
            "/",
            "/foo",
            "/exapps/",
            "/exapps//x",
            "/EXAPPS/a",
            "/xexapps/a",
        ] {
            assert_eq!(app_id(p), None, "{p}");
        }
    }

    #[test]
    fn target_path_strips_the_prefix() {
        assert_eq!(target_path("/exapps/a/x/y", "a"), "/x/y");
        assert_eq!(target_path("/exapps/a/", "a"), "/");
        assert_eq!(target_path("/exapps/a", "a"), "/");
        assert_eq!(target_path("/foo/exapps/bar/x", "bar"), "/foo/exapps/bar/x");
    }

    #[test]
    fn q3_unreserved_escapes_are_decoded_others_kept() {
        assert_eq!(normalize_unreserved("/%61dmin"), "/admin");
        assert_eq!(normalize_unreserved("/a%2Fb%7e"), "/a%2Fb~");
        assert_eq!(normalize_unreserved("/plain"), "/plain");
        assert_eq!(normalize_unreserved("/x%4"), "/x%4");
        assert_eq!(normalize_unreserved("/x%41"), "/xA");
    }

    #[test]
    fn full_decoding_for_the_allowlist() {
        assert_eq!(
            percent_decode("/containers/nc%5Fapp/json"),
            "/containers/nc_app/json"
        );
        assert_eq!(percent_decode("/a%"), "/a%");
    }
}
