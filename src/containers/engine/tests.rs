//! The transport's edges against stand-ins (a hang, a bad body, a cut
//! event); the real engine's answers are proven in tests/containers.rs.

use super::*;

#[test]
fn only_unix_sockets_are_engines() {
    let t = Duration::from_secs(1);
    assert_eq!(
        Engine::new("unix:///run/podman/podman.sock", t)
            .unwrap()
            .socket(),
        Path::new("/run/podman/podman.sock")
    );
    assert_eq!(
        Engine::new("/var/run/docker.sock", t).unwrap().uri(),
        "/var/run/docker.sock"
    );
    for bad in [
        "tcp://127.0.0.1:2375",
        "unix://relative.sock",
        "docker.sock",
    ] {
        let e = Engine::new(bad, t).unwrap_err().to_string();
        assert!(e.starts_with(bad) && e.contains("only unix://"), "{e}");
    }
}

#[tokio::test]
async fn a_missing_socket_is_named() {
    let dir = std::env::temp_dir().join(format!("uw-engine-{}", std::process::id()));
    let e = Engine::new(
        &format!("unix://{}/none.sock", dir.display()),
        Duration::from_secs(1),
    )
    .unwrap();
    let err = e.inspect("x").await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot reach the engine at unix://{}/none.sock",
            dir.display()
        )),
        "{err}"
    );
}

/// A stand-in engine for the transport's edges (a hang, a bad body):
/// the real engine's answers are proven in tests/containers.rs.
async fn one_answer(answer: &'static [u8]) -> (Engine, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir =
        std::env::temp_dir().join(format!("uw-engine-{}-{}", std::process::id(), answer.len()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("e.sock");
    let l = tokio::net::UnixListener::bind(&sock).unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 4096];
        let _ = s.read(&mut b).await;
        let _ = s.write_all(answer).await;
        // Held open: a hang is one that never ends.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    (
        Engine::new(
            &format!("unix://{}", sock.display()),
            Duration::from_millis(300),
        )
        .unwrap(),
        task,
    )
}

#[tokio::test]
async fn a_silent_engine_times_out_with_the_request_named() {
    let (e, _t) = one_answer(b"").await;
    let err = e.inspect("gw").await.unwrap_err().to_string();
    assert!(
        err.contains("GET /containers/gw/json to unix://")
            && err.ends_with("no answer within 300ms"),
        "{err}"
    );
}

#[tokio::test]
async fn an_error_answer_carries_the_engines_message() {
    let (e, _t) = one_answer(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n{\"message\":\"No such container: nope\"}",
    )
    .await;
    let err = e.inspect("nope").await.unwrap_err();
    assert!(err.is_not_found());
    let err = err.to_string();
    assert!(
        err.starts_with("GET /containers/nope/json to unix://"),
        "{err}"
    );
    assert!(
        err.ends_with(": HTTP 404: No such container: nope"),
        "{err}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_parse_error() {
    let (e, _t) = one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
    let err = e.inspect("gw").await.unwrap_err().to_string();
    assert!(
        err.contains("GET /containers/gw/json") && err.contains("unexpected answer"),
        "{err}"
    );
}

#[tokio::test]
async fn events_are_split_at_newlines_across_chunks() {
    // One event cut across two chunks, then a line that is no event.
    let event = "{\"Type\":\"container\",\"Action\":\"die\",\"Actor\":{\"ID\":\"abc\",\"Attributes\":{\"name\":\"gw\",\"exitCode\":\"137\"}}}\n";
    let (a, b) = event.split_at(15);
    let mut answer = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for c in [a, b, "{\n"] {
        answer.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    let (e, _t) = one_answer(answer.leak().as_bytes()).await;
    let mut ev = e.events(&["gw"], &[]).await.unwrap();
    let first = ev.next().await.unwrap().unwrap();
    assert_eq!(
        (
            first.kind.as_str(),
            first.action.as_str(),
            first.actor.id.as_str()
        ),
        ("container", "die", "abc")
    );
    assert_eq!(first.name(), Some("gw"));
    let err = ev.next().await.unwrap_err().to_string();
    assert!(
        err.contains("GET /events") && err.contains("unexpected answer"),
        "{err}"
    );
}
