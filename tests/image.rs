//! The container image built without a registry (docker/build-local-image.sh): it starts with
//! HaRP's environment variables, turns healthy through `harp healthcheck`, routes a request
//! through the gateway, and stops with exit code 0 on SIGTERM.
//!
//! The container uses the host network so every byte stays on loopback.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI")
}

fn docker_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Removes the container whatever happens to the test.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn build_image(tag: &str) {
    let out = Command::new("docker/build-local-image.sh")
        .args([tag, env!("CARGO_BIN_EXE_harp")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run docker/build-local-image.sh");
    assert!(
        out.status.success(),
        "image build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn health(name: &str) -> String {
    let out = docker(&["inspect", "-f", "{{.State.Health.Status}}", name]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_image_runs_like_harp_and_turns_healthy() {
    if !docker_available() {
        eprintln!("SKIPPED: no Docker engine reachable; the image test needs one");
        return;
    }
    let tag = format!("harp-rs:test-{}", std::process::id());
    build_image(&tag);
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app(
        "imgapp",
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            exapp.port(),
            &[("^/", PUBLIC, &[])],
        ),
    );

    let ports = free_ports(4);
    let (http, https, frp, ops) = (ports[0], ports[1], ports[2], ports[3]);
    let name = format!("harp-image-test-{}", std::process::id());
    let container = Container(name.clone());
    let env = [
        format!("HP_SHARED_KEY={KEY}"),
        format!("NC_INSTANCE_URL={}", nc.url()),
        format!("HP_EXAPPS_ADDRESS=127.0.0.1:{http}"),
        format!("HP_EXAPPS_HTTPS_ADDRESS=127.0.0.1:{https}"),
        format!("HP_FRP_ADDRESS=127.0.0.1:{frp}"),
        format!("HP_OPS_ADDRESS=127.0.0.1:{ops}"),
    ];
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--health-interval",
        "1s",
    ];
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.push(&tag);
    let run = docker(&args);
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&name) != "healthy" {
        assert!(
            Instant::now() < deadline,
            "never healthy: {}",
            health(&name)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let out = get(local(http), "/exapps/imgapp/hello?x=1", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    let seen = exapp.last_request().expect("the ExApp got the request");
    assert_eq!(seen.path, "/hello");

    let stop = docker(&["stop", "-t", "20", &name]);
    assert!(stop.status.success());
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]);
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0");
    drop(container);
    let _ = docker(&["rmi", &tag]);
}
