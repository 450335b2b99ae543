//! A rogue member for Sybil tests (`tests/python/test_multihost.py`): N
//! identities in one process, each listening on its own port of one IP
//! address, each a member of the network (it holds the network key). Each
//! introduces itself to a bootstrap node, then answers as a node does,
//! except that it claims to hold every blob, acknowledges every copy and
//! drops it, and answers every get and every possession audit with junk
//! (`cas_core::testing::rogue`).
//!
//!     cargo run --release --example rogue -- --listen-ip IP --identities N \
//!         --network-key FILE --bootstrap HOST:PORT
//!
//! Runs until SIGTERM or SIGINT. Prints JSON lines on standard output: one
//! `started` line (every identity's id and address), one `counts` line
//! every `--report-every` seconds and a last one on the signal: what it was
//! asked, and for each blob sent to it, the identities it was sent to.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cas_core::testing::rogue::Rogue;
use clap::Parser;
use futures::StreamExt;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
struct Args {
    /// The IP address every identity listens on (and dials from).
    #[arg(long)]
    listen_ip: IpAddr,
    /// How many identities.
    #[arg(long, default_value_t = 300)]
    identities: usize,
    /// The first identity's port (the others take the next ones); 0: ports the system picks.
    #[arg(long, default_value_t = 0)]
    first_port: u16,
    /// The network's key file: 32 raw bytes (`cas keygen FILE`).
    #[arg(long)]
    network_key: PathBuf,
    /// A node of the network each identity introduces itself to.
    #[arg(long)]
    bootstrap: SocketAddr,
    /// Seconds between two `counts` lines.
    #[arg(long, default_value_t = 1.0)]
    report_every: f64,
}

/// Introductions dialed at once: one address may hold only a few
/// connections in their handshake at a node.
const INTRODUCING_AT_ONCE: usize = 8;
/// Attempts per identity to introduce itself (the node may not answer yet).
const INTRODUCE_ATTEMPTS: u32 = 20;

fn read_network_key(path: &Path) -> Result<[u8; 32], String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    bytes.as_slice().try_into().map_err(|_| {
        format!(
            "{} is not a network key: it holds {} bytes, a key is 32 (cas keygen FILE)",
            path.display(),
            bytes.len()
        )
    })
}

fn counts_line(rogue: &Rogue, introduced: usize, failed: usize) -> serde_json::Value {
    let c = rogue.counts();
    let stored: serde_json::Map<String, serde_json::Value> = c
        .stored()
        .into_iter()
        .map(|(blob, ids)| (blob.to_string(), ids.iter().map(|id| id.to_string()).collect::<serde_json::Value>()))
        .collect();
    json!({
        "event": "counts",
        "introduced": introduced,
        "introduce_failed": failed,
        "pings": c.pings.load(Ordering::Relaxed),
        "gossips": c.gossips.load(Ordering::Relaxed),
        "has_blobs": c.has_blobs.load(Ordering::Relaxed),
        "stores": c.stores.load(Ordering::Relaxed),
        "gets": c.gets.load(Ordering::Relaxed),
        "audits": c.audits.load(Ordering::Relaxed),
        "stored": stored,
    })
}

/// Raises the limit of open files to the hard limit: every identity holds
/// a listener and a connection from each node.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    raise_open_files_limit();
    if !(args.report_every > 0.0 && args.report_every.is_finite()) {
        eprintln!("rogue: --report-every must be a positive number of seconds");
        return ExitCode::FAILURE;
    }
    let key = match read_network_key(&args.network_key) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("rogue: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rogue = match Rogue::start(key, args.listen_ip, args.identities, args.first_port).await {
        Ok(rogue) => Arc::new(rogue),
        Err(e) => {
            eprintln!("rogue: cannot listen on {}: {e}", args.listen_ip);
            return ExitCode::FAILURE;
        }
    };
    let identities: Vec<_> = rogue
        .identities()
        .iter()
        .map(|(identity, addr)| json!({"id": identity.id().to_string(), "address": addr.to_string()}))
        .collect();
    println!("{}", json!({"event": "started", "identities": identities}));

    let (introduced, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let introductions = {
        let (rogue, introduced, failed, bootstrap) =
            (rogue.clone(), introduced.clone(), failed.clone(), args.bootstrap);
        tokio::spawn(async move {
            futures::stream::iter(0..rogue.identities().len())
                .for_each_concurrent(INTRODUCING_AT_ONCE, |i| {
                    let (rogue, introduced, failed) = (rogue.clone(), introduced.clone(), failed.clone());
                    async move {
                        for attempt in 1..=INTRODUCE_ATTEMPTS {
                            match rogue.introduce(i, bootstrap).await {
                                Ok(()) => {
                                    introduced.fetch_add(1, Ordering::Relaxed);
                                    return;
                                }
                                Err(e) if attempt == INTRODUCE_ATTEMPTS => {
                                    eprintln!("rogue: identity {i} could not introduce itself to {bootstrap}: {e}");
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                            }
                        }
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        })
    };

    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        eprintln!("rogue: cannot catch signals");
        return ExitCode::FAILURE;
    };
    let mut report = tokio::time::interval(Duration::from_secs_f64(args.report_every));
    loop {
        tokio::select! {
            _ = report.tick() => {
                println!("{}", counts_line(&rogue, introduced.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    introductions.abort();
    let mut last = counts_line(&rogue, introduced.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    last["event"] = json!("stopped");
    println!("{last}");
    ExitCode::SUCCESS
}
