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
    let is_parent = |s: usize| {
        is_dot(p, s)
            .and_then(|d1| is_dot(p, s + d1).map(|d2| s + d1 + d2))
            .is_some_and(|end| end == p.len() || separator_len(p, end).is_some())
    };
    // Segments start at the beginning of the path and after every separator, the one at
    // position 0 included (`/../x`).
    is_parent(0) || (0..p.len()).any(|i| separator_len(p, i).is_some_and(|n| is_parent(i + n)))
}

/// HaRP D4: the first `exapps/<id>` at the start of the path or after a `/`.
pub fn app_id(path: &str) -> Option<&str> {
    // Every request AppAPI and browsers send starts so: no substring search for them.
    if let Some(id) = path
        .strip_prefix("/exapps/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
    {
        return Some(id);
    }
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

/// Resolves `.` and `..` segments and merges runs of `/` the way nginx, Go's `path.Clean` and
/// Python's `normpath` do (empty segments go first, so `/a//../b` is `/b`); a trailing `/` and
/// one left by a final `.` or `..` are kept (RFC 3986 5.2.4). `..` never climbs above the root.
/// A path that needs none of this is returned as it is.
fn clean_segments(path: &str) -> Cow<'_, str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Cow::Borrowed(path);
    };
    let segments = || rest.split('/');
    let last = segments().count() - 1;
    let needs = segments()
        .enumerate()
        .any(|(i, s)| matches!(s, "." | "..") || (s.is_empty() && i != last));
    if !needs {
        return Cow::Borrowed(path);
    }
    let mut kept: Vec<&str> = Vec::new();
    for s in segments() {
        match s {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let trailing = matches!(segments().next_back(), Some("" | "." | ".."));
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Our Q3 fix, the path the route rules check and the ExApp receives: escapes of unreserved
/// characters decoded (`%2e` is a dot, `%61` an `a`), then dot segments resolved and repeated
/// `/` merged ([`clean_segments`]), so `//admin`, `/./admin` and `/%2e/admin` are all `/admin`.
/// Other escapes (`%2F`, `%20`...) stay as sent; a path that needs no change is returned as is.
pub fn normalize(path: &str) -> Cow<'_, str> {
    match normalize_unreserved(path) {
        Cow::Borrowed(p) => clean_segments(p),
        Cow::Owned(p) => Cow::Owned(clean_segments(&p).into_owned()),
    }
}

/// The second reading of a [`normalize`]d path, by a server that decodes every escape before
/// routing (nginx turns `%2F` into `/`), takes `\` for `/` (Windows-minded servers) and drops
/// `;parameters` from segments (Java servlet containers, so `..;` is `..`): `/%2Fadmin` and
/// `/.%2fadmin` are `/admin` here. `None` when that reading is the path itself. The route rules
/// must allow both readings, since harp cannot know which one the ExApp applies.
pub fn separator_view(normalized: &str) -> Option<String> {
    if !normalized.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        return None;
    }
    let decoded = percent_decode(normalized).replace('\\', "/");
    let stripped: Vec<&str> = decoded
        .split('/')
        .map(|s| s.split_once(';').map_or(s, |(before, _)| before))
        .collect();
    let joined = stripped.join("/");
    let view = clean_segments(&joined).into_owned();
    (view != normalized).then_some(view)
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
            "/..",
            "/../exapps/app/x",
            "%2F%2e%2e%2Fexapps/app/x",
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
    fn q3_normalize_table() {
        let table = [
            // Ordinary paths: byte for byte as sent.
            ("/", "/"),
            ("/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/a/b.c/d..e/.f/...", "/a/b.c/d..e/.f/..."),
            ("/files/a%2Fb%20c%C3%A9/page", "/files/a%2Fb%20c%C3%A9/page"),
            ("/a;b/c\\d", "/a;b/c\\d"),
            // Hostile forms of /admin.
            ("//admin", "/admin"),
            ("///admin//", "/admin/"),
            ("/./admin", "/admin"),
            ("/%2e/admin", "/admin"),
            ("/%2E/admin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/x/%2e%2E/admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a//../admin", "/admin"),
            // Trailing dot segments leave a trailing slash (RFC 3986 5.2.4).
            ("/admin/.", "/admin/"),
            ("/admin/x/..", "/admin/"),
            ("/..", "/"),
            ("/.", "/"),
            ("//", "/"),
            // Escapes that are not unreserved characters stay.
            ("/.%2fadmin", "/.%2fadmin"),
            ("/%2Fadmin", "/%2Fadmin"),
            // Not an origin-form path: untouched.
            ("*", "*"),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input), want, "{input:?}");
        }
        assert!(matches!(normalize("/a/b?"), Cow::Borrowed(_)));
    }

    #[test]
    fn q3_separator_view_table() {
        let table = [
            ("/admin", None),
            ("/a/b", None),
            ("/%2Fadmin", Some("/admin")),
            ("/.%2fadmin", Some("/admin")),
            ("/x%2F..%2Fadmin", Some("/admin")),
            ("/x/..%5cadmin", Some("/admin")),
            ("/x/..\\admin", Some("/admin")),
            ("/x\\..\\admin", Some("/admin")),
            ("/x/..;/admin", Some("/admin")),
            ("/;x/admin", Some("/admin")),
            ("/admin;jsessionid=1", Some("/admin")),
            ("/files/a%2Fb", Some("/files/a/b")),
            ("/a%20b", Some("/a b")),
            // Decoding once only: a double-encoded dot stays an escape.
            ("/%252e%252e/admin", Some("/%2e%2e/admin")),
            // Already the same path.
            ("/a%zz", None),
        ];
        for (input, want) in table {
            assert_eq!(separator_view(input).as_deref(), want, "{input:?}");
        }
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
