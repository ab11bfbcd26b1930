//! The operator's packaging: the container image, compose and Kubernetes manifests, the
//! Grafana dashboard and the Prometheus alerts. No Docker daemon or cluster runs here, so
//! each is proven as far as the machine allows: the Dockerfile's build stage builds from
//! exactly what it copies, every file passes a real validator (hadolint, the compose-spec
//! and Kubernetes schemas, promtool), every gateway config in them passes `check`, and
//! every metric the dashboard and alerts name is one the real gateway exports.

mod common;
#[path = "packaging/support.rs"]
mod support;

use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;
use support::*;
use yaml_rust2::{Yaml, YamlLoader};

#[test]
fn the_dockerfile_build_stage_builds_from_exactly_what_it_copies() {
    let dockerfile = read("Dockerfile");
    let patterns = dockerignore();
    let dir = fresh_temp_dir();
    let build_copies: Vec<_> = copies(&dockerfile)
        .into_iter()
        .filter(|c| c.stage == 1 && !c.from_stage)
        .collect();
    assert!(!build_copies.is_empty(), "no COPY in the build stage");
    for copy in &build_copies {
        let into_dir = copy.dest.ends_with('/') || copy.sources.len() > 1;
        for source in &copy.sources {
            assert!(
                !ignored(&patterns, source),
                "COPY {source}: .dockerignore leaves it out of the context"
            );
            let from = root().join(source);
            assert!(from.exists(), "COPY {source}: no such path");
            let to = match into_dir {
                true => dir.join(&copy.dest).join(from.file_name().expect("a name")),
                false => dir.join(&copy.dest),
            };
            copy_tree(&from, &to, source, &patterns);
        }
    }
    // The image's command, checked rather than built: the same manifest, lock file and
    // targets, offline, on the dependencies `cargo test` already built.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["check", "--locked", "--offline", "--all-targets", "--quiet"])
        .env("CARGO_TARGET_DIR", root().join("target"))
        .current_dir(&dir)
        .output()
        .expect("run cargo");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the Dockerfile's build stage does not build from what it copies:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        instructions(&dockerfile)
            .iter()
            .any(|i| i.contains("cargo build --release --locked")),
        "the image is built with --locked"
    );
}

#[test]
fn the_image_runs_as_a_non_root_user_with_data_config_healthcheck_and_labels() {
    let dockerfile = read("Dockerfile");
    let steps = instructions(&dockerfile);
    let runtime: Vec<&String> = {
        let last_from = steps.iter().rposition(|s| s.starts_with("FROM")).unwrap();
        steps[last_from..].iter().collect()
    };
    let has = |prefix: &str| runtime.iter().any(|s| s.starts_with(prefix));
    let user = runtime.iter().rev().find_map(|s| s.strip_prefix("USER "));
    let uid = user.and_then(|u| u.split(':').next()?.parse::<u32>().ok());
    assert!(
        uid.is_some_and(|u| u > 0),
        "USER must be a numeric non-root id, got {user:?}"
    );
    assert!(has(r#"VOLUME ["/data"]"#));
    assert!(has("ENV PORTCULLIS_ADMIN_LISTEN=0.0.0.0:9090"));
    assert!(
        has(r#"HEALTHCHECK"#)
            && runtime
                .iter()
                .any(|s| s.contains(r#"/portcullis", "health""#))
    );
    assert!(has(r#"CMD ["run", "-c", "/etc/portcullis/gateway.yaml"]"#));
    for label in ["title", "description", "licenses", "version", "revision"] {
        let key = format!("org.opencontainers.image.{label}=");
        assert!(
            runtime.iter().any(|s| s.contains(&key)),
            "no OCI label {key}"
        );
    }
    let cargo_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap();
    assert!(
        has(&format!("ARG VERSION={cargo_version}")),
        "the image's VERSION label defaults to Cargo.toml's version {cargo_version}"
    );
    // The config it ships names /data, which the gateway's user can write.
    let shipped = copies(&dockerfile)
        .into_iter()
        .find(|c| c.dest == "/etc/portcullis/gateway.yaml")
        .expect("a COPY of the config to /etc/portcullis/gateway.yaml");
    assert_eq!(shipped.sources, ["deploy/gateway.yaml"]);
    let config = read("deploy/gateway.yaml");
    assert!(config.contains("store: sqlite:///data/") && config.contains("keys_dir: /data/"));
}

#[test]
fn dockerignore_keeps_build_output_local_state_and_history_out_of_the_context() {
    let patterns = dockerignore();
    for path in [
        "target",
        "fuzz/target",
        "data",
        ".git",
        "data/portcullis.db",
    ] {
        assert!(
            ignored(&patterns, path),
            "{path} is sent to the Docker daemon"
        );
    }
    for path in [".env", "deploy/.env", "x/portcullis.db"] {
        assert!(
            ignored(&patterns, path),
            "{path} is sent to the Docker daemon"
        );
    }
    for path in ["src/main.rs", "Cargo.lock", "deploy/gateway.yaml"] {
        assert!(!ignored(&patterns, path), "{path} is left out");
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("hadolint") else {
        return;
    };
    must_pass(&hadolint, &["--failure-threshold", "info", "Dockerfile"]);
}

#[test]
fn every_gateway_config_in_deploy_passes_check() {
    let dir = fresh_temp_dir();
    let configmap = YamlLoader::load_from_str(&read("deploy/kubernetes/configmap.yaml")).unwrap();
    let in_configmap = configmap[0]["data"]["gateway.yaml"]
        .as_str()
        .expect("the ConfigMap holds gateway.yaml");
    let kubernetes = write_file(&dir, "kubernetes.yaml", in_configmap);
    let configs = [
        root().join("deploy/gateway.yaml"),
        root().join("deploy/compose/gateway.yaml"),
        kubernetes,
    ];
    // The secrets every deployment passes (JWT_SECRET is the harness's default).
    let kek = ("PORTCULLIS_KEY_ENCRYPTION_KEY", TEST_SECRET);
    for config in &configs {
        let path = config.to_str().unwrap();
        let (code, stdout, stderr) = portcullis(&["check", "-c", path], &[kek]);
        assert_eq!(code, 0, "{path}:\n{stdout}{stderr}");
        // Every deployment publishes the admin listener beyond loopback, one way or another.
        let admin = [kek, ("PORTCULLIS_ADMIN_LISTEN", "0.0.0.0:9090")];
        let (_, stdout, _) = portcullis(&["check", "-c", path], &admin);
        assert!(stdout.contains("admin 0.0.0.0:9090"), "{path}: {stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_compose_file_passes_the_compose_spec_schema() {
    let compose = read("deploy/compose.yaml");
    let doc = &YamlLoader::load_from_str(&compose).unwrap()[0];
    let services = &doc["services"];
    for replica in ["gateway-1", "gateway-2"] {
        let s = &services[replica];
        assert_eq!(
            s["environment"]["PORTCULLIS_ADMIN_LISTEN"].as_str(),
            Some("0.0.0.0:9090")
        );
        assert!(s["environment"]["JWT_SECRET"]
            .as_str()
            .unwrap()
            .contains("JWT_SECRET"));
        assert_eq!(
            s["healthcheck"]["test"][2].as_str(),
            Some("health"),
            "{replica}"
        );
        assert!(
            s["ports"].is_badvalue(),
            "{replica} publishes a port: the LB fronts it"
        );
    }
    assert_eq!(services["lb"]["ports"][0].as_str(), Some("8080:8080"));
    assert!(services["postgres"]["healthcheck"]["test"][1].as_str() == Some("pg_isready"));
    let haproxy = read("deploy/compose/haproxy.cfg");
    assert!(haproxy.contains("uri /readyz") && haproxy.contains("check port 9090"));
    let Some(validator) = tool("check-jsonschema") else {
        return;
    };
    must_pass(
        &validator,
        &[
            "--builtin-schema",
            "vendor.compose-spec",
            "deploy/compose.yaml",
        ],
    );
}

fn manifests() -> Vec<(String, Yaml)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
            (
                format!(
                    "deploy/kubernetes/{}",
                    p.file_name().unwrap().to_string_lossy()
                ),
                doc,
            )
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [(String, Yaml)], kind: &str) -> &'a Yaml {
    &docs
        .iter()
        .find(|(_, d)| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes"))
        .1
}

#[test]
fn the_kubernetes_manifests_are_hardened_and_pass_the_kubernetes_schemas() {
    let docs = manifests();
    let deployment = of_kind(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(2));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    let probe = |name: &str| {
        let p = &container[name]["httpGet"];
        (p["path"].as_str().unwrap(), p["port"].as_str().unwrap())
    };
    assert_eq!(probe("livenessProbe"), ("/healthz", "admin"));
    assert_eq!(probe("readinessProbe"), ("/readyz", "admin"));
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert!(!container["resources"]["requests"]["memory"].is_badvalue());
    assert!(!container["resources"]["limits"]["memory"].is_badvalue());
    let data_volume = container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/data"))
        .and_then(|m| m["name"].as_str())
        .expect("a volume at /data");
    assert!(pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|v| v["name"].as_str() == Some(data_volume) && !v["emptyDir"].is_badvalue()));
    let secret = &of_kind(&docs, "Secret")["stringData"];
    assert!(
        !secret["JWT_SECRET"].is_badvalue()
            && !secret["PORTCULLIS_KEY_ENCRYPTION_KEY"].is_badvalue()
    );
    assert_eq!(
        of_kind(&docs, "PodDisruptionBudget")["spec"]["minAvailable"].as_i64(),
        Some(1)
    );
    // The admin port is reachable from the monitoring namespace only.
    let rules = of_kind(&docs, "NetworkPolicy")["spec"]["ingress"]
        .as_vec()
        .unwrap();
    for rule in rules {
        let ports: Vec<_> = rule["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_str())
            .collect();
        if ports.contains(&Some("admin")) {
            let from = rule["from"]
                .as_vec()
                .expect("the admin port names who may reach it");
            let namespace =
                &from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"];
            assert_eq!((from.len(), namespace.as_str()), (1, Some("monitoring")));
        }
    }
    let Some(validator) = tool("kubernetes-validate") else {
        return;
    };
    let files: Vec<&str> = docs.iter().map(|(f, _)| f.as_str()).collect();
    let mut args = vec!["--strict", "--quiet"];
    args.extend(&files);
    must_pass(&validator, &args);
    // The validator is not a formality: a misspelt field fails it.
    let dir = fresh_temp_dir();
    let broken = read("deploy/kubernetes/deployment.yaml")
        .replace("readOnlyRootFilesystem", "readOnlyRootFileSystem");
    let broken = write_file(&dir, "deployment.yaml", &broken);
    let out = Command::new(&validator)
        .args(["--strict", "--quiet"])
        .arg(&broken)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !out.status.success(),
        "kubernetes-validate accepted a misspelt field"
    );
}

/// Every PromQL expression of the dashboard, with Grafana's variables filled in.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/portcullis.json")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let title = panel["title"].as_str().unwrap().to_owned();
            let filled = expr
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            exprs.push((title, filled));
        }
    }
    exprs
}

fn alert_exprs() -> Vec<(String, String)> {
    let rules = YamlLoader::load_from_str(&read("deploy/prometheus/alerts.yaml")).unwrap();
    let mut exprs = Vec::new();
    for group in rules[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_owned();
            exprs.push((name, rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    exprs
}

#[test]
fn the_alert_rules_and_the_dashboards_queries_pass_promtool() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/portcullis.json")).unwrap();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "panel ids repeat"
        );
    }
    let titles: Vec<_> = dashboard_exprs().into_iter().map(|(t, _)| t).collect();
    for wanted in [
        "Requests by route and status",
        "Request time p50 / p99 by route",
        "Auth decisions by reason",
        "Logins by result",
        "Refreshes by result",
        "JWKS fetches by issuer and result",
        "Config reloads",
        "Ready replicas",
    ] {
        assert!(
            titles.iter().any(|t| t == wanted),
            "the dashboard has no panel {wanted:?}"
        );
    }
    let alerts: Vec<_> = alert_exprs().into_iter().map(|(a, _)| a).collect();
    for wanted in [
        "PortcullisHigh5xxRatio",
        "PortcullisHighP99Latency",
        "PortcullisInvalidTokenSpike",
        "PortcullisLoginsRateLimited",
        "PortcullisJwksFetchFailing",
        "PortcullisReplicaNotReady",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "no alert {wanted}");
    }
    let Some(promtool) = tool("promtool") else {
        return;
    };
    must_pass(
        &promtool,
        &["check", "rules", "deploy/prometheus/alerts.yaml"],
    );
    // The dashboard's queries, parsed by Prometheus's own parser as recording rules.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_exprs().iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::Value::from(expr.as_str())
        ));
    }
    let dir = fresh_temp_dir();
    let file = write_file(&dir, "dashboard-rules.yaml", &rules);
    must_pass(&promtool, &["check", "rules", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_one_the_gateway_exports() {
    let echo = Echo::start();
    // A trusted issuer whose JWKS URL refuses connections: its fetches count as errors.
    let jwks = free_addr();
    let issuer = format!(
        "trusted_issuers: [{{ issuer: \"https://idp.test/\", jwks_url: \"http://{jwks}/jwks.json\", audience: api }}]"
    );
    let gw = Gateway::start(&config_with_auth(&[&issuer]), echo.addr, &[]);
    let t = token("u1", "viewer", "");
    get_as(gw.addr, "/api/protected", &t);
    get_as(gw.addr, "/api/protected", "not.a.jwt");
    get(gw.addr, "/api/protected", &[]);
    get(gw.addr, "/dead/x", &[]);
    let (_, _, refresh_token) = signed_in(gw.addr, "ops@example.com");
    login(gw.addr, "ops@example.com", "wrong password, surely");
    refresh(gw.addr, &refresh_token);
    let scraped = || exported(&get(gw.admin_addr, "/metrics", &[]).text());
    assert!(eventually(Duration::from_secs(10), || scraped()
        .contains_key("portcullis_jwks_fetches_total")));
    assert!(eventually(Duration::from_secs(3), || scraped()
        .contains_key("portcullis_requests_total")));
    let series = scraped();
    // Labels Prometheus adds to every scraped series, and `le` of the histograms.
    let target_labels = ["job", "instance", "le"];
    for (source, expr) in dashboard_exprs().into_iter().chain(alert_exprs()) {
        let names = metric_names(&expr);
        let mut labels: BTreeSet<String> = target_labels.iter().map(|l| l.to_string()).collect();
        for name in &names {
            let exported = series.get(name).unwrap_or_else(|| {
                panic!(
                    "{source}: {name} is not exported; the gateway exports {:?}",
                    series.keys().collect::<Vec<_>>()
                )
            });
            labels.extend(exported.iter().cloned());
        }
        if names.is_empty() {
            // Prometheus's own `up`: the only non-gateway series allowed.
            assert!(expr.starts_with("up{"), "{source}: {expr}");
            continue;
        }
        for label in label_names(&expr) {
            assert!(
                labels.contains(&label),
                "{source}: label {label} is on none of {names:?}"
            );
        }
    }
    assert_eq!(series["portcullis_ready"], BTreeSet::new());
    assert_eq!(metric(gw.admin_addr, "portcullis_ready"), Some(1.0));
}

#[test]
fn portcullis_health_exits_0_when_readyz_answers_200_and_1_with_one_line_otherwise() {
    let echo = Echo::start();
    let gw = Gateway::start(BASE_CONFIG, echo.addr, &[]);
    let url = format!("http://{}/readyz", gw.admin_addr);
    let (code, stdout, stderr) = portcullis(&["health", "--url", &url], &[]);
    assert_eq!(
        (code, stdout.trim(), stderr.as_str()),
        (0, format!("ready: {url} answered 200").as_str(), "")
    );
    // From the config, as the image's HEALTHCHECK asks: the admin listener it names.
    let config = gw.dir.join("gateway.yaml");
    let (code, stdout, _) = portcullis(&["health", "-c", config.to_str().unwrap()], &[]);
    assert_eq!(
        (code, stdout.trim()),
        (0, format!("ready: {url} answered 200").as_str())
    );
    drop(gw);

    // A replica that answers 503.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answering = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    });
    let url = format!("http://{addr}/readyz");
    let (code, stdout, stderr) = portcullis(&["health", "--url", &url], &[]);
    answering.join().unwrap();
    assert_eq!(
        (code, stdout.as_str(), stderr.trim()),
        (1, "", format!("not ready: {url} answered 503").as_str())
    );
    // Nothing listening.
    let (code, _, stderr) = portcullis(&["health", "--url", &url], &[]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("not ready: {url}: cannot connect to {addr}")),
        "{stderr}"
    );
}
