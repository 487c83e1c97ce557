//! Stopping an HTTP server in good order, but not forever: once the stop is asked for, the
//! requests in flight get a drain deadline to finish; connections still open after it (a client
//! that never reads its answer, a WebSocket that ignores its close frame) are given up.

use std::future::IntoFuture;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The requests in flight did not all finish within the drain deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("requests were still in flight {0:?} after the stop; gave them up")]
pub struct DrainTimedOut(pub Duration);

/// Drives `serving` (a server that begins its graceful stop when `stop` is cancelled, e.g. axum's
/// `serve(..).with_graceful_shutdown(stop.clone().cancelled_owned())`) to its end, giving it at
/// most `deadline` once `stop` is cancelled.
///
/// The connections still open when the deadline passes belong to tasks the server spawned; they
/// end with the process, which is what a caller that returns this error is about to do.
pub async fn within<S: IntoFuture>(
    serving: S,
    stop: &CancellationToken,
    deadline: Duration,
) -> Result<S::Output, DrainTimedOut> {
    let serving = serving.into_future();
    tokio::pin!(serving);
    tokio::select! {
        out = &mut serving => return Ok(out),
        () = stop.cancelled() => {}
    }
    tokio::time::timeout(deadline, serving)
        .await
        .map_err(|_| DrainTimedOut(deadline))
}

/// Serves `router` on `listener`, on a task of its own, until `stop` is cancelled; then gives the
/// requests in flight `deadline` to finish. A server error and a missed deadline are logged, not
/// returned: an operators' side (health, metrics) that fails must not fail the stop in good order
/// of what the process is for.
pub fn spawn_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: CancellationToken,
    deadline: Duration,
) -> JoinHandle<()> {
    let serving =
        axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
    tokio::spawn(async move {
        match within(serving, &stop, deadline).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server stopped"),
            Err(e) => tracing::warn!(error = %e, "HTTP requests given up at the drain deadline"),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;

    use super::{DrainTimedOut, within};

    type Served = Result<std::io::Result<()>, DrainTimedOut>;

    /// A server on a free port, driven by [`within`] on a task of its own, whose `/slow` answers
    /// after `slow` and `/hang` never answers; both tell `started` when a request reaches them.
    async fn server(
        slow: Duration,
        started: Arc<Notify>,
        stop: &CancellationToken,
        deadline: Duration,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Served>) {
        let hang_started = Arc::clone(&started);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let app = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    started.notify_one();
                    tokio::time::sleep(slow).await;
                    "done"
                }),
            )
            .route(
                "/hang",
                get(move || async move {
                    hang_started.notify_one();
                    std::future::pending::<&'static str>().await
                }),
            );
        let stop = stop.clone();
        let serving = tokio::spawn(async move {
            let serving =
                axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
            within(serving, &stop, deadline).await
        });
        (addr, serving)
    }

    /// Sends a GET and reads until the server closes the connection.
    async fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the server accepts");
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        conn.write_all(request.as_bytes())
            .await
            .expect("the request is sent");
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer).await;
        answer
    }

    #[tokio::test]
    async fn a_request_in_flight_finishes_before_the_server_ends() {
        let stop = CancellationToken::new();
        let started = Arc::new(Notify::new());
        let (addr, serving) = server(
            Duration::from_millis(300),
            Arc::clone(&started),
            &stop,
            Duration::from_secs(30),
        )
        .await;
        let answer = tokio::spawn(get_raw(addr, "/slow"));
        // The stop comes while the request is in flight: the handler is still sleeping.
        started.notified().await;
        stop.cancel();
        let answer = answer.await.expect("the client task ends");
        assert!(answer.starts_with("HTTP/1.1 200"), "answer: {answer:?}");
        assert!(answer.ends_with("done"), "answer: {answer:?}");
        let served = serving.await.expect("the server task ends");
        assert!(matches!(served, Ok(Ok(()))), "{served:?}");
    }

    #[tokio::test]
    async fn a_request_that_never_ends_is_given_up_at_the_deadline() {
        let stop = CancellationToken::new();
        let started = Arc::new(Notify::new());
        let (addr, serving) = server(
            Duration::ZERO,
            Arc::clone(&started),
            &stop,
            Duration::from_millis(200),
        )
        .await;
        let _hung = tokio::spawn(get_raw(addr, "/hang"));
        // The server holds the hanging request, so the drain has something to wait for.
        started.notified().await;
        stop.cancel();
        let served = serving.await.expect("the server task ends");
        assert_eq!(
            served.err(),
            Some(DrainTimedOut(Duration::from_millis(200)))
        );
    }
}
