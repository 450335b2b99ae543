//! `GET`/`HEAD /cas/{key}` (whole files and byte ranges) and `POST /cas`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cas_core::{Cancel, Key};
use futures::{StreamExt, TryStreamExt};

use crate::{error, mime, node_error, Gateway};

/// Bytes read from the start of a file to guess its type.
const SNIFF_LEN: usize = 512;

/// The `?name=` (or `?filename=`) of a request.
fn name_of(query: &HashMap<String, String>) -> Option<&str> {
    query.get("name").or_else(|| query.get("filename")).map(String::as_str).filter(|n| !n.is_empty())
}

/// What a `Range` header asks for, against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Whole,
    /// `[start, end)`, within the file.
    Part(u64, u64),
    Unsatisfiable,
}

/// A single byte range (`bytes=A-B`, `bytes=A-`, `bytes=-N`); anything else
/// (another unit, several ranges, a malformed or empty one, one past the
/// end) is unsatisfiable.
fn wanted(range: Option<&HeaderValue>, size: u64) -> Wanted {
    let Some(range) = range else { return Wanted::Whole };
    let Some(spec) = range.to_str().ok().and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Unsatisfiable;
    };
    let Some((a, b)) = spec.trim().split_once('-') else { return Wanted::Unsatisfiable };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Wanted::Unsatisfiable,
        (true, false) => match number(b) {
            Some(0) | None => return Wanted::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size),
        },
        (false, true) => match number(a) {
            Some(a) => (a, size),
            None => return Wanted::Unsatisfiable,
        },
        (false, false) => match (number(a), number(b)) {
            (Some(a), Some(b)) if a <= b => (a, b.saturating_add(1).min(size)),
            _ => return Wanted::Unsatisfiable,
        },
    };
    if start >= size || start >= end {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part(start, end)
}

/// `GET` or `HEAD /cas/{key}[?name=NAME]`.
pub(crate) async fn download(
    State(gateway): State<Gateway>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let key = match Key::parse_input(&key) {
        Ok(key) => key,
        Err(e) => return node_error(e.into()),
    };
    let etag = format!("\"{}\"", key.manifest_id);
    let mut reader = match gateway.node.open(&key).await {
        Ok(reader) => reader,
        Err(e) => return node_error(e),
    };
    let size = reader.size();
    let name = name_of(&query);
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if let Some(name) = name {
        response = response.header(header::CONTENT_DISPOSITION, content_disposition(name));
    }
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| matches_etag(v, &etag)) {
        return response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_else(internal);
    }
    // A stale If-Range (another ETag) asks for the whole file.
    let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag);
    let range = if if_range_ok { headers.get(header::RANGE) } else { None };
    let (status, start, end) = match wanted(range, size) {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
        Wanted::Unsatisfiable => {
            let mut answer = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range {:?} is not one satisfiable byte range of this {size}-byte file", range),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                answer.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return answer;
        }
    };
    // The type: by the name's extension, else by the first bytes when the
    // answer starts there (a range elsewhere fetches only what it covers).
    let mut content_type = name.and_then(mime::by_name);
    if content_type.is_none() && start == 0 {
        // Within max_get_bytes, however small it was set.
        let sniff = gateway.node.config().max_get_bytes.min(SNIFF_LEN as u64) as usize;
        match reader.read_range(0, sniff).await {
            Ok(first) => content_type = Some(mime::by_content(&first)),
            Err(e) => return node_error(e),
        }
    }
    let content_type = content_type.unwrap_or(mime::OCTET_STREAM);
    response = response.header(header::CONTENT_TYPE, content_type).header(header::CONTENT_LENGTH, end - start);
    if mime::is_active(content_type) {
        // Served from the gateway's origin: no script of a stored file runs there.
        response = response.header(header::CONTENT_SECURITY_POLICY, "sandbox");
    }
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1));
    }
    if method == Method::HEAD {
        return response.status(status).body(Body::empty()).unwrap_or_else(internal);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        gateway.partial_responses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // The first piece is fetched before the status is sent: a file that
    // cannot be read from there gets an error status, not a cut body. A
    // client whose body was cut asks again from where it stopped to learn why.
    let mut stream = reader.into_stream(start, end - start).boxed();
    let first = match stream.next().await {
        Some(Err(e)) => return node_error(e),
        first => first,
    };
    let key_text = key.to_string();
    let stream = futures::stream::iter(first).chain(stream).map_err(move |e| {
        // The status is sent: the client sees a body shorter than its
        // length, and may ask /api/cut/{key} why.
        tracing::warn!(key = %&key_text[..16], "HTTP download cut short: {e}");
        let message = e.to_string();
        gateway.record_cut(key_text.clone(), e);
        std::io::Error::other(message)
    });
    response.status(status).body(Body::from_stream(stream)).unwrap_or_else(internal)
}

/// `GET /api/cut/{key}`: why the last download of `key` cut short was cut
/// (its error, with its status), once; 404 if none was.
pub(crate) async fn cut(State(gateway): State<Gateway>, Path(key): Path<String>) -> Response {
    match gateway.take_cut(key.trim()) {
        Some(e) => node_error(e),
        None => error(StatusCode::NOT_FOUND, "no download of this key was cut short"),
    }
}

fn internal(e: axum::http::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("building the response: {e}"))
}

/// Whether an `If-None-Match` value names `etag` (or is `*`).
fn matches_etag(value: &str, etag: &str) -> bool {
    value.split(',').map(str::trim).any(|v| v == "*" || v == etag || v.strip_prefix("W/") == Some(etag))
}

/// `inline; filename="ascii"; filename*=UTF-8''percent-encoded`.
fn content_disposition(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let ascii: String =
        base.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for byte in base.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("inline; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `POST /cas[?name=NAME]`: stores the request body, streamed in bounded
/// memory. A body that fails or stops part way stores no file (no key, no
/// catalog entry; whole chunks already sealed stay as unreferenced blobs,
/// as after any cancelled put).
pub(crate) async fn upload(
    State(gateway): State<Gateway>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let name = name_of(&query).unwrap_or("").to_string();
    let hint = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = request.into_body().into_data_stream().map_err(std::io::Error::other);
    let mut reader = tokio_util::io::StreamReader::new(body);
    // Dropped with the connection: the put stops where it is.
    let cancel = Cancel::new();
    let _stop = StopOnDrop(&cancel);
    match gateway.node.put_reader_named(&mut reader, hint, None, &name, &cancel).await {
        Ok(report) => Json(serde_json::json!({
            "key": report.key.to_string(),
            "size": report.size,
            "chunks": report.chunks,
            "new_blobs": report.new_blobs,
            "replicas": report.replicas,
            "replicas_wanted": gateway.node.config().replicas,
            "name": name,
        }))
        .into_response(),
        Err(e) => node_error(e),
    }
}

struct StopOnDrop<'a>(&'a Cancel);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(range: &str, size: u64) -> Wanted {
        wanted(Some(&HeaderValue::from_str(range).unwrap()), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(parse("bytes=0-0", 10), Wanted::Part(0, 1));
        assert_eq!(parse("bytes=2-", 10), Wanted::Part(2, 10));
        assert_eq!(parse("bytes=-3", 10), Wanted::Part(7, 10));
        assert_eq!(parse("bytes=-30", 10), Wanted::Part(0, 10));
        assert_eq!(parse("bytes=5-100", 10), Wanted::Part(5, 10));
        for bad in
            ["bytes=10-", "bytes=5-4", "bytes=-0", "bytes=-", "items=0-1", "bytes=0-1,3-4", "bytes=a-b", "bytes=+1-2"]
        {
            assert_eq!(parse(bad, 10), Wanted::Unsatisfiable, "{bad}");
        }
        assert_eq!(parse("bytes=0-", 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn dispositions() {
        assert_eq!(content_disposition("a b.pdf"), "inline; filename=\"a b.pdf\"; filename*=UTF-8''a%20b.pdf");
        assert_eq!(content_disposition("dir/é\".txt"), "inline; filename=\"__.txt\"; filename*=UTF-8''%C3%A9%22.txt");
    }

    #[test]
    fn etags() {
        assert!(matches_etag("\"x\", \"y\"", "\"y\""));
        assert!(matches_etag("W/\"y\"", "\"y\""));
        assert!(!matches_etag("\"x\"", "\"y\""));
    }
}
