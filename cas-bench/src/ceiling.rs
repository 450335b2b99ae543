//! The crypto ceiling: the cryptographic work put and get do per byte, on
//! every core, with no I/O. No pipeline can beat it on this machine.
//!
//! Put, per chunk: SHA-256 of the plaintext (it derives the chunk key),
//! AES-256-GCM sealing, SHA-256 of the sealed blob (its id).
//! Get, per chunk: SHA-256 of the blob (its id check), AES-256-GCM opening.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use sha2::{Digest, Sha256};

/// Each thread works on buffers of one default chunk.
const BUF: usize = 1024 * 1024;

/// Plaintext bytes per second that `work` sustains on all cores for `time`:
/// the sum over the threads of each one's bytes over the time of its counted
/// work (`work` returns that time, leaving out what only resets its buffers).
fn on_all_cores(time: Duration, work: fn(&mut Worker) -> Duration) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut worker = Worker::new(t as u8);
                    let (mut done, mut busy) = (0u64, Duration::ZERO);
                    while !stop.load(Ordering::Relaxed) {
                        busy += work(&mut worker);
                        done += BUF as u64;
                    }
                    done as f64 / busy.as_secs_f64().max(1e-9)
                })
            })
            .collect();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("ceiling thread")).sum()
    })
}

/// AES-256-GCM as the store seals (`ring`, zero nonce: one plaintext per key).
fn cipher(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key"))
}

fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; 12])
}

/// One thread's chunk buffer, worked on in place as the store does: a chunk
/// is sealed in the buffer it was read into, a blob opened in the buffer it
/// was read into.
struct Worker {
    buf: Vec<u8>,
    /// For get: the key and tag of the sealed chunk in `buf`.
    key: [u8; 32],
    tag: Tag,
}

impl Worker {
    fn new(seed: u8) -> Worker {
        let mut buf: Vec<u8> = (0..BUF).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let key: [u8; 32] = Sha256::digest(&buf).into();
        let tag = cipher(&key).seal_in_place_separate_tag(zero_nonce(), Aad::empty(), &mut buf).unwrap();
        Worker { buf, key, tag }
    }

    /// The key from the plaintext's hash, sealing in place, the blob's id.
    /// (The plaintext is whatever the last round left: the bytes don't
    /// change the cost.)
    fn put(&mut self) -> Duration {
        let started = Instant::now();
        let key: [u8; 32] = Sha256::digest(&self.buf).into();
        let tag = cipher(&key).seal_in_place_separate_tag(zero_nonce(), Aad::empty(), &mut self.buf).unwrap();
        let mut id = Sha256::new();
        id.update(&self.buf);
        id.update(tag.as_ref());
        std::hint::black_box(id.finalize());
        started.elapsed()
    }

    /// The blob's id check, then opening in place; sealing it again for the
    /// next round is not counted.
    fn get(&mut self) -> Duration {
        let started = Instant::now();
        let mut id = Sha256::new();
        id.update(&self.buf);
        id.update(self.tag.as_ref());
        std::hint::black_box(id.finalize());
        let cipher = cipher(&self.key);
        cipher.open_in_place_separate_tag(zero_nonce(), Aad::empty(), self.tag, &mut self.buf, 0..).expect("authentic");
        let took = started.elapsed();
        self.tag = cipher.seal_in_place_separate_tag(zero_nonce(), Aad::empty(), &mut self.buf).unwrap();
        took
    }
}

/// Put and get ceilings in bytes per second: the best of `windows`
/// measurements of `time` each (other load on the machine only lowers them).
pub fn measure(windows: usize, time: Duration) -> (f64, f64) {
    let best = |work: fn(&mut Worker) -> Duration| (0..windows).map(|_| on_all_cores(time, work)).fold(0.0, f64::max);
    (best(Worker::put), best(Worker::get))
}
