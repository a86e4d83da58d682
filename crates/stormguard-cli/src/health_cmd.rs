//! `stormguard health`: asks a running proxy's admin endpoint for `/healthz` and exits 0 when
//! it answers 200, 1 otherwise (draining, refused, no answer in time).
//!
//! ## Why a subcommand
//! In Kubernetes the admin endpoint stays on the pod's loopback (127.0.0.1), where only the
//! containers of the pod reach it. kubelet's `httpGet` probes connect from the node to the
//! pod's IP, so they cannot reach a loopback listener; an `exec` probe runs inside the
//! container and can. The image is distroless (no shell, no curl), so the binary asks itself:
//! `exec: {command: [stormguard, health, --admin, 127.0.0.1:9901]}` (deploy/kubernetes).
//!
//! The address is given, not read from the settings file: a probe that read the file would
//! fail as soon as a bad update of the file lands, and liveness would then restart a proxy
//! that is serving well on its good settings, into a file it cannot start from.
//!
//! Plain blocking I/O, one request, no runtime: a probe runs every few seconds and must cost
//! little and start fast. Every step is bounded by `--timeout`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::InputError;

/// Most bytes read of the answer: `/healthz` answers a few dozen.
const MAX_ANSWER_BYTES: u64 = 16 * 1024;

/// Arguments of `stormguard health`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The proxy's admin address (`admin.address` in its settings), e.g. 127.0.0.1:9901.
    #[arg(long)]
    admin: SocketAddr,
    /// A file holding the admin token, sent as `Authorization: Bearer`; only needed when the
    /// settings set `admin.token`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// How long connecting, sending and reading may take, each (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_timeout)]
    timeout: Duration,
}

/// A probe's own bound: more than zero, at most a minute (kubelet's `timeoutSeconds` is
/// usually a second or two, and the probe must answer before it).
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = stormguard::duration::parse(text).map_err(|e| e.to_string())?;
    if timeout.is_zero() || timeout > Duration::from_secs(60) {
        return Err(format!("{text}: must be more than 0 and at most 60s"));
    }
    Ok(timeout)
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let verdict = match ask(args.admin, token.as_deref(), args.timeout) {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => Err(format!("{status} {}", body.trim())),
        Err(error) => Err(format!("{error:#}")),
    };
    let admin = args.admin;
    match verdict {
        Ok(body) => {
            writeln!(out, "{admin}/healthz: {}", body.trim()).context("writing the verdict")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            // On stdout too: kubelet keeps an exec probe's output in the event it records.
            writeln!(out, "{admin}/healthz: unhealthy: {why}").context("writing the verdict")?;
            Ok(ExitCode::from(1))
        }
    }
}

fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = stormguard_graph::input::read_text(path)
        .map_err(|e| InputError(format!("{}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(InputError(format!("{}: the token file is empty", path.display())).into());
    }
    Ok(token.to_string())
}

/// One `GET /healthz`: the status and body, or why there was none.
fn ask(admin: SocketAddr, token: Option<&str>, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&admin, timeout)
        .with_context(|| format!("cannot connect within {timeout:?}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // The admin endpoint answers a token-less request only for a loopback Host: this is one.
    let mut head = format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .context("sending the request")?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .with_context(|| format!("no whole answer within {timeout:?}"))?;
    parse_answer(&String::from_utf8_lossy(&answer))
}

/// The status and body of an HTTP/1.1 answer read to its end (the request said
/// `Connection: close`).
fn parse_answer(answer: &str) -> anyhow::Result<(u16, String)> {
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| answer.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| {
            format!(
                "not an HTTP answer: {:?}",
                answer.lines().next().unwrap_or("")
            )
        })?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Cmd::try_parse_from(std::iter::once("health").chain(line.iter().copied()))
            .unwrap()
            .args
    }

    /// Serves one connection with `answer` and returns the request it got.
    fn serve_once(answer: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the request head ended early");
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, server)
    }

    #[test]
    fn ok_is_exit_0_with_a_loopback_host() {
        let (addr, server) =
            serve_once("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
        let mut out = Vec::new();
        let code = run(args(&["--admin", &addr.to_string()]), &mut out).unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{addr}/healthz: ok\n")
        );
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains(&format!("Host: {addr}\r\n")), "{request}");
        assert!(!request.contains("Authorization"), "{request}");
    }

    #[test]
    fn draining_is_exit_1_saying_so() {
        let (addr, server) =
            serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\ndraining\n");
        let mut out = Vec::new();
        let code = run(args(&["--admin", &addr.to_string()]), &mut out).unwrap();
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{addr}/healthz: unhealthy: 503 draining\n")
        );
        server.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_exit_1_at_once() {
        // Bound then dropped: a port nothing listens on.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut out = Vec::new();
        let code = run(args(&["--admin", &addr.to_string()]), &mut out).unwrap();
        assert_eq!(code, ExitCode::from(1));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("unhealthy: cannot connect within 1s"), "{out}");
    }

    #[test]
    fn a_token_file_sends_the_token() {
        let (addr, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        let path = std::env::temp_dir().join(format!("stormguard-health-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let path_text = path.display().to_string();
        let mut out = Vec::new();
        let code = run(
            args(&["--admin", &addr.to_string(), "--token-file", &path_text]),
            &mut out,
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let request = server.join().unwrap();
        assert!(
            request.contains("Authorization: Bearer s3cret\r\n"),
            "{request}"
        );
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let parsed = Cmd::try_parse_from(["health", "--admin", "127.0.0.1:1", "--timeout", "0s"]);
        assert!(parsed.is_err());
    }
}
