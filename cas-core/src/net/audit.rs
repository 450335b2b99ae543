//! Possession audits: a challenge only a blob's bytes can answer, so that
//! repair counts a holder by what it holds, not by what it says.
//!
//! The auditor, which holds the blob, sends `Audit { id, nonce }` with a
//! fresh random nonce; the holder answers `Audited { digest }` with
//! SHA-256(`"cas-audit-v1"` ‖ 0x00 ‖ its own node id ‖ nonce ‖ the blob's
//! bytes as stored), reading its copy, or `NotFound`. The auditor computes
//! the same from its own copy. The fresh nonce means no answer can be
//! computed ahead of time and kept instead of the blob; the holder's id in
//! it means a holder cannot pass the question on to an honest holder and
//! relay its answer (that answer names the honest holder). A holder can
//! still fetch the blob from another to answer: it then moves the blob's
//! bytes for every audit, which costs it what keeping them would save.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::frame::{Request, Response};
use super::Network;
use crate::error::Error;
use crate::format::BlobId;
use crate::identity::NodeId;

/// What an audit digest starts with.
pub const AUDIT_CONTEXT: &[u8] = b"cas-audit-v1\0";

/// The audit digest of `blob` (its bytes as stored) for the holder
/// `answerer` and the challenge `nonce`.
pub fn digest(answerer: &NodeId, nonce: &[u8; 32], blob: &[u8]) -> [u8; 32] {
    let mut d = AuditDigests::new(nonce, std::slice::from_ref(answerer));
    d.update(blob);
    d.finish().pop().expect("one answerer")
}

/// The audit digests of one blob for several answerers and one nonce,
/// computed in one pass over its bytes, a piece at a time.
pub struct AuditDigests {
    answers: Vec<Sha256>,
}

impl AuditDigests {
    pub fn new(nonce: &[u8; 32], answerers: &[NodeId]) -> AuditDigests {
        let answers = answerers
            .iter()
            .map(|a| {
                let mut h = Sha256::new();
                h.update(AUDIT_CONTEXT);
                h.update(a.0);
                h.update(nonce);
                h
            })
            .collect();
        AuditDigests { answers }
    }

    /// The next bytes of the blob.
    pub fn update(&mut self, piece: &[u8]) {
        for h in &mut self.answers {
            h.update(piece);
        }
    }

    /// One digest per answerer, in the order given.
    pub fn finish(self) -> Vec<[u8; 32]> {
        self.answers.into_iter().map(|h| h.finalize().into()).collect()
    }
}

/// How a holder met an audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuditOutcome {
    /// It answered with the expected digest.
    Passed,
    /// It answered another digest, said it lacks the blob, or let the
    /// request time out: why.
    Failed(String),
    /// No answer for another reason (the connection failed): neither
    /// passed nor failed.
    Unanswered,
}

impl Network {
    /// Audits `peer`'s copy of blob `id` with `nonce`; `expected` is the
    /// digest this node computed from its own copy. A peer that fails
    /// is counted and asked last by fetches (like one that served a bad
    /// blob), and repair passes over it, for the liar penalty.
    pub(crate) async fn audit(
        self: &Arc<Self>,
        peer: NodeId,
        id: BlobId,
        nonce: [u8; 32],
        expected: [u8; 32],
    ) -> AuditOutcome {
        let outcome = match self.request(peer, || Request::Audit { id, nonce }).await {
            Ok(Response::Audited { digest }) if digest == expected => AuditOutcome::Passed,
            Ok(Response::Audited { .. }) => AuditOutcome::Failed("answered a wrong digest".into()),
            Ok(Response::NotFound) => AuditOutcome::Failed("said it lacks it".into()),
            Ok(other) => AuditOutcome::Failed(format!("answered {other:?}")),
            Err(Error::Timeout(_)) => AuditOutcome::Failed("did not answer in time".into()),
            Err(_) => AuditOutcome::Unanswered,
        };
        match &outcome {
            AuditOutcome::Passed => {
                self.stats.audits.fetch_add(1, Ordering::Relaxed);
            }
            AuditOutcome::Failed(why) => {
                self.stats.audits.fetch_add(1, Ordering::Relaxed);
                self.stats.audits_failed.fetch_add(1, Ordering::Relaxed);
                self.note_liar(peer, &format!("failed a possession audit of blob {id}: {why}"));
            }
            AuditOutcome::Unanswered => {}
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_context_answerer_nonce_and_bytes() {
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        let (nonce, blob) = ([7u8; 32], b"the blob's bytes".to_vec());
        let mut by_hand = Sha256::new();
        by_hand.update(b"cas-audit-v1\0");
        by_hand.update([1u8; 32]);
        by_hand.update([7u8; 32]);
        by_hand.update(&blob);
        let by_hand: [u8; 32] = by_hand.finalize().into();
        assert_eq!(digest(&a, &nonce, &blob), by_hand);
        assert_ne!(digest(&b, &nonce, &blob), by_hand, "another holder's answer differs");
        assert_ne!(digest(&a, &[8; 32], &blob), by_hand, "another nonce's answer differs");
        assert_ne!(digest(&a, &nonce, b"the blob's bytez"), by_hand, "other bytes' answer differs");
    }

    #[test]
    fn digests_in_pieces_for_many_answerers_are_the_one_shot_digests() {
        let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let answerers = [NodeId([1; 32]), NodeId([2; 32]), NodeId([3; 32])];
        let nonce = [9u8; 32];
        for piece in [1, 4096, 65_536, blob.len()] {
            let mut d = AuditDigests::new(&nonce, &answerers);
            for p in blob.chunks(piece) {
                d.update(p);
            }
            let got = d.finish();
            let want: Vec<[u8; 32]> = answerers.iter().map(|a| digest(a, &nonce, &blob)).collect();
            assert_eq!(got, want, "pieces of {piece} bytes");
        }
    }
}
