//! The crypto ceiling: the cryptographic work put and get do per byte, on
//! every core, with no I/O. No pipeline can beat it on this machine.
//!
//! Put, per chunk: SHA-256 of the plaintext (it derives the chunk key),
//! AES-256-GCM sealing, SHA-256 of the sealed blob (its id).
//! Get, per chunk: SHA-256 of the blob (its id check), AES-256-GCM opening.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use sha2::{Digest, Sha256};

/// Each thread works on buffers of one default chunk.
const BUF: usize = 1024 * 1024;

/// Plaintext bytes per second that `work` sustains on all cores for `time`.
fn on_all_cores(time: Duration, work: fn(&mut Worker)) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let bytes: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut worker = Worker::new(t as u8);
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        work(&mut worker);
                        done += BUF as u64;
                    }
                    done
                })
            })
            .collect();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("ceiling thread")).sum()
    });
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// One thread's buffers: a plaintext, a valid sealed copy of it, and output.
struct Worker {
    plain: Vec<u8>,
    sealed: Vec<u8>,
    tag: aes_gcm::Tag,
    out: Vec<u8>,
    cipher: Aes256Gcm,
}

impl Worker {
    fn new(seed: u8) -> Worker {
        let plain: Vec<u8> = (0..BUF).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let key: [u8; 32] = Sha256::digest(&plain).into();
        let cipher = Aes256Gcm::new(&key.into());
        let mut sealed = plain.clone();
        let tag = cipher.encrypt_inout_detached(&Default::default(), b"", sealed.as_mut_slice().into()).unwrap();
        Worker { plain, sealed, tag, out: vec![0; BUF], cipher }
    }

    fn put(&mut self) {
        let key: [u8; 32] = Sha256::digest(&self.plain).into();
        let cipher = Aes256Gcm::new(&key.into());
        let buf = InOutBuf::new(&self.plain, &mut self.out).expect("equal lengths");
        let tag = cipher.encrypt_inout_detached(&Default::default(), b"", buf).unwrap();
        let mut id = Sha256::new();
        id.update(&self.out);
        id.update(tag);
        std::hint::black_box(id.finalize());
    }

    fn get(&mut self) {
        let mut id = Sha256::new();
        id.update(&self.sealed);
        id.update(self.tag);
        std::hint::black_box(id.finalize());
        let buf = InOutBuf::new(&self.sealed, &mut self.out).expect("equal lengths");
        self.cipher.decrypt_inout_detached(&Default::default(), b"", buf, &self.tag).expect("authentic");
    }
}

/// Put and get ceilings in bytes per second: the best of `windows`
/// measurements of `time` each (other load on the machine only lowers them).
pub fn measure(windows: usize, time: Duration) -> (f64, f64) {
    let best = |work: fn(&mut Worker)| (0..windows).map(|_| on_all_cores(time, work)).fold(0.0, f64::max);
    (best(Worker::put), best(Worker::get))
}
