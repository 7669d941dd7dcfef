//! wsbench: the WebSocket and start-up helper of bench/run.sh (nginx can neither echo WebSockets
//! nor hold thousands of them open, and wrk speaks only HTTP).
//!
//! Every subcommand runs on one thread (a current-thread tokio runtime), so the load side costs
//! one core, like `wrk -t1`, and the echo server is one core, like nginx's single worker.
//!
//!   wsbench echo-server ADDR          echo every text/binary message; prints "listening ADDR"
//!   wsbench rtt URL CONNS SECONDS     CONNS connections, each: send a small message, wait for the
//!                                     echo, repeat; prints "RPS ROUND_TRIPS P50_MS P99_MS ERRORS"
//!   wsbench hold URL N                open N idle WebSockets, print "ready OPEN FAILED", keep them
//!                                     until stdin reaches EOF or SIGTERM/SIGINT arrives
//!   wsbench wait-http URL SECONDS     poll URL every 1 ms until it answers 200; print the wall
//!                                     clock at that moment (ns since the Unix epoch); exit 1 on
//!                                     timeout
//!
//! Machine-readable results go to stdout, one line; diagnostics go to stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{stream, SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{accept_async, connect_async_with_config, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The message of one round trip: small, like a chat message or a UI event.
const PAYLOAD: &str = "ping from wsbench, 32 bytes ...";

/// Connections opened at once by `hold` (a burst of thousands of handshakes would only
/// measure the listen backlog).
const HOLD_CONNECT_CONCURRENCY: usize = 64;

const USAGE: &str =
    "usage: wsbench echo-server ADDR | rtt URL CONNS SECONDS | hold URL N | wait-http URL SECONDS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["wait-http", url, secs] => parse(secs).and_then(|s| wait_http(url, s)),
        ["echo-server", addr] => runtime().block_on(echo_server(addr)),
        ["rtt", url, conns, secs] => {
            let (conns, secs) = match (parse(conns), parse(secs)) {
                (Ok(c), Ok(s)) => (c, s),
                (Err(e), _) | (_, Err(e)) => return fail(e),
            };
            runtime().block_on(rtt(url, conns as usize, secs))
        }
        ["hold", url, n] => match parse(n) {
            Ok(n) => runtime().block_on(hold(url, n as usize)),
            Err(e) => Err(e),
        },
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: String) -> ExitCode {
    eprintln!("wsbench: {e}");
    ExitCode::FAILURE
}

fn parse(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a whole number: {s:?}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A client connection with Nagle off (as wrk and nginx do), so a small message leaves at once.
async fn connect(url: &str) -> Result<Ws, String> {
    let (ws, _response) = connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    Ok(ws)
}

// ------------------------------------------------------------------------------------------------
// echo-server
// ------------------------------------------------------------------------------------------------

async fn echo_server(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    println!(
        "listening {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(e) => {
                eprintln!("wsbench echo-server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                let reply = match msg {
                    Message::Text(_) | Message::Binary(_) => msg,
                    Message::Close(_) => break,
                    // Pings are answered by tungstenite itself; pongs and raw frames need nothing.
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
    }
}

// ------------------------------------------------------------------------------------------------
// rtt
// ------------------------------------------------------------------------------------------------

/// Opens all connections first, then runs the round trips for `secs` seconds; setting up the
/// connections is not part of the measured time.
async fn rtt(url: &str, conns: usize, secs: u64) -> Result<(), String> {
    if conns == 0 || secs == 0 {
        return Err("CONNS and SECONDS must be at least 1".into());
    }
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        sockets.push(connect(url).await?);
    }

    let latencies_us = Arc::new(Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(conns);
    for ws in sockets {
        let latencies_us = latencies_us.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(1 << 16);
            if let Err(e) = round_trips(ws, deadline, &mut mine).await {
                if errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                    eprintln!("wsbench rtt: {e}");
                }
            }
            latencies_us.lock().await.extend(mine);
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed().as_secs_f64();

    let mut all = std::mem::take(&mut *latencies_us.lock().await);
    all.sort_unstable();
    let count = all.len();
    let pct = |p: f64| -> f64 {
        if count == 0 {
            return f64::NAN;
        }
        let rank = ((p * count as f64).ceil() as usize).clamp(1, count);
        all[rank - 1] as f64 / 1000.0
    };
    let errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{:.0} {} {:.3} {:.3} {}",
        count as f64 / elapsed,
        count,
        pct(0.50),
        pct(0.99),
        errors
    );
    Ok(())
}

/// One connection's loop: send, wait for the echo, record the round trip in microseconds.
async fn round_trips(mut ws: Ws, deadline: Instant, out: &mut Vec<u32>) -> Result<(), String> {
    while Instant::now() < deadline {
        let sent = Instant::now();
        ws.send(Message::text(PAYLOAD))
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_) | Message::Binary(_))) => break,
                Some(Ok(Message::Close(_))) | None => return Err("closed by the server".into()),
                Some(Ok(_)) => continue, // ping/pong
                Some(Err(e)) => return Err(format!("receive: {e}")),
            }
        }
        out.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    let _ = ws.close(None).await;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// hold
// ------------------------------------------------------------------------------------------------

async fn hold(url: &str, n: usize) -> Result<(), String> {
    let results: Vec<Result<Ws, String>> = stream::iter(0..n)
        .map(|_| connect(url))
        .buffer_unordered(HOLD_CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut open = Vec::with_capacity(n);
    let mut failed = 0usize;
    for r in results {
        match r {
            Ok(ws) => open.push(ws),
            Err(e) => {
                if failed == 0 {
                    eprintln!("wsbench hold: {e}");
                }
                failed += 1;
            }
        }
    }
    println!("ready {} {failed}", open.len());
    let _ = std::io::stdout().flush();

    // Idle until told to stop. The sockets are not read: nothing is sent on them.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    let stdin_closed = async { while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::select! {
        _ = stdin_closed => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(open);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// wait-http
// ------------------------------------------------------------------------------------------------

/// Plain blocking sockets: no runtime start-up in the way, one attempt per millisecond.
fn wait_http(url: &str, secs: u64) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut attempts = 0u64;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        attempts += 1;
        match status_of(addr, &request) {
            Ok(200) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| e.to_string())?;
                println!("{}", now.as_nanos());
                eprintln!("wsbench wait-http: 200 after {attempts} attempts");
                return Ok(());
            }
            Ok(status) => last = format!("HTTP {status}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(format!(
        "{url}: no 200 within {secs} s ({attempts} attempts, last: {last})"
    ))
}

fn status_of(addr: SocketAddr, request: &str) -> Result<u16, String> {
    let mut tcp = StdTcpStream::connect_timeout(&addr, Duration::from_millis(100))
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    tcp.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // The status line fits in the first read in practice; read a little more if it did not.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while head.len() < 12 {
        let n = tcp.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed without a status line".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    // "HTTP/1.1 200 ..."
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "not an HTTP status line".into())
}
