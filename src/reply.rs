//! One answer of a control endpoint (status, content type, body), as aiohttp would send it.
//! A leaf shared by the Docker and Kubernetes backends and the control API that writes it.

use bytes::Bytes;
use serde::Serialize;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// One answer of a `/docker/exapp/*` endpoint.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: TEXT,
            body: Bytes::from(body.into()),
        }
    }

    /// JSON in the field order of `value` (HaRP's order), compact.
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// 204; the caller writes it without a body.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            content_type: TEXT,
            body: Bytes::new(),
        }
    }
}
