//! Store a file in a data directory and get it back, on one node.
//!
//!     cargo run --release --example local -- put DATA_DIR FILE [--chunk-size BYTES]
//!     cargo run --release --example local -- get DATA_DIR KEY DEST
//!
//! `put` prints the key as the last line of stdout. Errors go to stderr and
//! the exit status is non-zero.

use std::path::PathBuf;
use std::process::ExitCode;

use cas_core::{Config, Key, Node};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Store and get files in a local CAS data directory")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Skip fsync (faster, not durable across power loss).
    #[arg(long, global = true)]
    no_fsync: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Store FILE and print its key.
    Put {
        data_dir: PathBuf,
        file: PathBuf,
        /// Chunk size in bytes: a power of two from 65536 to 16777216.
        #[arg(long)]
        chunk_size: Option<u32>,
    },
    /// Write the file of KEY to DEST.
    Get { data_dir: PathBuf, key: String, dest: PathBuf },
}

async fn run(cli: Cli) -> cas_core::Result<()> {
    match cli.command {
        Command::Put { data_dir, file, chunk_size } => {
            let mut config = Config::new(data_dir);
            config.fsync = !cli.no_fsync;
            if let Some(cs) = chunk_size {
                config.chunk_size = cs;
            }
            let node = Node::start(config).await?;
            let report = node.put_file(&file, None).await?;
            node.shutdown().await;
            eprintln!("stored {} bytes in {} chunks ({} new blobs)", report.size, report.chunks, report.new_blobs);
            println!("{}", report.key);
        }
        Command::Get { data_dir, key, dest } => {
            let key = Key::parse(&key)?;
            let mut config = Config::new(data_dir);
            config.fsync = !cli.no_fsync;
            let node = Node::start(config).await?;
            let size = node.get_file(&key, &dest, None).await?;
            node.shutdown().await;
            eprintln!("wrote {size} bytes to {}", dest.display());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    cas_core::logging::init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
