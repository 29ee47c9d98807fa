//! A constant-rate load on `/health`, for its latency at a real load
//! rather than wrk's flat out (wrk2 and oha are not packaged here).
//!
//! `CONNS` kept-alive connections each send one request every
//! `CONNS / RATE` seconds, on a fixed schedule. A request's latency is
//! counted from when it was due, not from when it was sent, so an answer
//! that comes late also makes the requests behind it late (no coordinated
//! omission, as wrk2 counts it). tokio's timer ticks in milliseconds and
//! fires late by up to one, which would count as the server's latency: a
//! connection sleeps until 2 ms before its request is due and yields from
//! there until it is, so requests go out within microseconds of their time
//! (the generator's own core is busy for it: it runs pinned to one).
//!
//! Run as `BENCH --rate-load PORT RATE SECS CONNS`, in the sandbox's
//! network namespace; prints `answered errors p50 p99 p99.9 max` (µs).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Reads one whole response (headers and a Content-Length body) off `s`;
/// whether it was a 200.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(head.starts_with("http/1.1 200"));
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One connection's schedule: requests due at `first + k * period` until
/// `end`; their latencies (µs) and errors.
async fn connection(port: u16, first: Instant, period: Duration, end: Instant) -> (Vec<u32>, u64) {
    let mut lat = Vec::new();
    let mut errors = 0;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return (lat, 1);
    };
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut due = first;
    while due < end {
        tokio::time::sleep_until(due - Duration::from_millis(2)).await;
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
        let ok = match s.write_all(REQUEST).await {
            Ok(()) => response(&mut s, &mut buf).await,
            Err(e) => Err(e),
        };
        match ok {
            Ok(true) => lat.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Ok(false) => errors += 1,
            Err(_) => {
                errors += 1;
                match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(n) => s = n,
                    Err(_) => return (lat, errors),
                }
            }
        }
        due += period;
    }
    (lat, errors)
}

pub fn main(args: &[String]) {
    let num = |i: usize| -> u64 { args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0) };
    let (port, rate, secs, conns) = (num(0) as u16, num(1).max(1), num(2), num(3).max(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut lat, errors) = rt.block_on(async move {
        let period = Duration::from_secs_f64(conns as f64 / rate as f64);
        // A second to connect, then the schedule; each connection's first
        // request offset so that the load is spread over the period.
        let start = Instant::now() + Duration::from_secs(1);
        let end = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..conns)
            .map(|i| {
                let first = start + period.mul_f64(i as f64 / conns as f64);
                tokio::spawn(connection(port, first, period, end))
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            if let Ok((l, e)) = t.await {
                all.extend(l);
                errors += e;
            }
        }
        (all, errors)
    });
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            return 0;
        }
        lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1]
    };
    println!(
        "{} {} {} {} {} {}",
        lat.len(),
        errors,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or(0)
    );
}
