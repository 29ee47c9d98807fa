//! A Docker Engine API client over the engine's unix socket: the few
//! requests unitwatch makes (list, inspect, one memory sample, start,
//! restart) and the `/events` stream. Docker's dockerd and Podman's
//! Docker-compatible service (`podman system service`) both answer it.
//!
//! Why hyper over the socket and not bollard: unitwatch reads a handful of
//! fields from six endpoints. hyper and hyper-util are already linked (the
//! HTTP server, the http check), so this costs a few kilobytes of code;
//! bollard brings the whole API's generated models and its own HTTP
//! stack, megabytes of binary and RSS in a daemon whose footprint is
//! measured. Each request opens its own connection (a unix connect is
//! microseconds), so no pool holds state between sweeps, and every request
//! has a deadline: an engine that hangs fails a request, never the loop.
//!
//! The API version is pinned at 1.41 (Docker 20.10, Podman 3 and later
//! answer it), so a newer engine's changes of defaults do not change what
//! is read. Unknown fields are ignored: engines add fields in every
//! release, and those are not a surprise worth failing on. A missing field
//! the daemon needs, a body that is not JSON, or an answer that is not
//! 2xx is an [`EngineError`] that names the request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{header, Method, Request, StatusCode};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::api::{self, Event, Inspect, MemoryUse, Summary};

/// The API version every request names.
pub const API_VERSION: &str = "v1.41";

/// The largest body read whole (a list of thousands of containers is a few
/// megabytes; an answer past this is refused, not buffered).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The longest single event accepted on the events stream.
const MAX_EVENT: usize = 64 * 1024;

/// What went wrong with a request to the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{engine}: only unix:// engine sockets are supported (for example unix:///var/run/docker.sock)")]
    Scheme { engine: String },
    #[error("cannot reach the engine at {engine}: {source}{hint}")]
    Connect {
        engine: String,
        source: std::io::Error,
        /// What to do about it (permission: the socket's group).
        hint: &'static str,
    },
    #[error("{request} to {engine}: no answer within {after:?}")]
    Timeout {
        engine: String,
        request: String,
        after: Duration,
    },
    #[error("{request} to {engine}: {why}")]
    Http {
        engine: String,
        request: String,
        why: String,
    },
    #[error("{request} to {engine}: HTTP {code}: {message}")]
    Status {
        engine: String,
        request: String,
        code: u16,
        /// The engine's own `message`, or the body's start.
        message: String,
    },
    #[error("{request} to {engine}: unexpected answer: {why}")]
    Parse {
        engine: String,
        request: String,
        why: String,
    },
}

impl EngineError {
    /// The engine said there is no such container (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::Status { code: 404, .. })
    }
}

/// An engine, by its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// As configured (`unix:///var/run/docker.sock`), for messages.
    uri: String,
    socket: PathBuf,
    /// How long one request may take.
    timeout: Duration,
}

impl Engine {
    /// The engine at `uri` (`unix:///path`; a bare absolute path is taken
    /// as the socket too).
    pub fn new(uri: &str, timeout: Duration) -> Result<Engine, EngineError> {
        let path = match uri.strip_prefix("unix://") {
            Some(p) => p,
            None if uri.starts_with('/') => uri,
            None => {
                return Err(EngineError::Scheme {
                    engine: uri.to_string(),
                })
            }
        };
        if !path.starts_with('/') {
            return Err(EngineError::Scheme {
                engine: uri.to_string(),
            });
        }
        Ok(Engine {
            uri: uri.to_string(),
            socket: PathBuf::from(path),
            timeout,
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The containers whose name is one of `names` or that carry one of
    /// `labels` (`key=value`), running or not.
    pub async fn list(&self, names: &[&str], labels: &[&str]) -> Result<Vec<Summary>, EngineError> {
        let mut out = Vec::new();
        // The engine's filters AND different keys and OR one key's
        // values: names and labels are asked apart.
        if !names.is_empty() {
            let f = api::filters(&[("name", names)]);
            out.extend(
                self.get::<Vec<Summary>>(&format!("/containers/json?all=true&filters={f}"))
                    .await?,
            );
        }
        if !labels.is_empty() {
            for l in labels {
                let f = api::filters(&[("label", &[l])]);
                for s in self
                    .get::<Vec<Summary>>(&format!("/containers/json?all=true&filters={f}"))
                    .await?
                {
                    if !out.iter().any(|o: &Summary| o.id == s.id) {
                        out.push(s);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One container's state, by name or ID.
    pub async fn inspect(&self, id: &str) -> Result<Inspect, EngineError> {
        self.get(&format!("/containers/{}/json", api::path_seg(id)))
            .await
    }

    /// One sample of a running container's memory (no wait for a second
    /// CPU sample: `one-shot`).
    pub async fn memory(&self, id: &str) -> Result<MemoryUse, EngineError> {
        let path = format!(
            "/containers/{}/stats?stream=false&one-shot=true",
            api::path_seg(id)
        );
        let stats: api::Stats = self.get(&path).await?;
        Ok(stats.memory())
    }

    /// Restarts a container (`stop_secs` for it to stop before it is
    /// killed).
    pub async fn restart(&self, id: &str, stop_secs: u32) -> Result<(), EngineError> {
        let path = format!("/containers/{}/restart?t={stop_secs}", api::path_seg(id));
        self.call(
            Method::POST,
            &path,
            self.timeout + Duration::from_secs(stop_secs.into()),
        )
        .await
        .map(drop)
    }

    /// Starts a stopped container (one already running is no error).
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        let path = format!("/containers/{}/start", api::path_seg(id));
        self.call(Method::POST, &path, self.timeout).await.map(drop)
    }

    /// The engine's events about containers whose name is one of `names`
    /// or that carry one of `labels`, from now on.
    pub async fn events(&self, names: &[&str], labels: &[&str]) -> Result<Events, EngineError> {
        let f = api::event_filters(names, labels);
        self.stream(format!("/events?filters={f}")).await
    }

    /// What the engine still holds of container `id`'s events between two
    /// times (s since the epoch): a past stream, which ends at `until`.
    pub async fn history(
        &self,
        id: &str,
        since: f64,
        until: f64,
    ) -> Result<Vec<Event>, EngineError> {
        let f = api::filters(&[("type", &["container"]), ("container", &[id])]);
        let mut s = self
            .stream(format!(
                "/events?since={since:.3}&until={until:.3}&filters={f}"
            ))
            .await?;
        let mut out = Vec::new();
        let read = async {
            while let Some(e) = s.next().await? {
                out.push(e);
            }
            Ok::<_, EngineError>(())
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| self.timeout_err("GET /events", self.timeout))??;
        Ok(out)
    }

    async fn stream(&self, path: String) -> Result<Events, EngineError> {
        let request = "GET /events".to_string();
        let io = self.connect().await?;
        let send = async {
            let (mut tx, conn) = http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| self.http(&request, &e))?;
            // The connection is driven by its own task: the stream lives
            // as long as the Events value does (dropping it ends both).
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            let resp = tx
                .send_request(self.req(Method::GET, &path))
                .await
                .map_err(|e| self.http(&request, &e))?;
            Ok::<_, EngineError>((resp, driver))
        };
        let (resp, driver) = tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| self.timeout_err(&request, self.timeout))??;
        let code = resp.status();
        if !code.is_success() {
            let body = read_capped(resp.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            driver.abort();
            return Err(self.status(&request, code, &body));
        }
        Ok(Events {
            body: resp.into_body(),
            buf: BytesMut::new(),
            driver,
            engine: self.uri.clone(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, EngineError> {
        let body = self.call(Method::GET, path, self.timeout).await?;
        serde_json::from_slice(&body).map_err(|e| EngineError::Parse {
            engine: self.uri.clone(),
            request: format!("GET {}", path_only(path)),
            why: e.to_string(),
        })
    }

    /// One request: its body, when the answer is 2xx.
    async fn call(
        &self,
        method: Method,
        path: &str,
        within: Duration,
    ) -> Result<Bytes, EngineError> {
        let request = format!("{method} {}", path_only(path));
        let run = async {
            let io = self.connect().await?;
            let (mut tx, conn) = http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| self.http(&request, &e))?;
            // Driven here, with the request: both end at the deadline.
            let exchange = async {
                let resp = tx
                    .send_request(self.req(method.clone(), path))
                    .await
                    .map_err(|e| self.http(&request, &e))?;
                let code = resp.status();
                let body = read_capped(resp.into_body(), MAX_BODY)
                    .await
                    .map_err(|why| EngineError::Http {
                        engine: self.uri.clone(),
                        request: request.clone(),
                        why,
                    })?;
                if !code.is_success() {
                    return Err(self.status(&request, code, &body));
                }
                Ok(body)
            };
            tokio::select! {
                r = exchange => r,
                r = conn => Err(match r {
                    Err(e) => self.http(&request, &e),
                    Ok(()) => EngineError::Http {
                        engine: self.uri.clone(),
                        request: request.clone(),
                        why: "the engine closed the connection".into(),
                    },
                }),
            }
        };
        tokio::time::timeout(within, run)
            .await
            .map_err(|_| self.timeout_err(&request, within))?
    }

    async fn connect(&self) -> Result<UnixStream, EngineError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| EngineError::Connect {
                engine: self.uri.clone(),
                hint: if source.kind() == std::io::ErrorKind::PermissionDenied {
                    " (the daemon needs the socket's group, docker for dockerd: see the README on [[container]])"
                } else {
                    ""
                },
                source,
            })
    }

    fn req(&self, method: Method, path: &str) -> Request<Empty<Bytes>> {
        Request::builder()
            .method(method)
            .uri(format!("/{API_VERSION}{path}"))
            .header(header::HOST, "docker")
            .header(
                header::USER_AGENT,
                concat!("unitwatch/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .expect("a request of a method, a path and two headers")
    }

    fn http(&self, request: &str, e: &hyper::Error) -> EngineError {
        EngineError::Http {
            engine: self.uri.clone(),
            request: request.to_string(),
            why: e.to_string(),
        }
    }

    fn timeout_err(&self, request: &str, after: Duration) -> EngineError {
        EngineError::Timeout {
            engine: self.uri.clone(),
            request: request.to_string(),
            after,
        }
    }

    fn status(&self, request: &str, code: StatusCode, body: &[u8]) -> EngineError {
        EngineError::Status {
            engine: self.uri.clone(),
            request: request.to_string(),
            code: code.as_u16(),
            message: api::error_message(body),
        }
    }
}

/// The path without its query (filters are long and say nothing to a
/// person reading the error).
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// A body, whole, up to `cap` bytes.
async fn read_capped(mut body: hyper::body::Incoming, cap: usize) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(d) = frame.into_data() {
            if out.len() + d.len() > cap {
                return Err(format!("the answer is larger than {cap} bytes"));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out.freeze())
}

/// The engine's event stream. Dropping it closes the connection.
pub struct Events {
    body: hyper::body::Incoming,
    /// What has come of the event being read.
    buf: BytesMut,
    driver: tokio::task::JoinHandle<()>,
    engine: String,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Events {
    /// The next event; `Ok(None)` when the engine ended the stream (it
    /// stopped, or restarted). An event that is not one (not JSON, or past
    /// 64 KiB) is an error: the caller reports it and subscribes again.
    pub async fn next(&mut self) -> Result<Option<Event>, EngineError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(end + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| self.bad(e.to_string()));
            }
            if self.buf.len() > MAX_EVENT {
                return Err(self.bad(format!("an event longer than {MAX_EVENT} bytes")));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(EngineError::Http {
                        engine: self.engine.clone(),
                        request: "GET /events".into(),
                        why: e.to_string(),
                    })
                }
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }

    fn bad(&self, why: String) -> EngineError {
        EngineError::Parse {
            engine: self.engine.clone(),
            request: "GET /events".into(),
            why,
        }
    }
}

#[cfg(test)]
mod tests;
