//! The ops listener (HP_OPS_ADDRESS): liveness, readiness and Prometheus metrics.

mod common;

use common::*;
use futures_util::StreamExt;
use std::collections::HashMap;

/// Parses the Prometheus text format into `series{labels}` -> value, checking every sample line
/// is well formed and every series has a TYPE line.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut typed = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            typed.iter().any(|t| name == t
                || name
                    .strip_prefix(t.as_str())
                    .is_some_and(|s| s.starts_with('_'))),
            "{name} has no TYPE line"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn scrape(harp: &Harp) -> HashMap<String, f64> {
    let out = get(harp.ops_addr(), "/metrics", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");
    assert!(out
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));
    parse_metrics(&out.body_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_app_outcome_and_status() {
    let nc = StubNextcloud::start().await;
    let exapp = EchoBackend::start().await;
    nc.set_app(
        "metricsapp",
        StubNextcloud::record(
            "tok",
            "1.0.0",
            "127.0.0.1",
            exapp.port(),
            &[("^/public", PUBLIC, &[]), ("^/user", USER, &[])],
        ),
    );
    nc.set_user_level("session-1", "alice", USER);
    let harp = Harp::start(&[("NC_INSTANCE_URL", &nc.url())]);
    for _ in 0..3 {
        assert_eq!(
            get(harp.http_addr(), "/exapps/metricsapp/public", &[])
                .await
                .status(),
            200
        );
    }
    let cookie = [("cookie", "oc_sessionPassphrase=session-1")];
    assert_eq!(
        get(harp.http_addr(), "/exapps/metricsapp/user", &cookie)
            .await
            .status(),
        200
    );
    assert_eq!(
        get(harp.http_addr(), "/exapps/metricsapp/user", &cookie)
            .await
            .status(),
        200
    );
    assert_eq!(
        get(harp.http_addr(), "/exapps/metricsapp/user", &[])
            .await
            .status(),
        403
    );
    assert_eq!(
        get(harp.http_addr(), "/exapps/nosuchapp/x", &[])
            .await
            .status(),
        404
    );

    let m = scrape(&harp).await;
    let v = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("missing {k} in {m:?}"))
    };
    assert_eq!(
        v(r#"harp_requests_total{app="metricsapp",outcome="proxied",status="200"}"#),
        5.0
    );
    assert_eq!(
        v(r#"harp_requests_total{app="metricsapp",outcome="denied",status="403"}"#),
        1.0
    );
    assert_eq!(
        v(r#"harp_requests_total{app="unknown",outcome="denied",status="404"}"#),
        1.0
    );
    assert_eq!(
        v(r#"harp_nextcloud_calls_total{endpoint="exapp-meta",result="ok"}"#),
        1.0
    );
    assert_eq!(
        v(r#"harp_nextcloud_calls_total{endpoint="exapp-meta",result="not_found"}"#),
        1.0
    );
    assert_eq!(
        v(r#"harp_nextcloud_calls_total{endpoint="user-info",result="ok"}"#),
        1.0
    );
    assert_eq!(
        v(r#"harp_cache_lookups_total{cache="session",result="hit"}"#),
        1.0
    );
    assert_eq!(v(r#"harp_bruteforce_strikes_total"#), 2.0);
    assert_eq!(v(r#"harp_request_duration_seconds_count"#), 7.0);
    assert_eq!(v(r#"harp_request_duration_seconds_bucket{le="+Inf"}"#), 7.0);
    assert_eq!(v("harp_exapps_cached"), 1.0);
    assert_eq!(v("harp_unknown_apps_cached"), 1.0);
    assert_eq!(v("harp_sessions_cached"), 1.0);
    assert_eq!(v("harp_clients_tracked"), 1.0, "127.0.0.1 has strikes");
}

/// Q7: HaRP remembers every app id a client invents; harp-rs keeps at most 10,000 of them, and
/// every other cache is bounded the same way (their sizes are in `/metrics`).
#[tokio::test(flavor = "multi_thread")]
async fn q7_invented_app_ids_stay_within_the_cache_bound() {
    const IDS: usize = 10_500;
    let nc = StubNextcloud::start().await;
    let harp = Harp::start(&[("NC_INSTANCE_URL", &nc.url())]);
    let http = client();
    let statuses: Vec<_> = futures_util::stream::iter(0..IDS)
        .map(|i| {
            // The key holder adds no strikes (Q1), so the client is never banned on the way.
            let sent = http
                .get(harp.url(&format!("/exapps/q7-{i}/x")))
                .header("harp-shared-key", KEY)
                .send();
            async move { sent.await.map(|r| r.status().as_u16()).ok() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == Some(404)));
    assert_eq!(nc.count("exapp-meta"), IDS, "each id asked once");

    let m = scrape(&harp).await;
    let unknown = m["harp_unknown_apps_cached"];
    assert!(
        (5_000.0..=10_000.0).contains(&unknown),
        "{unknown} unknown ids cached"
    );
    assert_eq!(m["harp_clients_tracked"], 0.0);
    assert_eq!(m["harp_exapps_cached"], 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_reports_whether_nextcloud_answers() {
    let nc = StubNextcloud::start().await;
    let harp = Harp::start(&[("NC_INSTANCE_URL", &nc.url())]);
    let out = get(harp.ops_addr(), "/ready", &[]).await;
    assert_eq!(out.status(), 200, "{out:?}");

    let down = ClosedPort::new();
    let harp = Harp::start(&[(
        "NC_INSTANCE_URL",
        &format!("http://127.0.0.1:{}", down.port()),
    )]);
    let out = get(harp.ops_addr(), "/ready", &[]).await;
    assert_eq!(out.status(), 503, "{out:?}");
    assert!(out.body_str().contains("unreachable"), "{}", out.body_str());
    let out = get(harp.ops_addr(), "/heartbeat", &[]).await;
    assert_eq!(out.status(), 200);
    assert_eq!(out.body_str(), r#"{"status":"ok"}"#);
}
