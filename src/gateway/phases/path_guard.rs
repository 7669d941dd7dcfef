//! Phase unit of `request_filter` (D3, D4, D5, Q12): the raw path, still percent-encoded. A `..`
//! segment is a silent drop, no app id is 404, both with a strike; otherwise the app id and the
//! target path (the rest after `/exapps/<id>`, `/` when empty). Applies to `app_api` too.

use super::super::path;
use super::{Answer, Refusal};

/// The app id as the URL spells it and the target path, both borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppPath<'a> {
    pub id: &'a str,
    pub target: &'a str,
}

pub fn split(raw_path: &str) -> Result<AppPath<'_>, Refusal> {
    if path::has_parent_segment(raw_path) {
        return Err(Refusal {
            answer: Answer::Drop,
            strike: true,
        });
    }
    let Some(id) = path::app_id(raw_path) else {
        return Err(Refusal {
            answer: Answer::Status(404),
            strike: true,
        });
    };
    Ok(AppPath {
        id,
        target: path::target_path(raw_path, id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d3_d5_table() {
        let dropped = Err(Refusal {
            answer: Answer::Drop,
            strike: true,
        });
        let not_found = Err(Refusal {
            answer: Answer::Status(404),
            strike: true,
        });
        let app = |id, target| Ok(AppPath { id, target });
        let rows = [
            // D3 (B5): traversal, app_api included, before anything else.
            ("/exapps/app/../x", dropped),
            ("/exapps/app/%2e%2E/x", dropped),
            ("/exapps/app%2F..%2Fx", dropped),
            ("/exapps/app_api/../info", dropped),
            ("/../exapps/app/x", dropped),
            // B6: look-alikes are not traversal.
            ("/exapps/app/.../x", app("app", "/.../x")),
            ("/exapps/app/..x", app("app", "/..x")),
            // D4 (B7): no app id.
            ("/", not_found),
            ("/foo", not_found),
            ("/exapps/", not_found),
            // D5: the target path; the id keeps the URL's spelling (R3).
            ("/exapps/MyApp/a/b", app("MyApp", "/a/b")),
            ("/exapps/app/", app("app", "/")),
            ("/exapps/app", app("app", "/")),
            ("/prefix/exapps/app/x", app("app", "/prefix/exapps/app/x")),
            ("/exapps/app_api/info", app("app_api", "/info")),
        ];
        for (raw, want) in rows {
            assert_eq!(split(raw), want, "{raw}");
        }
    }
}
