//! The eight endpoints. Each file is one endpoint's Docker call sequence and its mapping of
//! Docker's answers to HaRP's statuses and texts (§8.3-§8.10); this file holds what they share:
//! payload parsing, the engine client, the deadline and the step outcome.

mod certificates;
mod create;
mod exists;
mod image_remove;
mod lifecycle;
mod remove;
mod wait;

use super::engines::{call, Failure};
use super::payload::{
    CertificatesPayload, CreatePayload, ExAppName, ImageRemovePayload, RemovePayload,
};
use super::{Operation, Reply, Sidecar};
use crate::pydantic::Invalid;
use bollard::errors::Error as BollardError;
use bollard::Docker;
use serde_json::Value;
use std::future::Future;
use tokio::time::Instant;

enum Payload {
    Name(ExAppName),
    Create(CreatePayload),
    Remove(RemovePayload),
    Certificates(CertificatesPayload),
    Image(ImageRemovePayload),
}

fn parse(op: Operation, value: &Value) -> Result<Payload, Invalid> {
    Ok(match op {
        Operation::Exists | Operation::Start | Operation::Stop | Operation::WaitForStart => {
            Payload::Name(ExAppName::parse(value)?)
        }
        Operation::Create => Payload::Create(CreatePayload::parse(value)?),
        Operation::Remove => Payload::Remove(RemovePayload::parse(value)?),
        Operation::InstallCertificates => Payload::Certificates(CertificatesPayload::parse(value)?),
        Operation::ImageRemove => Payload::Image(ImageRemovePayload::parse(value)?),
    })
}

/// Validates the body, reaches the engine and runs the endpoint, all within its budget.
pub(super) async fn run(sidecar: &Sidecar, op: Operation, port: u16, value: &Value) -> Reply {
    let payload = match parse(op, value) {
        Ok(p) => p,
        Err(e) => return Reply::text(400, format!("Payload validation error: {e}")),
    };
    let deadline = Instant::now() + op.budget();
    let client = sidecar.engines.client(port, &sidecar.docker_socket);
    let docker = match tokio::time::timeout_at(deadline, client).await {
        Ok(Ok(docker)) => docker,
        // Client creation fails only when the engine cannot be reached.
        Ok(Err(e)) => {
            log::warn!("docker engine on port {port}: {e}");
            return could_not_connect(port);
        }
        Err(_) => return first_step_timeout(op, port),
    };
    let ctx = Ctx {
        docker,
        port,
        deadline,
    };
    match payload {
        Payload::Name(app) => match op {
            Operation::Exists => exists::exists(&ctx, &app).await,
            Operation::Start => lifecycle::start(&ctx, &app).await,
            Operation::Stop => lifecycle::stop(&ctx, &app).await,
            _ => wait::wait_for_start(&ctx, &app).await,
        },
        Payload::Create(p) => create::create(&ctx, &p).await,
        Payload::Remove(p) => remove::remove(&ctx, &p).await,
        Payload::Certificates(p) => certificates::install(&ctx, &p, &sidecar.certs_dir).await,
        Payload::Image(p) => image_remove::image_remove(&ctx, &p).await,
    }
}

fn could_not_connect(port: u16) -> Reply {
    Reply::text(
        503,
        format!("Could not connect to Docker Engine on port {port}"),
    )
}

/// The budget ran out before the engine answered its first call (version negotiation).
fn first_step_timeout(op: Operation, port: u16) -> Reply {
    let what = match op {
        Operation::Exists => {
            return Reply::text(
                504,
                format!("Timeout communicating with Docker Engine on port {port}"),
            )
        }
        Operation::WaitForStart => return wait::overall_timeout("unknown", None),
        Operation::Create => "volume operation",
        Operation::Start => "container start",
        Operation::Stop => "container stop",
        Operation::Remove => "container removal",
        Operation::ImageRemove => "image inspect",
        Operation::InstallCertificates => "certificate installation",
    };
    timeout(what)
}

/// 504 `Timeout communicating with Docker Engine for <what>`.
fn timeout(what: &str) -> Reply {
    Reply::text(
        504,
        format!("Timeout communicating with Docker Engine for {what}"),
    )
}

/// What one Docker call came to.
enum Step<T> {
    /// A success status (2xx or 304), with the value bollard decoded.
    Done(T, u16),
    /// An error status, with Docker's message.
    Status(u16, String),
    /// The engine could not be reached.
    Connect(String),
    /// Anything else; the status Docker answered, if it answered (0 if not).
    Other(String, u16),
    /// The endpoint's budget ran out.
    Timeout,
}

struct Ctx {
    docker: Docker,
    port: u16,
    deadline: Instant,
}

impl Ctx {
    async fn step<T>(&self, request: impl Future<Output = Result<T, BollardError>>) -> Step<T> {
        self.step_until(self.deadline, request).await
    }

    async fn step_until<T>(
        &self,
        deadline: Instant,
        request: impl Future<Output = Result<T, BollardError>>,
    ) -> Step<T> {
        match tokio::time::timeout_at(deadline, call(request)).await {
            Err(_) => Step::Timeout,
            Ok(Ok((value, status))) => Step::Done(value, status),
            Ok(Err(Failure::Status(status, message))) => Step::Status(status, message),
            Ok(Err(Failure::Connect(e))) => Step::Connect(e),
            Ok(Err(Failure::Other(e, status))) => Step::Other(e, status),
        }
    }

    fn could_not_connect(&self) -> Reply {
        could_not_connect(self.port)
    }
}
