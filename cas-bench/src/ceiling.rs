//! The crypto ceiling: the cryptographic work put and get do per byte, on
//! every core, with no I/O. No pipeline can beat it on this machine.
//!
//! Put, per chunk: SHA-256 of the plaintext (it derives the chunk key),
//! AES-256-GCM sealing, SHA-256 of the sealed blob (its id).
//! Get, per chunk: SHA-256 of the blob (its id check), AES-256-GCM opening.
//! Both run the store's own `seal_chunk` and `open_chunk`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cas_core::format::{open_chunk, seal_chunk, BlobId, SealedChunk, TAG_LEN};

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

/// One thread's chunk buffer, worked on in place by the store's own sealing
/// and opening (`cas_core::format`): a chunk is sealed in the buffer it was
/// read into, a blob opened in the buffer it was read into.
struct Worker {
    /// Put: a plaintext chunk. Get: the sealed blob of `key` and `id`.
    buf: Vec<u8>,
    key: [u8; 32],
    id: BlobId,
}

/// The convergence secret of the ceiling's chunks (any will do).
const SECRET: [u8; 32] = [7; 32];

impl Worker {
    fn new(seed: u8) -> Worker {
        let mut plain = Vec::with_capacity(BUF + TAG_LEN);
        plain.extend((0..BUF).map(|i| (i as u8).wrapping_mul(31) ^ seed));
        let SealedChunk { blob, id, key } = seal_chunk(&SECRET, plain);
        Worker { buf: blob, key, id }
    }

    /// Put's crypto: the chunk key from the plaintext's hash, sealing in
    /// place, the blob's id. (The plaintext is whatever the last round
    /// left: the bytes don't change the cost.)
    fn put(&mut self) -> Duration {
        let mut plain = std::mem::take(&mut self.buf);
        plain.truncate(BUF);
        let started = Instant::now();
        let sealed = seal_chunk(&SECRET, plain);
        let took = started.elapsed();
        std::hint::black_box(sealed.id);
        self.buf = sealed.blob;
        took
    }

    /// Get's crypto: the blob's id check, then opening in place; sealing it
    /// again for the next round is not counted.
    fn get(&mut self) -> Duration {
        let blob = std::mem::take(&mut self.buf);
        let started = Instant::now();
        assert!(BlobId::of(&blob) == self.id, "the blob has its id");
        let plain = open_chunk(&self.key, blob, BUF).expect("authentic");
        let took = started.elapsed();
        let SealedChunk { blob, id, key } = seal_chunk(&SECRET, plain);
        (self.buf, self.id, self.key) = (blob, id, key);
        took
    }
}

/// Put and get ceilings in bytes per second: the best of `windows`
/// measurements of `time` each (other load on the machine only lowers them).
pub fn measure(windows: usize, time: Duration) -> (f64, f64) {
    let best = |work: fn(&mut Worker) -> Duration| (0..windows).map(|_| on_all_cores(time, work)).fold(0.0, f64::max);
    (best(Worker::put), best(Worker::get))
}
