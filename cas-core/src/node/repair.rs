//! Background repair, a policy of the node (the network only moves bytes).
//!
//! A blob's ideal holders are the first `replicas + 1` alive nodes in
//! rendezvous order over failure domains (`placement::diverse_order`: one
//! node per IP address, new prefixes first, as put places copies), this
//! node included; only nodes reached at the address they advertise count.
//! So one party with many identities on one address is at most one ideal
//! holder, and its claims to hold a blob cannot stop the others from
//! getting copies. Checking a blob means asking its
//! ideal holders which of them lack it, then:
//! - an ideal holder gives a copy to each other ideal holder that lacks it;
//! - a holder outside the ideal set (the owner of a file, a node that
//!   fetched it, a node that took a place that has since been given back)
//!   does the same, but only when no ideal holder has a copy: otherwise
//!   that holder repairs, and the blob is not sent twice.
//!
//! A claim to hold a blob counts only once proven by a possession audit
//! (`audits.rs`): a holder that fails one is left out of every ideal set
//! for a while, with the other identities at its address, and the blob is
//! checked again without it.
//!
//! So a blob whose surviving copies all sit outside its ideal set is still
//! brought back to `replicas + 1` copies on alive nodes, and since only ideal
//! holders are ever given copies, repair cannot multiply copies.
//!
//! A node that refuses a copy for lack of space is remembered as full for
//! [`FULL_ROUNDS`] repair intervals: meanwhile it is an ideal holder of a
//! blob only if it holds it, and the next node in rank takes its place
//! (as a put passes over a full node). The blobs a refusal left short are
//! checked again at once, so a full node never keeps a blob below
//! `replicas + 1` copies while other nodes have room.
//!
//! A round checks only what may have changed, so that its cost follows the
//! changes, not the size of the store. The blob index keeps, for each blob,
//! the ideal holders its last check confirmed ([`Placement`]). A round checks:
//! 1. the blobs a check could not confirm (a holder did not answer, a copy
//!    failed);
//! 2. the blobs stored since the last round (the index's log);
//! 3. when the set of alive nodes changed: the blobs whose confirmed holders
//!    include a node no longer alive, or that a node which joined now ranks
//!    into (a walk over the index, hashing, without network; a joined node
//!    that ranks lower but brings a new prefix may also enter an ideal set:
//!    such a blob keeps its copies meanwhile, and the sweep moves it);
//! 4. a small sweep of [`SWEEP`] confirmed blobs, in turn, so that a copy a
//!    peer lost without any sign (a deleted file) is found in time.
//!
//! With no change, a round is step 4 alone. Rounds run every repair
//! interval, and also as soon as the set of alive nodes changes (looked at
//! every second): after a partition heals, the copies each side made
//! alone reach the other side within seconds.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::audits::{self, without_liars, Proven, AUDIT_BUDGET};
use crate::blocking::blocking;
use crate::format::BlobId;
use crate::identity::NodeId;
use crate::net::audit::AuditOutcome;
use crate::net::frame::MAX_HAS_BATCH;
use crate::net::placement::{diverse_order, score};
use crate::net::{Network, NotStored};
use crate::store::{BlobStore, Placement};

/// Blobs checked together (bounds a round's memory, whatever the store's size).
const BATCH: usize = 4096;
/// Confirmed blobs re-checked per round, in turn (the sweep).
pub const SWEEP: usize = 256;
/// Repair intervals for which a node that refused a copy for lack of space
/// is passed over (then it is offered copies again, in case it has room).
pub(crate) const FULL_ROUNDS: u32 = 4;

/// How often the repair loop looks for a change of the alive nodes, which
/// starts a round at once (besides the rounds every repair interval).
const CHANGE_LOOK: Duration = Duration::from_secs(1);

/// What one repair round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RepairReport {
    /// Blobs whose ideal holders were asked about them.
    pub checked: u64,
    /// Copies given to ideal holders that lacked them.
    pub copied: u64,
    /// Blobs left to check again next round (a holder did not answer, a
    /// copy failed, an audit did not fit the round's budget).
    pub unconfirmed: u64,
    /// Possession audits of holders answered (or timed out), copies' included.
    pub audited: u64,
    /// Of those, the failed ones.
    pub audits_failed: u64,
}

impl RepairReport {
    fn add(&mut self, other: RepairReport) {
        self.checked += other.checked;
        self.copied += other.copied;
        self.unconfirmed += other.unconfirmed;
        self.audited += other.audited;
        self.audits_failed += other.audits_failed;
    }
}

/// What repair works with: the network to move bytes, the local store, and
/// the placement setting. (Not the `Node`: a task holding the node would
/// keep it from ever being dropped.)
pub(crate) struct Repair {
    pub(super) net: Arc<Network>,
    pub(super) store: BlobStore,
    replicas: usize,
    /// Rounds run one at a time (the background loop, `Node::repair_round`).
    state: tokio::sync::Mutex<State>,
    /// Nodes that refused a copy for lack of space, and until when they
    /// are passed over.
    full: Mutex<HashMap<NodeId, Instant>>,
    /// How long a full node is passed over.
    full_for: Duration,
    /// Copies refused for lack of space since start.
    pub(crate) refused_full: AtomicU64,
    /// Bytes the current round may still audit (`audits.rs`).
    pub(super) audit_budget: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The alive nodes (this one included) the last completed round saw;
    /// `None` before the first.
    alive: Option<HashSet<NodeId>>,
    /// Where the sweep goes on.
    sweep_after: Option<BlobId>,
}

/// What checking a batch found.
#[derive(Default)]
struct Outcome {
    placed: Vec<(BlobId, Placement)>,
    unplaced: Vec<BlobId>,
    /// Blobs a node refused for lack of space, or a holder failed an audit
    /// of: to check again, passing it over.
    refused: Vec<BlobId>,
    report: RepairReport,
}

impl Repair {
    pub(crate) fn new(net: Arc<Network>, store: BlobStore, replicas: usize, interval: Duration) -> Repair {
        Repair {
            net,
            store,
            replicas,
            state: Default::default(),
            full: Default::default(),
            full_for: interval * FULL_ROUNDS,
            refused_full: AtomicU64::new(0),
            audit_budget: AtomicU64::new(AUDIT_BUDGET),
        }
    }

    /// The nodes passed over now for lack of space (forgetting those whose time is up).
    pub(crate) fn full_nodes(&self) -> HashSet<NodeId> {
        let mut full = self.full.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        full.retain(|_, until| *until > now);
        full.keys().copied().collect()
    }

    /// `peer` refused a copy for lack of space.
    fn note_full(&self, peer: NodeId) {
        self.refused_full.fetch_add(1, Ordering::Relaxed);
        let mut full = self.full.lock().unwrap_or_else(|e| e.into_inner());
        full.insert(peer, Instant::now() + self.full_for);
    }

    /// Repairs every `interval`, from `settle` after start: a node that has
    /// just started knows only some of the alive nodes, and would take
    /// others for the ideal holders. `settle` is the time after which the
    /// membership view is informed (dead_after: the silence that decides
    /// absence).
    pub(crate) async fn run(self: Arc<Self>, interval: Duration, settle: Duration, cancel: CancellationToken) {
        let first = tokio::time::Instant::now() + settle.max(interval);
        let mut tick = tokio::time::interval_at(first, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut look = tokio::time::interval_at(first, CHANGE_LOOK.min(interval));
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // A healed partition, a node that died or joined: the
                // copies it changes are made now, not a repair interval later.
                _ = look.tick() => if !self.alive_changed() { continue },
                _ = cancel.cancelled() => break,
            }
            let report = self.round(&cancel).await;
            if report.copied > 0 {
                tracing::info!(copied = report.copied, checked = report.checked, "repair round restored replicas");
            }
        }
    }

    /// Whether the alive nodes differ from those the last round saw (false
    /// before the first round, or while one runs).
    fn alive_changed(&self) -> bool {
        let Ok(state) = self.state.try_lock() else { return false };
        let mut alive: HashSet<NodeId> = self.net.placement_targets().into_iter().map(|(id, _)| id).collect();
        alive.insert(self.net.me());
        state.alive.as_ref().is_some_and(|before| *before != alive)
    }

    /// One round (see the module's documentation).
    pub(crate) async fn round(&self, cancel: &CancellationToken) -> RepairReport {
        let mut state = self.state.lock().await;
        let me = self.net.me();
        // The nodes copies may go to (reached at the address they advertise),
        // with their addresses, for the failure-domain rule of placement.
        let mut targets = self.net.placement_targets();
        if targets.is_empty() {
            // Alone (cut off): once others are alive again, every blob may
            // have an ideal holder among them.
            state.alive = Some(HashSet::from([me]));
            return RepairReport::default();
        }
        targets.push((me, self.net.advertised()));
        let alive: Vec<NodeId> = targets.iter().map(|(id, _)| *id).collect();
        let alive_set: HashSet<NodeId> = alive.iter().copied().collect();
        let mut report = RepairReport::default();
        self.audit_budget.store(AUDIT_BUDGET, Ordering::Relaxed);

        // 1. What earlier checks could not confirm (first: what this round
        // leaves unconfirmed waits for the next one).
        let mut after = None;
        loop {
            let Some(ids) = self.with_store(move |s| s.index().unplaced_page(after, BATCH)).await else {
                return report;
            };
            let Some(&last) = ids.last() else { break };
            after = Some(last);
            if !self.check_and_record(ids, &targets, None, &Proven::Nothing, cancel, &mut report).await {
                return report;
            }
        }

        // 2. What arrived since the last round, in log order.
        let Some(mut cursor) = self.with_store(|s| s.index().repair_cursor()).await else { return report };
        loop {
            let Some(page) = self.with_store(move |s| s.index().log_since(cursor, BATCH)).await else { return report };
            let Some(&(last, _)) = page.last() else { break };
            let ids = page.into_iter().map(|(_, id)| id).collect();
            if !self.check_and_record(ids, &targets, Some(last), &Proven::Nothing, cancel, &mut report).await {
                return report;
            }
            cursor = last;
        }

        // 3. A membership change: the blobs whose ideal holders it changes.
        if state.alive.as_ref() != Some(&alive_set) {
            let joined: Vec<NodeId> = match &state.alive {
                Some(before) => alive_set.difference(before).copied().collect(),
                None => alive.clone(),
            };
            let full = self.replicas + 1;
            let mut after = None;
            loop {
                let Some(page) = self.with_store(move |s| s.index().placed_page(after, BATCH)).await else {
                    return report;
                };
                let Some((last, _)) = page.last() else { break };
                after = Some(*last);
                let affected: Vec<BlobId> = page
                    .into_iter()
                    .filter(|(id, p)| {
                        let holders: Vec<NodeId> = p.holders.iter().map(|h| NodeId(*h)).collect();
                        holders.iter().any(|h| !alive_set.contains(h))
                            || joined
                                .iter()
                                .any(|j| !holders.contains(j) && (holders.len() < full || score(id, j) > p.min_score))
                    })
                    .map(|(id, _)| id)
                    .collect();
                if !affected.is_empty()
                    && !self.check_and_record(affected, &targets, None, &Proven::Nothing, cancel, &mut report).await
                {
                    return report;
                }
            }
            state.alive = Some(alive_set);
        }

        // 4. The sweep: the next SWEEP confirmed blobs, going round the index.
        let sweep_after = state.sweep_after;
        let Some(page) = self
            .with_store(move |s| {
                let mut page = s.index().placed_page(sweep_after, SWEEP)?;
                if page.len() < SWEEP && sweep_after.is_some() {
                    // From the start again, up to where this sweep began.
                    let wrapped = s.index().placed_page(None, SWEEP - page.len())?;
                    page.extend(wrapped.into_iter().take_while(|(id, _)| Some(*id) <= sweep_after));
                }
                Ok(page)
            })
            .await
        else {
            return report;
        };
        state.sweep_after = page.last().map(|(id, _)| *id);
        let ids = page.iter().map(|(id, _)| *id).collect();
        let proven = Proven::Confirmed(page.into_iter().map(|(id, p)| (id, p.holders)).collect());
        self.check_and_record(ids, &targets, None, &proven, cancel, &mut report).await;
        report
    }

    /// Runs `f` on the store on the blocking pool; `None` (logged) on error.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&BlobStore) -> crate::error::Result<T> + Send + 'static,
    ) -> Option<T> {
        let store = self.store.clone();
        match blocking(move || f(&store)).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("repair: {e}");
                None
            }
        }
    }

    /// Checks `ids` and records the outcome in the index, with `cursor`
    /// (the log position these ids reach) if given; `proven`: the claims
    /// taken as proven (`audits.rs`).
    /// False when cancelled or the index cannot be written.
    async fn check_and_record(
        &self,
        ids: Vec<BlobId>,
        alive: &[(NodeId, SocketAddr)],
        cursor: Option<u64>,
        proven: &Proven,
        cancel: &CancellationToken,
        report: &mut RepairReport,
    ) -> bool {
        let (mut ids, mut placed, mut unplaced) = (ids, Vec::new(), Vec::new());
        // A pass leaves blobs to check again only when it learned of a full
        // node or a liar, which the next passes over: as many passes as
        // nodes, at most.
        for _ in 0..=alive.len() {
            let Some(outcome) = self.check(ids, alive, proven, cancel).await else { return false };
            report.add(outcome.report);
            placed.extend(outcome.placed);
            unplaced.extend(outcome.unplaced);
            ids = outcome.refused;
            if ids.is_empty() {
                break;
            }
        }
        unplaced.extend(ids);
        self.with_store(move |s| s.index().record_repair(&placed, &unplaced, cursor)).await.is_some()
    }

    /// Asks each blob's ideal holders whether they hold it, audits the
    /// claims it relies on, and gives copies as the module's documentation
    /// says. `None` if cancelled.
    async fn check(
        &self,
        ids: Vec<BlobId>,
        alive: &[(NodeId, SocketAddr)],
        proven: &Proven,
        cancel: &CancellationToken,
    ) -> Option<Outcome> {
        let me = self.net.me();
        let full = self.full_nodes();
        let diversity = self.net.placement_diversity();
        let (honest, liars_at) = without_liars(alive, &self.net.recent_liars(), self.net.advertised());
        let k = (self.replicas + 1).min(honest.len());
        let mut outcome = Outcome::default();

        // Each blob's candidates (the first k in rank that are not full,
        // and the full ones ranked among them, which may hold it), and what
        // to ask each of them.
        let mut candidates: HashMap<BlobId, Vec<NodeId>> = HashMap::new();
        let mut to_ask: HashMap<NodeId, Vec<BlobId>> = HashMap::new();
        for id in ids {
            // Rendezvous rank over failure domains, as put places copies:
            // many identities on one address count as one holder.
            let everyone = diverse_order(&id, honest.clone(), &liars_at, diversity);
            let chosen = with_room(&everyone, k, |n| *n != me && full.contains(n));
            for peer in &chosen {
                if *peer != me {
                    to_ask.entry(*peer).or_default().push(id);
                }
            }
            candidates.insert(id, chosen);
        }
        outcome.report.checked = candidates.len() as u64;

        // Who claims what. A peer that does not answer is neither a holder
        // nor given a copy: its blobs stay unconfirmed.
        let mut holds: HashSet<(BlobId, NodeId)> = HashSet::new();
        let mut unanswered: HashSet<(BlobId, NodeId)> = HashSet::new();
        for (peer, ids) in to_ask {
            for batch in ids.chunks(MAX_HAS_BATCH) {
                if cancel.is_cancelled() {
                    return None;
                }
                let Some(present) = self.net.has_blobs(peer, batch.to_vec()).await else {
                    unanswered.extend(batch.iter().map(|id| (*id, peer)));
                    continue;
                };
                holds.extend(batch.iter().zip(present).filter(|(_, has)| *has).map(|(id, _)| (*id, peer)));
            }
        }

        // The ideal holders: the first k candidates, passing over a full
        // node that does not hold the blob; and the claims to prove.
        let mut ideals: Vec<(BlobId, Vec<NodeId>)> = Vec::new();
        let mut wanted = Vec::new();
        let mut unconfirmed: HashSet<BlobId> = HashSet::new();
        for (id, chosen) in candidates {
            let has = |n: &NodeId| *n == me || holds.contains(&(id, *n));
            let passed_over = |n: &NodeId| full.contains(n) && !has(n);
            let ideal: Vec<NodeId> = chosen.iter().filter(|n| !passed_over(n)).take(k).copied().collect();
            if ideal.iter().any(|n| unanswered.contains(&(id, *n))) {
                unconfirmed.insert(id);
            }
            let nothing_to_give = ideal.iter().all(|n| has(n) || unanswered.contains(&(id, *n)));
            wanted.extend(audits::wanted(me, id, &ideal, has, nothing_to_give, |p| proven.covers(&id, p)));
            ideals.push((id, ideal));
        }
        if cancel.is_cancelled() {
            return None;
        }
        let findings = self.audit(wanted).await;
        outcome.report.audited += findings.made;
        outcome.report.audits_failed += findings.failures;
        unconfirmed.extend(&findings.unsure);
        // A blob with a holder that failed is checked again without it.
        let mut refused: HashSet<BlobId> = findings.failed;

        let mut placements: HashMap<BlobId, Placement> = HashMap::new();
        let mut lacking: HashMap<BlobId, Vec<NodeId>> = HashMap::new();
        for (id, ideal) in ideals {
            if refused.contains(&id) {
                continue;
            }
            let has = |n: &NodeId| *n == me || holds.contains(&(id, *n));
            let me_ideal = ideal.contains(&me);
            let held_by_ideal = ideal.iter().any(|n| *n != me && has(n));
            // Unless an ideal holder has it and repairs it.
            if me_ideal || !held_by_ideal {
                let lack: Vec<NodeId> =
                    ideal.iter().filter(|n| !has(n) && !unanswered.contains(&(id, **n))).copied().collect();
                if !lack.is_empty() {
                    lacking.insert(id, lack);
                }
            }
            if let Some(last) = ideal.last() {
                let holders = ideal.iter().map(|n| n.0).collect();
                placements.insert(id, Placement { min_score: score(&id, last), holders });
            }
        }

        for (id, peers) in lacking {
            if cancel.is_cancelled() {
                return None;
            }
            let store = self.store.clone();
            let blob = match blocking(move || store.get(&id)).await {
                Ok(Some(blob)) => blob,
                Ok(None) => continue, // no longer stored here: nothing to give, nothing to record
                Err(_) => {
                    unconfirmed.insert(id); // quarantined or unreadable here
                    continue;
                }
            };
            let data: bytes::Bytes = blob.into_bytes().into();
            for peer in peers {
                if self.full_nodes().contains(&peer) {
                    refused.insert(id); // found full since this check began
                    continue;
                }
                match self.net.store_on(peer, id, data.clone()).await {
                    Ok(()) => {
                        self.net.stats.repaired.fetch_add(1, Ordering::Relaxed);
                        outcome.report.copied += 1;
                        // A peer may acknowledge a copy and drop it.
                        match self.audit_copy(id, peer, data.clone()).await {
                            AuditOutcome::Passed => outcome.report.audited += 1,
                            AuditOutcome::Failed(_) => {
                                outcome.report.audited += 1;
                                outcome.report.audits_failed += 1;
                                refused.insert(id);
                            }
                            AuditOutcome::Unanswered => {
                                unconfirmed.insert(id);
                            }
                        }
                    }
                    Err(NotStored { full: true, reason }) => {
                        tracing::debug!(%peer, blob = %id, "repair: {reason}; passing it over");
                        self.note_full(peer);
                        refused.insert(id);
                    }
                    Err(_) => {
                        unconfirmed.insert(id);
                    }
                }
            }
        }

        for id in &refused {
            if !placements.contains_key(id) {
                outcome.refused.push(*id);
            }
        }
        for (id, placement) in placements {
            if refused.contains(&id) {
                outcome.refused.push(id);
            } else if unconfirmed.contains(&id) {
                outcome.unplaced.push(id);
            } else {
                outcome.placed.push((id, placement));
            }
        }
        outcome.report.unconfirmed = outcome.unplaced.len() as u64;
        Some(outcome)
    }
}

/// The nodes of `ranked` up to the `k`th one not `passed_over`, in order:
/// those `k` and the passed-over ones ranked among them.
fn with_room(ranked: &[NodeId], k: usize, passed_over: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut taken = 0;
    for n in ranked {
        if taken == k {
            break;
        }
        if !passed_over(n) {
            taken += 1;
        }
        out.push(*n);
    }
    out
}
