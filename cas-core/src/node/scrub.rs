//! Background scrub: the blobs a node stores are re-read and verified at a
//! bounded rate (`Config::scrub_rate` bytes per second), so that a blob
//! damaged on disk is found before anyone needs it. A blob that fails
//! verification (content or length changed) is quarantined (by the store),
//! one whose file vanished is dropped from the index, and either, with
//! peers, is replaced by a verified copy fetched from one of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::blocking::blocking;
use crate::error::ErrorKind;
use crate::format::BlobId;
use crate::net::Network;
use crate::store::{BlobStore, Origin};

/// The shortest time between two passes, so that a small store is not
/// re-read in a loop.
const MIN_PASS: Duration = Duration::from_secs(1);
/// Index rows read at a time.
const PAGE: usize = 1024;

/// Scrub counters since start.
#[derive(Default)]
pub(crate) struct ScrubStats {
    pub blobs: AtomicU64,
    pub bytes: AtomicU64,
    pub corrupt: AtomicU64,
    pub missing: AtomicU64,
    pub restored: AtomicU64,
}

/// What the scrub found of one blob.
enum Found {
    /// Read and verified: its length.
    Good(u64),
    /// No longer indexed (removed since the page was read).
    Removed,
    /// Indexed, but its file is gone.
    Vanished,
    /// Unreadable, or failed verification (then quarantined).
    Failed(crate::error::Error),
}

pub(crate) struct Scrub {
    pub store: BlobStore,
    pub net: Option<Arc<Network>>,
    /// Bytes per second; 0 turns scrubbing off.
    pub rate: u64,
    pub stats: Arc<ScrubStats>,
}

impl Scrub {
    /// Scrubs pass after pass, the first one `delay` after start (one
    /// repair interval: nothing is urgent when a node starts).
    pub(crate) async fn run(self, delay: Duration, cancel: CancellationToken) {
        if self.rate == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
        loop {
            let pass_started = Instant::now();
            if !self.pass(&cancel).await {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(pass_started + MIN_PASS) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// One pass over the store; false when cancelled.
    async fn pass(&self, cancel: &CancellationToken) -> bool {
        let started = Instant::now();
        let (mut read, mut after) = (0u64, None);
        loop {
            // The index, a page at a time: bounded memory whatever the store's size.
            let store = self.store.clone();
            let page = blocking(move || store.page(after, PAGE)).await.unwrap_or_default();
            let Some((last, _)) = page.last() else { return true };
            after = Some(*last);
            for (id, _) in page {
                if cancel.is_cancelled() {
                    return false;
                }
                read += self.check(id).await;
                // Pace: `read` bytes may take no less than read / rate seconds.
                let due = started + Duration::from_secs_f64(read as f64 / self.rate as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = cancel.cancelled() => return false,
                }
            }
        }
    }

    /// Verifies one blob; returns the bytes read.
    async fn check(&self, id: BlobId) -> u64 {
        let store = self.store.clone();
        let (origin, found) = blocking(move || {
            let Some(entry) = store.entry(&id).ok().flatten() else {
                return (Origin::Unknown, Found::Removed); // since the listing
            };
            let found = match store.get(&id) {
                Ok(Some(blob)) => {
                    if let Err(e) = store.mark_verified(&id) {
                        tracing::debug!(blob = %id, "scrub: not recording the check: {e}");
                    }
                    Found::Good(blob.bytes().len() as u64)
                }
                // Indexed, yet no file: removed behind the node's back.
                Ok(None) => {
                    store.forget_if_missing(&id);
                    Found::Vanished
                }
                Err(e) => Found::Failed(e),
            };
            (entry.origin, found)
        })
        .await;
        match found {
            Found::Good(len) => {
                self.stats.blobs.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(len, Ordering::Relaxed);
                len
            }
            Found::Removed => 0,
            Found::Vanished => {
                self.stats.missing.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(blob = %id, "scrub: a stored blob's file is gone; dropped from the index");
                self.restore(id, origin).await;
                0
            }
            Found::Failed(e) if e.kind() == ErrorKind::Integrity => {
                // The store has moved it to quarantine/.
                self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(blob = %id, "scrub: a stored blob failed verification and was quarantined: {e}");
                self.restore(id, origin).await;
                0
            }
            Found::Failed(e) => {
                tracing::warn!(blob = %id, "scrub: cannot read a stored blob: {e}");
                0
            }
        }
    }

    /// Replaces a quarantined or vanished blob with a verified copy from a peer.
    async fn restore(&self, id: BlobId, origin: Origin) {
        if let Some(net) = &self.net {
            if net.restore(id, origin).await {
                self.stats.restored.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
