//! `/api/status`, `/api/peers`, `/api/files`, `/metrics`, `/health` and the page.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use cas_core::{Key, LatencyHistogram, PeerInfo, PeerState, PeerTraffic, Stats};
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

/// The kind of a figure of [`Stats`] in `/metrics`.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Only grows: `cas_<metric>_total`.
    Counter,
    /// A current value: `cas_<metric>`.
    Gauge,
}

/// A figure of [`Stats`]: its name in `/api/status` (the field's), its
/// metric's name in `/metrics` (units last, as Prometheus names them),
/// its value, help and kind.
struct Figure {
    name: &'static str,
    metric: &'static str,
    value: u64,
    help: &'static str,
    kind: Kind,
}

const fn figure(name: &'static str, metric: &'static str, value: u64, help: &'static str, kind: Kind) -> Figure {
    Figure { name, metric, value, help, kind }
}

/// A figure whose metric has the field's name.
const fn kept(name: &'static str, value: u64, help: &'static str, kind: Kind) -> Figure {
    figure(name, name, value, help, kind)
}

/// Every counter of [`Stats`]. Destructured without `..`: a new counter
/// does not compile until it is listed here (and so in `/metrics`).
fn counters(stats: &Stats) -> [Figure; 24] {
    use Kind::{Counter, Gauge};
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
        // Histograms: see `latencies`.
        put_latency: _,
        get_latency: _,
        fetch_latency: _,
    } = stats.clone();
    [
        figure("bytes_sent", "sent_bytes", bytes_sent, "Payload bytes sent to peers.", Counter),
        figure("bytes_received", "received_bytes", bytes_received, "Payload bytes received from peers.", Counter),
        figure("blobs_stored", "stored_blobs", blobs_stored, "Blobs in the local store.", Gauge),
        figure("bytes_stored", "stored_bytes", bytes_stored, "Bytes in the local store.", Gauge),
        kept("requests_served", requests_served, "Requests from peers answered.", Counter),
        kept("verification_failures", verification_failures, "Blobs that failed verification.", Counter),
        kept("peers_alive", peers_alive, "Peers currently alive.", Gauge),
        kept("blobs_repaired", blobs_repaired, "Copies repair gave to peers that lacked them.", Counter),
        kept("request_timeouts", request_timeouts, "Requests to peers that timed out.", Counter),
        kept("hedged_requests", hedged_requests, "Blob requests hedged to a second holder.", Counter),
        kept("repair_refused_full", repair_refused_full, "Copies repair offered, refused for lack of space.", Counter),
        kept("peers_full", peers_full, "Peers repair passes over now for lack of space.", Gauge),
        kept("cannot_write", cannot_write, "1 while this node cannot write (disk full, index write failed).", Gauge),
        figure("blobs_scrubbed", "scrubbed_blobs", blobs_scrubbed, "Blobs the scrub read and found good.", Counter),
        figure("bytes_scrubbed", "scrubbed_bytes", bytes_scrubbed, "Bytes of the blobs scrubbed.", Counter),
        kept("scrub_corrupt", scrub_corrupt, "Stored blobs the scrub found corrupt.", Counter),
        kept("scrub_missing", scrub_missing, "Stored blobs whose file the scrub found gone.", Counter),
        kept("scrub_restored", scrub_restored, "Corrupt or missing blobs restored from a peer.", Counter),
        kept("gossip_rejected", gossip_rejected, "Gossip dropped for a record with a bad signature.", Counter),
        kept("connections_evicted", connections_evicted, "Connections closed to seat a newcomer.", Counter),
        kept("audits", audits, "Possession audits repair made of peers' copies.", Counter),
        kept("audits_failed", audits_failed, "Possession audits peers failed (then passed over for a while).", Counter),
        figure("memory_held", "memory_held_bytes", memory_held, "Bytes of the memory budget held now.", Gauge),
        figure(
            "connections_over_budget",
            "over_budget_connections",
            connections_over_budget,
            "Connections closed after waiting for the memory budget for the idle timeout.",
            Counter,
        ),
    ]
}

/// The latency histograms of [`Stats`]: metric name (in seconds), help, histogram.
fn latencies(stats: &Stats) -> [(&'static str, &'static str, &LatencyHistogram); 3] {
    [
        ("put_duration_seconds", "How long whole puts took.", &stats.put_latency),
        ("get_duration_seconds", "How long whole gets took (a download of a whole file included).", &stats.get_latency),
        (
            "fetch_duration_seconds",
            "How long one blob took to come from the peer that served it.",
            &stats.fetch_latency,
        ),
    ]
}

/// A peer of the table, with what this node exchanged with it (zeros if nothing).
fn peer(p: &PeerInfo, traffic: Option<&PeerTraffic>) -> Value {
    let t = traffic.copied().unwrap_or_default();
    json!({
        "id": p.id.to_string(),
        "address": p.address.to_string(),
        "state": p.state.as_str(),
        "last_seen": p.last_seen.as_secs_f64(),
        "sent_bytes": t.sent_bytes,
        "received_bytes": t.received_bytes,
        "errors": t.errors,
        "fetches": t.fetches,
        "fetch_seconds": t.fetch_time.as_secs_f64(),
    })
}

pub(crate) async fn status(State(gateway): State<Gateway>) -> Response {
    let node = &gateway.node;
    let stats = node.stats();
    let peers = node.peers();
    let counters: serde_json::Map<String, Value> =
        counters(&stats).iter().map(|f| (f.name.to_string(), json!(f.value))).collect();
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
    let traffic = node.peer_traffic();
    Json(json!({
        "self": { "id": node.id().to_string(), "address": node.address().map(|a| a.to_string()) },
        "peers": node.peers().iter().map(|p| peer(p, traffic.get(&p.id))).collect::<Vec<_>>(),
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

/// The Prometheus text format (version 0.0.4): every metric with its HELP
/// and TYPE lines, names ending in their unit (`_bytes`, `_seconds`), and
/// `_total` on counters only.
pub(crate) async fn metrics(State(gateway): State<Gateway>) -> Response {
    let node = &gateway.node;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        let _ = writeln!(out, "# HELP cas_{name} {help}\n# TYPE cas_{name} {kind}");
        for (suffix_and_labels, value) in samples {
            let _ = writeln!(out, "cas_{name}{suffix_and_labels} {value}");
        }
    };
    let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    metric("build_info", "gauge", "The version of CAS this node runs (always 1).", &[(&version, "1".into())]);
    let stats = node.stats();
    for f in counters(&stats) {
        match f.kind {
            Kind::Counter => metric(&format!("{}_total", f.metric), "counter", f.help, &[("", f.value.to_string())]),
            Kind::Gauge => metric(f.metric, "gauge", f.help, &[("", f.value.to_string())]),
        }
    }
    for (name, help, histogram) in latencies(&stats) {
        let mut samples: Vec<(String, String)> =
            histogram.buckets().map(|(le, n)| (format!("_bucket{{le=\"{le}\"}}"), n.to_string())).collect();
        samples.push(("_sum".into(), histogram.sum_seconds.to_string()));
        samples.push(("_count".into(), histogram.count().to_string()));
        let samples: Vec<(&str, String)> = samples.iter().map(|(l, v)| (l.as_str(), v.clone())).collect();
        metric(name, "histogram", help, &samples);
    }
    let peers = node.peers();
    let by_state = |s: PeerState| peers.iter().filter(|p| p.state == s).count().to_string();
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
    let in_progress = gateway.requests_in_progress.load(Ordering::Relaxed).to_string();
    metric("http_requests_in_progress", "gauge", "HTTP requests being answered.", &[("", in_progress)]);
    let done = gateway.requests_done.load(Ordering::Relaxed).to_string();
    metric("http_requests_total", "counter", "HTTP requests answered.", &[("", done)]);
    let partial = gateway.partial_responses.load(Ordering::Relaxed).to_string();
    metric("http_partial_responses_total", "counter", "Downloads answered 206 (byte ranges).", &[("", partial)]);
    crate::process::write_metrics(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}
