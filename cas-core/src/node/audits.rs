//! Repair's possession audits (the challenge is `net/audit.rs`): which
//! claims a check relies on are audited, within a byte budget per round.
//!
//! A check asks a blob's ideal holders which hold it. A claim repair relies
//! on is proven by an audit before it counts:
//! - an ideal holder audits the next ideal holder after it (in rank,
//!   going round) that claims the blob, so that together the ideal holders
//!   audit every claim, each once;
//! - a holder outside the ideal set, which leaves the blob to an ideal
//!   holder that claims it, first audits the best-ranked such claimer.
//!
//! Where a check would otherwise do nothing for the blob (every ideal holder
//! claims it, or this node leaves it to one), the audit is always made,
//! unless the sweep re-checks a claim the blob's last check confirmed; that
//! one, and the audit of a blob short of copies (which it gets anyway), is
//! made for one blob in [`AUDIT_SAMPLE`], at random. A copy repair gives is
//! audited at once (the peer may acknowledge it and drop it).
//!
//! Each audit reads the blob on both sides, so a round audits at most
//! [`AUDIT_BUDGET`] bytes of blobs (copies' audits count but always run): a
//! blob whose audit is due and does not fit is left unconfirmed, for the
//! next round. A holder that fails an audit (a wrong digest, says it lacks
//! the blob, lets the request time out) is a liar for 10 minutes: asked
//! last by fetches, and left out of every blob's ideal holders, with every
//! other identity at its address; the blob is checked again at once without
//! it, and so gets a real copy on the next node in rank.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use futures::stream::StreamExt;

use super::repair::Repair;
use crate::blocking::blocking;
use crate::format::BlobId;
use crate::identity::NodeId;
use crate::net::audit::{AuditDigests, AuditOutcome};
use crate::net::placement::address_domain;

/// Bytes of blobs a repair round audits at most (each read once by the
/// audited peer, and once by this node for the expected answer).
pub const AUDIT_BUDGET: u64 = 256 << 20;
/// One in this many of the blobs whose audit is not due is audited anyway.
pub const AUDIT_SAMPLE: u32 = 16;
/// Audits in flight at once.
const AUDITS_IN_FLIGHT: usize = 4;

/// An audit a check wants: of `peer`'s copy of `blob`; `due` when the check
/// must not go on without it.
pub(crate) struct Wanted {
    pub blob: BlobId,
    pub peer: NodeId,
    pub due: bool,
}

/// One planned audit.
enum Audit {
    Made(AuditOutcome),
    /// Not made: the peer lied since (it fails as if made).
    Liar,
    /// Not made: this node's copy is gone, or corrupt (then quarantined).
    NotMade,
}

/// What the audits of a check found, by blob.
#[derive(Default)]
pub(crate) struct Findings {
    /// A holder failed: check the blob again, without it.
    pub failed: HashSet<BlobId>,
    /// Not proven (no answer, over the budget, this node's copy gone): unconfirmed.
    pub unsure: HashSet<BlobId>,
    /// Audits answered, and of those the failed ones.
    pub made: u64,
    pub failures: u64,
}

/// The audit a check of a blob relies on, if any (see the module's
/// documentation): `ideal` are its ideal holders in rank order, `claims`
/// says which hold it (this node always does), `nothing_to_give` whether
/// every ideal holder has it (or did not answer), and `proven` whose claim
/// an earlier check of this blob proved (none, for a blob that may have
/// changed).
pub(crate) fn wanted(
    me: NodeId,
    blob: BlobId,
    ideal: &[NodeId],
    claims: impl Fn(&NodeId) -> bool,
    nothing_to_give: bool,
    proven: impl Fn(&NodeId) -> bool,
) -> Option<Wanted> {
    let (peer, relied_on) = match ideal.iter().position(|n| *n == me) {
        Some(at) => (*ideal[at + 1..].iter().chain(&ideal[..at]).find(|n| claims(n))?, nothing_to_give),
        None => (*ideal.iter().find(|n| claims(n))?, true),
    };
    let due = relied_on && !proven(&peer);
    (due || rand::random_ratio(1, AUDIT_SAMPLE)).then_some(Wanted { blob, peer, due })
}

/// The claims a check takes as proven.
pub(crate) enum Proven {
    /// None: the blobs may have changed.
    Nothing,
    /// Those of the ideal holders each blob's last check confirmed (the sweep's).
    Confirmed(HashMap<BlobId, Vec<[u8; 32]>>),
}

impl Proven {
    pub(crate) fn covers(&self, blob: &BlobId, peer: &NodeId) -> bool {
        match self {
            Proven::Nothing => false,
            Proven::Confirmed(holders) => holders.get(blob).is_some_and(|h| h.contains(&peer.0)),
        }
    }
}

/// The nodes of `alive` that have not lied lately, and the addresses of
/// those that have (but this node's own address): every identity at the
/// address of a liar is left out of ideal holders while it is one.
pub(crate) fn without_liars(
    alive: &[(NodeId, SocketAddr)],
    liars: &HashSet<NodeId>,
    me: SocketAddr,
) -> (Vec<(NodeId, SocketAddr)>, Vec<SocketAddr>) {
    let (lied, honest): (Vec<_>, Vec<_>) = alive.iter().copied().partition(|(n, _)| liars.contains(n));
    let mine = address_domain(me);
    (honest, lied.into_iter().map(|(_, a)| a).filter(|a| address_domain(*a) != mine).collect())
}

impl Repair {
    /// Makes the audits `wanted`, within what is left of the round's budget.
    pub(crate) async fn audit(&self, wanted: Vec<Wanted>) -> Findings {
        let mut findings = Findings::default();
        let store = self.store.clone();
        let ids: Vec<BlobId> = wanted.iter().map(|w| w.blob).collect();
        let lengths = blocking(move || ids.iter().map(|id| store.len_of(id)).collect::<Vec<_>>()).await;
        let mut go = Vec::new();
        for (w, len) in wanted.into_iter().zip(lengths) {
            let Some(len) = len else {
                findings.unsure.insert(w.blob); // no longer here
                continue;
            };
            let fits = self
                .audit_budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(len))
                .is_ok();
            if fits {
                go.push(w);
            } else if w.due {
                findings.unsure.insert(w.blob);
            }
        }
        let outcomes: Vec<(BlobId, Audit)> = futures::stream::iter(go)
            .map(|w| async move { (w.blob, self.audit_one(w.blob, w.peer).await) })
            .buffer_unordered(AUDITS_IN_FLIGHT)
            .collect()
            .await;
        for (blob, outcome) in outcomes {
            match outcome {
                Audit::Made(AuditOutcome::Passed) => findings.made += 1,
                Audit::Made(AuditOutcome::Failed(_)) => {
                    findings.made += 1;
                    findings.failures += 1;
                    findings.failed.insert(blob);
                }
                Audit::Liar => {
                    findings.failed.insert(blob);
                }
                Audit::Made(AuditOutcome::Unanswered) | Audit::NotMade => {
                    findings.unsure.insert(blob);
                }
            }
        }
        findings
    }

    /// Audits `peer`'s copy of `blob` against this node's, read in pieces.
    async fn audit_one(&self, blob: BlobId, peer: NodeId) -> Audit {
        // Failed since this check planned it (a peer that does not answer
        // would otherwise cost a timeout per blob).
        if self.net.recently_lied(&peer) {
            return Audit::Liar;
        }
        let nonce: [u8; 32] = rand::random();
        let store = self.store.clone();
        let expected = blocking(move || {
            let mut digests = AuditDigests::new(&nonce, &[peer]);
            store.stream(&blob, |piece| digests.update(piece)).map(|held| held.then(|| digests.finish()[0]))
        })
        .await;
        match expected {
            Ok(Some(expected)) => Audit::Made(self.net.audit(peer, blob, nonce, expected).await),
            Ok(None) => Audit::NotMade,
            Err(e) => {
                tracing::warn!(%blob, "repair: cannot audit with this node's copy: {e}");
                Audit::NotMade
            }
        }
    }

    /// Audits the copy of `blob` (`data`) just given to `peer`, from `data`.
    pub(crate) async fn audit_copy(&self, blob: BlobId, peer: NodeId, data: bytes::Bytes) -> AuditOutcome {
        let nonce: [u8; 32] = rand::random();
        let len = data.len() as u64;
        let expected = blocking(move || crate::net::audit::digest(&peer, &nonce, &data)).await;
        let _ =
            self.audit_budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| Some(left.saturating_sub(len)));
        self.net.audit(peer, blob, nonce, expected).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    #[test]
    fn an_ideal_holder_audits_the_next_claimer_going_round() {
        let ideal = [n(1), n(2), n(3), n(4)];
        let all = |_: &NodeId| true;
        let audited = |me: u8, claims: &dyn Fn(&NodeId) -> bool| {
            wanted(n(me), BlobId([0; 32]), &ideal, claims, true, |_| false).map(|w| (w.peer, w.due))
        };
        assert_eq!(audited(1, &all), Some((n(2), true)));
        assert_eq!(audited(4, &all), Some((n(1), true)), "the last audits the first");
        let not_3 = |x: &NodeId| *x != n(3);
        assert_eq!(audited(2, &not_3), Some((n(4), true)), "a holder that lacks it is passed");
        // Outside the ideal set: the best-ranked claimer.
        assert_eq!(audited(9, &not_3), Some((n(1), true)));
        let none = |_: &NodeId| false;
        assert_eq!(audited(1, &none), None, "no claim, nothing to audit");
    }

    #[test]
    fn audits_not_due_are_a_sample() {
        let ideal = [n(1), n(2), n(3)];
        let sampled =
            (0..16_000).filter(|_| wanted(n(1), BlobId([0; 32]), &ideal, |_| true, true, |_| true).is_some()).count();
        assert!((500..1500).contains(&sampled), "about 1 in {AUDIT_SAMPLE}: {sampled} of 16,000");
        let proven = Proven::Confirmed([(BlobId([0; 32]), vec![n(2).0])].into());
        let unproven =
            wanted(n(1), BlobId([0; 32]), &[n(1), n(3)], |_| true, true, |p| proven.covers(&BlobId([0; 32]), p));
        assert!(unproven.is_some_and(|w| w.due), "a claim the last check did not prove is audited");
        let short = wanted(n(1), BlobId([0; 32]), &ideal, |_| true, false, |_| false);
        assert!(short.is_none_or(|w| !w.due), "a blob that gets copies anyway is sampled");
    }

    #[test]
    fn liars_and_their_addresses_are_left_out() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let alive = vec![
            (n(1), at("192.0.2.1:7000")),
            (n(2), at("198.51.100.9:7000")),
            (n(3), at("198.51.100.9:7001")),
            (n(4), at("203.0.113.5:7000")),
        ];
        let liars: HashSet<NodeId> = [n(2), n(4)].into();
        let (honest, taken) = without_liars(&alive, &liars, at("203.0.113.5:7000"));
        assert_eq!(honest.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [n(1), n(3)]);
        assert_eq!(taken, [at("198.51.100.9:7000")], "never this node's own address");
    }
}
