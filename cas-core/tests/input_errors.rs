//! Bad input gets its typed error with a message that says what is wrong:
//! a missing or unreadable input, a bad key string, an unknown key, a bad
//! configuration.

mod common;

use cas_core::{Config, Error, ErrorKind, Key, Node};
use common::{content, Scratch, MIN_CHUNK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_input_file() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let missing = s.path("no-such-file.bin");
    let err = node.put_file(&missing, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&*missing.to_string_lossy()), "names the path: {msg}");
    assert!(msg.contains("No such file"), "says why: {msg}");
    assert_eq!(node.store().blob_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_that_is_a_directory() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let dir = s.path("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let err = node.put_file(&dir, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&*dir.to_string_lossy()) && msg.contains("directory"), "{msg}");
    assert_eq!(node.store().blob_count(), 0);
}

/// `s` with the character at `pos` replaced.
fn with_char(s: &str, pos: usize, ch: char) -> String {
    let mut out: Vec<char> = s.chars().collect();
    out[pos] = ch;
    out.into_iter().collect()
}

#[test]
fn bad_key_strings() {
    let good = Key::parse(&format!("cas1{}", "a".repeat(103))).expect("all-zero key is well formed").to_string();
    let mut altered_last = good.clone();
    altered_last.pop();
    altered_last.push('b'); // sets one of the unused low bits
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("cas2aaaa", "cas1"),
        (&good[..50], "characters"),
        (&format!("{good}a"), "characters"),
        (&with_char(&good, 10, 'A'), "upper-case"),
        (&with_char(&good, 10, '1'), "base32"),
        (&with_char(&good, 10, '='), "base32"),
        (&format!(" {}", &good[1..]), "whitespace"),
        (&altered_last, "padding"),
    ];
    for (text, why) in cases {
        let err: Error = Key::parse(text).expect_err(text).into();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{text:?}: {err}");
        assert!(err.to_string().contains(why), "{text:?}: message {err} should mention {why:?}");
        assert!(text.parse::<Key>().is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_but_unknown_key() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    node.put_bytes(&content(1, 1000)).await.unwrap();
    // A key of the right shape that this store never saw.
    let mut key = node.put_bytes(&content(2, 1000)).await.unwrap().key;
    key.manifest_id.0[0] ^= 0xff;
    let text = key.to_string();

    let err = node.get_bytes(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // Names the key by all the characters that spell its manifest id, where
    // a typo makes a key unknown, so that it can be seen; not by the rest: a
    // key is a read capability, and error messages end up in logs and bug
    // reports.
    assert!(err.to_string().contains(&format!("key {}…", &text[..cas_core::key::ID_CHARS])), "names the key: {err}");
    assert!(!err.to_string().contains(&text[cas_core::key::ID_CHARS - 4..]), "does not spell out the whole key: {err}");

    let dest = s.path("dest");
    let err = node.get_file(&key, &dest, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!dest.exists());
    assert_eq!(node.open(&key).await.err().map(|e| e.kind()), Some(ErrorKind::NotFound));
    assert_eq!(node.stat(&key).await.err().map(|e| e.kind()), Some(ErrorKind::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_manifest_key_is_an_integrity_error() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let mut key = node.put_bytes(&content(3, 1000)).await.unwrap().key;
    key.manifest_key[5] ^= 1;
    let err = node.get_bytes(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains("wrong key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration() {
    let s = Scratch::new();
    for bad in [100_000, 65_535, 32 * 1024, 32 * 1024 * 1024, 0] {
        let mut config = Config::new(s.data_dir());
        config.chunk_size = bad;
        let err = Node::start(config).await.err().expect("bad chunk size refused");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("chunk_size") && msg.contains(&bad.to_string()), "{msg}");
    }
    let mut config = Config::new(s.data_dir());
    config.min_replicas = config.replicas + 1;
    let err = Node::start(config).await.err().expect("min_replicas above replicas refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("min_replicas"), "{err}");
    let mut config = Config::new(s.data_dir());
    config.idle_timeout = std::time::Duration::ZERO;
    let err = Node::start(config).await.err().expect("a zero idle_timeout refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("idle_timeout"), "{err}");
    // A bad config is refused before the data directory is touched.
    assert!(!s.data_dir().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_after_shutdown_are_closed() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let key = node.put_bytes(b"x").await.unwrap().key;
    node.shutdown().await;
    node.shutdown().await;
    assert_eq!(node.put_bytes(b"y").await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(node.get_bytes(&key).await.unwrap_err().kind(), ErrorKind::Closed);
}
