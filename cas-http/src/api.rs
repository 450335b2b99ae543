//! `/api/status`, `/api/peers`, `/api/files`, `/metrics`, `/health` and the page.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use cas_core::{Key, PeerInfo, PeerState, Stats};
use serde_json::{json, Value};

use crate::{node_error, Gateway};

/// The web page: one file, no external assets.
const PAGE: &str = include_str!("page.html");

pub(crate) async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE)).into_response()
}

/// `{"status": "ok"}` while the node runs, 503 once it is shut down.
pub(crate) async fn health(State(gateway): State<Gateway>) -> Response {
    if gateway.node.is_closed() {
        return crate::error(StatusCode::SERVICE_UNAVAILABLE, "the node has been shut down");
    }
    if let Some(problem) = gateway.node.write_problem() {
        return crate::error(StatusCode::SERVICE_UNAVAILABLE, format!("the node cannot write: {problem}"));
    }
    Json(json!({ "status": "ok" })).into_response()
}

/// Every counter of [`Stats`], by name. Destructured without `..`: a new
/// counter does not compile until it is listed here (and so in `/metrics`).
fn counters(stats: &Stats) -> [(&'static str, u64, &'static str, bool); 24] {
    let Stats {
        bytes_sent,
        bytes_received,
        blobs_stored,
        bytes_stored,
        requests_served,
        verification_failures,
        peers_alive,
        blobs_repaired,
        request_timeouts,
        hedged_requests,
        repair_refused_full,
        peers_full,
        cannot_write,
        blobs_scrubbed,
        bytes_scrubbed,
        scrub_corrupt,
        scrub_missing,
        scrub_restored,
        gossip_rejected,
        connections_evicted,
        audits,
        audits_failed,
        memory_held,
        connections_over_budget,
    } = *stats;
    // (name, value, help, whether it only grows)
    [
        ("bytes_sent", bytes_sent, "Payload bytes sent to peers.", true),
        ("bytes_received", bytes_received, "Payload bytes received from peers.", true),
        ("blobs_stored", blobs_stored, "Blobs in the local store.", false),
        ("bytes_stored", bytes_stored, "Bytes in the local store.", false),
        ("requests_served", requests_served, "Requests from peers answered.", true),
        ("verification_failures", verification_failures, "Blobs that failed verification.", true),
        ("peers_alive", peers_alive, "Peers currently alive.", false),
        ("blobs_repaired", blobs_repaired, "Copies repair gave to peers that lacked them.", true),
        ("request_timeouts", request_timeouts, "Requests to peers that timed out.", true),
        ("hedged_requests", hedged_requests, "Blob requests sent to a second holder because the first was slow.", true),
        (
            "repair_refused_full",
            repair_refused_full,
            "Copies repair offered to a peer that refused them for lack of space.",
            true,
        ),
        ("peers_full", peers_full, "Peers repair passes over now for lack of space.", false),
        ("cannot_write", cannot_write, "1 while this node cannot write (disk full, index write failed).", false),
        ("blobs_scrubbed", blobs_scrubbed, "Blobs the scrub read and found good.", true),
        ("bytes_scrubbed", bytes_scrubbed, "Bytes of the blobs scrubbed.", true),
        ("scrub_corrupt", scrub_corrupt, "Stored blobs the scrub found corrupt.", true),
        ("scrub_missing", scrub_missing, "Stored blobs whose file the scrub found gone.", true),
        ("scrub_restored", scrub_restored, "Corrupt or missing blobs replaced by a good copy from a peer.", true),
        ("gossip_rejected", gossip_rejected, "Gossip messages dropped for a record with a bad signature.", true),
        ("connections_evicted", connections_evicted, "Connections closed to give their seat to a newcomer.", true),
        ("audits", audits, "Possession audits repair made of peers' copies.", true),
        ("audits_failed", audits_failed, "Possession audits peers failed (then passed over for a while).", true),
        ("memory_held", memory_held, "Bytes of the memory budget held (frames arriving, requests, answers).", false),
        (
            "connections_over_budget",
            connections_over_budget,
            "Connections closed after waiting for the memory budget for the idle timeout.",
            true,
        ),
    ]
}

fn peer(p: &PeerInfo) -> Value {
    json!({
        "id": p.id.to_string(),
        "address": p.address.to_string(),
        "state": p.state.as_str(),
        "last_seen": p.last_seen.as_secs_f64(),
    })
}

pub(crate) async fn status(State(gateway): State<Gateway>) -> Response {
    let node = &gateway.node;
    let stats = node.stats();
    let peers = node.peers();
    let counters: serde_json::Map<String, Value> =
        counters(&stats).iter().map(|(name, value, _, _)| (name.to_string(), json!(value))).collect();
    Json(json!({
        "id": node.id().to_string(),
        "address": node.address().map(|a| a.to_string()),
        "data_dir": node.data_dir().display().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "replicas": node.config().replicas,
        "requests_in_progress": gateway.requests_in_progress.load(Ordering::Relaxed),
        "requests_done": gateway.requests_done.load(Ordering::Relaxed),
        "peers": {
            "known": peers.len(),
            "alive": peers.iter().filter(|p| p.state == PeerState::Alive).count(),
        },
        "unreachable_bootstrap": node.unreachable_bootstrap(),
        "refused_bootstrap": node.refused_bootstrap(),
        "stats": counters,
    }))
    .into_response()
}

pub(crate) async fn peers(State(gateway): State<Gateway>) -> Response {
    let node = &gateway.node;
    Json(json!({
        "self": { "id": node.id().to_string(), "address": node.address().map(|a| a.to_string()) },
        "peers": node.peers().iter().map(peer).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// What `Node::stat` says of a key: size, chunks, each blob's holders, and
/// the nodes among them with their addresses.
pub(crate) async fn stat(State(gateway): State<Gateway>, Path(key): Path<String>) -> Response {
    let node = &gateway.node;
    let key = match Key::parse_input(&key) {
        Ok(key) => key,
        Err(e) => return node_error(e.into()),
    };
    let stat = match node.stat(&key).await {
        Ok(stat) => stat,
        Err(e) => return node_error(e),
    };
    let mut addresses: HashMap<String, Option<String>> =
        node.peers().into_iter().map(|p| (p.id.to_string(), Some(p.address.to_string()))).collect();
    let me = node.id().to_string();
    addresses.insert(me.clone(), node.address().map(|a| a.to_string()));
    // Every node holding a blob of the file, sorted (as `Stat.nodes` in Python).
    let mut holders: Vec<String> = stat.holders.iter().flat_map(|(_, n)| n.iter().map(|id| id.to_string())).collect();
    holders.sort();
    holders.dedup();
    Json(json!({
        "key": key.to_string(),
        "size": stat.size,
        "chunk_size": stat.chunk_size,
        "chunks": stat.chunks,
        "manifest_id": stat.manifest_id.to_string(),
        "holders": stat.holders.iter().map(|(blob, nodes)| json!({
            "blob": blob.to_string(),
            "nodes": nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "nodes": holders.iter().map(|id| json!({
            "id": id,
            "address": addresses.get(id).cloned().flatten(),
            "self": *id == me,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// The files this node put, oldest first; `?key=KEY`: only those of that
/// key (the names it was put under, so a download can be given its name).
pub(crate) async fn files(State(gateway): State<Gateway>, Query(query): Query<HashMap<String, String>>) -> Response {
    let only = match query.get("key").map(|k| Key::parse_input(k)).transpose() {
        Ok(only) => only,
        Err(e) => return node_error(e.into()),
    };
    match gateway.node.files().await {
        Ok(files) => Json(json!({
            "files": files
                .iter()
                .filter(|f| only.is_none_or(|k| f.key == k))
                .map(|f| json!({
                    "key": f.key.to_string(),
                    "name": f.name,
                    "size": f.size,
                    "time": f.time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                }))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => node_error(e),
    }
}

/// The Prometheus text format (version 0.0.4).
pub(crate) async fn metrics(State(gateway): State<Gateway>) -> Response {
    let node = &gateway.node;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP cas_{name} {help}\n# TYPE cas_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "cas_{name}{labels} {value}");
        }
    };
    for (name, value, help, grows) in counters(&node.stats()) {
        if grows {
            metric(&format!("{name}_total"), "counter", help, &[("", value)]);
        } else {
            metric(name, "gauge", help, &[("", value)]);
        }
    }
    let peers = node.peers();
    let by_state = |s: PeerState| peers.iter().filter(|p| p.state == s).count() as u64;
    metric(
        "peers",
        "gauge",
        "Peers known, by state.",
        &[
            ("{state=\"alive\"}", by_state(PeerState::Alive)),
            ("{state=\"suspect\"}", by_state(PeerState::Suspect)),
            ("{state=\"dead\"}", by_state(PeerState::Dead)),
        ],
    );
    let in_progress = gateway.requests_in_progress.load(Ordering::Relaxed);
    metric("http_requests_in_progress", "gauge", "HTTP requests being answered.", &[("", in_progress)]);
    let done = gateway.requests_done.load(Ordering::Relaxed);
    metric("http_requests_total", "counter", "HTTP requests answered.", &[("", done)]);
    let partial = gateway.partial_responses.load(Ordering::Relaxed);
    metric("http_partial_responses_total", "counter", "Downloads answered 206 (byte ranges).", &[("", partial)]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}
