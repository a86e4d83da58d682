//! `stormguard proxy` as an operator runs it: the built binary, a settings file, an upstream in
//! this test on 127.0.0.1, signals sent by `kill`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn root() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
}

fn stormguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "stormguard-proxy-cli-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn validate_says_ok_for_the_example() {
    let file = "examples/proxy/stormguard.toml";
    let (code, out, err) = stormguard(&["proxy", "--config", file, "--validate"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{file}: ok (1 route, 1 upstream)\n"));
}

#[test]
fn validate_exits_2_at_the_place_of_the_error() {
    let path = temp_file(
        "bad",
        "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n[[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"2 s\"\n",
    );
    let file = path.display().to_string();
    let (code, out, err) = stormguard(&["proxy", "--config", &file, "--validate"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    let place = format!("stormguard: {file}:6:11: `routes[0].timeout`: ");
    assert!(err.starts_with(&place), "{err}");
}

#[test]
fn a_missing_file_exits_2_naming_it() {
    let (code, _, err) = stormguard(&["proxy", "--config", "/nonexistent/p.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/p.toml: cannot read"), "{err}");
}

/// `STORMGUARD_LOG` that is neither a level nor TARGET=LEVEL stops the proxy before it listens,
/// with exit 2 and the variable named: it was once read as "info" without a word.
#[test]
fn an_invalid_log_filter_is_refused_at_start() {
    let path = temp_file(
        "log-filter",
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n\
         [[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"2s\"\n",
    );
    for (filter, why) in [
        ("bogus", "`bogus` is not a level"),
        ("info,stormguard::access=loud", "TARGET=LEVEL"),
    ] {
        let child = Command::new(env!("CARGO_BIN_EXE_stormguard"))
            .args(["proxy", "--config", &path.display().to_string()])
            .env("STORMGUARD_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A proxy that took the filter would serve until killed: wait 10 s at most.
        let mut proxy = Running(child);
        let mut exited = None;
        for _ in 0..400 {
            exited = proxy.0.try_wait().unwrap();
            if exited.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = proxy.0.kill();
        let (mut err, mut out) = (String::new(), String::new());
        proxy
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        proxy
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(exited.and_then(|s| s.code()), Some(2), "{filter}: {err}");
        assert!(
            err.starts_with(&format!("stormguard: STORMGUARD_LOG=\"{filter}\": ")),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
        assert!(out.is_empty(), "nothing listened: {out}");
    }
    std::fs::remove_file(&path).unwrap();
}

/// An upstream on an ephemeral port: answers `hello` at once, or after a second at `/slow`.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET /slow ") {
                    std::thread::sleep(Duration::from_secs(1));
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                );
            });
        }
    });
    addr
}

/// One request over a fresh connection: (status, head, body).
fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_string(),
        body.to_string(),
    )
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The proxy process, killed if the test ends before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(listen, admin)` from the start line.
fn addresses(line: &str) -> (SocketAddr, SocketAddr) {
    let after = |marker: &str| {
        let rest = &line[line.find(marker).unwrap() + marker.len()..];
        let end = rest.find([',', ' ']).unwrap();
        rest[..end].parse().unwrap()
    };
    (after("listening on http://"), after("admin on http://"))
}

fn generation(admin: SocketAddr) -> u64 {
    let (_, _, body) = http(admin, &get("/config", "localhost"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["generation"].as_u64().unwrap()
}

#[cfg(unix)]
#[test]
fn it_proxies_reloads_on_sighup_and_drains_on_sigterm() {
    let upstream = upstream();
    let settings = |timeout: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
             [upstreams.api]\ninstances = [\"{upstream}\"]\n\
             [[routes]]\nname = \"api\"\nmatch = {{ host = \"api.internal\" }}\nupstream = \"api\"\ntimeout = \"{timeout}\"\n"
        )
    };
    let path = temp_file("run", &settings("2s"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(["proxy", "--config", &path.display().to_string()])
        .env("TOKIO_WORKER_THREADS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log, kept line by line (and drained, so the proxy never blocks on a full pipe).
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let lines = log.clone();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            lines.lock().unwrap().push(line);
        }
    });
    let logged = |needle: &str| log.lock().unwrap().iter().any(|l| l.contains(needle));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut proxy = Running(child);
    let (listen, admin) = addresses(&line);
    assert_ne!(listen.port(), 0, "{line}");
    assert_ne!(admin.port(), 0, "{line}");

    let (status, head, body) = http(listen, &get("/hello", "api.internal"));
    assert_eq!((status, body.as_str()), (200, "hello"), "{head}");
    assert!(head.contains("stormguard-attempts: 1"), "{head}");
    let (status, head, _) = http(listen, &get("/hello", "other.internal"));
    assert_eq!(status, 404, "{head}");
    assert!(head.contains("stormguard-reason: no-route"), "{head}");

    let (_, _, body) = http(admin, &get("/config", "localhost"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["generation"], 1);
    assert_eq!(
        json["listen"]["address"],
        listen.to_string(),
        "the bound port"
    );
    assert_eq!(json["routes"][0]["timeout"], "2s");
    assert_eq!(
        json["routes"][0]["max_attempts"], 1,
        "the default, filled in"
    );

    std::fs::write(&path, settings("3s")).unwrap();
    kill(&proxy.0, "-HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if generation(admin) >= 2 && logged("trigger=\"SIGHUP\"") {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        reloaded,
        "SIGHUP reloaded within 5 s: {:?}",
        log.lock().unwrap()
    );
    let (_, _, body) = http(admin, &get("/config", "localhost"));
    assert!(body.contains("\"timeout\": \"3s\""), "{body}");
    // The access log: one timestamped line for each of the two requests so far.
    let access: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(" INFO stormguard::access: "))
        .cloned()
        .collect();
    assert_eq!(access.len(), 2, "{access:?}");
    assert!(
        access[0].starts_with("20") && access[0].contains('T'),
        "{access:?}"
    );
    assert!(
        access[0].contains(
            "route=api method=GET path=/hello status=200 attempts=1 reason=- duration_us="
        ) && access[0].contains(&format!(
            "instance={upstream} request_bytes=0 response_bytes=5"
        )),
        "{access:?}"
    );
    assert!(
        access[1].contains("route=- method=GET path=/hello status=404 attempts=0 reason=no-route"),
        "{access:?}"
    );
    let (_, _, metrics) = http(admin, &get("/metrics", "localhost"));
    assert!(
        metrics.contains("stormguard_config_reloads_total{result=\"ok\"}"),
        "{metrics}"
    );

    // A request in flight when SIGTERM arrives finishes; meanwhile /healthz says draining.
    let slow = std::thread::spawn(move || http(listen, &get("/slow", "api.internal")));
    std::thread::sleep(Duration::from_millis(300));
    kill(&proxy.0, "-TERM");
    std::thread::sleep(Duration::from_millis(200));
    let (status, _, body) = http(admin, &get("/healthz", "localhost"));
    assert_eq!((status, body.as_str()), (503, "draining\n"));
    let (status, _, body) = slow.join().unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let status = exited.expect("exited within 5 s of the drain");
    assert_eq!(status.code(), Some(0));
    assert!(logged("signal=\"SIGTERM\""), "{:?}", log.lock().unwrap());
    std::fs::remove_file(&path).unwrap();
}
