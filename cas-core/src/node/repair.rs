//! Background repair, a policy of the node (the network only moves bytes).
//!
//! Every `repair_interval`, for each blob it holds, a node computes the
//! blob's ideal holders: the first `replicas + 1` alive nodes in rendezvous
//! order, itself included. It asks the ideal holders which of them lack the
//! blob, then:
//! - an ideal holder gives a copy to each other ideal holder that lacks it;
//! - a holder outside the ideal set (the owner of a file, a node that
//!   fetched it, a node that took a place that has since been given back)
//!   does the same, but only when no ideal holder has a copy: otherwise
//!   that holder repairs, and the blob is not sent twice.
//!
//! So a blob whose surviving copies all sit outside its ideal set is still
//! brought back to `replicas + 1` copies on alive nodes, and since only ideal
//! holders are ever given copies, repair cannot multiply copies.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::blocking::blocking;
use crate::format::BlobId;
use crate::identity::NodeId;
use crate::net::frame::MAX_HAS_BATCH;
use crate::net::placement::rank_nodes;
use crate::net::Network;
use crate::store::BlobStore;

/// What repair works with: the network to move bytes, the local store, and
/// the placement setting. (Not the `Node`: a task holding the node would
/// keep it from ever being dropped.)
pub(crate) struct Repair {
    pub net: Arc<Network>,
    pub store: BlobStore,
    pub replicas: usize,
}

impl Repair {
    /// Repairs every `interval`, from `settle` after start: a node that has
    /// just started knows only some of the alive nodes, and would take
    /// others for the ideal holders. `settle` is the time after which the
    /// membership view is informed (dead_after: the silence that decides
    /// absence).
    pub(crate) async fn run(self, interval: Duration, settle: Duration, cancel: CancellationToken) {
        let first = tokio::time::Instant::now() + settle.max(interval);
        let mut tick = tokio::time::interval_at(first, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => break,
            }
            let copied = self.round(&cancel).await;
            if copied > 0 {
                tracing::info!(copied, "repair round restored replicas");
            }
        }
    }

    /// One pass over the local store. Returns the copies made.
    pub(crate) async fn round(&self, cancel: &CancellationToken) -> usize {
        let me = self.net.me();
        let mut everyone = self.net.alive_peers();
        if everyone.is_empty() {
            return 0;
        }
        everyone.push(me);
        let store = self.store.clone();
        let local = blocking(move || store.ids()).await.unwrap_or_default();

        // What to ask each ideal holder, and the blobs this node is an ideal holder of.
        let mut to_ask: HashMap<NodeId, Vec<BlobId>> = HashMap::new();
        let mut me_ideal: HashSet<BlobId> = HashSet::new();
        for id in local {
            rank_nodes(&id, &mut everyone, |n| *n);
            for peer in &everyone[..(self.replicas + 1).min(everyone.len())] {
                if *peer == me {
                    me_ideal.insert(id);
                } else {
                    to_ask.entry(*peer).or_default().push(id);
                }
            }
        }

        // Who lacks what. A peer that does not answer is neither a holder
        // nor given a copy this round.
        let mut lacking: HashMap<BlobId, Vec<NodeId>> = HashMap::new();
        let mut held_by_ideal: HashSet<BlobId> = HashSet::new();
        for (peer, ids) in to_ask {
            for batch in ids.chunks(MAX_HAS_BATCH) {
                if cancel.is_cancelled() {
                    return 0;
                }
                let Some(present) = self.net.has_blobs(peer, batch.to_vec()).await else { continue };
                for (id, has) in batch.iter().zip(present) {
                    if has {
                        held_by_ideal.insert(*id);
                    } else {
                        lacking.entry(*id).or_default().push(peer);
                    }
                }
            }
        }

        let mut copied = 0;
        for (id, peers) in lacking {
            if !me_ideal.contains(&id) && held_by_ideal.contains(&id) {
                continue; // an ideal holder has it and repairs it
            }
            if cancel.is_cancelled() {
                break;
            }
            let store = self.store.clone();
            let Ok(Some(blob)) = blocking(move || store.get(&id)).await else { continue };
            let data: bytes::Bytes = blob.into_bytes().into();
            for peer in peers {
                if self.net.store_on(peer, id, data.clone()).await.is_ok() {
                    self.net.stats.repaired.fetch_add(1, Ordering::Relaxed);
                    copied += 1;
                }
            }
        }
        copied
    }
}
