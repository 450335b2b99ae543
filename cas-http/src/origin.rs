//! Which `Host` and `Origin` a TCP gateway answers (issue 31). A page of
//! another site open in the user's browser must neither read the gateway
//! (DNS rebinding: a name of the attacker's that resolves to 127.0.0.1, so
//! the browser sends that name as `Host`) nor write to it (a cross-site
//! `POST /cas` of a form or a `fetch`).
//!
//! The rules, checked on every request of a TCP gateway before anything else:
//!
//! - `Host` (and the authority of an absolute-form request target) must be
//!   one of these, with the bound port (a `Host` without a port means 80):
//!   - a loopback bind: `127.0.0.1`, `localhost`, `[::1]` or the bound IP;
//!   - an unspecified bind (`0.0.0.0`, `::`): any IP literal (it names no
//!     DNS record, so it cannot be rebound) or `localhost`;
//!   - any other address: that address;
//!
//!   or a configured name ([`crate::Options::allowed_hosts`]): `NAME` with
//!   any port or none (a reverse proxy's public name), `NAME:PORT` with that
//!   port only. No `Host`, or several, is refused, whatever the HTTP version.
//! - A request that may change something (any method but `GET`, `HEAD` and
//!   `OPTIONS`: those change nothing, and a CORS preflight gets no
//!   `Access-Control-Allow-*` header, so the browser stops there) is refused
//!   when it says `Sec-Fetch-Site: cross-site`, or when it has an `Origin`
//!   that is not `http://` or `https://` and an accepted host (default
//!   port 80 or 443). That refuses `Origin: null` too: a sandboxed document,
//!   such as an HTML file this gateway serves under `Content-Security-Policy:
//!   sandbox`. No `Origin` (curl, scripts, the `cas` command) passes.
//! - No answer carries `Access-Control-Allow-Origin`: no other origin may
//!   read the gateway (the tests check it).
//!
//! A refusal is 403 with the gateway's JSON error, saying why and how to
//! allow a name. The Unix socket has no such check: no browser reaches it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use cas_core::Error;

use crate::{error, Gateway};

/// A host of a `Host` or `Origin`: an IP literal or a DNS name (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Name {
    Ip(IpAddr),
    Dns(String),
}

/// What the bind itself accepts, with its port.
#[derive(Debug)]
enum Bound {
    Loopback(IpAddr),
    Unspecified,
    Specific(IpAddr),
}

/// The hosts a TCP gateway answers to.
#[derive(Debug)]
pub(crate) struct Hosts {
    port: u16,
    bound: Bound,
    /// Configured names, each with the port it needs (`None`: any).
    named: Vec<(Name, Option<u16>)>,
}

/// `host[:port]`, the host an IPv4 address, `[IPv6]` or a DNS name; `None`
/// for anything else (userinfo, a path, an empty or non-decimal port).
fn parse_authority(text: &str) -> Option<(Name, Option<u16>)> {
    let (name, rest) = match text.strip_prefix('[') {
        Some(inside) => {
            let (ip, rest) = inside.split_once(']')?;
            (Name::Ip(IpAddr::V6(ip.parse::<Ipv6Addr>().ok()?)), rest)
        }
        None => {
            let (host, rest) = text.split_at(text.find(':').unwrap_or(text.len()));
            let name = match host.parse::<Ipv4Addr>() {
                Ok(ip) => Name::Ip(IpAddr::V4(ip)),
                Err(_) if is_dns_name(host) => Name::Dns(host.to_ascii_lowercase()),
                Err(_) => return None,
            };
            (name, rest)
        }
    };
    let port = match rest {
        "" => None,
        _ => {
            let digits = rest.strip_prefix(':')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse().ok()?)
        }
    };
    Some((name, port))
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Configured names, checked before the gateway binds.
pub(crate) fn parse_allowed(names: &[String]) -> cas_core::Result<Vec<(Name, Option<u16>)>> {
    names
        .iter()
        .map(|name| {
            parse_authority(name.trim()).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the allowed HTTP host {name:?} is not NAME, NAME:PORT, an IP address or [IPv6]:PORT"
                ))
            })
        })
        .collect()
}

impl Hosts {
    pub(crate) fn new(bound: SocketAddr, named: Vec<(Name, Option<u16>)>) -> Hosts {
        let ip = bound.ip();
        let bound_kind = if ip.is_loopback() {
            Bound::Loopback(ip)
        } else if ip.is_unspecified() {
            Bound::Unspecified
        } else {
            Bound::Specific(ip)
        };
        Hosts { port: bound.port(), bound: bound_kind, named }
    }

    /// Whether `authority` (`host[:port]`, a missing port meaning
    /// `default_port`) is one this gateway answers to.
    fn accepts(&self, authority: &str, default_port: u16) -> bool {
        let Some((name, port)) = parse_authority(authority) else { return false };
        let port = port.unwrap_or(default_port);
        if self.named.iter().any(|(n, p)| *n == name && p.is_none_or(|p| p == port)) {
            return true;
        }
        let localhost = matches!(&name, Name::Dns(n) if n == "localhost");
        port == self.port
            && match (&self.bound, &name) {
                (Bound::Loopback(bound), Name::Ip(ip)) => {
                    ip == bound || *ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || *ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
                }
                (Bound::Loopback(_) | Bound::Unspecified, Name::Dns(_)) => localhost,
                (Bound::Unspecified, Name::Ip(_)) => true,
                (Bound::Specific(bound), Name::Ip(ip)) => ip == bound,
                (Bound::Specific(_), Name::Dns(_)) => false,
            }
    }

    /// Whether `origin` is `http://` or `https://` and an accepted host.
    fn same_origin(&self, origin: &str) -> bool {
        if let Some(authority) = origin.strip_prefix("http://") {
            self.accepts(authority, 80)
        } else if let Some(authority) = origin.strip_prefix("https://") {
            self.accepts(authority, 443)
        } else {
            false
        }
    }

    /// What the bind accepts, for error messages.
    fn describe(&self) -> String {
        let port = self.port;
        let mut accepted = match &self.bound {
            Bound::Loopback(ip) => {
                let mut all = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
                let own = SocketAddr::new(*ip, port).to_string();
                if !all.contains(&own) {
                    all.push(own);
                }
                all.join(", ")
            }
            Bound::Unspecified => format!("an IP address or localhost, with port {port}"),
            Bound::Specific(ip) => SocketAddr::new(*ip, port).to_string(),
        };
        for (name, p) in &self.named {
            let host = match name {
                Name::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
                Name::Ip(ip) => ip.to_string(),
                Name::Dns(n) => n.clone(),
            };
            accepted.push_str(", ");
            accepted.push_str(&match p {
                Some(p) => format!("{host}:{p}"),
                None => host,
            });
        }
        accepted
    }

    fn refuse(&self, why: String) -> Response {
        error(
            StatusCode::FORBIDDEN,
            format!(
                "{why}: this gateway answers only its own address ({}), so that pages of other sites cannot use it. \
                 To reach it by another name, allow that name: cas serve --http-host NAME (Python \
                 serve_http(..., hosts=[NAME]), Rust Options::allowed_hosts)",
                self.describe()
            ),
        )
    }

    /// Why `request` is refused, or `None` if it may go on.
    fn refusal(&self, request: &Request) -> Option<String> {
        let headers = request.headers();
        let shown = |v: &HeaderValue| v.to_str().map_or_else(|_| "(not text)".to_string(), |v| format!("{v:?}"));
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => return Some("the request has no Host header".into()),
            (Some(_), Some(_)) => return Some("the request has several Host headers".into()),
            (Some(host), None) if !host.to_str().is_ok_and(|h| self.accepts(h, 80)) => {
                return Some(format!("the Host {} is not this gateway's", shown(host)));
            }
            _ => {}
        }
        if let Some(authority) = request.uri().authority() {
            let default_port = if request.uri().scheme_str() == Some("https") { 443 } else { 80 };
            if !self.accepts(authority.as_str(), default_port) {
                return Some(format!("the request's target names the host {:?}", authority.as_str()));
            }
        }
        if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
            return Some(format!("a {} from another site (Sec-Fetch-Site: cross-site)", request.method()));
        }
        let mut origins = headers.get_all(header::ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (None, _) => None,
            (Some(origin), None) if origin.to_str().is_ok_and(|o| self.same_origin(o)) => None,
            (Some(origin), None) => Some(format!("a {} from the origin {}", request.method(), shown(origin))),
            (Some(_), Some(_)) => Some("the request has several Origin headers".into()),
        }
    }
}

/// The middleware: refuses, on TCP, what [`Hosts::refusal`] refuses.
pub(crate) async fn only_own_origin(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    if let Some(hosts) = &gateway.hosts {
        if let Some(why) = hosts.refusal(&request) {
            return hosts.refuse(why);
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(bound: &str, named: &[&str]) -> Hosts {
        let named: Vec<String> = named.iter().map(|n| n.to_string()).collect();
        Hosts::new(bound.parse().unwrap(), parse_allowed(&named).unwrap())
    }

    #[test]
    fn loopback_accepts_its_loopback_names_with_its_port() {
        let h = hosts("127.0.0.1:8080", &[]);
        for ok in ["127.0.0.1:8080", "localhost:8080", "LocalHost:8080", "[::1]:8080"] {
            assert!(h.accepts(ok, 80), "{ok}");
        }
        for bad in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "evil.example:8080",
            "localhost.:8080",
            "127.0.0.2:8080",
            "10.0.0.1:8080",
            "127.0.0.1:+8080",
            "127.0.0.1:",
            "user@127.0.0.1:8080",
            "127.0.0.1:8080/x",
            "[::1]8080",
            "::1:8080",
            "",
        ] {
            assert!(!h.accepts(bad, 80), "{bad}");
        }
        assert!(hosts("127.0.0.1:80", &[]).accepts("localhost", 80), "no port is port 80");
        assert!(hosts("127.0.0.5:8080", &[]).accepts("127.0.0.5:8080", 80), "the bound loopback address");
    }

    #[test]
    fn unspecified_accepts_ip_literals_and_localhost_specific_only_itself() {
        let any = hosts("0.0.0.0:8080", &[]);
        for ok in ["192.0.2.7:8080", "[2001:db8::1]:8080", "localhost:8080", "127.0.0.1:8080"] {
            assert!(any.accepts(ok, 80), "{ok}");
        }
        for bad in ["nas.local:8080", "192.0.2.7:8081", "192.0.2.7"] {
            assert!(!any.accepts(bad, 80), "{bad}");
        }
        let one = hosts("192.0.2.7:8080", &[]);
        assert!(one.accepts("192.0.2.7:8080", 80));
        for bad in ["localhost:8080", "127.0.0.1:8080", "192.0.2.8:8080", "nas.local:8080"] {
            assert!(!one.accepts(bad, 80), "{bad}");
        }
    }

    #[test]
    fn configured_names_with_any_port_or_their_own() {
        let h = hosts("127.0.0.1:8080", &["Files.Example.org", "nas:9000", "[2001:db8::1]"]);
        for ok in
            ["files.example.org", "files.example.org:8080", "FILES.example.org:443", "nas:9000", "[2001:db8::1]:1"]
        {
            assert!(h.accepts(ok, 80), "{ok}");
        }
        assert!(!h.accepts("nas:8080", 80));
        assert!(!h.accepts("nas", 80), "no port is 80, not 9000");
        assert!(h.same_origin("https://files.example.org"));
        assert!(!hosts("127.0.0.1:8080", &["nas:443"]).same_origin("http://nas"));
        assert!(hosts("127.0.0.1:8080", &["nas:443"]).same_origin("https://nas"));
        for bad in ["", "a b", "x/y", "u@h", "h:", "h:x", "[::1"] {
            assert!(parse_allowed(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn origins() {
        let h = hosts("127.0.0.1:8080", &[]);
        assert!(h.same_origin("http://127.0.0.1:8080"));
        assert!(h.same_origin("http://localhost:8080"));
        for bad in
            ["null", "http://evil.example", "http://127.0.0.1:8081", "http://127.0.0.1:8080/", "ftp://127.0.0.1:8080"]
        {
            assert!(!h.same_origin(bad), "{bad}");
        }
    }
}
