//! `harp doctor` diagnoses a broken set-up and says what to fix.

mod common;

use common::*;

fn doctor(env: &[(&str, &str)], extra: &[&str]) -> (bool, String) {
    let mut args = vec!["doctor"];
    args.extend_from_slice(extra);
    let out = run_harp(&args, env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_an_unreachable_nextcloud_with_the_fix() {
    let down = ClosedPort::new();
    let url = format!("http://127.0.0.1:{}", down.port());
    let (ok, text) = doctor(&[("NC_INSTANCE_URL", &url)], &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL  nextcloud"), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("fix: set NC_INSTANCE_URL"), "{text}");
    assert!(!text.contains(KEY), "the key must never be printed: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_a_wrong_shared_key() {
    let nc = StubNextcloud::start_with_key("the-daemons-key").await;
    nc.set_app(
        "skeleton",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", 23000, &[]),
    );
    let (ok, text) = doctor(&[("NC_INSTANCE_URL", &nc.url())], &["--app", "skeleton"]);
    assert!(!ok, "{text}");
    assert!(text.contains("ok    nextcloud"), "{text}");
    assert!(text.contains("FAIL  shared key"), "{text}");
    assert!(text.contains("HP_SHARED_KEY"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_finds_the_missing_exapps_location_and_a_running_gateway() {
    let nc = StubNextcloud::start().await;
    nc.set_app(
        "skeleton",
        StubNextcloud::record("tok", "1.0.0", "127.0.0.1", 23000, &[]),
    );
    let harp = Harp::start(&[("NC_INSTANCE_URL", &nc.url())]);
    let address = harp.http_addr().to_string();
    let env = [
        ("NC_INSTANCE_URL", nc.url()),
        ("HP_EXAPPS_ADDRESS", address),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, text) = doctor(&env, &["--app", "skeleton"]);
    assert!(!ok, "{text}");
    assert!(text.contains("ok    shared key"), "{text}");
    assert!(text.contains("ok    gateway"), "{text}");
    // The stub Nextcloud has no /exapps/ location: the outer proxy check must say so.
    assert!(text.contains("FAIL  reverse proxy"), "{text}");
    assert!(text.contains("docs/reverse-proxy"), "{text}");
}
