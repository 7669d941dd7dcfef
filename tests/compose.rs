//! docker/compose.yaml brings up harp-rs and the sample ExApp on this machine's Docker; harp
//! turns healthy and routes a request to the ExApp; `down` removes everything.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tools_available() -> bool {
    let ok = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok("docker", "info") || !ok("docker-compose", "version") {
        eprintln!("SKIPPED: the compose test needs a Docker engine and docker-compose");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: the sample ExApp needs /bin/busybox (apt-get install busybox-static); .ci/run installs it");
        return false;
    }
    true
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker-compose down` whatever happens to the test.
struct Project {
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(root())
            .args(["-p", &self.name, "-f", "docker/compose.yaml"])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-t", "10"]).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_brings_up_harp_and_the_sample_exapp() {
    if !tools_available() {
        return;
    }
    let id = std::process::id();
    let harp_image = format!("harp-rs:compose-{id}");
    let sample_image = format!("harp-sample-exapp:compose-{id}");
    run(Command::new(root().join("docker/build-local-image.sh"))
        .args([harp_image.as_str(), env!("CARGO_BIN_EXE_harp")]));
    run(Command::new(root().join("docker/sample-exapp/build-image.sh")).arg(&sample_image));

    let ports = free_ports(5);
    let nc = StubNextcloud::start().await;
    nc.set_app(
        "sample",
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            ports[4],
            &[("^/public", PUBLIC, &[])],
        ),
    );
    let certs = TempDir::new("compose-certs");
    let project = Project {
        name: format!("harptest{id}"),
        env: vec![
            ("HARP_IMAGE".into(), harp_image.clone()),
            ("SAMPLE_IMAGE".into(), sample_image.clone()),
            ("HP_SHARED_KEY".into(), KEY.into()),
            ("NC_INSTANCE_URL".into(), nc.url()),
            (
                "HP_EXAPPS_ADDRESS".into(),
                format!("127.0.0.1:{}", ports[0]),
            ),
            (
                "HP_EXAPPS_HTTPS_ADDRESS".into(),
                format!("127.0.0.1:{}", ports[1]),
            ),
            ("HP_FRP_ADDRESS".into(), format!("127.0.0.1:{}", ports[2])),
            ("HP_OPS_ADDRESS".into(), format!("127.0.0.1:{}", ports[3])),
            ("SAMPLE_PORT".into(), ports[4].to_string()),
            ("HARP_CERTS".into(), certs.path().display().to_string()),
            ("HEALTH_INTERVAL".into(), "1s".into()),
        ],
    };
    run(&mut project.compose(&["up", "-d"]));
    let harp_id = run(&mut project.compose(&["ps", "-q", "harp"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Health.Status}}",
            &harp_id,
        ]));
        if health == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "harp never turned healthy ({health})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let out = get(local(ports[0]), "/exapps/sample/public/", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert!(
        out.body_str().contains("Hello from the sample ExApp"),
        "{}",
        out.body_str()
    );

    // `down` needs none of the variables `up` needed.
    let mut down = Command::new("docker-compose");
    down.current_dir(root())
        .args([
            "-p",
            &project.name,
            "-f",
            "docker/compose.yaml",
            "down",
            "-t",
            "10",
        ])
        .env_remove("HP_SHARED_KEY")
        .env_remove("NC_INSTANCE_URL");
    run(&mut down);
    drop(project);
    let _ = Command::new("docker")
        .args(["rmi", &harp_image, &sample_image])
        .output();
}
