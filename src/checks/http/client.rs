//! The http check's client side: clients shared between checks of the
//! same TLS and redirect settings, and what of a URL or an error may be
//! shown (never a URL's userinfo or query).

use std::sync::{Mutex, OnceLock};

/// The URL with its userinfo and query hidden: "https://***@host/p?***".
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once('@') {
        Some((_, h)) => format!("***@{h}"),
        None => authority.to_string(),
    };
    let tail = tail.split('#').next().unwrap_or_default();
    let tail = match tail.split_once('?') {
        Some((p, _)) => format!("{p}?***"),
        None => tail.to_string(),
    };
    if scheme.is_empty() {
        format!("{host}{tail}")
    } else {
        format!("{scheme}://{host}{tail}")
    }
}

/// Clients shared by every check with the same TLS and redirect settings:
/// a hundred checks of one kind cost one TLS configuration, not a hundred.
pub(super) fn shared_client(ca: Option<&[u8]>, follow: bool) -> Result<reqwest::Client, String> {
    type Key = (Option<Vec<u8>>, bool);
    static CLIENTS: OnceLock<Mutex<Vec<(Key, reqwest::Client)>>> = OnceLock::new();
    let key = (ca.map(<[u8]>::to_vec), follow);
    let clients = CLIENTS.get_or_init(Default::default);
    let mut clients = clients.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    // (The User-Agent, like the rest of the head, comes with each request:
    // http.rs `fixed_headers`, shared with the plain transport.)
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .redirect(if follow {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    if let Some(pem) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("ca_file is not PEM certificates: {e}"))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    let client = b
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    clients.push((key, client.clone()));
    Ok(client)
}

/// The causes of a reqwest error, without the URL (it may hold secrets).
pub(super) fn cause(e: reqwest::Error) -> String {
    causes(&e.without_url())
}

/// An error and its sources, each said once.
pub(super) fn causes(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("https://u:pw@h.test:8443/a/b?token=x#f"),
            "https://***@h.test:8443/a/b?***"
        );
        assert_eq!(redact("http://h.test/health"), "http://h.test/health");
        assert_eq!(redact("http://h.test?k=v"), "http://h.test?***");
        assert_eq!(redact("http://h.test"), "http://h.test");
    }
}
