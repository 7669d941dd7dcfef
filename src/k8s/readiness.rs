//! `wait_for_start`'s reading of a Deployment's pods (HaRP's rules): only the first pod counts;
//! Running and Ready, or Succeeded, is started; Failed or Unknown is not; an image that cannot
//! be pulled fails at once; anything still pulling keeps the long image budget, anything else
//! the short start-up budget.

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use std::time::Duration;

/// How often the pods are looked at (HaRP: every second). The image-pull and start-up budgets
/// are settings (`HP_K8S_IMAGE_PULL_TIMEOUT`, `HP_K8S_START_TIMEOUT`).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The answer AppAPI reads, fields in HaRP's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartStatus {
    pub started: bool,
    pub status: String,
    pub health: &'static str,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// One look at the pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The final answer.
    Done(StartStatus),
    /// Not there yet; `pulling` while the image may still be downloading.
    Waiting {
        pulling: bool,
        phase: String,
        reason: Option<String>,
        message: Option<String>,
    },
}

const IMAGE_ERRORS: [&str; 3] = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"];

pub fn observe(pods: &[Pod]) -> Observation {
    let Some(pod) = pods.first() else {
        return Observation::Waiting {
            pulling: true,
            phase: "Pending".into(),
            reason: None,
            message: None,
        };
    };
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let (reason, message) = (status.reason.clone(), status.message.clone());
    let done = |started, status: &str, health| {
        Observation::Done(StartStatus {
            started,
            status: status.to_string(),
            health,
            reason: reason.clone(),
            message: message.clone(),
        })
    };
    match phase.as_str() {
        "Running" if ready => return done(true, "running", "ready"),
        "Succeeded" => return done(true, "succeeded", "ready"),
        "Failed" | "Unknown" => return done(false, &phase, "not_ready"),
        _ => {}
    }
    let first_container = status.container_statuses.as_ref().and_then(|c| c.first());
    let waiting = first_container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref());
    let waiting_reason = waiting.and_then(|w| w.reason.clone());
    if let Some(image_error) = waiting_reason
        .as_deref()
        .filter(|r| IMAGE_ERRORS.contains(r))
    {
        return Observation::Done(StartStatus {
            started: false,
            status: image_error.to_string(),
            health: "image_error",
            reason: Some(image_error.to_string()),
            message: Some(waiting.and_then(|w| w.message.clone()).unwrap_or_default()),
        });
    }
    let pulling = first_container.is_none()
        || matches!(
            waiting_reason.as_deref(),
            None | Some("ContainerCreating" | "PodInitializing")
        );
    Observation::Waiting {
        pulling,
        phase,
        reason,
        message,
    }
}

/// The answer when the budgets ran out.
pub fn timed_out(last: Option<&Observation>) -> StartStatus {
    let (phase, reason, message) = match last {
        Some(Observation::Waiting {
            phase,
            reason,
            message,
            ..
        }) => (phase.clone(), reason.clone(), message.clone()),
        _ => ("unknown".to_string(), None, None),
    };
    StartStatus {
        started: false,
        status: phase,
        health: "timeout",
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Vec<Pod> {
        vec![serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()]
    }

    fn done(o: Observation) -> StartStatus {
        match o {
            Observation::Done(s) => s,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn readiness_rules() {
        let running_ready =
            pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(
            serde_json::to_value(done(observe(&running_ready))).unwrap(),
            json!({"started": true, "status": "running", "health": "ready", "reason": null, "message": null})
        );
        let s = done(observe(&pod(json!({"phase": "Succeeded"}))));
        assert!(s.started && s.status == "succeeded");
        let s = done(observe(&pod(
            json!({"phase": "Failed", "reason": "Evicted", "message": "m"}),
        )));
        assert!(!s.started && s.status == "Failed" && s.health == "not_ready");
        assert_eq!(s.reason.as_deref(), Some("Evicted"));
        let s = done(observe(&pod(
            json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}),
        )));
        assert_eq!(
            (s.started, s.health, s.status.as_str(), s.message.as_deref()),
            (
                false,
                "image_error",
                "ImagePullBackOff",
                Some("no such image")
            )
        );
    }

    #[test]
    fn pulling_versus_starting() {
        assert!(matches!(
            observe(&[]),
            Observation::Waiting { pulling: true, .. }
        ));
        let creating = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert!(matches!(
            observe(&creating),
            Observation::Waiting { pulling: true, .. }
        ));
        let crashing = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}));
        assert!(matches!(
            observe(&crashing),
            Observation::Waiting { pulling: false, .. }
        ));
        let last = observe(&crashing);
        let t = timed_out(Some(&last));
        assert_eq!((t.health, t.status.as_str()), ("timeout", "Running"));
    }
}
