//! The I/O baseline: what put and get do to files, without the crypto, so
//! that the table can tell the cost of the page cache on this machine (high
//! on VMs whose fresh memory is slow to touch) from the cost of our code.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

/// Put without crypto: the file read in `chunk`-byte pieces by `threads`
/// threads, each piece written to a new file in one of 256 directories.
/// Returns bytes per second.
pub fn put(input: &Path, dir: &Path, chunk: usize, threads: usize) -> f64 {
    let file = File::open(input).expect("open input");
    let size = file.metadata().expect("input size").len();
    let count = size.div_ceil(chunk as u64);
    for fan in 0..256 {
        std::fs::create_dir_all(dir.join(format!("{fan:02x}"))).expect("fan-out directory");
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let file = &file;
            s.spawn(move || {
                let mut buf = vec![0u8; chunk];
                for i in (t..count).step_by(threads) {
                    let len = (size - i * chunk as u64).min(chunk as u64) as usize;
                    file.read_exact_at(&mut buf[..len], i * chunk as u64).expect("read piece");
                    let path = dir.join(format!("{:02x}", i % 256)).join(i.to_string());
                    File::create(path).and_then(|mut f| f.write_all(&buf[..len])).expect("write piece");
                }
            });
        }
    });
    size as f64 / start.elapsed().as_secs_f64()
}

/// Get without crypto: the pieces `put` wrote, read back in order and
/// written to one file. Returns bytes per second.
pub fn get(dir: &Path, out: &Path, size: u64, chunk: usize) -> f64 {
    let count = size.div_ceil(chunk as u64);
    let start = Instant::now();
    let mut dest = File::create(out).expect("create output");
    let mut buf = Vec::with_capacity(chunk);
    for i in 0..count {
        buf.clear();
        let path = dir.join(format!("{:02x}", i % 256)).join(i.to_string());
        File::open(path).and_then(|mut f| f.read_to_end(&mut buf)).expect("read piece");
        dest.write_all(&buf).expect("write output");
    }
    size as f64 / start.elapsed().as_secs_f64()
}
