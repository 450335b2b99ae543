//! CAS: a peer-to-peer, content-addressed, encrypted file store.
//!
//! `cas-core` is the engine: the content format ([`format`], [`Key`]), the
//! blob store ([`store`]) and the [`Node`] with its streaming put and get.
//! It knows nothing of C or Python; `cas-ffi` and `cas-py` translate.

pub mod blocking;
pub mod config;
pub mod error;
pub mod format;
/// The fuzz targets' property checks (`fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod key;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod node;
pub mod store;
/// Test hooks for tests outside cas-core; not an API.
#[doc(hidden)]
pub mod testing;

pub use config::{Config, Limits, PlacementDiversity};
pub use error::{Error, ErrorKind, Result};
pub use identity::generate_network_key;
pub use key::Key;
pub use metrics::LatencyHistogram;
pub use net::PeerTraffic;
pub use node::{
    Cancel, FileReader, Node, NodeId, PeerInfo, PeerState, Progress, PutReport, RepairReport, StatInfo, Stats,
};
pub use store::FileEntry;

/// The README's Rust snippets, compiled by `cargo test --doc` so that they
/// stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
