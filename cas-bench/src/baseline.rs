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
    make_fan_out(dir);
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

/// Get without crypto: the pieces `put` wrote, read by `threads` threads
/// (as get reads its chunks on every core) and written in order to one file
/// by one writer (as get does). Returns bytes per second.
pub fn get(dir: &Path, out: &Path, size: u64, chunk: usize, threads: usize) -> f64 {
    let count = size.div_ceil(chunk as u64);
    let start = Instant::now();
    let mut dest = File::create(out).expect("create output");
    // Pieces read ahead of the writer: the window of a get. The writer hands
    // the buffers back, so that the same memory is reused throughout.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(2 * threads);
    let (give_back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    let spare = std::sync::Mutex::new(spare);
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let (tx, spare) = (tx.clone(), &spare);
            s.spawn(move || {
                for i in (t..count).step_by(threads) {
                    let reused = spare.lock().unwrap().try_recv().ok();
                    let mut buf = reused.unwrap_or_else(|| Vec::with_capacity(chunk));
                    buf.clear();
                    let path = dir.join(format!("{:02x}", i % 256)).join(i.to_string());
                    File::open(path).and_then(|mut f| f.read_to_end(&mut buf)).expect("read piece");
                    if tx.send((i, buf)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u64;
        for (i, buf) in rx {
            waiting.insert(i, buf);
            while let Some(buf) = waiting.remove(&next) {
                dest.write_all(&buf).expect("write output");
                let _ = give_back.send(buf);
                next += 1;
            }
        }
        assert_eq!(next, count, "every piece written");
    });
    size as f64 / start.elapsed().as_secs_f64()
}

/// The disk's fsynced write rate: `total` bytes in `chunk`-byte pieces by
/// `threads` threads, each piece into a new file in one of 256 directories,
/// the file fsynced and then its directory, as the store does with fsync on.
/// Returns bytes per second.
pub fn fsynced_write(dir: &Path, total: u64, chunk: usize, threads: usize) -> f64 {
    let count = total.div_ceil(chunk as u64);
    make_fan_out(dir);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            s.spawn(move || {
                let mut buf: Vec<u8> = (0..chunk).map(|i| (i as u8).wrapping_mul(7) ^ t as u8).collect();
                for i in (t..count).step_by(threads) {
                    buf[..8].copy_from_slice(&i.to_le_bytes());
                    let len = (total - i * chunk as u64).min(chunk as u64) as usize;
                    let fan = dir.join(format!("{:02x}", i % 256));
                    let mut file = File::create(fan.join(i.to_string())).expect("create piece");
                    file.write_all(&buf[..len]).expect("write piece");
                    file.sync_data().expect("fsync piece");
                    File::open(&fan).and_then(|d| d.sync_all()).expect("fsync directory");
                }
            });
        }
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// Raw TCP over loopback: `size` bytes from a writer thread to a reader
/// thread through one socket on 127.0.0.1, in `buf`-byte writes and reads,
/// no crypto. Returns bytes per second.
pub fn tcp_loopback(size: u64, buf: usize) -> f64 {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("its address");
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut stream = TcpStream::connect(address).expect("connect over loopback");
            let data = vec![0x5au8; buf];
            let mut sent = 0u64;
            while sent < size {
                let n = (size - sent).min(buf as u64) as usize;
                stream.write_all(&data[..n]).expect("send");
                sent += n as u64;
            }
        });
        let (mut conn, _) = listener.accept().expect("accept");
        let mut data = vec![0u8; buf];
        let mut received = 0u64;
        while received < size {
            let n = conn.read(&mut data).expect("receive");
            assert!(n > 0, "the writer closed early");
            received += n as u64;
        }
    });
    size as f64 / start.elapsed().as_secs_f64()
}

/// The 256 directories `00`..`ff` under `dir`, as the store's.
fn make_fan_out(dir: &Path) {
    for fan in 0..256 {
        std::fs::create_dir_all(dir.join(format!("{fan:02x}"))).expect("fan-out directory");
    }
}
