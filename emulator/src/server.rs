//! HTTP/1.1 serving (plain, or over TLS): keep-alive connections (OpenBao holds one open), watch streams, and
//! the faults that need the socket itself (hang, drop).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::cluster::{ApiRequest, Cluster, Impersonation};
use crate::faults::FaultAction;
use crate::watch::{self, WatchBody};

/// Serves plain HTTP, or HTTPS with `tls`.
pub async fn serve(listener: TcpListener, cluster: Arc<Mutex<Cluster>>, tls: Option<TlsAcceptor>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let cluster = cluster.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => connection(stream, cluster).await,
                Some(tls) => {
                    // A client that gives up on the handshake is its own business.
                    if let Ok(stream) = tls.accept(stream).await {
                        connection(stream, cluster).await
                    }
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn connection<S>(stream: S, cluster: Arc<Mutex<Cluster>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kill = Arc::new(Notify::new());
    let killer = kill.clone();
    let service =
        hyper::service::service_fn(move |request| answer(request, cluster.clone(), killer.clone()));
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = kill.notified() => {}
    }
}

async fn answer(
    request: Request<Incoming>,
    cluster: Arc<Mutex<Cluster>>,
    kill: Arc<Notify>,
) -> Result<Response<Either<Full<Bytes>, WatchBody>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let api_request = ApiRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        content_type: header("content-type").unwrap_or_default(),
        accept: header("accept").unwrap_or_default(),
        bearer: header("authorization")
            .and_then(|h| h.strip_prefix("Bearer ").map(|t| t.trim().to_string())),
        body,
    };
    let impersonation = Impersonation {
        user: header("impersonate-user"),
        groups: parts
            .headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect(),
    };
    let outcome = cluster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .handle_as(&api_request, &impersonation);
    match outcome.fault {
        Some(FaultAction::Hang) => std::future::pending().await,
        Some(FaultAction::DropBefore | FaultAction::DropAfter) => {
            kill.notify_one();
            std::future::pending().await
        }
        _ => {}
    }
    let response = Response::builder()
        .status(outcome.code)
        .header("content-type", "application/json");
    if let Some(accepted) = outcome.watch {
        let events = watch::stream(accepted, cluster);
        return Ok(response
            .body(Either::Right(events))
            .expect("valid response"));
    }
    let body = serde_json::to_vec(&outcome.body).expect("JSON values serialize");
    Ok(response
        .body(Either::Left(Full::new(Bytes::from(body))))
        .expect("valid response"))
}
