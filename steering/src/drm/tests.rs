use std::os::unix::fs::PermissionsExt;

use super::*;

const KEK_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn key(n: u8) -> ContentKey {
    ContentKey {
        kid: [n; 16],
        key: [n.wrapping_add(100); 16],
    }
}

#[test]
fn a_sealed_key_opens_for_its_title_only_and_with_its_kek_only() {
    let kek = Kek::from_hex(KEK_HEX).unwrap();
    let k = key(1);
    let sealed = kek.seal("t1", &k);
    assert!(!sealed.contains(&hex::encode(k.key)));
    assert_eq!(kek.unseal("t1", k.kid, &sealed).unwrap(), k);
    // Fresh nonces: sealing twice differs.
    assert_ne!(kek.seal("t1", &k), sealed);
    assert!(matches!(
        kek.unseal("t2", k.kid, &sealed),
        Err(DrmError::Unseal(_))
    ));
    assert!(
        kek.unseal("t1", [9; 16], &sealed).is_err(),
        "another key ID"
    );
    let other = Kek::from_hex(&"ab".repeat(32)).unwrap();
    assert!(other.unseal("t1", k.kid, &sealed).is_err());
    assert!(kek.unseal("t1", k.kid, "not base64!").is_err());
    assert!(kek.unseal("t1", k.kid, "").is_err());
}

#[test]
fn the_kek_file_must_be_private_and_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    std::fs::write(&path, format!("{KEK_HEX}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Kek::load(&path).unwrap_err().to_string();
    assert!(err.contains("readable by others (mode 644)"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Kek::load(&path).unwrap();
    std::fs::write(&path, "too short").unwrap();
    assert!(
        Kek::load(&path)
            .unwrap_err()
            .to_string()
            .contains("64 hex digits")
    );
    assert!(Kek::load(&dir.path().join("missing")).is_err());
}

#[test]
fn keys_never_print() {
    let k = key(7);
    let shown = format!("{k:?} {:?}", Kek::from_hex(KEK_HEX).unwrap());
    assert!(shown.contains(&hex::encode(k.kid)));
    assert!(!shown.contains(&hex::encode(k.key)), "{shown}");
    assert!(!shown.contains(KEK_HEX));
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn a_licence_holds_exactly_the_requested_keys_of_the_title() {
    let keys = [key(1), key(2)];
    let req = format!(r#"{{"kids": ["{}"], "type": "temporary"}}"#, b64(&[2; 16]));
    let kids = parse_request(req.as_bytes()).unwrap();
    let l = licence(&keys, &kids).unwrap();
    assert_eq!(l["type"], "temporary");
    let jwks = l["keys"].as_array().unwrap();
    assert_eq!(jwks.len(), 1);
    assert_eq!(jwks[0]["kty"], "oct");
    assert_eq!(jwks[0]["kid"], b64(&[2; 16]));
    assert_eq!(jwks[0]["k"], b64(&[102; 16]));
    // A key ID of another title.
    let other = parse_request(format!(r#"{{"kids": ["{}"]}}"#, b64(&[3; 16])).as_bytes()).unwrap();
    assert_eq!(
        licence(&keys, &other),
        Err(LicenceError::KidNotInTitle(b64(&[3; 16])))
    );
    // Padding is tolerated; repeats count once.
    let padded = format!(r#"{{"kids": ["{0}==", "{0}"]}}"#, b64(&[1; 16]));
    assert_eq!(parse_request(padded.as_bytes()).unwrap(), [[1; 16]]);
}

#[test]
fn malformed_requests_say_why() {
    for (body, says) in [
        (&b"not json"[..], "not a Clear Key licence request"),
        (br#"{"kids": []}"#, "0 key IDs"),
        (br#"{"kids": ["AAAA"]}"#, "not 16 bytes"),
        (
            br#"{"kids": ["AAECAwQFBgcICQoLDA0ODw"], "type": "persistent-license"}"#,
            "only temporary",
        ),
        (br#"{"kids": 5}"#, "not a Clear Key licence request"),
        (
            br#"{"kids": ["AAECAwQFBgcICQoLDA0ODw"], "extra": 1}"#,
            "unknown field",
        ),
    ] {
        match parse_request(body) {
            Err(LicenceError::BadRequest(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn packaged_keys_are_read_and_checked_against_the_title() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("titles/t1");
    std::fs::create_dir_all(&tdir).unwrap();
    assert_eq!(protection(&tdir).unwrap(), None, "clear title");
    let kid = "11".repeat(16);
    std::fs::write(
        tdir.join("drm.json"),
        format!(r#"{{"scheme": "cenc", "kid": "{kid}", "systems": []}}"#),
    )
    .unwrap();
    let p = protection(&tdir).unwrap().unwrap();
    let missing = packaged_key(dir.path(), "t1", &p).unwrap_err().to_string();
    assert!(missing.contains("title t1 is encrypted"), "{missing}");
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let write = |title: &str, kid: &str| {
        std::fs::write(
            dir.path().join("keys/t1.json"),
            format!(
                r#"{{"title": "{title}", "scheme": "cenc", "kid": "{kid}", "key": "{}"}}"#,
                "22".repeat(16)
            ),
        )
        .unwrap()
    };
    write("t1", &kid);
    let k = packaged_key(dir.path(), "t1", &p).unwrap();
    assert_eq!((k.kid, k.key), ([0x11; 16], [0x22; 16]));
    write("t1", &"33".repeat(16));
    assert!(
        packaged_key(dir.path(), "t1", &p)
            .unwrap_err()
            .to_string()
            .contains("needs key ID")
    );
    write("t9", &kid);
    assert!(packaged_key(dir.path(), "t1", &p).is_err());
    std::fs::write(tdir.join("drm.json"), r#"{"scheme": "cbcs", "kid": "00"}"#).unwrap();
    assert!(
        protection(&tdir)
            .unwrap_err()
            .to_string()
            .contains("only cenc")
    );
}

#[test]
fn a_service_credential_must_be_private_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cred");
    std::fs::write(&path, "secret-1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(
        read_credential(&path)
            .unwrap_err()
            .to_string()
            .contains("chmod 600")
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(read_credential(&path).unwrap(), "secret-1");
    std::fs::write(&path, "two words\n").unwrap();
    assert!(read_credential(&path).is_err());
    std::fs::write(&path, "").unwrap();
    assert!(read_credential(&path).is_err());
}
