//! Who a node is: its persistent ed25519 key pair and the node id derived
//! from it, and how peers look from here. Below both `net` and `node`.
//!
//! The key pair lives in `<data_dir>/identity.key` as the 32-byte ed25519
//! secret seed, owner-only; it is created at random when absent, and a user
//! may place their own. The node id is
//! `SHA-256("cas-node-id-v1\0" || ed25519 public key)`: anyone holding the
//! public key can check an id, and nobody can claim an id without the key.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// Domain separation of the node id hash.
const NODE_ID_CONTEXT: &[u8] = b"cas-node-id-v1\0";

/// A node's persistent id: the hash of its public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The id of the node holding the secret half of `public_key`.
    pub fn of_public_key(public_key: &[u8; 32]) -> NodeId {
        let mut h = Sha256::new();
        h.update(NODE_ID_CONTEXT);
        h.update(public_key);
        NodeId(h.finalize().into())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &hex::encode(self.0)[..12])
    }
}

/// A node's key pair.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.id())
    }
}

impl Identity {
    /// The key pair of a 32-byte ed25519 secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity { key: SigningKey::from_bytes(seed) }
    }

    /// A fresh random key pair.
    pub fn generate() -> Identity {
        Identity::from_seed(&rand::random())
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The node id of this key pair.
    pub fn id(&self) -> NodeId {
        NodeId::of_public_key(&self.public_key())
    }

    /// Signs `message` (callers prefix a context string of their own).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Whether `signature` is `public_key`'s signature of `message`.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else { return false };
    key.verify(message, &Signature::from_bytes(signature)).is_ok()
}

/// A new random network key: give it to every node of the new network.
pub fn generate_network_key() -> [u8; 32] {
    rand::random()
}

/// How a peer looks from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Heartbeats advance: used for placement.
    Alive,
    /// Heartbeats stopped recently: not chosen for new replicas, still asked on get.
    Suspect,
    /// Silent for long: out of placement; forgotten later.
    Dead,
}

impl PeerState {
    /// `"alive"`, `"suspect"` or `"dead"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Dead => "dead",
        }
    }
}

/// One entry of the peer table.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's persistent id.
    pub id: NodeId,
    /// Its advertised listen address.
    pub address: SocketAddr,
    /// Alive, suspect or dead.
    pub state: PeerState,
    /// Time since its heartbeat last advanced.
    pub last_seen: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_keys_and_signatures_check() {
        let a = Identity::from_seed(&[7; 32]);
        assert_eq!(a.id(), Identity::from_seed(&[7; 32]).id());
        assert_ne!(a.id(), Identity::from_seed(&[8; 32]).id());
        assert_eq!(a.id(), NodeId::of_public_key(&a.public_key()));
        let sig = a.sign(b"hello");
        assert!(verify(&a.public_key(), b"hello", &sig));
        assert!(!verify(&a.public_key(), b"hellp", &sig));
        assert!(!verify(&Identity::generate().public_key(), b"hello", &sig));
    }
}
