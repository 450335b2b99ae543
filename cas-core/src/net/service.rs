//! Serving peers' requests from the local store and peer table.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::audit::AuditDigests;
use super::conn::{Answer, AnswerBudget, Handler};
use super::frame::{Request, Response, MAX_HAS_BATCH};
use super::Network;
use crate::blocking::blocking;
use crate::error::Error;
use crate::format::{BlobId, MAX_BLOB_LEN};
use crate::identity::NodeId;
use crate::store::{Origin, VerifiedBlob};

/// Bytes of a blob answer besides the blob: message and response tags,
/// request id and length (varints).
const BLOB_ANSWER_ENVELOPE: usize = 64;

pub(crate) struct Service(pub Arc<Network>);

impl Handler for Service {
    fn handle(&self, from: NodeId, request: Request, answers: AnswerBudget) -> BoxFuture<'static, Answer> {
        let net = self.0.clone();
        Box::pin(async move {
            net.stats.requests_served.fetch_add(1, Ordering::Relaxed);
            // A request is news that its sender lives, whatever gossip says
            // (its heartbeats may queue behind large frames).
            net.table.refresh(&from);
            match request {
                Request::Ping => Response::Pong.into(),
                Request::Gossip { peers } => match net.merge_gossip(from, peers).await {
                    Ok(_) => Response::Gossip { peers: net.table.gossip_records() }.into(),
                    Err(()) => Response::Error { message: "gossip with a bad signature, dropped".into() }.into(),
                },
                Request::StoreBlob { id, data } => store_blob(&net, from, id, data).await.into(),
                Request::GetBlob { id } => get_blob(&net, from, id, answers).await,
                Request::Audit { id, nonce } => answer_audit(&net, id, nonce).await.into(),
                Request::HasBlobs { ids } => {
                    if ids.len() > MAX_HAS_BATCH {
                        return Response::Error { message: format!("at most {MAX_HAS_BATCH} ids per request") }.into();
                    }
                    let store = net.store.clone();
                    match blocking(move || store.contains(&ids)).await {
                        Ok(present) => Response::Has { present }.into(),
                        Err(e) => Response::Error { message: e.to_string() }.into(),
                    }
                }
            }
        })
    }
}

/// Serves a blob from the local store. Its size is reserved from the
/// connection's answer budget before it is loaded.
async fn get_blob(net: &Arc<Network>, from: NodeId, id: crate::format::BlobId, answers: AnswerBudget) -> Answer {
    if let Some(delay) = net.config.faults.delay_served_blobs {
        tokio::time::sleep(delay).await;
    }
    let store = net.store.clone();
    let Some(len) = store.len_of(&id) else { return Response::NotFound.into() };
    // The store reads no more than the largest blob, whatever the file's size.
    let Some(permit) = answers.reserve(len.min(MAX_BLOB_LEN as u64) as usize + BLOB_ANSWER_ENVELOPE).await else {
        return Response::Error { message: "the connection is closing".into() }.into();
    };
    let body = match blocking(move || store.get(&id)).await {
        Ok(Some(blob)) => {
            let mut bytes = blob.into_bytes();
            if net.config.faults.corrupt_served_blobs {
                if let Some(b) = bytes.last_mut() {
                    *b ^= 1;
                }
            }
            net.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            net.note_traffic(from, |t| t.sent_bytes += bytes.len() as u64);
            Response::Blob { data: bytes.into() }
        }
        Ok(None) => Response::NotFound,
        Err(e @ Error::Integrity { .. }) => {
            net.stats.verification_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("not serving a corrupt local blob: {e}");
            Response::NotFound
        }
        Err(e) => Response::Error { message: e.to_string() },
    };
    Answer { body, permit: Some(permit) }
}

/// Answers a possession audit from this node's copy of the blob, read in
/// pieces (`net/audit.rs`). A copy found gone or corrupt is not claimed
/// (`NotFound`) and, as the scrub does, replaced by a good copy from a peer.
async fn answer_audit(net: &Arc<Network>, id: BlobId, nonce: [u8; 32]) -> Response {
    let (store, me) = (net.store.clone(), net.me());
    let (origin, read) = blocking(move || {
        let origin = store.entry(&id).ok().flatten().map(|e| e.origin);
        let mut digests = AuditDigests::new(&nonce, &[me]);
        let read = store.stream(&id, |piece| digests.update(piece));
        (origin, read.map(|held| held.then(|| digests.finish()[0])))
    })
    .await;
    let lost = match read {
        Ok(Some(digest)) => return Response::Audited { digest },
        Ok(None) => origin,
        Err(e @ Error::Integrity { .. }) => {
            net.stats.verification_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("a local blob failed verification when audited: {e}");
            origin
        }
        Err(e) => return Response::Error { message: e.to_string() },
    };
    // Indexed, and now gone: fetch it again.
    if let Some(origin) = lost {
        let net = net.clone();
        tokio::spawn(async move { net.restore(id, origin).await });
    }
    Response::NotFound
}

/// Verifies, then stores, a replica a peer sends.
async fn store_blob(net: &Arc<Network>, from: NodeId, id: crate::format::BlobId, data: bytes::Bytes) -> Response {
    if let Some(delay) = net.config.faults.delay_stored_blobs {
        tokio::time::sleep(delay).await;
    }
    let len = data.len() as u64;
    let store = net.store.clone();
    if !store.has(&id) && !store.has_room_for(len) {
        return Response::Refused { full: true, reason: "node is at its capacity limit".into() };
    }
    let result = blocking(move || {
        let blob = VerifiedBlob::check(id, data.into())?;
        store.put_from(&blob, Origin::Replica)
    })
    .await;
    match result {
        Ok(_) => {
            net.stats.bytes_received.fetch_add(len, Ordering::Relaxed);
            net.note_traffic(from, |t| t.received_bytes += len);
            Response::Stored
        }
        Err(e @ Error::Integrity { .. }) => {
            net.stats.verification_failures.fetch_add(1, Ordering::Relaxed);
            net.note_traffic(from, |t| t.errors += 1);
            net.warnings
                .bad_blobs_stored
                .warn(|| tracing::warn!(peer = %from, "refused a blob that fails verification: {e}"));
            Response::Refused { full: false, reason: e.to_string() }
        }
        Err(e @ Error::StorageFull { .. }) => Response::Refused { full: true, reason: e.to_string() },
        Err(e) => Response::Refused { full: false, reason: e.to_string() },
    }
}
