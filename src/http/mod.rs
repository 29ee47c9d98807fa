//! unitwatch-http: serves the daemon's status snapshot as `/health`
//! (health+json, for UptimeRobot and load balancers), `/metrics`
//! (Prometheus) and `/` (a page for a person).
//!
//! It never talks to systemd or the daemon: [`source`] keeps a rendering of
//! `<runtime_dir>/status.json` current, and a request only picks bytes out
//! of it. Sockets come from systemd (`LISTEN_FDS`, a `.socket` unit) or are
//! bound from `[http] listen`. Each connection is plain HTTP/1.1 with a
//! header-read timeout and a small header buffer; [`conns`] decides which
//! connections are held when clients want more than the cap, so slow,
//! oversized or flooding clients are cut off without touching the others.

pub mod conns;
pub mod health;
pub mod metrics;
pub mod page;
pub mod source;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::checks::Status;
use crate::config::{Config, ConfigError};
use conns::{Busy, Conns, Limits};
use source::Source;

/// A client must send a request's headers within this time, also when it
/// holds a kept-alive connection open between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The read buffer per connection: a request line or headers larger than
/// this are refused (hyper's minimum is 8 KiB).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections served at once, a quarter of them per peer; over either,
/// the one waiting longest for a request is closed (see [`conns`]).
pub const MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept for everything but connections (listeners, the
/// snapshot, the journal, the runtime's own) when the cap is fitted under
/// `RLIMIT_NOFILE`.
const RESERVED_FDS: usize = 64;

/// The endpoints and what they answer, for unitwatch-http(8); the router
/// below serves exactly these.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("GET, HEAD /health", "the overall status as application/health+json: 200 for pass and warn, 503 for fail; Cache-Control: no-store. For UptimeRobot (which sends HEAD) and load balancers."),
    ("GET /health/detailed", "the same with every check, keyed component:measurement."),
    ("GET /health/service/UNIT", "one unit's checks; 404 for a unit that is not watched."),
    ("GET /metrics", "Prometheus text format 0.0.4, or OpenMetrics when Accept asks for application/openmetrics-text."),
    ("GET /", "a status page for a person."),
];

/// Why unitwatch-http could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the sockets passed by systemd (LISTEN_FDS): {0}")]
    ListenFds(std::io::Error),
    #[error("{path}: cannot read the bearer token: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: the bearer token file is empty")]
    EmptyToken(PathBuf),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

#[derive(Clone)]
struct App {
    source: Source,
    token: Option<Arc<[u8]>>,
    conns: Arc<Conns>,
}

/// The routes; `token` guards everything but `/health`. `conns` is the
/// admission [`serve`] uses, shown in `/metrics`.
pub fn router(source: Source, token: Option<&[u8]>, conns: Arc<Conns>) -> Router {
    let app = App {
        source,
        token: token.map(Arc::from),
        conns,
    };
    let guarded = Router::new()
        .route("/", get(page_handler))
        .route("/health/detailed", get(detailed_handler))
        .route("/health/service/{unit}", get(service_handler))
        .route("/metrics", get(metrics_handler))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/health", get(health_handler))
        .merge(guarded)
        .fallback(not_found)
        .with_state(app)
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn health_response(status: Status, body: bytes::Bytes) -> Response {
    let code = StatusCode::from_u16(health::http_status(status)).expect("valid status");
    no_store((code, [(header::CONTENT_TYPE, health::CONTENT_TYPE)], body).into_response())
}

async fn health_handler(State(app): State<App>) -> Response {
    let (s, body) = app.source.get().health(SystemTime::now(), false);
    health_response(s, body)
}

async fn detailed_handler(State(app): State<App>) -> Response {
    let (s, body) = app.source.get().health(SystemTime::now(), true);
    health_response(s, body)
}

async fn service_handler(State(app): State<App>, UrlPath(unit): UrlPath<String>) -> Response {
    let r = app.source.get();
    match r.service(SystemTime::now(), &unit) {
        Some((s, body)) => health_response(s, body),
        None => {
            let body = source::to_bytes(&health::not_watched(&unit, &r.host));
            let mut resp = health_response(Status::Fail, body);
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}

async fn metrics_handler(State(app): State<App>, headers: HeaderMap) -> Response {
    let r = app.source.get();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let now = metrics::PerScrape {
        age_seconds: r.age(SystemTime::now()),
        conns: Some(app.conns.stats()),
    };
    let (ct, body) = r.metrics.scrape(metrics::wants_openmetrics(accept), now);
    no_store(([(header::CONTENT_TYPE, ct)], body).into_response())
}

async fn page_handler(State(app): State<App>) -> Response {
    let r = app.source.get();
    let body = page::render(&r, SystemTime::now());
    no_store(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "404 not found: {}\nendpoints: / /health /health/detailed /health/service/{{unit}} /metrics\n",
            req.uri().path()
        ),
    )
        .into_response()
}

async fn require_token(State(app): State<App>, req: Request, next: Next) -> Response {
    let Some(token) = &app.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if given.is_some_and(|g| constant_time_eq::constant_time_eq(g, token)) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer realm=\"unitwatch\""),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "401 unauthorized: send Authorization: Bearer <token> (only /health is open)\n",
    )
        .into_response()
}

/// The listening sockets: systemd's when it passed some, else bound from
/// `listen`.
pub fn listeners(listen: &[String]) -> Result<Vec<std::net::TcpListener>, HttpError> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()
        .map_err(HttpError::ListenFds)?
        .collect();
    if !fds.is_empty() {
        return fds
            .into_iter()
            .map(|fd| {
                // SAFETY: systemd hands these descriptors to this process
                // (LISTEN_PID checked by listen_fds) and nothing else owns them.
                let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
                l.set_nonblocking(true).map_err(HttpError::ListenFds)?;
                Ok(l)
            })
            .collect();
    }
    listen
        .iter()
        .map(|a| {
            let bind = |a: &str| -> std::io::Result<std::net::TcpListener> {
                let addr: SocketAddr = a
                    .parse()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let sock = socket2::Socket::new(
                    socket2::Domain::for_address(addr),
                    socket2::Type::STREAM,
                    None,
                )?;
                // "[::]:8080" next to "0.0.0.0:8080" must not claim the IPv4
                // port too (Linux's default), or the second bind fails.
                if addr.is_ipv6() {
                    sock.set_only_v6(true)?;
                }
                sock.set_reuse_address(true)?;
                sock.set_nonblocking(true)?;
                sock.bind(&addr.into())?;
                // The kernel's own cap (net.core.somaxconn, 4096 by default)
                // and no lower, as systemd sets its sockets' Backlog=: a
                // flood fills the accept queue between two turns of the
                // accept loop, and a new client's SYN that meets a full
                // queue is dropped and sent again only a second later.
                sock.listen(i32::MAX)?;
                Ok(sock.into())
            };
            bind(a).map_err(|source| HttpError::Bind {
                addr: a.clone(),
                source,
            })
        })
        .collect()
}

/// The connection cap: [`MAX_CONNECTIONS`], or fewer when the descriptor
/// limit would run out first (systemd's default soft limit is 1,024, and
/// the unit's seccomp filter forbids raising it from inside).
pub fn connection_limit() -> Limits {
    use nix::sys::resource::{getrlimit, Resource};
    let fds = getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft as usize)
        .unwrap_or(1024);
    Limits::new(MAX_CONNECTIONS.min(fds.saturating_sub(RESERVED_FDS)))
}

/// Serves `router` on `listener` until the task is dropped, admitting
/// connections through `conns`. The loop never waits for room: a
/// connection is accepted, admitted (another shed for it if need be) or
/// closed, at once.
pub async fn serve(listener: TcpListener, router: Router, conns: Arc<Conns>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: free one, pass, do not
                // die. Logged at the first and then at powers of two, so a
                // flood does not flood the journal.
                let n = conns.accept_failed();
                if n.is_power_of_two() {
                    log::warn!("accept failed ({n} so far): {e}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Dropping a refused stream closes it.
        let Some(admitted) = conns.admit(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let slot = admitted.slot().clone();
            let service = hyper::service::service_fn(move |req| {
                let busy = Busy::enter(&slot);
                let answer = router.clone().oneshot(req);
                async move {
                    let r = answer.await;
                    drop(busy);
                    r
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                // Shed: dropping the connection closes its socket.
                _ = admitted.slot().shed() => {}
            }
            drop(admitted);
        });
    }
}

fn read_token(path: &Path) -> Result<Vec<u8>, HttpError> {
    let t = std::fs::read(path).map_err(|source| HttpError::Token {
        path: path.to_path_buf(),
        source,
    })?;
    let t = t.trim_ascii().to_vec();
    if t.is_empty() {
        return Err(HttpError::EmptyToken(path.to_path_buf()));
    }
    Ok(t)
}

/// Runs unitwatch-http until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), HttpError> {
    use tokio::signal::unix::{signal, SignalKind};
    let config = Config::load(config_path)?;
    let token = config
        .http
        .token_file
        .as_deref()
        .map(read_token)
        .transpose()?;
    let host = crate::host_name();
    let path = config.status_path();
    let src = Source::new(source::load(&path, &host));
    let mut term = signal(SignalKind::terminate()).map_err(HttpError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(HttpError::Signal)?;
    let listeners = listeners(&config.http.listen)?;
    let limits = connection_limit();
    if limits.total < MAX_CONNECTIONS {
        log::warn!(
            "serving at most {} connections: the descriptor limit (LimitNOFILE) is too low for {MAX_CONNECTIONS}",
            limits.total
        );
    }
    let conns = Conns::new(limits);
    let router = router(src.clone(), token.as_deref(), conns.clone());
    let mut addrs = Vec::new();
    for l in listeners {
        addrs.push(
            l.local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
        );
        let l = TcpListener::from_std(l).map_err(HttpError::ListenFds)?;
        tokio::spawn(serve(l, router.clone(), conns.clone()));
    }
    tokio::spawn(source::watch(path.clone(), host, src));
    let status = format!(
        "serving {} on {}{}",
        path.display(),
        addrs.join(", "),
        if token.is_some() {
            " (bearer token required but on /health)"
        } else {
            ""
        }
    );
    log::info!("{status}");
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_ipv6_wildcards_share_a_port() {
        // A free port, released again for the real bind.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = vec![format!("0.0.0.0:{port}"), format!("[::]:{port}")];
        let ls = listeners(&listen).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ls.len(), 2);
        assert!(ls[1].local_addr().unwrap().is_ipv6());
        // Both answer a connection.
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::net::TcpStream::connect(("::1", port)).unwrap();
    }

    /// The listen queue holds as many connections as the kernel allows, not
    /// 1,024: a flood that fills it gets a new client's SYN dropped, and
    /// that client waits a second for its next one. Nothing is accepted
    /// here, so every connection past the queue's length would time out.
    #[test]
    fn the_listen_queue_is_the_kernels_largest() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Past the old 1,024, within the kernel's cap and the descriptors.
        let n = somaxconn.min(3000);
        assert!(
            n > 1100,
            "net.core.somaxconn is {somaxconn}: too low to tell"
        );
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
        assert!(hard as usize > n + 64, "RLIMIT_NOFILE {hard} is too low");
        let ls = listeners(&["127.0.0.1:0".to_string()]).unwrap_or_else(|e| panic!("{e}"));
        let to = ls[0].local_addr().unwrap();
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            let c = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(500))
                .unwrap_or_else(|e| panic!("connection {i} of {n} was not queued: {e}"));
            held.push(c);
        }
    }

    #[test]
    fn a_taken_address_names_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = listeners(std::slice::from_ref(&addr)).unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
