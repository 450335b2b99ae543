//! Content types: by file name extension, else by the first bytes (a small
//! table of signatures), else text when the bytes are UTF-8 without NULs.

pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

/// By the extension of `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static str> {
    let (_, ext) = name.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    Some(match ext.as_str() {
        "txt" | "text" | "log" | "md" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "epub" => "application/epub+zip",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mov" => "video/quicktime",
        "ogv" => "video/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        _ => return None,
    })
}

/// By the first bytes of the file.
pub(crate) fn by_content(head: &[u8]) -> &'static str {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"\x1a\x45\xdf\xa3", "video/webm"),
        (b"OggS", "audio/ogg"),
        (b"ID3", "audio/mpeg"),
        (b"fLaC", "audio/flac"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"\0asm", "application/wasm"),
    ];
    if let Some((_, t)) = SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)) {
        return t;
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" {
        match &head[8..12] {
            b"WEBP" => return "image/webp",
            b"WAVE" => return "audio/wav",
            _ => {}
        }
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return if &head[8..11] == b"M4A" { "audio/mp4" } else { "video/mp4" };
    }
    if !head.is_empty() && !head.contains(&0) && utf8_prefix(head) {
        return "text/plain; charset=utf-8";
    }
    OCTET_STREAM
}

/// Whether `head` is UTF-8, allowing a character cut at its end.
fn utf8_prefix(head: &[u8]) -> bool {
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    }
}

/// Types a browser would run scripts in.
pub(crate) fn is_active(content_type: &str) -> bool {
    ["text/html", "image/svg+xml", "application/xml", "text/javascript"].iter().any(|t| content_type.starts_with(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_then_bytes() {
        assert_eq!(by_name("Film.MP4"), Some("video/mp4"));
        assert_eq!(by_name("book.pdf"), Some("application/pdf"));
        assert_eq!(by_name("noext"), None);
        assert_eq!(by_content(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(by_content(b"\0\0\0\x20ftypisom\0\0"), "video/mp4");
        assert_eq!(by_content(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(by_content("héllo".as_bytes()), "text/plain; charset=utf-8");
        assert_eq!(by_content(&"é".as_bytes()[..1]), "text/plain; charset=utf-8");
        assert_eq!(by_content(b"\x00\x01\x02"), OCTET_STREAM);
        assert_eq!(by_content(b""), OCTET_STREAM);
        assert!(is_active("text/html; charset=utf-8"));
        assert!(!is_active("video/mp4"));
    }
}
