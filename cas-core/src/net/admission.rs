//! Who may hold a place on this node's listener. Two rooms: connections
//! still in their handshake (anyone can open those), and handshaken inbound
//! connections (any member, or a member's throwaway identities, can open
//! those). Each room is shared fairly by source: at most so many seats per
//! address and per prefix (IPv4 /24, IPv6 /64), so that one host or one
//! network cannot take the room of others. A full room does not refuse the
//! newcomer: the oldest seat of the source over its share (or, when every
//! source is within its share, of the source holding the most seats) is
//! given up. A flood from a few addresses thus churns its own connections,
//! and a member connecting from elsewhere always gets in.
//!
//! Besides, a connection must send its first handshake message (a fixed
//! 58 bytes) within `first_message_timeout` of being accepted, or its seat
//! is taken back: idle sockets cannot hold a seat for the whole handshake
//! timeout. The sizes and shares of the rooms are settings
//! ([`crate::config::Limits`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::Limits;

/// The seats of one room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomLimits {
    pub total: usize,
    pub per_address: usize,
    pub per_prefix: usize,
}

impl RoomLimits {
    /// The two rooms' seats as the node's settings give them (handshaking, inbound).
    pub(crate) fn of(limits: &Limits) -> (RoomLimits, RoomLimits) {
        (
            RoomLimits {
                total: limits.max_handshaking,
                per_address: limits.max_handshaking_per_address,
                per_prefix: limits.max_handshaking_per_prefix,
            },
            RoomLimits {
                total: limits.max_inbound,
                per_address: limits.max_inbound_per_address,
                per_prefix: limits.max_inbound_per_prefix,
            },
        )
    }
}

/// The fairness domain of an address wider than itself: its IPv4 /24 or
/// IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Prefix(u8, u128);

impl Prefix {
    pub(crate) fn of(ip: IpAddr, v4_bits: u32, v6_bits: u32) -> Prefix {
        match ip {
            IpAddr::V4(v4) => Prefix(4, (u32::from(v4) & mask32(v4_bits)) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Prefix::of(IpAddr::V4(v4), v4_bits, v6_bits),
                None => Prefix(6, u128::from(v6) & mask128(v6_bits)),
            },
        }
    }
}

fn mask32(bits: u32) -> u32 {
    u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0)
}

fn mask128(bits: u32) -> u128 {
    u128::MAX.checked_shl(128 - bits.min(128)).unwrap_or(0)
}

struct Seat {
    ip: IpAddr,
    prefix: Prefix,
    /// Cancelled when the seat is given up to a newcomer.
    evict: CancellationToken,
}

struct Room {
    limits: RoomLimits,
    /// By arrival: the first is the oldest.
    seats: BTreeMap<u64, Seat>,
    per_ip: HashMap<IpAddr, usize>,
    per_prefix: HashMap<Prefix, usize>,
}

impl Room {
    fn new(limits: RoomLimits) -> Room {
        Room { limits, seats: BTreeMap::new(), per_ip: HashMap::new(), per_prefix: HashMap::new() }
    }

    /// Seats `seq`, giving up another seat first if the room or the
    /// newcomer's source is full. Returns how many seats were given up.
    fn seat(&mut self, seq: u64, ip: IpAddr, evict: CancellationToken) -> usize {
        let prefix = Prefix::of(ip, 24, 64);
        let oldest = if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_address {
            self.oldest(|s| s.ip == ip)
        } else if self.per_prefix.get(&prefix).copied().unwrap_or(0) >= self.limits.per_prefix {
            self.oldest(|s| s.prefix == prefix)
        } else if self.seats.len() >= self.limits.total {
            let heaviest = self.per_prefix.iter().max_by_key(|(_, n)| **n).map(|(p, _)| *p);
            heaviest.and_then(|h| self.oldest(|s| s.prefix == h))
        } else {
            None
        };
        let given_up = match oldest {
            Some(victim) => {
                self.leave(victim);
                1
            }
            None => 0,
        };
        *self.per_ip.entry(ip).or_default() += 1;
        *self.per_prefix.entry(prefix).or_default() += 1;
        self.seats.insert(seq, Seat { ip, prefix, evict });
        given_up
    }

    fn oldest(&self, pick: impl Fn(&Seat) -> bool) -> Option<u64> {
        self.seats.iter().find(|(_, s)| pick(s)).map(|(seq, _)| *seq)
    }

    fn leave(&mut self, seq: u64) {
        let Some(seat) = self.seats.remove(&seq) else { return };
        seat.evict.cancel();
        decrement(&mut self.per_ip, seat.ip);
        decrement(&mut self.per_prefix, seat.prefix);
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Handshaking,
    Inbound,
}

struct Rooms {
    next: u64,
    handshaking: Room,
    inbound: Room,
    /// Seats given up to newcomers since start.
    given_up: u64,
}

impl Rooms {
    fn room(&mut self, which: Which) -> &mut Room {
        match which {
            Which::Handshaking => &mut self.handshaking,
            Which::Inbound => &mut self.inbound,
        }
    }
}

/// The listener's rooms.
#[derive(Clone)]
pub(crate) struct Admission(Arc<Mutex<Rooms>>);

/// A seat, given back on drop. [`Ticket::evicted`] resolves when the seat
/// was given up to a newcomer: its connection must then close.
pub(crate) struct Ticket {
    admission: Admission,
    which: Which,
    seq: u64,
    evict: CancellationToken,
}

impl Ticket {
    pub(crate) async fn evicted(&self) {
        self.evict.cancelled().await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().room(self.which).leave(self.seq);
    }
}

impl Admission {
    /// The rooms of a listener with the node's limits.
    pub(crate) fn new(limits: &Limits) -> Admission {
        let (handshaking, inbound) = RoomLimits::of(limits);
        Admission::with_limits(handshaking, inbound)
    }

    pub(crate) fn with_limits(handshaking: RoomLimits, inbound: RoomLimits) -> Admission {
        Admission(Arc::new(Mutex::new(Rooms {
            next: 0,
            handshaking: Room::new(handshaking),
            inbound: Room::new(inbound),
            given_up: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, which: Which, ip: IpAddr) -> Ticket {
        let evict = CancellationToken::new();
        let mut rooms = self.lock();
        rooms.next += 1;
        let seq = rooms.next;
        let given_up = rooms.room(which).seat(seq, ip, evict.clone());
        rooms.given_up += given_up as u64;
        Ticket { admission: self.clone(), which, seq, evict }
    }

    /// A seat for a connection just accepted from `ip`, until its handshake ends.
    pub(crate) fn handshake(&self, ip: IpAddr) -> Ticket {
        self.enter(Which::Handshaking, ip)
    }

    /// A seat for a handshaken inbound connection from `ip`, while it lives.
    pub(crate) fn inbound(&self, ip: IpAddr) -> Ticket {
        self.enter(Which::Inbound, ip)
    }

    /// Seats given up to newcomers since start.
    pub(crate) fn given_up(&self) -> u64 {
        self.lock().given_up
    }

    /// Seats taken in each room (handshaking, inbound).
    #[cfg(test)]
    fn occupancy(&self) -> (usize, usize) {
        let rooms = self.lock();
        (rooms.handshaking.seats.len(), rooms.inbound.seats.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::from([a, b, c, d])
    }

    const SMALL: RoomLimits = RoomLimits { total: 8, per_address: 2, per_prefix: 4 };

    #[test]
    fn prefixes_are_24_and_64_bits_and_mapped_v4_is_v4() {
        assert_eq!(Prefix::of(ip(10, 1, 2, 3), 24, 64), Prefix::of(ip(10, 1, 2, 250), 24, 64));
        assert_ne!(Prefix::of(ip(10, 1, 2, 3), 24, 64), Prefix::of(ip(10, 1, 3, 3), 24, 64));
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Prefix::of(a, 24, 64), Prefix::of(b, 24, 64));
        assert_ne!(Prefix::of(a, 24, 64), Prefix::of(c, 24, 64));
        assert_eq!(Prefix::of(a, 24, 48), Prefix::of(c, 24, 48));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(Prefix::of(mapped, 24, 64), Prefix::of(ip(10, 1, 2, 9), 24, 64));
    }

    #[test]
    fn a_source_over_its_share_gives_up_its_own_oldest_seat() {
        let a = Admission::with_limits(SMALL, SMALL);
        let first = a.handshake(ip(10, 0, 0, 1));
        let second = a.handshake(ip(10, 0, 0, 1));
        let other = a.handshake(ip(10, 0, 1, 1));
        let third = a.handshake(ip(10, 0, 0, 1));
        assert!(first.evict.is_cancelled(), "the address's oldest made room");
        assert!(!second.evict.is_cancelled() && !third.evict.is_cancelled() && !other.evict.is_cancelled());
        assert_eq!(a.occupancy().0, 3);
        assert_eq!(a.given_up(), 1);
        drop(first);
        assert_eq!(a.occupancy().0, 3, "a seat given up is not given back twice");
    }

    #[test]
    fn a_prefix_over_its_share_gives_up_its_oldest_seat() {
        let a = Admission::with_limits(SMALL, SMALL);
        let seats: Vec<Ticket> = (1..=4).map(|d| a.handshake(ip(10, 0, 0, d))).collect();
        let newcomer = a.handshake(ip(10, 0, 0, 5));
        assert!(seats[0].evict.is_cancelled());
        assert!(seats[1..].iter().all(|s| !s.evict.is_cancelled()) && !newcomer.evict.is_cancelled());
    }

    #[test]
    fn a_full_room_takes_from_the_heaviest_source_never_refuses() {
        let a = Admission::with_limits(SMALL, SMALL);
        // A flood of 4 seats from one /24 (two per address), then others.
        let flood: Vec<Ticket> =
            (1..=2).flat_map(|d| [a.handshake(ip(10, 9, 9, d)), a.handshake(ip(10, 9, 9, d))]).collect();
        let members: Vec<Ticket> = (1..=4).map(|c| a.handshake(ip(10, 0, c, 1))).collect();
        assert_eq!(a.occupancy().0, 8);
        let late = a.handshake(ip(10, 0, 7, 1));
        assert!(flood[0].evict.is_cancelled(), "the heaviest prefix's oldest seat went");
        assert!(members.iter().all(|m| !m.evict.is_cancelled()) && !late.evict.is_cancelled());
        assert_eq!(a.occupancy().0, 8);
        // The rooms are apart: a handshake seat does not count as inbound.
        let _inbound = a.inbound(ip(10, 9, 9, 1));
        assert_eq!(a.occupancy(), (8, 1));
    }
}
