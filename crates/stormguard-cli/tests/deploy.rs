//! deploy/: what no container runtime or cluster here can run, checked against what the
//! workspace builds and what the proxy does. kubernetes-validate (.ci/run) checks the manifests
//! against Kubernetes' own schema; this checks that they fit stormguard: the image holds the
//! binary `cargo build` makes, the sidecar runs the ConfigMap's settings (which validate), its
//! probes ask the admin address those settings bind, nothing beyond the pod reaches the proxy,
//! the grace period covers the drains, and the resources cover the measured figures.

#[path = "support/run.rs"]
mod run;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use run::stormguard;
use stormguard_mesh::doc::{parse_documents, Document, Node};
use stormguard_proxy::config::{self, Config};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every resource of the files in deploy/kubernetes.
fn manifests() -> Vec<Document> {
    let mut documents = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        documents.extend(parse_documents(&file.display().to_string(), &text).unwrap());
    }
    documents
}

fn resource<'a>(documents: &'a [Document], kind: &str, name: &str) -> &'a Node {
    documents
        .iter()
        .map(|doc| &doc.root)
        .find(|root| {
            root.get("kind").and_then(Node::as_str) == Some(kind)
                && root
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Node::as_str)
                    == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn at<'a>(node: &'a Node, path: &str) -> &'a Node {
    path.split('.')
        .try_fold(node, |node, key| node.get(key))
        .unwrap_or_else(|| panic!("no {path}"))
}

fn strings(node: &Node) -> Vec<&str> {
    node.items().iter().map(|n| n.as_str().unwrap()).collect()
}

/// The example's pod and its sidecar (the init container that keeps running).
fn pod(documents: &[Document]) -> (&Node, &Node) {
    let spec = at(
        resource(documents, "Deployment", "storefront"),
        "spec.template.spec",
    );
    let sidecar = at(spec, "initContainers")
        .items()
        .iter()
        .find(|c| c.get("name").and_then(Node::as_str) == Some("stormguard"))
        .expect("an init container named stormguard");
    (spec, sidecar)
}

/// The settings the ConfigMap holds, validated as the proxy validates them at start.
fn settings(documents: &[Document]) -> (String, Config) {
    let configmap = resource(documents, "ConfigMap", "storefront-stormguard");
    let text = at(configmap, "data")
        .get("settings.toml")
        .and_then(Node::as_str)
        .expect("the ConfigMap holds settings.toml")
        .to_string();
    let config = config::parse("configmap.yaml: settings.toml", &text)
        .unwrap_or_else(|e| panic!("the ConfigMap's settings do not validate: {e}"));
    (text, config)
}

/// `(instruction, arguments)` of each instruction of the Containerfile, comments left out.
fn containerfile() -> Vec<(String, String)> {
    read("deploy/container/Containerfile")
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| {
            let (instruction, rest) = line.split_once(' ').unwrap();
            (instruction.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// Where the image puts the binary: the destination of the `COPY --from=build` and what
/// ENTRYPOINT runs.
fn image_binary() -> String {
    let entrypoint = containerfile()
        .into_iter()
        .find(|(i, _)| i == "ENTRYPOINT")
        .expect("an ENTRYPOINT")
        .1;
    let entrypoint: Vec<String> = serde_json::from_str(&entrypoint).unwrap();
    entrypoint[0].clone()
}

#[test]
fn the_image_holds_the_binary_cargo_builds() {
    let instructions = containerfile();
    let build = instructions
        .iter()
        .find(|(i, a)| i == "RUN" && a.starts_with("cargo build"))
        .expect("a RUN cargo build");
    let words: Vec<&str> = build.1.split_whitespace().collect();
    let after = |flag: &str| words[words.iter().position(|w| *w == flag).unwrap() + 1];
    let (package, bin) = (after("-p"), after("--bin"));
    assert!(
        words.contains(&"--locked") && words.contains(&"--release"),
        "{words:?}"
    );

    // The package is this crate, and it declares that [[bin]].
    let manifest = read("crates/stormguard-cli/Cargo.toml");
    assert!(
        manifest.contains(&format!("name = \"{package}\"")),
        "{package}"
    );
    assert!(
        manifest.contains(&format!("[[bin]]\nname = \"{bin}\"")),
        "crates/stormguard-cli/Cargo.toml has no [[bin]] {bin}"
    );
    // ...which `cargo build` made for this test: cargo sets CARGO_BIN_EXE_<name> per binary.
    let built = Path::new(env!("CARGO_BIN_EXE_stormguard"));
    assert!(built.is_file());
    assert_eq!(built.file_name().unwrap(), bin);

    let copied = instructions
        .iter()
        .find(|(i, a)| i == "COPY" && a.starts_with("--from=build"))
        .expect("the binary copied from the build stage");
    let parts: Vec<&str> = copied.1.split_whitespace().collect();
    assert_eq!(parts[1], format!("/src/target/release/{bin}"));
    assert_eq!(parts[2], image_binary(), "ENTRYPOINT runs what was copied");
    // A user by number (Kubernetes' runAsNonRoot refuses to start an image whose USER is a
    // name: it cannot check it), not root, and the one the sidecar asks for.
    let user = &instructions
        .iter()
        .find(|(i, _)| i == "USER")
        .expect("a USER")
        .1;
    let uid: u64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "runs as a non-root user");
    let documents = manifests();
    let (_, sidecar) = pod(&documents);
    assert_eq!(at(sidecar, "securityContext.runAsUser").as_u64(), Some(uid));
}

#[test]
fn every_path_the_image_copies_from_the_workspace_exists() {
    let mut copied = 0;
    for (instruction, arguments) in containerfile() {
        if instruction != "COPY" || arguments.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = arguments.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                root().join(source).exists(),
                "COPY {source}: not in the workspace"
            );
            copied += 1;
        }
    }
    assert!(copied >= 3, "Cargo.toml, Cargo.lock, crates at least");
}

#[test]
fn the_sidecar_is_native_and_runs_the_configmaps_settings() {
    let documents = manifests();
    let (spec, sidecar) = pod(&documents);
    assert_eq!(
        at(sidecar, "restartPolicy").as_str(),
        Some("Always"),
        "an init container with restartPolicy: Always is a native sidecar"
    );
    let args = strings(at(sidecar, "args"));
    assert_eq!(args[..2], ["proxy", "--config"]);
    let file = Path::new(args[2]);

    // The file is the ConfigMap's key, in the volume mounted whole (a subPath mount is never
    // updated, so the reload would never see an edit).
    let mount = at(sidecar, "volumeMounts")
        .items()
        .iter()
        .find(|m| at(m, "mountPath").as_str().map(Path::new) == file.parent())
        .expect("the settings' folder is a volume mount");
    assert!(mount.get("subPath").is_none(), "no subPath");
    let volume_name = at(mount, "name").as_str().unwrap();
    let volume = at(spec, "volumes")
        .items()
        .iter()
        .find(|v| v.get("name").and_then(Node::as_str) == Some(volume_name))
        .unwrap();
    assert_eq!(
        at(volume, "configMap.name").as_str(),
        Some("storefront-stormguard")
    );
    let configmap = resource(&documents, "ConfigMap", "storefront-stormguard");
    let key = file.file_name().unwrap().to_str().unwrap();
    assert!(
        at(configmap, "data").get(key).is_some(),
        "the ConfigMap has {key}"
    );

    // The binary validates them as it would at start.
    let (text, _) = settings(&documents);
    let path = std::env::temp_dir().join(format!("stormguard-deploy-{}.toml", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let (code, out, err) = stormguard(&["proxy", "--config", path.to_str().unwrap(), "--validate"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_proxy_is_reached_from_the_pod_only_and_probed_there() {
    let documents = manifests();
    let (spec, sidecar) = pod(&documents);
    let (_, config) = settings(&documents);
    assert!(config.admin.address.ip().is_loopback(), "admin on loopback");
    assert!(
        config.listen.address.ip().is_loopback(),
        "listen on loopback"
    );

    // No containerPort of the pod and no port of a Service names the proxy's ports.
    let proxy_ports = [config.admin.address.port(), config.listen.address.port()];
    let containers = at(spec, "containers").items().iter();
    for container in containers.chain(at(spec, "initContainers").items()) {
        for port in container.get("ports").map(Node::items).unwrap_or_default() {
            let number = at(port, "containerPort").as_u64().unwrap();
            assert!(
                !proxy_ports.contains(&(number as u16)),
                "containerPort {number}"
            );
        }
    }
    assert!(
        sidecar.get("ports").is_none(),
        "the sidecar declares no port"
    );
    for document in &documents {
        if document.root.get("kind").and_then(Node::as_str) == Some("Service") {
            for port in at(&document.root, "spec.ports").items() {
                for key in ["port", "targetPort"] {
                    let number = port.get(key).and_then(Node::as_u64);
                    assert!(
                        number.is_none_or(|n| !proxy_ports.contains(&(n as u16))),
                        "{key} {number:?}"
                    );
                }
            }
        }
    }

    // Each probe execs `stormguard health` at the admin address the settings bind.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let command = strings(at(sidecar, &format!("{probe}.exec.command")));
        let admin = config.admin.address.to_string();
        assert_eq!(
            command,
            [image_binary().as_str(), "health", "--admin", admin.as_str()],
            "{probe}"
        );
        let timeout = at(sidecar, &format!("{probe}.timeoutSeconds"))
            .as_u64()
            .unwrap();
        assert!(
            timeout > 1,
            "{probe}: longer than `stormguard health`'s own 1 s"
        );
    }
    // Readiness fails at the first 503, so a draining proxy leaves at once.
    assert_eq!(
        at(sidecar, "readinessProbe.failureThreshold").as_u64(),
        Some(1)
    );
}

/// The example is what `check` recommends: settings a user copies should not start with a
/// finding.
#[test]
fn check_finds_nothing_in_the_configmaps_settings() {
    let (text, _) = settings(&manifests());
    let path = std::env::temp_dir().join(format!(
        "stormguard-deploy-check-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, &text).unwrap();
    let (code, out, err) = stormguard(&["check", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("no findings\n"), "{out}");
    assert!(out.contains("0 errors, 0 warnings, 0 infos"), "{out}");
}

/// What deployment.yaml budgets for the application's own drain, between its preStop and the
/// sidecar's SIGTERM (its comment says so).
const APPLICATION_DRAIN: u64 = 10;

#[test]
fn the_grace_period_covers_the_prestop_and_both_drains() {
    let documents = manifests();
    let (spec, _) = pod(&documents);
    let (_, config) = settings(&documents);
    let grace = at(spec, "terminationGracePeriodSeconds").as_u64().unwrap();
    let app = &at(spec, "containers").items()[0];
    let pre_stop = at(app, "lifecycle.preStop.sleep.seconds").as_u64().unwrap();
    let shutdown_grace = config.listen.shutdown_grace.as_secs();
    assert!(
        grace >= pre_stop + APPLICATION_DRAIN + shutdown_grace + 5,
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} + application drain \
         {APPLICATION_DRAIN} + shutdown_grace {shutdown_grace} + 5 s slack"
    );
    let comment = format!(
        "{pre_stop} s (preStop) + {APPLICATION_DRAIN} s (application drain) + {shutdown_grace} s \
         (shutdown_grace) + 5 s = {grace} s"
    );
    assert!(
        read("deploy/kubernetes/deployment.yaml").contains(&comment),
        "the comment says: {comment}"
    );
}

/// bench/proxy_memory.sh's peak (README, 2026-12-06): 1,000 clients not reading 1 MiB
/// responses held 100.2 MiB.
const MEASURED_PEAK_MIB: u64 = 101;

#[test]
fn the_resources_cover_the_measured_figures() {
    let documents = manifests();
    let (_, sidecar) = pod(&documents);
    let (_, config) = settings(&documents);
    let mib = |path: &str| {
        let text = at(sidecar, path).as_str().unwrap();
        text.strip_suffix("Mi").unwrap().parse::<u64>().unwrap()
    };
    assert!(mib("resources.limits.memory") >= MEASURED_PEAK_MIB);
    // The peak was measured with 1,000 clients: more would not be covered.
    assert!(config.listen.max_connections <= 1000);
    // At rest the proxy holds 18-20 MiB.
    assert!(mib("resources.requests.memory") >= 20);
    assert!(at(sidecar, "resources.requests.cpu").as_str().is_some());
    assert!(sidecar
        .get("resources")
        .unwrap()
        .get("limits")
        .unwrap()
        .get("cpu")
        .is_none());
}

/// A silent upstream: accepts and never answers, so a request through the proxy stays in
/// flight until its timeouts.
fn silent_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(16) {
            held.push(stream);
        }
    });
    addr
}

/// The proxy process, killed if the test ends before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn health(admin: SocketAddr) -> (i32, String) {
    let (code, out, err) = stormguard(&["health", "--admin", &admin.to_string()]);
    assert!(err.is_empty(), "{err}");
    (code, out)
}

/// The probes as kubelet runs them, on the ConfigMap's settings: 0 while serving, 1 once
/// SIGTERM started the drain (so readiness takes the pod out before the proxy stops), 1 once
/// it is gone.
#[cfg(unix)]
#[test]
fn the_probe_passes_while_serving_and_fails_while_draining() {
    let documents = manifests();
    let (text, config) = settings(&documents);
    let mut text = text
        .replace(&config.listen.address.to_string(), "127.0.0.1:0")
        .replace(&config.admin.address.to_string(), "127.0.0.1:0");
    for instance in &config.upstreams["api"].instances {
        text = text.replace(
            &format!("\"{instance}\""),
            &format!("\"{}\"", silent_upstream()),
        );
    }
    let path =
        std::env::temp_dir().join(format!("stormguard-deploy-run-{}.toml", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(["proxy", "--config", path.to_str().unwrap()])
        .env("TOKIO_WORKER_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let proxy = Running(child);
    let address = |marker: &str| -> SocketAddr {
        let rest = &line[line.find(marker).expect(&line) + marker.len()..];
        rest[..rest.find([',', ' ']).unwrap()].parse().unwrap()
    };
    let (listen, admin) = (address("listening on http://"), address("admin on http://"));

    let (code, out) = health(admin);
    assert_eq!((code, out), (0, format!("{admin}/healthz: ok\n")));

    // A request in flight keeps the proxy draining after SIGTERM for as long as this test
    // holds back its body (the proxy waits for it up to request_body_timeout, 30 s), so the
    // probe is seen failing however slow the machine.
    let mut client = TcpStream::connect(listen).unwrap();
    let head = b"POST / HTTP/1.1\r\nHost: storefront\r\nContent-Length: 5\r\n\
                 Connection: close\r\n\r\n";
    client.write_all(head).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-TERM", &proxy.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut draining = None;
    for _ in 0..100 {
        let (code, out) = health(admin);
        if code != 0 {
            draining = Some((code, out));
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        draining,
        Some((1, format!("{admin}/healthz: unhealthy: 503 draining\n")))
    );
    // The body sent, the request goes on to the silent upstream and is answered when its
    // timeouts end (a 5xx); then the proxy exits.
    client.write_all(b"hello").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 5"), "{answer}");
    let mut proxy = proxy;
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(exited.expect("exited within 5 s").code(), Some(0));
    let (code, out) = health(admin);
    assert_eq!(code, 1);
    assert!(out.contains("unhealthy: cannot connect"), "{out}");
    std::fs::remove_file(&path).unwrap();
}
