//! The floor under the 200 checks' CPU: the same connections at the same
//! times (100 tcp connects and 100 HTTP GETs a second, in unitwatch's 50 ms
//! steps) made by the least code that can make them: a raw socket, a fixed
//! request, the answer read to its end. What any prober pays for those
//! connections (the kernel's TCP work, on loopback both ends of it, and the
//! wakings) is in this figure; what unitwatch adds is its CPU above it.
//!
//! Run by the footprint as `supervisor --bare-probes PORT SECS` in the
//! sandbox's network namespace; prints `user_ticks kernel_ticks failures`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One tcp check's run: connect, close with a reset (as unitwatch does).
async fn tcp(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr).await {
        Ok(s) => {
            let _ = s.set_zero_linger();
            true
        }
        Err(_) => false,
    }
}

/// One http check's run: connect, a fixed GET, the answer read to the
/// server's close, its keyword looked for.
async fn http(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET /ok HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::with_capacity(512);
    if s.read_to_end(&mut answer).await.is_err() {
        return false;
    }
    answer.starts_with(b"HTTP/1.1 200") && answer.windows(2).any(|w| w == b"ok")
}

pub fn main(args: &[String]) {
    let port: u16 = args[0].parse().expect("PORT");
    let secs: u64 = args[1].parse().expect("SECS");
    let (tcps, https) = (super::TCP_CHECKS, super::HTTP_CHECKS);
    let n = tcps + https;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let failures = rt.block_on(async move {
        // The probes grouped by the step unitwatch gives them.
        let mut steps: Vec<(Duration, Vec<usize>)> = Vec::new();
        for nth in 0..n {
            let at = unitwatch::checks::runner::first_offset(nth, n, Duration::from_secs(1));
            match steps.last_mut() {
                Some((t, v)) if *t == at => v.push(nth),
                _ => steps.push((at, vec![nth])),
            }
        }
        let start = tokio::time::Instant::now();
        let end = start + Duration::from_secs(secs);
        let tasks: Vec<_> = steps
            .into_iter()
            .map(|(at, probes)| {
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval_at(start + at, Duration::from_secs(1));
                    let mut failures = 0usize;
                    loop {
                        tick.tick().await;
                        if tokio::time::Instant::now() >= end {
                            return failures;
                        }
                        let runs = probes.iter().map(|&nth| async move {
                            if nth < tcps {
                                tcp(addr).await
                            } else {
                                http(addr).await
                            }
                        });
                        let ok = futures_util::future::join_all(runs).await;
                        failures += ok.iter().filter(|o| !**o).count();
                    }
                })
            })
            .collect();
        let mut failures = 0;
        for t in tasks {
            failures += t.await.unwrap_or(0);
        }
        failures
    });
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    println!("{} {} {failures}", f[11], f[12]);
}
