//! Secrets of alert channels (webhook URLs, HMAC keys, SMTP passwords):
//! where they come from, and keeping them out of every log line and error.

use std::fmt;
use std::path::Path;

use super::AlertError;

/// A secret value. Its `Debug` and `Display` print `[redacted]`, so it
/// cannot reach a log line by accident (the config's own secret keys are
/// of this type too).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a secret given one of three ways: in the config, in a file (its
/// first line; trailing whitespace dropped), or in a variable of the
/// environment (for unitwatch.service, /etc/default/unitwatch). The
/// validation pass has made sure at most one is given.
pub fn resolve(
    channel: &str,
    key: &str,
    value: Option<&Secret>,
    file: Option<&Path>,
    var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, AlertError> {
    if let Some(v) = value {
        return Ok(Some(v.clone()));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| AlertError::SecretFile {
            channel: channel.into(),
            key: format!("{key}_file"),
            path: path.to_path_buf(),
            source,
        })?;
        let first = text.lines().next().unwrap_or("").trim_end();
        if first.is_empty() {
            return Err(AlertError::Secret {
                channel: channel.into(),
                message: format!("{key}_file {}: the file is empty", path.display()),
            });
        }
        warn_if_world_readable(channel, path);
        return Ok(Some(Secret::new(first)));
    }
    if let Some(var) = var {
        return match env(var) {
            Some(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            _ => Err(AlertError::Secret {
                channel: channel.into(),
                message: format!(
                    "{key}_env: the environment variable {var} is not set (for unitwatch.service, set it in /etc/default/unitwatch)"
                ),
            }),
        };
    }
    Ok(None)
}

fn warn_if_world_readable(channel: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o004 != 0 {
            log::warn!(
                unitwatch_channel = channel;
                "{}: holds a secret of alert channel {channel} but every user can read it (chmod 0640, group unitwatch)",
                path.display()
            );
        }
    }
}

/// Removes secrets from text that may contain them (an error from a
/// library, a response body).
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    /// Adds a secret. A URL's path and query are secrets of their own (a
    /// Discord or Slack webhook's token is in its path), so they are added
    /// too: a message that quotes only the path is redacted as well.
    pub fn add(&mut self, s: &Secret) {
        let v = s.expose();
        self.push(v);
        if let Some(rest) = v
            .strip_prefix("https://")
            .or_else(|| v.strip_prefix("http://"))
        {
            if let Some(i) = rest.find('/') {
                self.push(&rest[i..]);
            }
            if let Some(i) = rest.find('?') {
                self.push(&rest[i + 1..]);
            }
        }
        // Longest first, so that a part never leaves a piece of the whole.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    fn push(&mut self, s: &str) {
        // Too short to be a secret of its own ("/"): redacting it would
        // shred the message and hide nothing.
        if s.len() >= 6 && !self.needles.iter().any(|n| n == s) {
            self.needles.push(s.to_string());
        }
    }

    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// A URL with everything after the host left out, to name a destination
/// in logs without its token.
pub fn url_host(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    // user:password@host: the credentials go too.
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}/…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn redactor_removes_the_url_and_its_path_alone() {
        let mut r = Redactor::default();
        r.add(&Secret::new(
            "https://discord.com/api/webhooks/123/tok-EN_x?wait=true",
        ));
        let msg = "error sending request for url (https://discord.com/api/webhooks/123/tok-EN_x?wait=true); path /api/webhooks/123/tok-EN_x?wait=true";
        let clean = r.clean(msg);
        assert!(!clean.contains("tok-EN_x"), "{clean}");
        assert_eq!(
            clean,
            "error sending request for url ([redacted]); path [redacted]"
        );
        assert_eq!(
            url_host("https://user:pw@hooks.slack.com/services/T/B/X"),
            "https://hooks.slack.com/…"
        );
    }

    #[test]
    fn resolve_reads_each_source_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "https://example.test/hook\n# comment\n").unwrap();
        let env = |k: &str| (k == "HOOK").then(|| "https://env.test/x ".to_string());
        let got = resolve("c", "url", None, Some(&f), None, &env).unwrap();
        assert_eq!(got.unwrap().expose(), "https://example.test/hook");
        let got = resolve("c", "url", None, None, Some("HOOK"), &env).unwrap();
        assert_eq!(got.unwrap().expose(), "https://env.test/x");
        let e = resolve("c", "url", None, None, Some("NOPE"), &env).unwrap_err();
        assert!(e.to_string().contains("NOPE is not set"), "{e}");
        let e = resolve("c", "url", None, Some(&dir.path().join("gone")), None, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("url_file") && e.contains("gone"), "{e}");
        std::fs::write(&f, "\n").unwrap();
        let e = resolve("c", "password", None, Some(&f), None, &env).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(resolve("c", "url", None, None, None, &env)
            .unwrap()
            .is_none());
    }
}
