//! Node configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{valid_chunk_size, DEFAULT_CHUNK_SIZE, TAG_LEN};
pub use crate::net::budget::MIN_MEMORY_BUDGET;

/// Everything a node needs to start. Build it with [`Config::new`] and set
/// the public fields; [`Config::validate`] runs at start. Its `Debug`
/// output leaves out the values of `network_key` and `secret`.
#[derive(Clone)]
pub struct Config {
    /// Where blobs, the secret, the node id and the lock live.
    pub data_dir: PathBuf,
    /// Address to listen on for peers (`"127.0.0.1:0"` picks a free port);
    /// `None` runs the node without networking, as an embedded store.
    pub listen: Option<String>,
    /// The address peers should dial (`HOST:PORT`; port 0 means the bound
    /// port). Needed when `listen` binds every interface (`0.0.0.0`); by
    /// default the bound address is advertised.
    pub advertise: Option<String>,
    /// Addresses of nodes to join through.
    pub bootstrap: Vec<String>,
    /// The 32-byte key of the network: only nodes holding it can connect.
    /// `None` reads `<data_dir>/network_key`, which the first node of a
    /// network (no `bootstrap`) creates; a node with `bootstrap` and no key
    /// fails to start.
    pub network_key: Option<[u8; 32]>,
    /// Copies of each blob to place on other nodes (besides the local one).
    pub replicas: usize,
    /// Put fails if any blob reaches fewer peer copies than this.
    pub min_replicas: usize,
    /// Chunk size for new files: a power of two from 64 KiB to 16 MiB.
    pub chunk_size: u32,
    /// Most bytes of blobs this node stores; `None` for no limit but the disk.
    pub capacity: Option<u64>,
    /// fsync every blob and file written (on by default; off trades
    /// durability across power loss for speed).
    pub fsync: bool,
    /// Convergence secret for this run instead of `<data_dir>/secret`.
    pub secret: Option<[u8; 32]>,
    /// Keep blobs fetched from peers in the local store.
    pub keep_fetched: bool,
    /// Bound on chunk bytes held in flight by one put or get.
    pub max_inflight_bytes: usize,
    /// Chunks processed in parallel by one put or get (0: twice the cores;
    /// for a put with `fsync` on, 8 times the cores).
    pub parallelism: usize,
    /// How often gossip runs.
    pub gossip_interval: Duration,
    /// How long one request to a peer may take.
    pub request_timeout: Duration,
    /// A connection on which no complete frame has arrived for this long is
    /// closed (the bytes of a frame that never completes do not count), and
    /// so is one whose peer leaves this node's answers unread this long.
    /// Gossip keeps most connections between live nodes busy; one that goes
    /// quiet is closed like any other and dialed again by the next request
    /// (a request that meets a connection as it closes is retried once on a
    /// new one). Keep it above `request_timeout`: a peer slow to answer is
    /// silent meanwhile.
    pub idle_timeout: Duration,
    /// The largest file [`crate::Node::get_bytes`] (or one
    /// [`crate::FileReader::read_range`] or
    /// [`crate::FileReader::read_to_end`]) returns in memory: a larger one
    /// fails with [`crate::Error::InvalidArgument`] before any chunk is
    /// fetched, whatever size its manifest claims. `get_file` and `open`
    /// stream files of any size.
    pub max_get_bytes: u64,
    /// Most bytes peers can make this node hold, over all its connections
    /// together (default 256 MiB): large frames while they arrive, request
    /// bodies while they are served (half of it), and answers loaded and
    /// not yet written (the other half). One source address (an IPv6 /64)
    /// holds at most a quarter of each half, or one frame of the largest
    /// size if that is more; a peer over its share, or meeting a full
    /// budget, is slowed down (the node stops reading from it), and closed
    /// after `idle_timeout`. At least [`MIN_MEMORY_BUDGET`] (67,125,312
    /// bytes, just over 64 MiB): each half must hold two frames of the
    /// largest size, so that one source at its share leaves room for
    /// another's largest frame.
    pub memory_budget: usize,
    /// A peer silent (heartbeat not advancing) this long is suspect.
    pub suspect_after: Duration,
    /// ... this long is dead: out of placement.
    pub dead_after: Duration,
    /// ... this long is forgotten.
    pub forget_after: Duration,
    /// How often a node checks that the blobs it holds have `replicas + 1`
    /// copies on alive nodes, and copies them where missing.
    pub repair_interval: Duration,
    /// Bytes per second of stored blobs re-read and verified in the
    /// background, from one `repair_interval` after start (a corrupt one is
    /// quarantined and fetched again from a peer); 0 turns scrubbing off.
    pub scrub_rate: u64,
    /// How copies of a blob spread over failure domains (see
    /// [`PlacementDiversity`]); default `Prefix`.
    pub placement_diversity: PlacementDiversity,
    /// What outsiders and peers can take of this node: the listener's
    /// seats, and how misbehaving peers are struck and penalised (see
    /// [`Limits`] and SECURITY.md).
    pub limits: Limits,
    /// Fault injection for tests; all off by default.
    #[doc(hidden)]
    pub faults: Faults,
}

/// How the copies of a blob spread over the nodes' addresses. One IP
/// address is one failure domain (and, for a node behind NAT, one
/// household): one party with many node identities on one address gets
/// one copy. Loopback addresses count by port, so that the nodes of one
/// machine still make a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlacementDiversity {
    /// At most one copy per address, and copies on distinct prefixes
    /// (IPv4 /24, IPv6 /48) first: a prefix is shared only when there are
    /// not enough of them.
    #[default]
    Prefix,
    /// At most one copy per address.
    Address,
    /// Rendezvous rank alone (any number of copies on one address).
    None,
}

impl PlacementDiversity {
    /// The setting's name, as the CLI and the bindings spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementDiversity::Prefix => "prefix",
            PlacementDiversity::Address => "address",
            PlacementDiversity::None => "none",
        }
    }
}

impl std::str::FromStr for PlacementDiversity {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<PlacementDiversity> {
        match s {
            "prefix" => Ok(PlacementDiversity::Prefix),
            "address" => Ok(PlacementDiversity::Address),
            "none" => Ok(PlacementDiversity::None),
            other => Err(crate::Error::InvalidArgument(format!(
                "placement_diversity {other:?}: expected prefix, address or none"
            ))),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys end up in logs when printed: say only whether one is set.
        let hidden = |k: &Option<[u8; 32]>| if k.is_some() { "Some(<hidden>)" } else { "None" };
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("bootstrap", &self.bootstrap)
            .field("network_key", &format_args!("{}", hidden(&self.network_key)))
            .field("replicas", &self.replicas)
            .field("min_replicas", &self.min_replicas)
            .field("chunk_size", &self.chunk_size)
            .field("capacity", &self.capacity)
            .field("fsync", &self.fsync)
            .field("secret", &format_args!("{}", hidden(&self.secret)))
            .field("keep_fetched", &self.keep_fetched)
            .field("max_inflight_bytes", &self.max_inflight_bytes)
            .field("parallelism", &self.parallelism)
            .field("gossip_interval", &self.gossip_interval)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_get_bytes", &self.max_get_bytes)
            .field("memory_budget", &self.memory_budget)
            .field("suspect_after", &self.suspect_after)
            .field("dead_after", &self.dead_after)
            .field("forget_after", &self.forget_after)
            .field("repair_interval", &self.repair_interval)
            .field("scrub_rate", &self.scrub_rate)
            .field("placement_diversity", &self.placement_diversity)
            .field("limits", &self.limits)
            .field("faults", &self.faults)
            .finish()
    }
}

/// 1 MiB/s: a store of 100 GB is verified about once a day, at a cost a
/// disk does not notice.
pub const DEFAULT_SCRUB_RATE: u64 = 1 << 20;

/// Bounds on what outsiders and peers can take of a node (SECURITY.md has
/// what each defends against). The listener has two rooms, each shared
/// fairly by source: connections in their handshake (anyone can open
/// those) and handshaken inbound connections (any member can, under
/// throwaway identities). A full room, or a source over its share, gives
/// up its oldest seat to a newcomer rather than refusing it. A prefix is
/// an IPv4 /24 or IPv6 /64. Within a room, the share of an address may
/// not exceed that of a prefix, nor that of a prefix the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections in their handshake at once (default 256).
    pub max_handshaking: usize,
    /// ... of them from one IP address (default 16).
    pub max_handshaking_per_address: usize,
    /// ... of them from one prefix (default 64).
    pub max_handshaking_per_prefix: usize,
    /// How long an accepted connection may take to send its first
    /// handshake message, a fixed 58 bytes (default 1 s): an idle socket
    /// holds a seat no longer. At most `handshake_timeout`.
    pub first_message_timeout: Duration,
    /// How long a whole handshake may take, either way (default 5 s).
    pub handshake_timeout: Duration,
    /// Handshaken inbound connections at once (default 1,024).
    pub max_inbound: usize,
    /// ... of them from one IP address (default 256: a machine running
    /// many nodes, or a NAT with many members behind it, may take a quarter).
    pub max_inbound_per_address: usize,
    /// ... of them from one prefix (default 512).
    pub max_inbound_per_prefix: usize,
    /// Gossip messages with a bad signature a peer may send before its
    /// connection is closed (default 2: one may be an honest bug).
    pub bad_gossip_strikes: u32,
    /// How long a peer that served a blob failing verification is asked
    /// last by fetches (default 10 minutes).
    pub liar_penalty: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_handshaking: 256,
            max_handshaking_per_address: 16,
            max_handshaking_per_prefix: 64,
            first_message_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            max_inbound: 1024,
            max_inbound_per_address: 256,
            max_inbound_per_prefix: 512,
            bad_gossip_strikes: 2,
            liar_penalty: Duration::from_secs(600),
        }
    }
}

impl Limits {
    /// Checks every limit and how they fit together, naming the settings.
    pub fn validate(&self) -> Result<()> {
        for room in [
            [
                ("max_handshaking_per_address", self.max_handshaking_per_address),
                ("max_handshaking_per_prefix", self.max_handshaking_per_prefix),
                ("max_handshaking", self.max_handshaking),
            ],
            [
                ("max_inbound_per_address", self.max_inbound_per_address),
                ("max_inbound_per_prefix", self.max_inbound_per_prefix),
                ("max_inbound", self.max_inbound),
            ],
        ] {
            for (name, value) in room {
                check::positive(name, value as u64)?;
            }
            for pair in room.windows(2) {
                let ((smaller, s), (larger, l)) = (pair[0], pair[1]);
                if s > l {
                    return Err(Error::InvalidArgument(format!("{smaller} ({s}) cannot exceed {larger} ({l})")));
                }
            }
        }
        check::positive("bad_gossip_strikes", self.bad_gossip_strikes.into())?;
        for (name, value) in [
            ("first_message_timeout", self.first_message_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("liar_penalty", self.liar_penalty),
        ] {
            check::duration(name, value)?;
        }
        if self.first_message_timeout > self.handshake_timeout {
            return Err(Error::InvalidArgument(format!(
                "first_message_timeout ({:?}) cannot exceed handshake_timeout ({:?})",
                self.first_message_timeout, self.handshake_timeout
            )));
        }
        Ok(())
    }
}

/// Deliberate misbehaviour, for tests of the other nodes' defences.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Flip a bit of every blob served to peers.
    pub corrupt_served_blobs: bool,
    /// Wait this long before serving a blob to a peer.
    pub delay_served_blobs: Option<Duration>,
    /// Wait this long before storing a blob a peer sends.
    pub delay_stored_blobs: Option<Duration>,
    /// Hold every get between its last byte and its commit (see
    /// `Node::get_file_cancellable`): the get creates `<dir>/paused` and
    /// waits for `<dir>/release`.
    pub pause_before_commit: Option<PathBuf>,
    /// Bench only: no encryption after the handshake, on connections whose
    /// other side sets this too (the handshake still checks the network key
    /// and identities).
    pub plaintext_transport: bool,
    /// This node's wall clock runs this many milliseconds ahead (negative:
    /// behind): tests of clock skew with many nodes in one process.
    pub clock_offset_ms: i64,
}

impl Config {
    /// Defaults for a node stored in `data_dir`, without networking.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen: None,
            advertise: None,
            bootstrap: Vec::new(),
            network_key: None,
            replicas: 3,
            min_replicas: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            capacity: None,
            fsync: true,
            secret: None,
            keep_fetched: true,
            max_inflight_bytes: 64 * 1024 * 1024,
            parallelism: 0,
            gossip_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_get_bytes: 1 << 30,
            memory_budget: 256 << 20,
            suspect_after: Duration::from_secs(5),
            dead_after: Duration::from_secs(10),
            forget_after: Duration::from_secs(120),
            repair_interval: Duration::from_secs(30),
            scrub_rate: DEFAULT_SCRUB_RATE,
            placement_diversity: PlacementDiversity::Prefix,
            limits: Limits::default(),
            faults: Faults::default(),
        }
    }

    /// Checks every value, with a message naming the bad one (and saying
    /// what it is). Runs at start, before anything touches the disk or the
    /// network; the C setters run the same per-value checks ([`check`]).
    pub fn validate(&self) -> Result<()> {
        check::data_dir(&self.data_dir)?;
        if let Some(listen) = &self.listen {
            check::address("listen", listen, true)?;
        }
        if let Some(advertise) = &self.advertise {
            check::address("advertise", advertise, true)?;
        }
        for bootstrap in &self.bootstrap {
            check::address("bootstrap", bootstrap, false)?;
        }
        check::chunk_size(self.chunk_size)?;
        check::parallelism(self.parallelism)?;
        check::positive("max_inflight_bytes", self.max_inflight_bytes as u64)?;
        check::positive("max_get_bytes", self.max_get_bytes)?;
        check::memory_budget(self.memory_budget as u64)?;
        if self.min_replicas > self.replicas {
            return Err(Error::InvalidArgument(format!(
                "min_replicas ({}) cannot exceed replicas ({})",
                self.min_replicas, self.replicas
            )));
        }
        if self.max_inflight_bytes < self.chunk_size as usize + TAG_LEN {
            return Err(Error::InvalidArgument(format!(
                "max_inflight_bytes ({}) must hold at least one chunk ({} bytes)",
                self.max_inflight_bytes,
                self.chunk_size as usize + TAG_LEN
            )));
        }
        for (name, value) in [
            ("gossip_interval", self.gossip_interval),
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("repair_interval", self.repair_interval),
            ("suspect_after", self.suspect_after),
            ("dead_after", self.dead_after),
            ("forget_after", self.forget_after),
        ] {
            check::duration(name, value)?;
        }
        if !(self.suspect_after <= self.dead_after && self.dead_after <= self.forget_after) {
            return Err(Error::InvalidArgument(format!(
                "expected suspect_after ({:?}) <= dead_after ({:?}) <= forget_after ({:?})",
                self.suspect_after, self.dead_after, self.forget_after
            )));
        }
        self.limits.validate()
    }

    /// How many chunks of `chunk_size` one pipeline keeps in flight.
    pub(crate) fn window(&self, chunk_size: u32) -> usize {
        self.window_of(chunk_size, 2)
    }

    /// How many chunks one put keeps in flight: with fsync on, each blob
    /// write waits for the disk, so a put keeps 8 chunks per core in flight
    /// by default, not 2 (on 2 cores, 16 against 4 made a 1 GiB put with
    /// fsync on about 1.38 times as fast), within `max_inflight_bytes`.
    pub(crate) fn put_window(&self, chunk_size: u32) -> usize {
        self.window_of(chunk_size, if self.fsync { 8 } else { 2 })
    }

    fn window_of(&self, chunk_size: u32, per_core: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let wanted = if self.parallelism == 0 { per_core * cores } else { self.parallelism };
        let fits = self.max_inflight_bytes / (chunk_size as usize + TAG_LEN);
        wanted.min(fits).max(1)
    }
}

/// Checks of single values, shared by [`Config::validate`] and the
/// bindings' setters (which refuse a bad value when it is set).
pub mod check {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::path::Path;
    use std::time::Duration;

    use super::{valid_chunk_size, MIN_MEMORY_BUDGET};
    use crate::error::{Error, Result};

    /// The longest duration a setting takes (a year): longer ones overflow
    /// the timers' arithmetic and are typos anyway.
    pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

    /// A data directory: any path but the empty one (which would put the
    /// node's files in the working directory).
    pub fn data_dir(path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() {
            return Err(Error::InvalidArgument(
                "data_dir is empty: give the directory the node keeps its files in".into(),
            ));
        }
        Ok(())
    }

    /// A `HOST:PORT` address: an IPv4 address, a bracketed IPv6 address or
    /// a host name, and a port from 0 (only where `port_zero` allows it:
    /// "pick a free one") to 65535. Host names are not resolved here.
    pub fn address(setting: &str, addr: &str, port_zero: bool) -> Result<()> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "{setting} address {addr:?} {why} (expected HOST:PORT, e.g. 127.0.0.1:7000 or node1.example:7000)"
            ))
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("has no valid port (0 to 65535)"))?;
        if port == 0 && !port_zero {
            return Err(bad("has port 0, which no node listens on"));
        }
        let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
            None => host.parse::<Ipv4Addr>().is_ok() || is_host_name(host),
        };
        if !host_ok {
            return Err(bad(if host.is_empty() { "has no host" } else { "has no valid host" }));
        }
        Ok(())
    }

    /// A DNS name as RFC 1123 allows: dot-separated labels of letters,
    /// digits and inner hyphens, 1 to 63 characters each, 253 in all.
    fn is_host_name(host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
            // All digits would be a mistyped IPv4 address, not a name.
            && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    }

    /// A chunk size: a power of two from 64 KiB to 16 MiB.
    pub fn chunk_size(size: u32) -> Result<()> {
        if !valid_chunk_size(size) {
            return Err(Error::InvalidArgument(format!(
                "chunk_size {size} must be a power of two from 65536 (64 KiB) to 16777216 (16 MiB)"
            )));
        }
        Ok(())
    }

    /// An interval or timeout: above zero, at most [`MAX_DURATION`].
    pub fn duration(setting: &str, value: Duration) -> Result<()> {
        if value < Duration::from_millis(1) || value > MAX_DURATION {
            return Err(Error::InvalidArgument(format!(
                "{setting} {} ms is out of range: from 1 ms to {} ms (a year)",
                value.as_millis(),
                MAX_DURATION.as_millis()
            )));
        }
        Ok(())
    }

    /// The most chunks one put or get may process at once.
    pub const MAX_PARALLELISM: usize = 1024;

    /// Chunks in parallel: 0 (twice the cores) to [`MAX_PARALLELISM`].
    pub fn parallelism(value: usize) -> Result<()> {
        if value > MAX_PARALLELISM {
            return Err(Error::InvalidArgument(format!(
                "parallelism {value} is out of range: 0 (twice the cores) to {MAX_PARALLELISM}"
            )));
        }
        Ok(())
    }

    /// A memory budget: at least [`MIN_MEMORY_BUDGET`].
    pub fn memory_budget(bytes: u64) -> Result<()> {
        if bytes < MIN_MEMORY_BUDGET as u64 || usize::try_from(bytes).is_err() {
            return Err(Error::InvalidArgument(format!(
                "memory_budget {bytes} is too small: at least {MIN_MEMORY_BUDGET} bytes (just over 64 MiB: \
                 room for four frames of the largest size)"
            )));
        }
        Ok(())
    }

    /// A count or size that must be above zero.
    pub fn positive(setting: &str, value: u64) -> Result<()> {
        if value == 0 {
            return Err(Error::InvalidArgument(format!("{setting} 0 is out of range: it must be at least 1")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_host_names_allowed() {
        for good in ["127.0.0.1:0", "0.0.0.0:7000", "[::1]:7000", "localhost:7000", "node1.example:7000"] {
            check::address("listen", good, true).unwrap();
        }
        check::address("bootstrap", "node1.example:7000", false).unwrap();
        for bad in ["", "garbage", "127.0.0.1", "127.0.0.1:99999", ":7000", "host:", "a b:1", "::1:7000", "1.2.3:80"] {
            let e = check::address("listen", bad, true).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(check::address("bootstrap", "127.0.0.1:0", false).is_err());
    }

    #[test]
    fn validate_refuses_bad_settings_before_start() {
        let refused = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::new("/tmp/x");
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(refused(&|c| c.data_dir = "".into()).contains("data_dir"));
        assert!(refused(&|c| c.listen = Some("garbage".into())).contains("listen"));
        assert!(refused(&|c| c.bootstrap = vec!["".into()]).contains("bootstrap"));
        assert!(refused(&|c| c.idle_timeout = Duration::ZERO).contains("idle_timeout 0 ms"));
        assert!(refused(&|c| c.dead_after = Duration::from_secs(1)).contains("suspect_after"));
        assert!(refused(&|c| c.memory_budget = MIN_MEMORY_BUDGET - 1).contains("memory_budget"));
        Config::new("/tmp/x").validate().unwrap();
    }

    #[test]
    fn limits_are_checked_alone_and_together() {
        let refused = |f: &dyn Fn(&mut Limits)| {
            let mut c = Config::new("/tmp/x");
            f(&mut c.limits);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(
            refused(&|l| l.max_inbound = 0),
            "invalid argument: max_inbound 0 is out of range: it must be at least 1"
        );
        assert!(refused(&|l| l.bad_gossip_strikes = 0).contains("bad_gossip_strikes 0"));
        assert!(refused(&|l| l.liar_penalty = Duration::ZERO).contains("liar_penalty 0 ms"));
        assert!(refused(&|l| l.max_inbound_per_address = 600)
            .contains("max_inbound_per_address (600) cannot exceed max_inbound_per_prefix (512)"));
        assert!(
            refused(&|l| l.max_inbound = 100).contains("max_inbound_per_prefix (512) cannot exceed max_inbound (100)")
        );
        assert!(refused(&|l| l.max_handshaking_per_prefix = 8)
            .contains("max_handshaking_per_address (16) cannot exceed max_handshaking_per_prefix (8)"));
        assert!(refused(&|l| l.first_message_timeout = Duration::from_secs(6))
            .contains("first_message_timeout (6s) cannot exceed handshake_timeout (5s)"));
        let mut c = Config::new("/tmp/x");
        c.limits =
            Limits { max_inbound: 8, max_inbound_per_prefix: 8, max_inbound_per_address: 8, ..Limits::default() };
        c.validate().unwrap();
    }

    #[test]
    fn a_put_with_fsync_on_keeps_more_chunks_in_flight_within_the_byte_bound() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let chunk = 1 << 20;
        let mut c = Config::new("/tmp/x");
        c.max_inflight_bytes = 1 << 40;
        c.fsync = false;
        assert_eq!((c.window(chunk), c.put_window(chunk)), (2 * cores, 2 * cores));
        c.fsync = true;
        assert_eq!((c.window(chunk), c.put_window(chunk)), (2 * cores, 8 * cores), "get is not waiting on fsyncs");
        c.max_inflight_bytes = 5 * (chunk as usize + TAG_LEN);
        assert_eq!(c.put_window(chunk), 5.min(8 * cores), "max_inflight_bytes bounds it");
        c.parallelism = 3;
        assert_eq!((c.window(chunk), c.put_window(chunk)), (3, 3), "a set parallelism is taken as it is");
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let mut c = Config::new("/tmp/x");
        c.network_key = Some([0xab; 32]);
        c.secret = Some([0xcd; 32]);
        let shown = format!("{c:?}");
        assert!(shown.contains("network_key: Some(<hidden>)") && shown.contains("secret: Some(<hidden>)"), "{shown}");
        assert!(!shown.contains("171") && !shown.contains("205") && !shown.contains("ab, ab"), "{shown}");
    }
}
