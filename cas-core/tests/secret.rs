//! The convergence secret: created as 32 owner-only bytes, kept across
//! restarts, and a secret placed by the user decides the keys.

mod common;

use std::os::unix::fs::PermissionsExt;

use cas_core::{Config, ErrorKind, Key, Node};
use common::{content, Scratch, MIN_CHUNK};

async fn key_of(config: Config, data: &[u8]) -> Key {
    let node = Node::start(config).await.unwrap();
    let key = node.put_bytes(data).await.unwrap().key;
    node.shutdown().await;
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_created_owner_only_and_kept() {
    let s = Scratch::new();
    let data = content(1, 5000);
    let first = key_of(s.config(MIN_CHUNK), &data).await;
    let path = s.data_dir().join("secret");
    let secret = std::fs::read(&path).unwrap();
    assert_eq!(secret.len(), 32);
    assert_ne!(secret, [0u8; 32]);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let dir_mode = std::fs::metadata(s.data_dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "a data directory the node creates is owner-only");

    let again = key_of(s.config(MIN_CHUNK), &data).await;
    assert_eq!(again, first, "same secret after restart, same key");
    assert_eq!(std::fs::read(&path).unwrap(), secret, "the secret is not rewritten");

    // Another data directory makes its own secret, hence other keys.
    let other = Scratch::new();
    assert_ne!(key_of(other.config(MIN_CHUNK), &data).await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_placed_secret_decides_the_key() {
    let data = content(2, 3 * MIN_CHUNK + 17);
    let place = |secret: [u8; 32]| {
        let s = Scratch::new();
        std::fs::create_dir_all(s.data_dir()).unwrap();
        std::fs::write(s.data_dir().join("secret"), secret).unwrap();
        s
    };
    let (a, b, c) = (place([7; 32]), place([7; 32]), place([8; 32]));
    let key_a = key_of(a.config(MIN_CHUNK), &data).await;
    let key_b = key_of(b.config(MIN_CHUNK), &data).await;
    let key_c = key_of(c.config(MIN_CHUNK), &data).await;
    assert_eq!(key_a, key_b, "same secret file, same key");
    assert_ne!(key_a, key_c, "different secret, different key");
    assert_eq!(std::fs::read(a.data_dir().join("secret")).unwrap(), [7; 32], "the placed secret is kept");

    // Config.secret overrides the file for one run, with the same effect.
    let mut config = c.config(MIN_CHUNK);
    config.secret = Some([7; 32]);
    assert_eq!(key_of(config, &data).await, key_a);

    // Same secret, same key: the blobs are identical too (nodes deduplicate).
    let blobs = |s: &Scratch| {
        common::blob_files(&s.data_dir()).iter().map(|p| p.file_name().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(blobs(&a), blobs(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_file_of_the_wrong_length_is_refused() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.data_dir()).unwrap();
    let path = s.data_dir().join("secret");
    std::fs::write(&path, [1u8; 31]).unwrap();
    let err = Node::start(s.config(MIN_CHUNK)).await.err().expect("a 31-byte secret is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&*path.to_string_lossy()) && msg.contains("32"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), [1u8; 31], "a bad secret is never overwritten");
}
