//! A real network on loopback, in one process: start NODES nodes (default 5)
//! that find each other by gossip from one bootstrap address, store a file
//! on the first, show where its replicas went, stop the owner, and get the
//! file back on another node, checking its SHA-256.
//!
//!     cargo run --release --example cluster -- [FILE] [--nodes N]
//!
//! Without FILE, a 100 MB file of random bytes is made in a temporary directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cas_core::{Config, Node, PeerState};
use clap::Parser;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    /// File to store (default: 100 MB of random bytes).
    file: Option<PathBuf>,
    /// Nodes in the network.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    let work = tempfile::tempdir()?;
    let file = match args.file {
        Some(f) => f,
        None => {
            let path = work.path().join("film.bin");
            println!("== making a 100 MB file of random bytes");
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let mut block = vec![0u8; 1 << 20];
            for _ in 0..100 {
                rand::fill(&mut block[..]);
                f.write_all(&block)?;
            }
            f.flush()?;
            path
        }
    };

    println!("== starting {} nodes on 127.0.0.1", args.nodes);
    let mut nodes: Vec<Node> = Vec::new();
    // The first node creates the network key in its data directory; the
    // others are handed a copy (across machines: copy the file).
    let mut network_key = None;
    for i in 0..args.nodes {
        let mut config = Config::new(work.path().join(format!("node{i}")));
        config.listen = Some("127.0.0.1:0".into());
        config.fsync = false;
        config.gossip_interval = Duration::from_millis(200);
        if let Some(first) = nodes.first() {
            config.bootstrap = vec![first.address().expect("listening").to_string()];
            config.network_key = network_key;
        }
        let node = Node::start(config).await?;
        if i == 0 {
            let path = node.data_dir().join("network_key");
            println!("   node0 created the network key {}; the others get a copy", path.display());
            network_key = Some(std::fs::read(&path)?.as_slice().try_into()?);
        }
        println!("   node{i} {} id {}", node.address().unwrap(), &node.id().to_string()[..12]);
        nodes.push(node);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.iter().any(|n| n.peers().iter().filter(|p| p.state == PeerState::Alive).count() < args.nodes - 1) {
        if Instant::now() > deadline {
            return Err("the nodes did not all find each other within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("   every node knows the {} others (gossip from one bootstrap address)", args.nodes - 1);

    let want = sha256_file(&file)?;
    println!("== put {} on node0", file.display());
    let started = Instant::now();
    let report = nodes[0].put_file(&file, None).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "   {} bytes, {} chunks, every blob on node0 + {} peers, {:.0} MB/s",
        report.size,
        report.chunks,
        report.replicas,
        report.size as f64 / secs / 1e6
    );
    println!("   key: {}", report.key);

    let stat = nodes[0].stat(&report.key).await?;
    let names: BTreeMap<_, _> = nodes.iter().enumerate().map(|(i, n)| (n.id(), format!("node{i}"))).collect();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (_, holders) in &stat.holders {
        for h in holders {
            *per_node.entry(names[h].clone()).or_default() += 1;
        }
    }
    println!("== where the {} blobs (manifest + chunks) went", stat.holders.len());
    for (name, count) in &per_node {
        println!("   {name}: {count} blobs");
    }

    println!("== stopping node0 (the owner)");
    nodes[0].shutdown().await;
    let getter = &nodes[args.nodes - 1];
    let dest = work.path().join("copy.bin");
    println!("== get on node{} from the key alone", args.nodes - 1);
    let started = Instant::now();
    getter.get_file(&report.key, &dest, None).await?;
    let secs = started.elapsed().as_secs_f64();
    let got = sha256_file(&dest)?;
    println!("   {:.0} MB/s", report.size as f64 / secs / 1e6);
    println!("   sha256 original: {want}");
    println!("   sha256 copy:     {got}");
    for n in &nodes[1..] {
        n.shutdown().await;
    }
    if got != want {
        return Err("the copy differs from the original".into());
    }
    println!("OK: the file came back byte-identical without its owner");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    cas_core::logging::init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
