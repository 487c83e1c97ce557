//! The listener, and what goes out on each connection: the answers hyper makes by itself carry
//! the contract's error body too.
//!
//! A request hyper cannot parse (a malformed request line, a header name or value with bytes
//! HTTP does not allow, a path that is not UTF-8, a URI or headers too long) never reaches the
//! router: hyper answers 400, 414 or 431 with an empty body and closes the connection, and no
//! layer sees it. [`Shaped`] recognises such an answer on its way out (a response head with an
//! error status and no `x-request-id`, which every answer of the router has, see
//! [`crate::request`]) and writes in its place the same answer with the error body of the REST
//! contract and a request id.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{ApiError, Code};
use crate::metrics::Metrics;

/// The gateway's listener: TCP connections, each [`Shaped`].
pub struct Listener {
    tcp: TcpListener,
    metrics: Metrics,
}

impl Listener {
    /// Wraps a bound TCP listener; the answers it rewrites are counted in `metrics`.
    pub fn new(tcp: TcpListener, metrics: Metrics) -> Self {
        Self { tcp, metrics }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Shaped<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.tcp).await;
        (Shaped::new(stream, self.metrics.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A connection whose error answers made by hyper itself are given the contract's error body.
pub struct Shaped<T> {
    inner: T,
    metrics: Metrics,
    /// The answer written in place of hyper's, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> Shaped<T> {
    /// Wraps a connection.
    pub fn new(inner: T, metrics: Metrics) -> Self {
        Self {
            inner,
            metrics,
            replacement: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> Shaped<T> {
    /// Writes out what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some((bytes, sent)) = self.replacement.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if *sent >= bytes.len() {
                self.replacement = None;
                continue;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
    }

    /// Takes `head` in, written as the contract's answer, when it is an error answer of hyper's
    /// own; `false` (nothing taken) otherwise.
    fn take_if_hyper_error(&mut self, cx: &mut Context<'_>, head: &[u8]) -> io::Result<bool> {
        let Some(answer) = reshape(head) else {
            return Ok(false);
        };
        self.metrics
            .observe_request("unparsed", "unknown", answer.status, Default::default());
        tracing::info!(
            request_id = %answer.request_id,
            status = answer.status,
            "request not parsed"
        );
        self.replacement = Some((answer.bytes, 0));
        // Taken: it goes out now if it can, or on the flush that follows.
        if let Poll::Ready(Err(e)) = self.poll_replacement(cx) {
            return Err(e);
        }
        Ok(true)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Shaped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Shaped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if this.take_if_hyper_error(cx, buf)? {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        // hyper writes a response head as one buffer, the first of a write.
        if let Some(head) = bufs.iter().find(|b| !b.is_empty())
            && this.take_if_hyper_error(cx, head)?
        {
            return Poll::Ready(Ok(head.len()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// An error answer of hyper's, rewritten.
#[derive(Debug)]
struct Reshaped {
    status: u16,
    request_id: String,
    bytes: Vec<u8>,
}

/// The contract's answer in place of `head`, when `head` is a whole response head with an error
/// status and no `x-request-id`: what hyper writes for a request it could not parse.
fn reshape(head: &[u8]) -> Option<Reshaped> {
    if !head.starts_with(b"HTTP/1.") || head.len() < 12 || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()?
        .parse::<u16>()
        .ok()?;
    if status < 400 {
        return None;
    }
    let text = std::str::from_utf8(&head[..head.len() - 4]).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut kept = Vec::new();
    for line in lines {
        let name = line.split(':').next()?.trim().to_ascii_lowercase();
        match name.as_str() {
            // Our own answer, or not a head at all.
            "x-request-id" | "" => return None,
            "content-length" | "content-type" => {}
            _ => kept.push(line),
        }
    }
    let code = Code::for_status(StatusCode::from_u16(status).ok()?);
    let message = match code {
        Code::InvalidRequest => {
            "the request could not be read as HTTP: a malformed request line, or a path or header \
             with bytes HTTP does not allow"
        }
        Code::UriTooLong => "the request's URI is too long",
        Code::HeadersTooLarge => "the request's headers are too large",
        _ => "the request could not be read",
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let body = ApiError::new(code, message).body(&request_id).to_string();
    let mut out = String::with_capacity(256 + body.len());
    out.push_str(status_line);
    out.push_str("\r\n");
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\n\r\n",
        body.len()
    ));
    out.push_str(&body);
    Some(Reshaped {
        status,
        request_id,
        bytes: out.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPERS: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";

    #[test]
    fn hypers_own_error_answer_gets_the_error_body() {
        let answer = reshape(HYPERS).expect("reshaped");
        let text = String::from_utf8(answer.bytes).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close") && head.contains("\r\ndate: x"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(!head.contains("content-length: 0"));
        let body: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["request_id"], answer.request_id.as_str());
        assert!(head.contains(&format!("\r\nx-request-id: {}", answer.request_id)));
    }

    #[test]
    fn other_writes_pass_as_they_are() {
        for bytes in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\nx-request-id: r1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"{\"error\": {}}",
            b"\x81\x05hello",
        ] {
            assert!(
                reshape(bytes).is_none(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
