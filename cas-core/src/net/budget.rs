//! One bound on the memory peers can make this node hold, over all its
//! connections (`Config::memory_budget`). Per-connection limits alone let
//! many connections add up: 1,024 inbound seats of two unread 16 MiB
//! answers each are 32 GiB.
//!
//! The budget is two pools of half each:
//!
//! - incoming: frames larger than [`SMALL_FRAME`] while they are gathered
//!   (their declared length, taken before more of them is read), and the
//!   bodies of requests while they are served;
//! - answers: blobs loaded for a peer and not yet written to it.
//!
//! A source (an IPv4 address, an IPv6 /64: identities are free, addresses
//! are not) holds at most a share of each pool, so that one host cannot
//! take all of it. A connection over its share, or meeting a full pool,
//! waits: its reader stops reading (TCP slows the sender down), its answer
//! waits to be loaded. If it waits for the idle timeout, the connection is
//! closed (counted, and logged at a bounded rate).
//!
//! Why two pools. A reader may wait for the incoming pool only because
//! whoever holds it lets go whatever the peers of this node do not do: a
//! frame being gathered is released when its last byte arrives or its
//! connection closes (at the latest after the idle timeout), a request
//! body once its handler has done its local work (storing a blob, merging
//! gossip), before the answer is queued. Answers are held until a peer
//! reads them, and that peer may itself be waiting to read until it can
//! send to us: were answers and incoming frames one pool, two busy nodes
//! could each wait for the other to read. An answer waits for the answers
//! pool in its handler, never in a reader.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::admission::Prefix;
use super::frame::MAX_FRAME_LEN;
use super::log_limit::LogLimit;

/// Frames up to this size are gathered without waiting for the budget:
/// what a connection holds of them is part of its fixed cost (its read
/// buffer), which the number of connections bounds.
pub(crate) const SMALL_FRAME: usize = 64 * 1024;
/// The smallest budget (67,125,312 bytes): each pool must hold two frames
/// of the largest size, so that one source at its share (at least one such frame) leaves
/// room for another's.
pub const MIN_MEMORY_BUDGET: usize = 4 * MAX_FRAME_LEN;
/// A source may hold this fraction of a pool (or one frame of the largest
/// size, if that is more).
const SHARE_DIVISOR: usize = 4;

/// Where a connection comes from, for its share: its IPv4 address, or its
/// IPv6 /64 (one host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(Prefix);

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Source {
        Source(Prefix::of(ip, 32, 64))
    }
}

/// Which pool a reservation is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    /// Frames being gathered, request bodies being served.
    Incoming,
    /// Answers loaded and not yet written.
    Answers,
}

/// The node's budget.
pub(crate) struct MemoryBudget {
    incoming: Bytes,
    answers: Bytes,
    /// Connections closed after waiting for the budget for the idle timeout.
    closed: AtomicU64,
    /// Waits for a full share or pool, logged at a bounded rate.
    waits: LogLimit,
}

/// One pool: its bytes, and each source's share of them.
struct Bytes {
    size: usize,
    share: usize,
    free: Arc<Semaphore>,
    shares: Arc<Mutex<HashMap<Source, Arc<Semaphore>>>>,
}

/// Bytes taken from the budget, given back on drop.
pub(crate) struct Held {
    // Fields drop in order: the permits before the share they came from.
    _free: OwnedSemaphorePermit,
    _share: OwnedSemaphorePermit,
    _entry: ShareEntry,
}

/// A source's entry in a pool's shares, removed when its last user leaves
/// (as the permits of a share hold its semaphore, nobody holds or waits
/// for any of it then).
struct ShareEntry {
    source: Source,
    share: Arc<Semaphore>,
    shares: Arc<Mutex<HashMap<Source, Arc<Semaphore>>>>,
}

impl Drop for ShareEntry {
    fn drop(&mut self) {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        // Entries are cloned under this lock, and permits only while one
        // lives: two are the map's and ours.
        if Arc::strong_count(&self.share) == 2 && shares.get(&self.source).is_some_and(|s| Arc::ptr_eq(s, &self.share))
        {
            shares.remove(&self.source);
        }
    }
}

impl Bytes {
    fn new(size: usize) -> Bytes {
        Bytes {
            size,
            share: (size / SHARE_DIVISOR).max(MAX_FRAME_LEN).min(size),
            free: Arc::new(Semaphore::new(size)),
            shares: Arc::default(),
        }
    }

    fn entry(&self, source: Source) -> ShareEntry {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        let share = shares.entry(source).or_insert_with(|| Arc::new(Semaphore::new(self.share))).clone();
        ShareEntry { source, share, shares: self.shares.clone() }
    }

    fn held(&self) -> usize {
        self.size - self.free.available_permits()
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (at least [`MIN_MEMORY_BUDGET`], which
    /// `Config::validate` checks).
    pub(crate) fn new(bytes: usize) -> MemoryBudget {
        let bytes = bytes.max(MIN_MEMORY_BUDGET);
        MemoryBudget {
            incoming: Bytes::new(bytes / 2),
            answers: Bytes::new(bytes - bytes / 2),
            closed: AtomicU64::new(0),
            waits: LogLimit::new("waits for the memory budget", 1, Duration::from_secs(10)),
        }
    }

    fn pool(&self, pool: Pool) -> &Bytes {
        match pool {
            Pool::Incoming => &self.incoming,
            Pool::Answers => &self.answers,
        }
    }

    /// Takes `len` bytes of `pool` for a connection from `source`, waiting
    /// while the source's share or the pool is full (the caller bounds the
    /// wait). `len` is at most a frame of the largest size.
    pub(crate) async fn reserve(&self, pool: Pool, source: Source, len: usize) -> Held {
        let bytes = self.pool(pool);
        let n = len.min(bytes.share) as u32;
        let entry = bytes.entry(source);
        let share = match entry.share.clone().try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(_) => {
                self.note_wait(pool, "the share of one source", bytes.share);
                entry.share.clone().acquire_many_owned(n).await.expect("the semaphore is never closed")
            }
        };
        let free = match bytes.free.clone().try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(_) => {
                self.note_wait(pool, "the pool", bytes.size);
                bytes.free.clone().acquire_many_owned(n).await.expect("the semaphore is never closed")
            }
        };
        Held { _free: free, _share: share, _entry: entry }
    }

    fn note_wait(&self, pool: Pool, what: &str, size: usize) {
        self.waits.warn(|| {
            tracing::warn!(
                "a connection waits for memory: {what} ({size} bytes) of the {pool:?} pool is full \
                 ({} of the {}-byte budget held); the peer is slowed down",
                self.held(),
                self.incoming.size + self.answers.size
            )
        });
    }

    /// Counts a connection closed for waiting too long for the budget.
    pub(crate) fn note_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes held now, of both pools.
    pub(crate) fn held(&self) -> u64 {
        (self.incoming.held() + self.answers.held()) as u64
    }

    /// Connections closed for waiting too long for the budget.
    pub(crate) fn connections_closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Says how many waits of an ended window were not logged (for a
    /// periodic summary when no new wait comes to carry it).
    pub(crate) fn log_skipped(&self) {
        self.waits.report_skipped();
    }

    #[cfg(test)]
    fn sources(&self, pool: Pool) -> usize {
        self.pool(pool).shares.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn source(last: u8) -> Source {
        Source::of(IpAddr::from([192, 0, 2, last]))
    }

    /// Whether `wait` is still waiting after every other task had its turn.
    async fn pending<F: std::future::Future>(wait: F) -> Option<F::Output> {
        let wait = std::pin::pin!(wait);
        tokio::select! {
            biased;
            out = wait => Some(out),
            _ = async { for _ in 0..10 { tokio::task::yield_now().await } } => None,
        }
    }

    #[tokio::test]
    async fn a_source_over_its_share_waits_while_others_are_served() {
        let budget = MemoryBudget::new(256 * MIB);
        // Pools of 128 MiB; a source may hold a quarter, 32 MiB.
        let a: Vec<Held> =
            futures::future::join_all((0..2).map(|_| budget.reserve(Pool::Incoming, source(1), 16 * MIB))).await;
        assert_eq!(budget.held(), 32 * MIB as u64);
        assert!(pending(budget.reserve(Pool::Incoming, source(1), 1)).await.is_none(), "over its share");
        let b = pending(budget.reserve(Pool::Incoming, source(2), 16 * MIB)).await.expect("another source is served");
        // The answers pool is apart: the same source may still be answered.
        let answer = pending(budget.reserve(Pool::Answers, source(1), 16 * MIB)).await.expect("answers pool");
        assert_eq!(budget.held(), 64 * MIB as u64);
        drop(a);
        let again = pending(budget.reserve(Pool::Incoming, source(1), 32 * MIB)).await;
        assert!(again.is_some(), "its share is free again");
        drop((b, answer, again));
        assert_eq!(budget.held(), 0);
        assert_eq!((budget.sources(Pool::Incoming), budget.sources(Pool::Answers)), (0, 0), "no entry left behind");
    }

    #[tokio::test]
    async fn the_pool_bounds_every_source_together() {
        let budget = MemoryBudget::new(MIN_MEMORY_BUDGET);
        let pool = MIN_MEMORY_BUDGET / 2;
        // Each source's share is one frame of the largest size: two fill the pool.
        let held: Vec<Held> =
            futures::future::join_all((1..=2).map(|i| budget.reserve(Pool::Incoming, source(i), MAX_FRAME_LEN))).await;
        assert_eq!(budget.held(), pool as u64);
        let third = budget.reserve(Pool::Incoming, source(3), MAX_FRAME_LEN);
        tokio::pin!(third);
        assert!(pending(&mut third).await.is_none(), "the pool is full");
        drop(held);
        assert!(pending(&mut third).await.is_some(), "served once others let go");
        assert!(budget.held() <= MIN_MEMORY_BUDGET as u64);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_nothing_held() {
        let budget = MemoryBudget::new(MIN_MEMORY_BUDGET);
        let first = budget.reserve(Pool::Answers, source(1), MAX_FRAME_LEN).await;
        assert!(pending(budget.reserve(Pool::Answers, source(1), MAX_FRAME_LEN)).await.is_none());
        drop(first);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.sources(Pool::Answers), 0);
        budget.note_closed();
        assert_eq!(budget.connections_closed(), 1);
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        assert_ne!(source(1), source(2));
        let v6 = |s: &str| Source::of(s.parse::<IpAddr>().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("::ffff:192.0.2.1"), source(1));
    }
}
