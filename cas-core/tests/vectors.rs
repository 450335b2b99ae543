//! Every case of shared/vectors/format-v1.json, byte for byte.

mod common;

use cas_core::error::KeyParseError;
use cas_core::format::{seal_chunk, BlobId, Manifest};
use cas_core::Key;
use common::{generate, vectors};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn content(spec: &Value) -> Vec<u8> {
    if let Some(r) = spec.get("repeat") {
        let block = generate(r["seed"].as_str().unwrap().as_bytes(), r["len"].as_u64().unwrap() as usize);
        block.repeat(r["times"].as_u64().unwrap() as usize)
    } else {
        generate(spec["seed"].as_str().unwrap().as_bytes(), spec["len"].as_u64().unwrap() as usize)
    }
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

#[test]
fn valid_cases_match_byte_for_byte() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 7, "expected every case of the vector file");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let secret = hex32(&case["secret"]);
        let chunk_size = case["chunk_size"].as_u64().unwrap() as u32;
        let data = content(&case["content"]);
        assert_eq!(hex::encode(Sha256::digest(&data)), case["content_sha256"].as_str().unwrap(), "{name}: content");

        let mut chunks = Vec::new();
        for (i, piece) in data.chunks(chunk_size as usize).enumerate() {
            let sealed = seal_chunk(&secret, piece.to_vec());
            assert_eq!(sealed.blob.len(), piece.len() + 16);
            assert_eq!(BlobId::of(&sealed.blob), sealed.id);
            if i == 0 {
                if let Some(first) = case.get("first_chunk_blob_sha256") {
                    assert_eq!(sealed.id.to_hex(), first.as_str().unwrap(), "{name}: first chunk blob");
                }
            }
            chunks.push((sealed.id, sealed.key));
        }
        let want_ids: Vec<&str> = case["chunk_ids"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        let got_ids: Vec<String> = chunks.iter().map(|(id, _)| id.to_hex()).collect();
        assert_eq!(got_ids, want_ids, "{name}: chunk ids");

        let manifest = Manifest::new(chunk_size, data.len() as u64, chunks).unwrap();
        let (blob, key) = manifest.seal(&secret);
        assert_eq!(hex::encode(&blob), case["manifest"].as_str().unwrap(), "{name}: manifest bytes");
        assert_eq!(key.manifest_id.to_hex(), case["manifest_id"].as_str().unwrap(), "{name}: manifest id");
        assert_eq!(hex::encode(key.manifest_key), case["manifest_key"].as_str().unwrap(), "{name}: manifest key");
        assert_eq!(key.to_string(), case["key"].as_str().unwrap(), "{name}: key string");

        // And back: the key string parses, the manifest opens to the same thing.
        let parsed = Key::parse(case["key"].as_str().unwrap()).unwrap();
        assert_eq!(parsed, key);
        assert_eq!(Manifest::open(&blob, &parsed.manifest_key).unwrap(), manifest, "{name}: reopen");
    }
}

#[test]
fn invalid_keys_are_rejected_with_their_reason() {
    let v = vectors();
    let cases = v["invalid_keys"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let key = case["key"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let err = Key::parse(key).expect_err(why);
        let ok = match why {
            "empty" => err == KeyParseError::Empty,
            "unknown version prefix" => err == KeyParseError::BadPrefix,
            "too short" | "too long" => matches!(err, KeyParseError::BadLength { .. }),
            w if w.contains("not in the base32 alphabet") => matches!(err, KeyParseError::BadCharacter { ch: '1', .. }),
            "upper case" => matches!(err, KeyParseError::UpperCase { .. }),
            "non-zero padding bits in the last character" => err == KeyParseError::NonZeroPadding,
            "leading whitespace" => matches!(err, KeyParseError::Whitespace { pos: 0 }),
            other => panic!("vector reason {other:?} has no expected error here; add it"),
        };
        assert!(ok, "{why}: got {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn invalid_manifests_are_rejected_with_their_reason() {
    use cas_core::error::ManifestError as M;
    let v = vectors();
    let cases = v["invalid_manifests"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let bytes = hex::decode(case["manifest"].as_str().unwrap()).unwrap();
        let why = case["why"].as_str().unwrap();
        let err = Manifest::parse_public(&bytes).expect_err(why);
        let ok = match why {
            "shorter than the header" => matches!(err, M::TooShort(_)),
            "bad magic" => err == M::BadMagic,
            "unknown version" => matches!(err, M::UnknownVersion(2)),
            "unknown kind" => matches!(err, M::UnknownKind(1)),
            "non-zero flags" => matches!(err, M::NonZeroFlags(_)),
            "chunk size not a power of two" | "chunk size over 16 MiB" => matches!(err, M::BadChunkSize(_)),
            "count does not match file size" => matches!(err, M::CountMismatch { .. }),
            "truncated sealed keys" | "trailing byte" => matches!(err, M::BadLength { .. }),
            other => panic!("vector reason {other:?} has no expected error here; add it"),
        };
        assert!(ok, "{why}: got {err:?}");
        // Opening (what a reader does) rejects it too, whatever the key.
        assert!(Manifest::open(&bytes, &[0; 32]).is_err(), "{why}");
    }
}
