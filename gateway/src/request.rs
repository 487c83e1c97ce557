//! What every request goes through first and last: a request id of the gateway's own, the
//! client's `x-request-id` beside it, the client's IP, a tracing span carrying them, the error
//! body of the REST contract, the `x-request-id` answer header, and the request metrics.
//!
//! A client's well-formed `x-request-id` is echoed (in the header and in error bodies), so it can
//! match answers to its requests; but anyone can send any id, so what the gateway records (logs,
//! the headers of what it publishes, and so the audit trail) goes by its own id, with the
//! client's beside it as `client_request_id`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::metrics::method_label;

/// The header carrying the request id, both ways.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the gateway's own, a fresh UUIDv7 for every request, whatever the client
/// sent. The logs and the audit trail go by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The client's `x-request-id`, when it is 1 to 64 characters of `[A-Za-z0-9._-]`: echoed in the
/// answer and recorded beside the gateway's [`RequestId`], never in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequestId(pub String);

/// A request's ids: the gateway's, and the client's beside it when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    /// The gateway's own.
    pub own: RequestId,
    /// The client's.
    pub client: Option<ClientRequestId>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestIds {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let own = parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or_else(|| ApiError::internal("no request id: the request layer is missing"))?;
        let client = parts.extensions.get::<ClientRequestId>().cloned();
        Ok(Self { own, client })
    }
}

/// The address the request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// Who the per-address limits and caps count this client as: its IPv4 address, or its
    /// IPv6 /64. One IPv6 subscriber is given a whole /64 and can speak from any address in it,
    /// so counting by address would give it 2^64 budgets.
    pub fn holder(self) -> IpAddr {
        match self.0 {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
            v4 => v4,
        }
    }
}

/// The route a response was made by, for metrics (`unmatched` when none).
#[derive(Debug, Clone)]
struct Route(String);

fn well_formed(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Runs inside the router, where the matched route is known, and passes it outwards.
pub async fn remember_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(Route(route));
    }
    response
}

/// The most `X-Forwarded-For` entries looked at, from the right: one per proxy in the chain.
const MAX_FORWARDED_HOPS: usize = 16;

/// The client's address: the connection's peer, unless the peer is one of the gateway's own
/// reverse proxies, in which case it is the address the proxies name in `X-Forwarded-For`.
///
/// Each proxy appends the address it was reached from, so the list is read from the right: the
/// first entry that is not one of our proxies is the client. Anything left of it was written by
/// the client and could be anything, so it is never read. A header from a peer that is not a
/// proxy is ignored altogether, and an entry that is not an address stops the walk at the proxy
/// that wrote the last good one.
pub fn client_ip(peer: IpAddr, headers: &axum::http::HeaderMap, proxies: &[IpAddr]) -> IpAddr {
    // An IPv4 peer of a dual-stack socket shows as `::ffff:a.b.c.d`: the same address.
    let peer = peer.to_canonical();
    if !proxies.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','))
        .take(MAX_FORWARDED_HOPS);
    for entry in entries {
        let Some(ip) = std::str::from_utf8(entry)
            .ok()
            .and_then(|e| e.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
        else {
            break;
        };
        client = ip;
        if !proxies.contains(&ip) {
            break;
        }
    }
    client
}

/// The outermost layer.
pub async fn around(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = uuid::Uuid::now_v7().to_string();
    let client_id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map(str::to_owned);
    // What the client is answered: its own id when it sent one.
    let echoed = client_id.clone().unwrap_or_else(|| id.clone());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
    let ip = client_ip(peer, request.headers(), &state.settings().trusted_proxies);
    request.extensions_mut().insert(RequestId(id.clone()));
    if let Some(client_id) = &client_id {
        request
            .extensions_mut()
            .insert(ClientRequestId(client_id.clone()));
    }
    request.extensions_mut().insert(ClientIp(ip));
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        client_request_id = client_id.as_deref(),
        method = %method,
        path = %request.uri().path(),
        client_ip = %ip,
        player_id = tracing::field::Empty,
        region = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    let route = response
        .extensions()
        .get::<Route>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let handler_error = response.extensions_mut().remove::<ApiError>();
    if handler_error.is_some()
        || ((status.is_client_error() || status.is_server_error()) && !is_json)
    {
        let (parts, body) = response.into_parts();
        let error = match handler_error {
            Some(error) => error,
            None => layer_error(status, body).await,
        };
        response = (status, Json(error.body(&echoed))).into_response();
        for name in [header::RETRY_AFTER, header::ALLOW] {
            if let Some(value) = parts.headers.get(&name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(&echoed) {
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER.clone(), value);
    }
    let took = started.elapsed();
    state
        .metrics()
        .observe_request(&route, method_label(&method), status.as_u16(), took);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            took_ms = took.as_secs_f64() * 1000.0,
            "request done"
        );
    });
    response
}

/// The longest plain-text error body read to become an error's message.
const LAYER_MESSAGE_LIMIT: usize = 1024;

/// The error of a response made by something other than a handler (the router, a layer, an
/// extractor's rejection): its status's code, with the plain text it came with as the message
/// (axum's rejections say what was wrong: "Invalid URL: ...", "Failed to deserialize query
/// string: ...").
async fn layer_error(status: axum::http::StatusCode, body: axum::body::Body) -> ApiError {
    let code = Code::for_status(status);
    let text = axum::body::to_bytes(body, LAYER_MESSAGE_LIMIT)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    match text {
        Some(message) => ApiError::new(code, message),
        None => ApiError::of(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_request_ids_are_kept() {
        assert!(well_formed("abc-123_x.y"));
        assert!(!well_formed(""));
        assert!(!well_formed(&"a".repeat(65)));
        assert!(!well_formed("a b"));
        assert!(!well_formed("a\nb"));
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn forwarded(values: &[&[u8]]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_bytes(value).expect("a header value"),
            );
        }
        headers
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let a = ClientIp(ip("2001:db8:1:2:aaaa::1")).holder();
        let b = ClientIp(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).holder();
        let other = ClientIp(ip("2001:db8:1:3::1")).holder();
        assert_eq!(a, b);
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_ne!(a, other);
        assert_eq!(ClientIp(ip("203.0.113.7")).holder(), ip("203.0.113.7"));
    }

    #[test]
    fn a_proxy_names_the_client_and_nobody_else_can() {
        let proxy = ip("10.40.0.10");
        let proxies = [proxy];
        let client = ip("203.0.113.7");
        let named = forwarded(&[b"203.0.113.7"]);
        assert_eq!(client_ip(proxy, &named, &proxies), client);
        // The same header straight from a client is its own word: ignored.
        assert_eq!(
            client_ip(client, &forwarded(&[b"198.51.100.1"]), &proxies),
            client
        );
        // With no proxies configured, nobody is believed.
        assert_eq!(client_ip(proxy, &named, &[]), proxy);
        // The proxy seen through a dual-stack socket is the same proxy, and a client's
        // address in that form is its IPv4 address.
        let mapped = ip("::ffff:10.40.0.10");
        assert_eq!(client_ip(mapped, &named, &proxies), client);
        let mapped_client = forwarded(&[b"::ffff:203.0.113.7"]);
        assert_eq!(client_ip(proxy, &mapped_client, &proxies), client);
    }

    #[test]
    fn what_a_client_wrote_left_of_the_proxy_is_never_read() {
        let proxy = ip("10.40.0.10");
        let inner = ip("10.40.0.11");
        let proxies = [proxy, inner];
        // The client sent its own header; the proxy appended the address it saw.
        for forged in [
            &[b"1.2.3.4, 203.0.113.7".as_slice()][..],
            &[b"1.2.3.4", b"203.0.113.7"],
            &[b"not an address, 203.0.113.7"],
            &[b"10.40.0.10, 203.0.113.7"],
            &[b"\xe2\x80\x8b1.2.3.4,203.0.113.7"],
        ] {
            assert_eq!(
                client_ip(proxy, &forwarded(forged), &proxies),
                ip("203.0.113.7"),
                "{forged:?}"
            );
        }
        // Two proxies in a row: the walk passes the inner one.
        let chain = forwarded(&[b"1.2.3.4, 203.0.113.7, 10.40.0.11"]);
        assert_eq!(client_ip(proxy, &chain, &proxies), ip("203.0.113.7"));
    }

    #[test]
    fn garbage_or_nothing_from_a_proxy_leaves_the_proxy() {
        let proxy = ip("10.40.0.10");
        let proxies = [proxy];
        for bad in [
            &[][..],
            &[b"".as_slice()],
            &[b"unknown"],
            &[b"203.0.113.7 , garbage"],
            &[b"203.0.113.7:4242"],
            &[b"999.999.999.999"],
        ] {
            assert_eq!(
                client_ip(proxy, &forwarded(bad), &proxies),
                proxy,
                "{bad:?}"
            );
        }
        // An absurdly long chain of proxies is read only so far.
        let long = vec!["10.40.0.10"; 10_000].join(",");
        let headers = forwarded(&[format!("203.0.113.7,{long}").as_bytes()]);
        assert_eq!(client_ip(proxy, &headers, &proxies), proxy);
    }
}
