//! The catalog of files a node put: what `Node::files` lists, across
//! restarts, owner-only, and a damaged catalog that does not stop the node.

mod common;

use std::os::unix::fs::PermissionsExt;

use cas_core::store::CATALOG_FILE;
use common::{content, Scratch};

#[tokio::test]
async fn files_lists_every_put_with_its_name_and_survives_a_restart() {
    let s = Scratch::new();
    let node = s.node(64 * 1024).await;
    assert!(node.files().await.unwrap().is_empty());

    let book = s.file("book.pdf", &content(1, 200_000));
    let first = node.put_file(&book, None).await.unwrap();
    let labelled = node.put_bytes_named(&content(2, 1000), "notes from the meeting").await.unwrap();
    let unnamed = node.put_bytes(&content(3, 10)).await.unwrap();
    // The same file again under the same name is one entry, not two.
    node.put_file(&book, None).await.unwrap();

    let files = node.files().await.unwrap();
    let listed: Vec<_> = files.iter().map(|f| (f.key, f.name.as_str(), f.size)).collect();
    assert_eq!(
        listed,
        vec![(labelled.key, "notes from the meeting", 1000), (unnamed.key, "", 10), (first.key, "book.pdf", 200_000)],
        "oldest first; the book was put again last"
    );
    assert!(files.windows(2).all(|w| w[0].time <= w[1].time));

    let path = s.data_dir().join(CATALOG_FILE);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "keys are capabilities");
    node.shutdown().await;
    drop(node);

    let again = s.node(64 * 1024).await;
    assert_eq!(again.files().await.unwrap(), files);
}

#[tokio::test]
async fn a_damaged_catalog_is_moved_aside_and_the_node_still_runs() {
    let s = Scratch::new();
    let node = s.node(64 * 1024).await;
    let key = node.put_bytes_named(b"kept", "kept.txt").await.unwrap().key;
    node.shutdown().await;
    drop(node);

    std::fs::write(s.data_dir().join(CATALOG_FILE), b"this is not a redb database, not at all").unwrap();
    let node = s.node(64 * 1024).await;
    assert!(node.files().await.unwrap().is_empty(), "a new, empty catalog");
    let aside: Vec<String> = common::entries(&s.data_dir())
        .into_iter()
        .filter(|n| n.starts_with(&format!("{CATALOG_FILE}.damaged-")))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept for the user: {aside:?}");
    // The file itself is still there, by key; new puts are listed again.
    assert_eq!(node.get_bytes(&key).await.unwrap(), b"kept");
    node.put_bytes_named(b"new", "new.txt").await.unwrap();
    assert_eq!(node.files().await.unwrap().len(), 1);
}
