//! `<data_dir>/peers`: the addresses of the peers a node last knew alive,
//! one `ip:port` per line, so that a restarted node rejoins without being
//! given a bootstrap address again. Saved every few gossip rounds when it
//! changed; a missing or unreadable file only means nothing to rejoin.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The file in the data directory.
pub(crate) const FILE: &str = "peers";
/// Most addresses kept.
const MAX_SAVED: usize = 32;

/// The saved addresses (at most [`MAX_SAVED`]), or none.
pub(crate) fn load(data_dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(data_dir.join(FILE)) else { return Vec::new() };
    text.lines().filter(|l| l.parse::<SocketAddr>().is_ok()).take(MAX_SAVED).map(str::to_owned).collect()
}

/// The list to save if `alive` differs from what was saved last (kept in `saved`).
pub(crate) fn changed(saved: &mut Vec<SocketAddr>, mut alive: Vec<SocketAddr>) -> Option<Vec<SocketAddr>> {
    alive.sort();
    alive.truncate(MAX_SAVED);
    if alive.is_empty() || alive == *saved {
        return None;
    }
    saved.clone_from(&alive);
    Some(alive)
}

/// Replaces the file atomically; a failure is logged, not fatal.
pub(crate) fn save(data_dir: &Path, peers: &[SocketAddr]) {
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new().prefix(".peers").tempfile_in(data_dir)?;
        for p in peers {
            writeln!(tmp, "{p}")?;
        }
        tmp.persist(data_dir.join(FILE)).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!("not saving the known peers: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_when_changed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let b: SocketAddr = "[::1]:7002".parse().unwrap();
        let mut saved = Vec::new();
        let list = changed(&mut saved, vec![b, a]).unwrap();
        assert!(changed(&mut saved, vec![a, b]).is_none(), "same set, nothing to save");
        assert!(changed(&mut saved, vec![]).is_none(), "a lonely moment does not erase the list");
        save(dir.path(), &list);
        std::fs::write(dir.path().join("junk"), "x").unwrap();
        assert_eq!(load(dir.path()), vec![a.to_string(), b.to_string()]);
    }
}
