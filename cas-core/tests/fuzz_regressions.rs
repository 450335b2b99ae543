//! Every input under fuzz/regressions/<target>/ (the seeds, and each crash
//! fuzzing ever found) replayed through the property checks the fuzz
//! targets run (`cas_core::fuzzing`). `make fuzz-seeds` rewrites the seeds.

mod common;

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cas_core::format::{seal_chunk, BlobId};
use cas_core::fuzzing::{self, chunk_open_input, frame_codec_input, manifest_open_input, TARGETS};
use cas_core::identity::Identity;
use cas_core::net::frame::{self, Message, PeerRecord, Request, Response, MAX_FRAME_LEN};
use common::{generate, vectors};

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

#[test]
fn every_regression_input_holds_its_properties() {
    let root = regressions_dir();
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no input for the {target} target in {}", dir.display());
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "properties fail on: {failures:#?}");
}

#[test]
fn every_regression_directory_is_a_target() {
    for entry in std::fs::read_dir(regressions_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(fuzzing::check(&name).is_some(), "fuzz/regressions/{name} is no target of cas_core::fuzzing");
    }
}

/// Found by the chunk_open check: a length near `usize::MAX` overflowed
/// the length check, which then let a 15-byte blob through to decryption
/// (or panicked, with overflow checks on).
#[test]
fn open_chunk_refuses_a_length_that_overflows() {
    let key = [7u8; 32];
    let expected = cas_core::format::open_chunk(&key, Vec::new(), 1).unwrap_err();
    assert_eq!(cas_core::format::open_chunk(&key, vec![0; 15], usize::MAX), Err(expected));
}

/// Writes the seed inputs: real frames, streams, manifests, keys and chunks,
/// from the test vectors and the library's own functions.
#[test]
#[ignore = "writes fuzz/regressions; run by `make fuzz-seeds`"]
fn write_seeds() {
    let v = vectors();
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();

    let messages = sample_messages();
    for (name, msg) in &messages {
        seeds.push(("frame", name.to_string(), frame::encode(msg).to_vec()));
    }
    let mut stream = Vec::new();
    for (_, msg) in &messages[..4] {
        let body = frame::encode(msg);
        stream.extend_from_slice(&frame::header(body.len()).unwrap());
        stream.extend_from_slice(&body);
    }
    seeds.push(("frame_codec", "whole".into(), frame_codec_input(&[], &stream)));
    seeds.push(("frame_codec", "bytewise".into(), frame_codec_input(&[1], &stream)));
    seeds.push(("frame_codec", "uneven".into(), frame_codec_input(&[3, 0, 9, 4], &stream)));
    seeds.push(("frame_codec", "truncated".into(), frame_codec_input(&[5], &stream[..stream.len() - 3])));
    let oversized = [&stream[..], &(MAX_FRAME_LEN as u32 + 1).to_be_bytes()].concat();
    seeds.push(("frame_codec", "oversized".into(), frame_codec_input(&[2], &oversized)));
    let large = [&stream[..], &(MAX_FRAME_LEN as u32).to_be_bytes(), b"a trickle"].concat();
    seeds.push(("frame_codec", "declared-large".into(), frame_codec_input(&[1], &large)));

    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let manifest = hex::decode(case["manifest"].as_str().unwrap()).unwrap();
        let secret: [u8; 32] = hex::decode(case["secret"].as_str().unwrap()).unwrap().try_into().unwrap();
        let key = case["key"].as_str().unwrap();
        if ["empty", "one-byte", "three-and-a-half", "default-chunk-2.25MiB"].contains(&name) {
            seeds.push(("manifest_parse", name.into(), manifest.clone()));
            seeds.push(("manifest_open", name.into(), manifest_open_input(&secret, &manifest)));
        }
        if ["one-byte", "three-and-a-half"].contains(&name) {
            seeds.push(("key_parse", name.into(), key.as_bytes().to_vec()));
        }
    }
    for (i, case) in v["invalid_manifests"].as_array().unwrap().iter().enumerate().step_by(3) {
        seeds.push((
            "manifest_parse",
            format!("invalid-{i}"),
            hex::decode(case["manifest"].as_str().unwrap()).unwrap(),
        ));
    }
    for (i, case) in v["invalid_keys"].as_array().unwrap().iter().enumerate() {
        seeds.push(("key_parse", format!("invalid-{i}"), case["key"].as_str().unwrap().as_bytes().to_vec()));
    }

    for (name, plaintext) in
        [("empty", Vec::new()), ("hello", b"hello, world\n".to_vec()), ("generated", generate(b"fuzz", 200))]
    {
        let sealed = seal_chunk(&[3; 32], plaintext);
        seeds.push(("chunk_open", name.into(), chunk_open_input(&sealed.key, &sealed.blob)));
    }

    let root = regressions_dir();
    for (target, name, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

/// One message of each shape the wire carries.
fn sample_messages() -> Vec<(&'static str, Message)> {
    let record = |seed: u8, addr: &str| {
        PeerRecord::sign(&Identity::from_seed(&[seed; 32]), addr.parse::<SocketAddr>().unwrap(), 1_700_000_000_000, 42)
    };
    let blob = Bytes::from_static(b"a small blob");
    let request = |id, body| Message::Request { id, body };
    let response = |id, body| Message::Response { id, body };
    vec![
        ("ping", request(1, Request::Ping)),
        ("store-blob", request(2, Request::StoreBlob { id: BlobId::of(&blob), data: blob.clone() })),
        ("get-blob", request(3, Request::GetBlob { id: BlobId::of(&blob) })),
        ("has-blobs", request(300, Request::HasBlobs { ids: vec![BlobId::of(b"a"), BlobId::of(b"b")] })),
        ("audit", request(6, Request::Audit { id: BlobId::of(&blob), nonce: [0xa5; 32] })),
        (
            "gossip",
            request(5, Request::Gossip { peers: vec![record(1, "192.0.2.1:7000"), record(2, "[2001:db8::2]:7001")] }),
        ),
        ("pong", response(1, Response::Pong)),
        ("refused", response(2, Response::Refused { full: true, reason: "storage full".into() })),
        ("blob", response(3, Response::Blob { data: blob })),
        ("has", response(300, Response::Has { present: vec![true, false] })),
        ("error", response(u64::MAX, Response::Error { message: "no such thing".into() })),
        ("audited", response(6, Response::Audited { digest: [0x5a; 32] })),
        ("goodbye", Message::Goodbye { reason: "shutting down".into() }),
    ]
}
