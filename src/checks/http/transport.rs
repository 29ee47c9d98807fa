//! The http check's transports: one request, its status and its body up
//! to the cap, or why there is none. `fetch_plain` serves plain `http://`
//! URLs that follow no redirect and carry no userinfo: one connection
//! through hyper's connection API, driven in the run's own future, so that
//! the connection ends with the run (at its deadline too). `fetch_reqwest`
//! serves the rest (https, redirects, userinfo), whose TLS and redirect
//! handling reqwest already does well.
//!
//! Why two: a health endpoint on loopback or the private network is the
//! common case, and a run costs most of its CPU there in reqwest's layers
//! (its pool, redirect policy and URL handling), not in the connection:
//! measured here, 100 such checks a second took 4.5-5.0 % of a core through
//! reqwest and 3.6-3.75 % through hyper alone (user time 2.0-2.6 % to
//! 1.4-1.55 %; the rest is the kernel's, the same for both).

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderValue, Method as HttpMethod, Request, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;

use super::client::{cause, causes};

/// What one request brought back.
pub(super) struct Fetched {
    pub code: u16,
    /// The server certificate's notAfter, over https.
    pub not_after: Option<SystemTime>,
    pub body: Vec<u8>,
    /// The body went on past the cap (and was not read further).
    pub cut: bool,
}

/// Why a request brought nothing back to judge.
pub(super) enum Failed {
    /// Nothing within the deadline.
    TimedOut,
    /// No connection, or no answer.
    Send { connect: bool, why: String },
    /// The status came, the body did not (in time: `why` is None).
    Body {
        code: u16,
        not_after: Option<SystemTime>,
        why: Option<String>,
    },
}

/// A plain http:// target, worked out once when the check is built.
#[derive(Debug, Clone)]
pub(super) struct Plain {
    host: String,
    port: u16,
    /// The request target in origin form: path and query.
    uri: Uri,
    /// The Host header: the URL's host and, if it gave one, its port.
    host_header: HeaderValue,
}

impl Plain {
    /// The target of `url`, if this transport serves it.
    pub(super) fn of(url: &reqwest::Url, follow_redirects: bool) -> Option<Plain> {
        if url.scheme() != "http"
            || follow_redirects
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        // host_str has an IPv6 address in brackets: the Host header keeps
        // them, the connect does not want them.
        let host_str = url.host_str()?;
        let host = host_str.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default()?;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let authority = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        Some(Plain {
            host: host.to_string(),
            port,
            uri: target.parse().ok()?,
            host_header: HeaderValue::from_str(&authority).ok()?,
        })
    }
}

/// A body read a chunk at a time, by either transport.
trait Chunks {
    /// The next chunk; `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String>;
}

impl Chunks for hyper::body::Incoming {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match self.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(causes(&e)),
                // Trailers are no data: on to the end.
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => return Ok(Some(d)),
                    Err(_) => continue,
                },
            }
        }
    }
}

impl Chunks for reqwest::Response {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        self.chunk().await.map_err(cause)
    }
}

/// Reads a body up to `cap` bytes, by `deadline`: the bytes and whether
/// it went on past the cap (what lies past it is never read). The error
/// is None for the deadline.
async fn read_capped(
    body: &mut impl Chunks,
    cap: usize,
    deadline: TokioInstant,
) -> Result<(Vec<u8>, bool), Option<String>> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, body.next_chunk()).await {
            Err(_) => return Err(None),
            Ok(Err(e)) => return Err(Some(e)),
            Ok(Ok(None)) => return Ok((out, false)),
            Ok(Ok(Some(chunk))) => {
                let room = cap - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() >= room {
                    return Ok((out, true));
                }
            }
        }
    }
}

/// One request over a connection of its own; the headers are complete but
/// for Host.
pub(super) async fn fetch_plain(
    t: &Plain,
    head: bool,
    mut headers: HeaderMap,
    cap: usize,
    deadline: TokioInstant,
) -> Result<Fetched, Failed> {
    let connect = async {
        let s = TcpStream::connect((t.host.as_str(), t.port)).await?;
        // As reqwest does: the request goes out in one segment, at once.
        s.set_nodelay(true)?;
        Ok::<_, std::io::Error>(s)
    };
    let stream = match tokio::time::timeout_at(deadline, connect).await {
        Err(_) => return Err(Failed::TimedOut),
        Ok(Err(e)) => {
            return Err(Failed::Send {
                connect: true,
                why: format!("tcp connect error: {e}"),
            })
        }
        Ok(Ok(s)) => s,
    };
    let send_err = |e: hyper::Error| Failed::Send {
        connect: false,
        why: causes(&e),
    };
    let (mut sender, conn) = match tokio::time::timeout_at(deadline, http1::handshake(TokioIo::new(stream))).await {
        Err(_) => return Err(Failed::TimedOut),
        Ok(Err(e)) => return Err(send_err(e)),
        Ok(Ok(pair)) => pair,
    };
    headers.insert(header::HOST, t.host_header.clone());
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.method_mut() = if head { HttpMethod::HEAD } else { HttpMethod::GET };
    *req.uri_mut() = t.uri.clone();
    *req.headers_mut() = headers;
    let work = async {
        let resp = match tokio::time::timeout_at(deadline, sender.send_request(req)).await {
            Err(_) => return Err(Failed::TimedOut),
            Ok(Err(e)) => return Err(send_err(e)),
            Ok(Ok(r)) => r,
        };
        let code = resp.status().as_u16();
        if head {
            return Ok(Fetched { code, not_after: None, body: Vec::new(), cut: false });
        }
        let mut body = resp.into_body();
        match read_capped(&mut body, cap, deadline).await {
            Ok((body, cut)) => Ok(Fetched { code, not_after: None, body, cut }),
            Err(why) => Err(Failed::Body { code, not_after: None, why }),
        }
    };
    // The connection is driven beside the request, in this future: when
    // the run ends (answered, failed or past its deadline) it is dropped
    // and its socket closed, with no task left waiting on a silent server.
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => r,
        // Its end or error also reaches the request's side, which then
        // says so (within the run's deadline).
        _ = conn => work.await,
    }
}

/// One request through reqwest (https, redirects, userinfo).
pub(super) async fn fetch_reqwest(
    req: reqwest::RequestBuilder,
    head: bool,
    cap: usize,
    deadline: TokioInstant,
) -> Result<Fetched, Failed> {
    let mut resp = match tokio::time::timeout_at(deadline, req.send()).await {
        Err(_) => return Err(Failed::TimedOut),
        Ok(Err(e)) => {
            return Err(Failed::Send {
                connect: e.is_connect(),
                why: cause(e),
            })
        }
        Ok(Ok(r)) => r,
    };
    let code = resp.status().as_u16();
    let not_after = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .and_then(super::expect::cert_not_after);
    if head {
        return Ok(Fetched { code, not_after, body: Vec::new(), cut: false });
    }
    match read_capped(&mut resp, cap, deadline).await {
        Ok((body, cut)) => Ok(Fetched { code, not_after, body, cut }),
        Err(why) => Err(Failed::Body { code, not_after, why }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(url: &str, follow: bool) -> Option<Plain> {
        Plain::of(&reqwest::Url::parse(url).unwrap(), follow)
    }

    #[test]
    fn plain_http_without_redirects_or_userinfo_takes_hyper() {
        let p = plain("http://127.0.0.1:8080/health?deep=1", false).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 8080));
        assert_eq!(p.uri, "/health?deep=1");
        assert_eq!(p.host_header, "127.0.0.1:8080");
        // IPv6: brackets in the Host header, none to connect; port 80 is
        // not written when the URL did not write it.
        let p = plain("http://[::1]/", false).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 80));
        assert_eq!(p.host_header, "[::1]");
        assert_eq!(p.uri, "/");
        let p = plain("http://api.internal:9000", false).unwrap();
        assert_eq!(p.host_header, "api.internal:9000");
        assert_eq!(p.uri, "/");
    }

    #[test]
    fn the_rest_takes_reqwest() {
        assert!(plain("https://127.0.0.1/", false).is_none(), "TLS");
        assert!(plain("http://127.0.0.1/", true).is_none(), "redirects");
        assert!(plain("http://u:pw@127.0.0.1/", false).is_none(), "userinfo");
        assert!(plain("http://u@127.0.0.1/", false).is_none(), "userinfo");
    }
}
