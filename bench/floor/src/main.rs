//! The floor of bench/: a Pingora 0.9 proxy that does nothing but forward. Its only hook is
//! `upstream_peer`, which returns the backend given on the command line; one worker thread, the
//! same allocator (mimalloc) and scheduler setting (no work stealing) as harp-rs. What it costs
//! per request is what Pingora itself costs; bench/callgrind.sh compares harp-rs's PUBLIC path
//! with it.
//!
//! Usage: floor LISTEN_ADDR BACKEND_ADDR   (e.g. floor 127.0.0.1:18080 127.0.0.1:18081)

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    backend: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.backend, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} LISTEN_ADDR BACKEND_ADDR", args[0]);
        std::process::exit(2);
    }
    let backend: SocketAddr = args[2].parse().expect("BACKEND_ADDR must be ip:port");

    let tmp = std::env::temp_dir();
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        // Quick stop on SIGTERM; pid file and upgrade socket of our own (the defaults are shared paths).
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: tmp
            .join(format!("floor-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: tmp
            .join(format!("floor-upgrade-{}.sock", std::process::id()))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Floor { backend });
    proxy.add_tcp(&args[1]);
    server.add_service(proxy);
    eprintln!("listening on {}, forwarding to {backend}", args[1]);
    server.run_forever();
}
