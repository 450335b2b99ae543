//! Background repair: every `repair_interval`, for each blob it holds, a
//! node computes the blob's ideal holders (the first `replicas + 1` alive
//! nodes in rendezvous order, itself included). If it is one of them, it
//! gives a copy to each other ideal holder that lacks one. Only ideal
//! holders are ever given copies, so repairs cannot multiply copies; after
//! a node dies, the next node in rank takes its place.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::frame::{Request, Response, MAX_HAS_BATCH};
use super::placement::rank_nodes;
use super::Network;
use crate::blocking::blocking;
use crate::format::BlobId;
use crate::identity::{NodeId, PeerState};

impl Network {
    pub(crate) async fn repair_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.repair_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; let gossip settle first
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.cancel.cancelled() => break,
            }
            let copied = self.repair_round().await;
            if copied > 0 {
                tracing::info!(copied, "repair round restored replicas");
            }
        }
    }

    /// One pass over the local store. Returns the copies made.
    pub(crate) async fn repair_round(self: &Arc<Self>) -> usize {
        let alive: Vec<NodeId> = self.table.peers_in(&[PeerState::Alive]).into_iter().map(|(id, _)| id).collect();
        if alive.is_empty() {
            return 0;
        }
        let store = self.store.clone();
        let local = blocking(move || {
            let mut ids = Vec::new();
            store.for_each_blob(|id, _| ids.push(id)).map(|_| ids)
        })
        .await
        .unwrap_or_default();
        // Which peers should hold which of our blobs.
        let mut wanted: HashMap<NodeId, Vec<BlobId>> = HashMap::new();
        let mut everyone = alive.clone();
        everyone.push(self.me);
        for id in local {
            rank_nodes(&id, &mut everyone, |n| *n);
            let ideal = &everyone[..(self.config.replicas + 1).min(everyone.len())];
            if ideal.contains(&self.me) {
                for peer in ideal.iter().filter(|p| **p != self.me) {
                    wanted.entry(*peer).or_default().push(id);
                }
            }
        }
        let mut copied = 0;
        for (peer, ids) in wanted {
            for batch in ids.chunks(MAX_HAS_BATCH) {
                if self.cancel.is_cancelled() {
                    return copied;
                }
                let Ok(Response::Has { present }) =
                    self.request(peer, || Request::HasBlobs { ids: batch.to_vec() }).await
                else {
                    continue;
                };
                for (id, has) in batch.iter().zip(present) {
                    if has {
                        continue;
                    }
                    let store = self.store.clone();
                    let id = *id;
                    let Ok(Some(blob)) = blocking(move || store.get(&id)).await else { continue };
                    let data: bytes::Bytes = blob.into_bytes().into();
                    let len = data.len() as u64;
                    if let Ok(Response::Stored) =
                        self.request(peer, || Request::StoreBlob { id, data: data.clone() }).await
                    {
                        self.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
                        self.stats.repaired.fetch_add(1, Ordering::Relaxed);
                        copied += 1;
                    }
                }
            }
        }
        copied
    }
}
