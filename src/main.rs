//! The `harp` command line: run the gateway, or check the configuration.

use std::path::PathBuf;

use std::process::ExitCode;

const USAGE: &str = "usage: harp [run] [--config PATH]
       harp check-config [--config PATH]
       harp healthcheck [--config PATH]
       harp doctor [--app APPID] [--config PATH]
       harp tunnel -c FRPC.toml
       harp --version

Settings come from HaRP's HP_* environment variables, optionally on top of a YAML file
(--config PATH or HARP_CONFIG). See conf/harp.yaml for every setting.
`harp tunnel` is an FRP client (frpc 0.61.1 compatible) reading frpc's TOML config.";

struct Cli {
    command: String,
    config: Option<PathBuf>,
    /// `doctor --app`: a registered ExApp to verify the shared key with.
    app: Option<String>,
}

fn parse_args() -> Result<Cli, String> {
    let mut args = std::env::args().skip(1);
    let mut cli = Cli {
        command: "run".into(),
        config: None,
        app: None,
    };
    let mut command_seen = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                cli.config = Some(args.next().ok_or("--config needs a path")?.into());
            }
            a if a.starts_with("--config=") => cli.config = Some(a["--config=".len()..].into()),
            "--help" | "-h" => cli.command = "help".into(),
            "--version" | "-V" => cli.command = "version".into(),
            "--app" => cli.app = Some(args.next().ok_or("--app needs an ExApp id")?),
            "run" | "check-config" | "healthcheck" | "doctor" | "tunnel" if !command_seen => {
                command_seen = true;
                cli.command = arg;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(cli)
}

/// Started before the settings are read so their warnings are not lost; narrowed afterwards.
fn init_logging() {
    harp::logging::init();
}

fn main() -> ExitCode {
    harp::memory::tune();
    let cli = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harp: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cli.command.as_str() {
        "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "version" => {
            println!("harp {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    init_logging();
    if cli.command == "tunnel" {
        // An frpc replacement: configured by its TOML file, not by HaRP's settings.
        return tunnel(cli.config.as_deref());
    }
    let settings = match harp::config::load_from_process_env(cli.config.as_deref()) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("harp: invalid configuration:\n{errors}");
            return ExitCode::from(1);
        }
    };
    match cli.command.as_str() {
        "check-config" => {
            println!("{}", settings.describe());
            for var in harp::config::ignored_vars_in_process_env() {
                println!("# ignored: {var} configures a process harp-rs does not have");
            }
            for warning in settings.warnings() {
                println!("# warning: {warning}");
            }
            let k8s_problems = harp::k8s::config_problems(&settings.k8s);
            for problem in &k8s_problems {
                println!("# problem: {problem}");
            }
            if k8s_problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        "healthcheck" => healthcheck(&settings),
        "doctor" => doctor(&settings, cli.app.as_deref()),
        _ => {
            log::set_max_level(settings.log_level.to_level_filter());
            match harp::server::build(settings, cli.config.clone()) {
                Ok(server) => server.run_forever(),
                Err(e) => {
                    eprintln!("harp: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `harp tunnel -c FILE`: run the FRP client until killed; exit 1 on a bad config, or when the
/// first login fails with `loginFailExit` on (frpc's behaviour).
fn tunnel(path: Option<&std::path::Path>) -> ExitCode {
    use harp::tunnel::client::{config, Client};
    let Some(path) = path else {
        eprintln!("harp: tunnel needs -c FRPC.toml\n{USAGE}");
        return ExitCode::from(2);
    };
    let (config, warnings) = match config::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("harp tunnel: {e}");
            return ExitCode::from(1);
        }
    };
    log::set_max_level(config.log_level.unwrap_or(log::LevelFilter::Info));
    for warning in warnings {
        log::warn!("tunnel client: {}: {warning}", path.display());
    }
    let client = match Client::new(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("harp tunnel: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harp tunnel: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(client.run()) {
        Ok(never) => match never {},
        Err(e) => {
            log::error!("tunnel client: {e}");
            ExitCode::from(1)
        }
    }
}

/// Print every check with its fix; exit 1 when any failed.
fn doctor(settings: &harp::config::Settings, app: Option<&str>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harp: cannot start the doctor: {e}");
            return ExitCode::from(1);
        }
    };
    let checks = runtime.block_on(harp::doctor::run(settings, app));
    for check in &checks {
        println!("{}", check.render());
    }
    if checks.iter().any(harp::doctor::Check::failed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Exit 0 when the ops listener answers `/heartbeat` within 5 s (used by the image's HEALTHCHECK).
fn healthcheck(settings: &harp::config::Settings) -> ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut addr = settings.ops_address;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(5);
    let check = || -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.take(4096).read_to_end(&mut buf)?;
        Ok(buf)
    };
    match check() {
        Ok(answer) if answer.starts_with(b"HTTP/1.1 200") => {
            println!("OK: harp answers on {addr}");
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            // The body names the listeners that are not serving.
            let answer = String::from_utf8_lossy(&answer);
            let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b.trim());
            eprintln!("harp on {addr} did not answer 200: {body}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("harp on {addr} is unreachable: {e}");
            ExitCode::from(1)
        }
    }
}
