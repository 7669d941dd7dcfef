//! The documentation cannot drift from the code: docs/settings.md documents every setting (and
//! only real ones), conf/harp.yaml names every YAML key, the frpc config in
//! docs/remote-docker.md is parsed by the real parser and run end to end through `harp tunnel`,
//! and the README links every page under docs/.

mod common;

use ::harp::tunnel::client::{config, Target};
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The first cell of every table row (`| `NAME` | ...`), without the backticks.
fn table_names(doc: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn settings_doc_has_a_row_for_every_setting() {
    let doc = read("docs/settings.md");
    for (env, yaml) in ::harp::config::setting_names() {
        let row = format!("| `{env}` | `{yaml}` | ");
        assert!(
            doc.lines().any(|line| line.starts_with(&row)),
            "docs/settings.md has no table row starting with {row:?}"
        );
    }
}

#[test]
fn settings_doc_documents_only_real_settings() {
    let doc = read("docs/settings.md");
    let known: BTreeSet<&str> = ::harp::config::setting_names()
        .map(|(env, _)| env)
        .collect();
    let rows = table_names(&doc);
    assert_eq!(rows.len(), known.len(), "one row per setting: {rows:?}");
    for name in &rows {
        assert!(
            known.contains(name.as_str()),
            "docs/settings.md documents {name}, which harp does not read"
        );
    }
}

#[test]
fn settings_doc_lists_the_ignored_variables_and_the_config_variable() {
    let doc = read("docs/settings.md");
    for var in ::harp::config::IGNORED_ENV_VARS {
        assert!(
            doc.contains(&format!("`{var}`")),
            "docs/settings.md does not mention the ignored {var}"
        );
    }
    assert!(doc.contains(&format!("`{}`", ::harp::config::CONFIG_PATH_VAR)));
}

#[test]
fn sample_config_file_names_every_yaml_key() {
    let conf = read("conf/harp.yaml");
    for (env, yaml) in ::harp::config::setting_names() {
        assert!(
            conf.contains(&format!("# {env} ")) && conf.contains(&format!("#{yaml}: ")),
            "conf/harp.yaml lacks {env} or its commented example `#{yaml}: ...`"
        );
    }
}

#[test]
fn readme_links_every_doc_page_and_every_link_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = read("README.md");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    for page in &pages {
        let name = page.file_name().unwrap().to_str().unwrap();
        assert!(
            readme.contains(&format!("](docs/{name})")),
            "README.md does not link docs/{name}"
        );
    }
    // Relative links in the README and the pages point at files that exist.
    let mut docs = vec![(root.to_path_buf(), readme)];
    docs.extend(
        pages
            .iter()
            .map(|p| (root.join("docs"), std::fs::read_to_string(p).unwrap())),
    );
    for (base, text) in docs {
        for target in text.split("](").skip(1).filter_map(|s| s.split_once(')')) {
            if let Some(anchor) = target.0.strip_prefix('#') {
                assert!(
                    text.lines()
                        .filter(|l| l.starts_with('#'))
                        .any(|h| slug(h.trim_start_matches('#')) == anchor),
                    "no heading for the link #{anchor} (in {})",
                    base.display()
                );
                continue;
            }
            let link = target.0.split('#').next().unwrap();
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            assert!(
                base.join(link).exists(),
                "broken link {link:?} (relative to {})",
                base.display()
            );
        }
    }
}

/// A heading's anchor as GitHub makes it: lower case, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// docs/remote-docker.md: the frpc config
// ---------------------------------------------------------------------------------------------

/// The one ```toml block of docs/remote-docker.md.
fn remote_docker_toml() -> String {
    let doc = read("docs/remote-docker.md");
    let mut blocks = doc.split("```toml\n").skip(1);
    let block = blocks
        .next()
        .expect("a ```toml block in docs/remote-docker.md");
    assert!(blocks.next().is_none(), "exactly one ```toml block");
    block.split("\n```").next().unwrap().to_string() + "\n"
}

#[test]
fn remote_docker_config_is_harps_shape_and_parses_cleanly() {
    let (cfg, warnings) = config::parse(&remote_docker_toml()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(cfg.server_port, 8782);
    assert!(!cfg.login_fail_exit);
    let tls = cfg.tls.as_ref().expect("TLS on");
    assert_eq!(tls.server_name, "harp.nc");
    assert_eq!(
        tls.cert_file.as_deref(),
        Some(Path::new("/certs/frp/client.crt"))
    );
    assert_eq!(
        tls.key_file.as_deref(),
        Some(Path::new("/certs/frp/client.key"))
    );
    assert_eq!(
        tls.trusted_ca_file.as_deref(),
        Some(Path::new("/certs/frp/ca.crt"))
    );
    assert!(
        cfg.metas.contains_key("token"),
        "the shared key as metadatas.token"
    );
    assert_eq!(cfg.proxies.len(), 1);
    let proxy = &cfg.proxies[0];
    assert!((24001..=24099).contains(&proxy.remote_port));
    assert_eq!(
        proxy.target,
        Target::Unix(PathBuf::from("/var/run/docker.sock"))
    );
}

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Docker engine stand-in on a unix socket: every request gets `200 OK` with body `OK`, as
/// `/_ping` answers.
fn fake_engine(path: &Path) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
                          Connection: close\r\n\r\nOK",
                    )
                    .await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_docker_config_runs_through_harp_tunnel_and_the_control_api() {
    const PORT: u16 = 24081;
    let harp = Harp::start(&[]);
    let dir = TempDir::new("remote-docker");
    let socket = dir.join("docker.sock");
    let engine = fake_engine(&socket);

    let frp = harp.certs_dir().join("frp");
    let mut toml = remote_docker_toml();
    for (from, to) in [
        (
            "\"harp.example.com\"",
            format!("\"{}\"", harp.frp_addr().ip()),
        ),
        (
            "serverPort = 8782",
            format!("serverPort = {}", harp.frp_addr().port()),
        ),
        ("/certs/frp/", format!("{}/", frp.display())),
        ("\"change-me\"", format!("\"{KEY}\"")),
        ("remotePort = 24001", format!("remotePort = {PORT}")),
        ("/var/run/docker.sock", socket.display().to_string()),
    ] {
        assert!(toml.contains(from), "the doc's config no longer has {from}");
        toml = toml.replace(from, &to);
    }
    let file = dir.join("frpc.toml");
    std::fs::write(&file, &toml).unwrap();

    // The tunnel listener may come up a moment after the HTTP listener the harness waits for.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(harp.frp_addr()).is_err() {
        assert!(Instant::now() < deadline, "harp's FRP listener is not up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::File::create(dir.join("tunnel.log")).unwrap();
    let _tunnel = Killed(
        Command::new(env!("CARGO_BIN_EXE_harp"))
            .arg("tunnel")
            .arg("-c")
            .arg(&file)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // AppAPI's call: the passthrough with the key and the daemon's docker-engine-port.
    let port = PORT.to_string();
    let headers = [
        ("harp-shared-key", KEY),
        ("docker-engine-port", port.as_str()),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = get(harp.http_addr(), "/exapps/app_api/v1.41/_ping", &headers).await;
        if matches!(&out, RawOutcome::Response { status: 200, .. }) {
            assert_eq!(out.body_str(), "OK");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the remote engine is not reachable through the tunnel: {out:?}\n{}",
            std::fs::read_to_string(dir.join("tunnel.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.abort();
}

// ---------------------------------------------------------------------------------------------
// docs/behaviour.md: every rule id the code cites
// ---------------------------------------------------------------------------------------------

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The comment on a source line: the whole line when it is a comment, else what follows a
/// trailing ` // `.
fn comment_of(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return Some(trimmed);
    }
    line.find(" // ").map(|i| &line[i..])
}

/// Rule ids (`D7`, `B26`, `Q3`, `R7`, `E6`) and section numbers (`§3.2`) cited in the comments of
/// `src/` and `tests/`, and the ids test names start with (`fn b15_...` cites B15), each with
/// where it is first cited. `RFC 9112 §6.3` is the RFC's own section and not ours.
fn cited_rule_ids() -> std::collections::BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rule = regex::Regex::new(r"\b([BDQRE])([0-9]{1,2})\b").unwrap();
    let section = regex::Regex::new(r"(RFC [0-9]+ )?§([0-9]+(?:\.[0-9]+)*)").unwrap();
    let test_name = regex::Regex::new(r"\bfn ([bdqre])([0-9]{1,2})_").unwrap();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    files.sort();
    let mut cited = std::collections::BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let at = |n: usize| {
            format!(
                "{}:{}",
                file.strip_prefix(root).unwrap_or(file).display(),
                n + 1
            )
        };
        for (n, line) in text.lines().enumerate() {
            for m in test_name.captures_iter(line) {
                let id = format!("{}{}", m[1].to_ascii_uppercase(), &m[2]);
                cited.entry(id).or_insert_with(|| at(n));
            }
            let Some(comment) = comment_of(line) else {
                continue;
            };
            for m in rule.captures_iter(comment) {
                cited
                    .entry(format!("{}{}", &m[1], &m[2]))
                    .or_insert_with(|| at(n));
            }
            for m in section.captures_iter(comment) {
                if m.get(1).is_none() {
                    cited.entry(format!("§{}", &m[2])).or_insert_with(|| at(n));
                }
            }
        }
    }
    cited
}

/// A rule is documented by a list item starting with its id in bold (`- **D7** ...`), a section
/// number by a heading that holds it (`## §3 ...`, `### frp §3.2 ...`).
#[test]
fn rule_ids_cited_in_code_are_documented() {
    let doc = read("docs/behaviour.md");
    let rules: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- **"))
        .filter_map(|rest| rest.split_once("**"))
        .map(|(id, _)| id)
        .collect();
    let headings: Vec<&str> = doc.lines().filter(|l| l.starts_with('#')).collect();
    let has_heading = |number: &str| {
        headings.iter().any(|h| {
            h.match_indices(number).any(|(i, _)| {
                !h[i + number.len()..].starts_with(|c: char| c.is_ascii_digit() || c == '.')
            })
        })
    };
    let cited = cited_rule_ids();
    for id in ["D7", "B26", "Q3", "R7", "§3.2"] {
        assert!(cited.contains_key(id), "the scan no longer finds {id}");
    }
    let missing: Vec<String> = cited
        .iter()
        .filter(|(id, _)| {
            if id.starts_with('§') {
                !has_heading(id.as_str())
            } else {
                !rules.contains(id.as_str())
            }
        })
        .map(|(id, at)| format!("{id} (cited at {at})"))
        .collect();
    assert!(
        missing.is_empty(),
        "cited in the code but not documented in docs/behaviour.md:\n{}",
        missing.join("\n")
    );
}
