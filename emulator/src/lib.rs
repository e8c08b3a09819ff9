//! A Kubernetes API emulator for secops's tests and local demo.
//!
//! It serves the JSON REST API for the resources secops touches, with the conventions the
//! real API server keeps (resourceVersion, conflicts, `Status` bodies, patches, selectors,
//! TokenRequest/TokenReview, RBAC, watches, impersonation, SelfSubjectAccessReview), so
//! that kubectl (whose typed commands send protobuf), kube-rs and OpenBao's kubernetes auth
//! can all talk to it. [`Emulator::start`] runs it on a free loopback port in a thread of its
//! own; dropping the handle stops it.

#![forbid(unsafe_code)]

mod cluster;
mod controller;
mod faults;
mod protobuf;
mod rbac;
mod resources;
mod selector;
mod server;
mod status;
mod store;
mod tls;
mod tokens;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use cluster::{ApiRequest, Cluster, Impersonation, Outcome, RequestRecord};
pub use faults::{FaultAction, FaultRule};
pub use status::ApiError;
pub use tokens::{API_AUDIENCES, ISSUER};

/// A running emulator; stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    cluster: Arc<Mutex<Cluster>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Starts on `127.0.0.1` at a free port.
    pub fn start() -> std::io::Result<Emulator> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"))
    }

    pub fn start_on(listen: SocketAddr) -> std::io::Result<Emulator> {
        Self::start_with(listen, None)
    }

    /// With `tls_dir`, also serves HTTPS on a second free port of the same address, with a
    /// CA made now: `ca.crt` (and the serving `tls.crt`/`tls.key`) are written there, for
    /// clients that configure themselves as a pod does (in-cluster). Plain HTTP stays.
    pub fn start_with(listen: SocketAddr, tls_dir: Option<&Path>) -> std::io::Result<Emulator> {
        let cluster = Arc::new(Mutex::new(Cluster::new()));
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls = match tls_dir {
            None => None,
            Some(dir) => {
                let certificates = tls::Certificates::generate();
                certificates.write(dir)?;
                let listener = std::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0))?;
                listener.set_nonblocking(true)?;
                Some((listener, certificates.acceptor()))
            }
        };
        let tls_addr = match &tls {
            Some((listener, _)) => Some(listener.local_addr()?),
            None => None,
        };
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let served = cluster.clone();
        let thread = std::thread::Builder::new()
            .name("kube-emulator".into())
            .spawn(move || {
                // One thread: every request takes the cluster lock anyway, and a single
                // thread spends nothing on waking and stealing between workers.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let https = async {
                        match tls {
                            Some((listener, acceptor)) => {
                                let listener =
                                    tokio::net::TcpListener::from_std(listener).expect("listener");
                                server::serve(listener, served.clone(), Some(acceptor)).await
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = server::serve(listener, served.clone(), None) => {}
                        _ = https => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(Emulator {
            addr,
            tls_addr,
            cluster,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The HTTPS address, when started with a TLS directory.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Direct access to the cluster state, for fixtures, faults and assertions.
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn admin_token(&self) -> String {
        self.cluster().admin_token().to_string()
    }

    pub fn inject(&self, rule: FaultRule) {
        self.cluster().faults.add(rule);
    }

    /// A kubeconfig whose current context is the cluster admin.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url(), &self.admin_token(), "admin")
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

/// A kubeconfig for any bearer token (a service account's, to test its permissions).
pub fn kubeconfig_for(url: &str, token: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\n\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: {user}\n    namespace: default\n\
         current-context: emulator\n"
    )
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
