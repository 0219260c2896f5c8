//! One HTTP/1.1 listener per service. Stopping a listener closes it *and* drops every
//! open connection, so that a stopped service looks like a crashed upstream (new
//! connections refused, pooled keep-alive connections reset).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// What to do with one request before routing it.
pub(crate) struct Pre {
    /// Latency to add before answering.
    pub delay: Duration,
    /// Answer with the service's own 500 instead of routing.
    pub fail: bool,
}

/// Called once per request before routing.
pub(crate) type Hook = Arc<dyn Fn() -> Pre + Send + Sync>;

/// The service's own "internal error" answer: for injected failures and for a handler
/// that panicked (the only way the real services produce a 5xx).
pub(crate) type Internal = fn() -> Response<Body>;

pub(crate) struct Listener {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    pub async fn bind(
        addr: SocketAddr,
        app: Router,
        hook: Hook,
        internal: Internal,
    ) -> io::Result<Listener> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app, hook, internal, rx));
        Ok(Listener {
            addr,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// Closes the listener and every connection; returns once they are gone.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    hook: Hook,
    internal: Internal,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // a send or a dropped sender both mean "stop"
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    let app = app.clone();
                    let hook = hook.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let app = app.clone();
                            let pre = hook();
                            async move {
                                if !pre.delay.is_zero() {
                                    tokio::time::sleep(pre.delay).await;
                                }
                                if pre.fail {
                                    return Ok::<_, Infallible>(internal());
                                }
                                // a panicking handler becomes the service's 500, as a
                                // crash of the real service would
                                let answer = tokio::spawn(app.oneshot(req)).await;
                                Ok(match answer {
                                    Ok(Ok(resp)) => resp,
                                    Ok(Err(never)) => match never {},
                                    Err(_) => internal(),
                                })
                            }
                        });
                        let _ = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(sock), svc)
                            .await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    conns.shutdown().await;
}
