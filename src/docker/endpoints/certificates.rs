//! `install_certificates` (§8.10): copy Nextcloud's CA bundle into the ExApp's trust store and
//! harp's FRP client certificates to `/certs/frp` (the ExApp's start script then runs frpc with
//! TLS). AppAPI calls it between `create` and `start`, so a stopped container is started for
//! the copy and stopped again: the following `start` must answer 204.
//!
//! Q13: HaRP turned exec and upload failures into 500 "...: Service Unavailable"; here they are
//! the 503s it meant. A timeout is a 504 (HaRP: 500).

use super::{timeout, Ctx, Step};
use crate::docker::payload::CertificatesPayload;
use crate::docker::{tar, Reply};
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{StopContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

static PEM_CERTIFICATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----")
        .expect("static PEM pattern compiles")
});

/// Budget of the final stop, which runs even when the main budget is spent.
const STOP_BUDGET: Duration = Duration::from_secs(30);
/// Output kept from one exec (`cat /etc/os-release` is a few hundred bytes).
const MAX_EXEC_OUTPUT: usize = 1 << 20;
/// Where the ExApp's start script looks for FRP client certificates.
const FRP_DIR_IN_CONTAINER: &str = "/certs/frp";
const FRP_FILES: [&str; 3] = ["ca.crt", "client.crt", "client.key"];

pub(super) async fn install(ctx: &Ctx, p: &CertificatesPayload, certs_dir: &Path) -> Reply {
    let container = p.app.names().container;
    let running = match ctx
        .step(ctx.docker.inspect_container(&container, None))
        .await
    {
        Step::Done(info, 200) => info.state.and_then(|s| s.running).unwrap_or(false),
        Step::Status(404, _) => {
            return Reply::text(404, format!("Container '{container}' not found."))
        }
        Step::Done(_, status) | Step::Status(status, _) => {
            return Reply::text(503, format!("Failed to inspect container: Status {status}"))
        }
        Step::Connect(_) => return ctx.could_not_connect(),
        Step::Timeout => return timeout("certificate installation"),
        Step::Other(e, _) => {
            return Reply::text(
                500,
                format!("Unexpected error during certificate installation: {e}"),
            )
        }
    };
    let reply = match steps(ctx, &container, p, certs_dir, running).await {
        Ok(()) => Reply::no_content(),
        Err(reply) => reply,
    };
    if !running {
        // Leave it as AppAPI created it, whatever happened above.
        let deadline = Instant::now() + STOP_BUDGET;
        let stop = ctx
            .docker
            .stop_container(&container, None::<StopContainerOptions>);
        match ctx.step_until(deadline, stop).await {
            Step::Done((), _) | Step::Status(404, _) => {}
            Step::Status(status, message) => log::warn!(
                "install_certificates: stopping '{container}' again failed: {status} {message}"
            ),
            Step::Connect(e) | Step::Other(e, _) => {
                log::warn!("install_certificates: stopping '{container}' again failed: {e}");
            }
            Step::Timeout => {
                log::warn!("install_certificates: stopping '{container}' again timed out");
            }
        }
    }
    reply
}

async fn steps(
    ctx: &Ctx,
    container: &str,
    p: &CertificatesPayload,
    certs_dir: &Path,
    running: bool,
) -> Result<(), Reply> {
    if !running {
        match ctx.step(ctx.docker.start_container(container, None)).await {
            Step::Done((), 204 | 304) => {}
            Step::Done((), status) | Step::Status(status, _) => {
                return Err(Reply::text(
                    503,
                    format!("Failed to start container: Status {status}"),
                ))
            }
            Step::Connect(_) => return Err(ctx.could_not_connect()),
            Step::Timeout => return Err(timeout("certificate installation")),
            Step::Other(e, _) => {
                return Err(Reply::text(
                    500,
                    format!("Unexpected error during certificate installation: {e}"),
                ))
            }
        }
    }
    let (code, os_release) = exec(ctx, container, &["cat", "/etc/os-release"]).await?;
    if code != 0 {
        return Err(Reply::text(
            500,
            format!(
                "Failed to get OS info. Exit: {code}. Output: {}",
                first_chars(&os_release, 200)
            ),
        ));
    }
    if let Some(bundle) = p.system_certs_bundle.as_deref().filter(|b| !b.is_empty()) {
        system_certificates(ctx, container, bundle, &os_release).await?;
    }
    if p.install_frp_certs {
        frp_certificates(ctx, container, &certs_dir.join("frp")).await?;
    }
    Ok(())
}

/// The trust-store directory and update command for the container's distribution, decided
/// like HaRP by substrings of `/etc/os-release`.
fn trust_store(os_release: &str) -> Option<(&'static str, &'static [&'static str])> {
    let os = os_release.to_lowercase();
    if ["alpine", "debian", "ubuntu"]
        .iter()
        .any(|d| os.contains(d))
    {
        Some((
            "/usr/local/share/ca-certificates",
            &["update-ca-certificates"],
        ))
    } else if ["centos", "almalinux", "rhel", "fedora"]
        .iter()
        .any(|d| os.contains(d))
    {
        Some((
            "/etc/pki/ca-trust/source/anchors",
            &["update-ca-trust", "extract"],
        ))
    } else {
        None
    }
}

/// The PEM certificates of a bundle, in order.
fn split_bundle(bundle: &str) -> Vec<&str> {
    PEM_CERTIFICATE
        .find_iter(bundle)
        .map(|m| m.as_str())
        .collect()
}

async fn system_certificates(
    ctx: &Ctx,
    container: &str,
    bundle: &str,
    os_release: &str,
) -> Result<(), Reply> {
    let Some((dir, update)) = trust_store(os_release) else {
        log::warn!(
            "install_certificates: '{container}' runs an OS without a known trust store ({}); \
             system certificates skipped",
            os_release.lines().next().unwrap_or("unknown")
        );
        return Ok(());
    };
    let (code, output) = exec(ctx, container, &["mkdir", "-p", dir]).await?;
    if code != 0 {
        return Err(Reply::text(
            500,
            format!(
                "Failed to create cert directory. Exit: {code}. Output: {}",
                first_chars(&output, 200)
            ),
        ));
    }
    let files: Vec<(String, Vec<u8>)> = split_bundle(bundle)
        .into_iter()
        .enumerate()
        .map(|(i, pem)| {
            (
                format!("{}/custom_ca_cert_{i}.crt", dir.trim_start_matches('/')),
                pem.as_bytes().to_vec(),
            )
        })
        .collect();
    if files.is_empty() {
        log::info!("install_certificates: no certificate in the bundle for '{container}'");
        return Ok(());
    }
    upload(ctx, container, &files).await?;
    let (code, output) = exec(ctx, container, update).await?;
    if code != 0 {
        // HaRP only logs this: the files are in place, the next update picks them up.
        log::warn!(
            "install_certificates: {} in '{container}' exited {code}: {}",
            update.join(" "),
            first_chars(&output, 200)
        );
    }
    Ok(())
}

async fn frp_certificates(ctx: &Ctx, container: &str, frp_dir: &Path) -> Result<(), Reply> {
    let Some(contents) = read_frp_files(frp_dir.to_path_buf()).await else {
        // No TLS between ExApps and harp (HP_FRP_DISABLE_TLS): nothing to install.
        log::info!(
            "install_certificates: no FRP client certificates in {}; skipped for '{container}'",
            frp_dir.display()
        );
        return Ok(());
    };
    let (code, output) = exec(ctx, container, &["mkdir", "-p", FRP_DIR_IN_CONTAINER]).await?;
    if code != 0 {
        return Err(Reply::text(
            500,
            format!(
                "Failed to create FRP cert directory. Exit: {code}. Output: {}",
                first_chars(&output, 200)
            ),
        ));
    }
    let files: Vec<(String, Vec<u8>)> = FRP_FILES
        .iter()
        .zip(contents)
        .map(|(name, data)| {
            (
                format!("{}/{name}", FRP_DIR_IN_CONTAINER.trim_start_matches('/')),
                data,
            )
        })
        .collect();
    upload(ctx, container, &files).await
}

/// All three FRP files, or `None` if any is missing or unreadable. Read off the runtime.
async fn read_frp_files(dir: PathBuf) -> Option<Vec<Vec<u8>>> {
    tokio::task::spawn_blocking(move || {
        FRP_FILES
            .iter()
            .map(|name| std::fs::read(dir.join(name)).ok())
            .collect::<Option<Vec<_>>>()
    })
    .await
    .ok()
    .flatten()
}

/// `PUT /containers/<c>/archive?path=/` with a tar of `files`; Docker must answer 200.
async fn upload(ctx: &Ctx, container: &str, files: &[(String, Vec<u8>)]) -> Result<(), Reply> {
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let archive = tar::archive(files, mtime).map_err(|e| {
        Reply::text(
            500,
            format!("Unexpected error uploading archive: path too long: {}", e.0),
        )
    })?;
    let options = UploadToContainerOptions {
        path: "/".into(),
        ..Default::default()
    };
    let body = bollard::body_full(archive.into());
    match ctx
        .step(
            ctx.docker
                .upload_to_container(container, Some(options), body),
        )
        .await
    {
        Step::Done((), 200) => Ok(()),
        Step::Done((), status) | Step::Status(status, _) => Err(Reply::text(
            503,
            format!("Failed to upload archive: Status {status}"),
        )),
        Step::Connect(e) => Err(Reply::text(
            503,
            format!("Client error uploading archive: {e}"),
        )),
        Step::Timeout => Err(timeout("certificate installation")),
        Step::Other(e, _) => Err(Reply::text(
            500,
            format!("Unexpected error uploading archive: {e}"),
        )),
    }
}

/// Runs `cmd` in the container and returns its exit code (-1 if Docker does not say) and its
/// output (stdout and stderr, lossily decoded).
async fn exec(ctx: &Ctx, container: &str, cmd: &[&str]) -> Result<(i64, String), Reply> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.iter().map(std::string::ToString::to_string).collect()),
        ..Default::default()
    };
    let client_error = |e: String| Reply::text(503, format!("Client error during exec: {e}"));
    let unexpected = |e: String| Reply::text(500, format!("Unexpected error during exec: {e}"));
    let id = match ctx.step(ctx.docker.create_exec(container, config)).await {
        Step::Done(created, 201) => created.id,
        Step::Done(_, status) => {
            return Err(Reply::text(
                503,
                format!("Failed to create exec for command: Status {status}"),
            ))
        }
        Step::Status(_, message) => {
            return Err(Reply::text(
                503,
                format!("Failed to create exec for command: {message}"),
            ))
        }
        Step::Connect(e) => return Err(client_error(e)),
        Step::Timeout => return Err(timeout("certificate installation")),
        Step::Other(e, _) => return Err(unexpected(e)),
    };
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: None,
    };
    let mut output = match ctx.step(ctx.docker.start_exec(&id, Some(options))).await {
        Step::Done(StartExecResults::Attached { output, .. }, _) => output,
        Step::Done(StartExecResults::Detached, _) => {
            return Err(unexpected("exec started detached".into()))
        }
        Step::Status(_, message) => {
            return Err(Reply::text(503, format!("Failed to start exec: {message}")))
        }
        Step::Connect(e) => return Err(client_error(e)),
        Step::Timeout => return Err(timeout("certificate installation")),
        Step::Other(e, _) => return Err(unexpected(e)),
    };
    let read_all = async {
        let mut text = Vec::new();
        while let Some(frame) = output.next().await {
            text.extend_from_slice(frame.map_err(|e| e.to_string())?.as_ref());
            if text.len() >= MAX_EXEC_OUTPUT {
                break;
            }
        }
        Ok::<_, String>(text)
    };
    let text = match tokio::time::timeout_at(ctx.deadline, read_all).await {
        Ok(Ok(text)) => String::from_utf8_lossy(&text).into_owned(),
        Ok(Err(e)) => return Err(client_error(e)),
        Err(_) => return Err(timeout("certificate installation")),
    };
    Ok((exit_code(ctx, &id).await?, text))
}

/// `ExitCode` of a finished exec. The output ends as the process exits; Docker may record the
/// code a moment later, so a still-running exec is asked again briefly.
async fn exit_code(ctx: &Ctx, id: &str) -> Result<i64, Reply> {
    for _ in 0..20 {
        match ctx.step(ctx.docker.inspect_exec(id)).await {
            Step::Done(info, _) => match (info.exit_code, info.running) {
                (Some(code), Some(false) | None) => return Ok(code),
                (_, Some(true)) => tokio::time::sleep(Duration::from_millis(50)).await,
                (None, _) => return Ok(-1),
            },
            Step::Timeout => return Err(timeout("certificate installation")),
            other => {
                if let Step::Status(_, e) | Step::Connect(e) | Step::Other(e, _) = other {
                    log::warn!("install_certificates: exec inspect failed: {e}");
                }
                return Ok(-1);
            }
        }
    }
    Ok(-1)
}

fn first_chars(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_split_into_pem_blocks() {
        let bundle = "# comment\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                      junk\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let certs = split_bundle(bundle);
        assert_eq!(certs.len(), 2);
        assert!(certs[0].ends_with("AAA\n-----END CERTIFICATE-----"));
        assert!(certs[1].contains("BBB"));
        assert!(split_bundle("no certificates").is_empty());
    }

    #[test]
    fn trust_stores_by_distribution() {
        assert_eq!(
            trust_store("ID=debian\n").map(|t| t.0),
            Some("/usr/local/share/ca-certificates")
        );
        assert_eq!(
            trust_store("NAME=\"Alpine Linux\"").map(|t| t.1),
            Some(&["update-ca-certificates"][..])
        );
        assert_eq!(
            trust_store("ID=\"rhel\"").map(|t| t.0),
            Some("/etc/pki/ca-trust/source/anchors")
        );
        assert!(trust_store("ID=arch").is_none());
    }
}
