//! Content-Type by file extension, for the formats a video edge serves.

/// Media type for an object key, from its extension (ASCII case-insensitive).
pub fn for_key(key: &str) -> &'static str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return "application/octet-stream";
    };
    let mut lower = [0u8; 8];
    if ext.len() > lower.len() {
        return "application/octet-stream";
    }
    for (d, s) in lower.iter_mut().zip(ext.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    match &lower[..ext.len()] {
        b"m4s" | b"cmfv" | b"cmfa" | b"cmft" => "video/iso.segment",
        b"mp4" | b"m4v" | b"cmf" => "video/mp4",
        b"m4a" => "audio/mp4",
        b"ts" => "video/mp2t",
        b"aac" => "audio/aac",
        b"mp3" => "audio/mpeg",
        b"webm" => "video/webm",
        b"m3u8" => "application/vnd.apple.mpegurl",
        b"mpd" => "application/dash+xml",
        b"vtt" => "text/vtt",
        b"ttml" => "application/ttml+xml",
        b"json" => "application/json",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"png" => "image/png",
        b"webp" => "image/webp",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn types() {
        for (key, ty) in [
            ("titles/t1/v720/seg-00001.m4s", "video/iso.segment"),
            ("a/init.MP4", "video/mp4"),
            ("a/master.m3u8", "application/vnd.apple.mpegurl"),
            ("a/manifest.mpd", "application/dash+xml"),
            ("a/seg.ts", "video/mp2t"),
            ("a.d/noext", "application/octet-stream"),
            ("a/x.verylongextension", "application/octet-stream"),
        ] {
            assert_eq!(super::for_key(key), ty, "{key}");
        }
    }
}
