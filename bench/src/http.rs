//! A bare HTTP/1.1 client on one keep-alive connection, and the live stream's WebSocket. The
//! driver shares the machine with what it measures, so it spends as little of it as it can:
//! `hyper` alone, as under axum and reqwest.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(#[from] std::io::Error),
    /// HTTP failed on the connection.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// One client's own connection to the gateway, made again when it breaks.
pub struct Http {
    addr: SocketAddr,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

/// Connects a bare HTTP/1.1 client to `addr`, with Nagle off.
pub async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, HttpError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

impl Http {
    /// A client of the gateway at `addr`; it connects on its first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    /// Sends a request (JSON `body`, bearer `token`, `x-request-id`) and reads the whole
    /// answer: its status and body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        request_id: Option<&str>,
    ) -> Result<(u16, Bytes), HttpError> {
        let result = async {
            let sender = match &mut self.sender {
                Some(sender) => sender,
                None => self.sender.insert(connect(self.addr).await?),
            };
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, self.addr.to_string());
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            if let Some(id) = request_id {
                request = request.header("x-request-id", id);
            }
            let bytes = match body {
                Some(body) => {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                    Bytes::from(body.to_string())
                }
                None => Bytes::new(),
            };
            let request = request.body(Full::new(bytes))?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, HttpError>((status, body))
        }
        .await;
        if result.is_err() {
            // The next request starts on a fresh connection.
            self.sender = None;
        }
        result
    }
}
