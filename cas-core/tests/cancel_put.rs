//! A put stopped by its `Cancel` (from its progress callback or from
//! elsewhere) fails with `Cancelled` once no worker writes for it: no
//! temporary file, the store's counts match its files, and the same put
//! succeeds afterwards. A cancel after the manifest is stored comes too late.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cas_core::{Cancel, Error};
use common::{blob_files, content, temp_files, Scratch, MIN_CHUNK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cancelled_midway_leaves_only_whole_blobs() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let data = content(3, 20 * MIN_CHUNK + 1);
    let input = s.file("in", &data);
    for stop_at in [1, 10, 22] {
        let cancel = Cancel::new();
        let (calls, by_callback) = (Arc::new(AtomicUsize::new(0)), cancel.clone());
        let counted = calls.clone();
        let progress = Arc::new(move |_done, _total| {
            if counted.fetch_add(1, Ordering::SeqCst) + 1 == stop_at {
                by_callback.cancel();
            }
        });
        let err = node.put_file_cancellable(&input, Some(progress), &cancel).await.unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), stop_at, "no call after the cancel");
        assert!(temp_files(&s.data_dir()).is_empty());
        assert_eq!(node.store().blob_count(), blob_files(&s.data_dir()).len() as u64, "nothing half-counted");
    }
    let report = node.put_file(&input, None).await.unwrap();
    assert_eq!(node.get_bytes(&report.key).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_the_put_or_after_it_is_decided_once() {
    let s = Scratch::new();
    let node = s.node(MIN_CHUNK).await;
    let cancel = Cancel::new();
    assert!(cancel.cancel());
    let mut bytes: &[u8] = b"never stored";
    let err = node.put_reader_cancellable(&mut bytes, 12, None, &cancel).await.unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");

    let cancel = Cancel::new();
    let mut bytes: &[u8] = b"stored";
    node.put_reader_cancellable(&mut bytes, 6, None, &cancel).await.unwrap();
    assert!(!cancel.cancel(), "too late: the put completed");
}
