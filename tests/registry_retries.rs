//! Transient registry failures through the binary: a real docker-registry
//! behind a small HTTP front that answers the first manifest requests with
//! 429 and `Retry-After`, or resets them, then passes requests through.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::registry_server::{Options, Registry};

/// What the front does to the first `times` manifest GETs.
#[derive(Clone, Copy)]
enum Fault {
    /// HTTP 429 with this `Retry-After` (seconds).
    TooMany(u32),
    /// The connection is closed without an answer.
    Reset,
}

/// The front: every request gets `Connection: close` so that each one
/// arrives on a connection of its own and is seen here.
struct Front {
    port: u16,
    /// The request lines seen, in order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Front {
    fn start(upstream: String, fault: Fault, times: usize) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let faults_left = Arc::new(Mutex::new(times));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (log, faults_left, upstream) =
                    (log.clone(), faults_left.clone(), upstream.clone());
                std::thread::spawn(move || serve(client, &upstream, fault, &faults_left, &log));
            }
        });
        Front { port, seen }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn manifest_gets(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|l| l.starts_with("GET ") && l.contains("/manifests/"))
            .count()
    }
}

/// One connection: the fault, or the request passed to `upstream` with
/// `Connection: close` and the answer streamed back.
fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: Fault,
    faults_left: &Mutex<usize>,
    log: &Mutex<Vec<String>>,
) {
    // A TLS hello (sealrs tries HTTPS first) is no HTTP: close at once.
    let Some(head) = read_head(&mut client) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let line = head.lines().next().unwrap_or_default().to_string();
    log.lock().unwrap().push(line.clone());
    if line.starts_with("GET ") && line.contains("/manifests/") {
        let mut left = faults_left.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            if let Fault::TooMany(secs) = fault {
                let _ = client.write_all(format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: {secs}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}").as_bytes());
            }
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
    let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = up.write_all(head.as_bytes());
    let mut back = up.try_clone().unwrap();
    let mut to_client = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client, &mut up);
    });
    let _ = std::io::copy(&mut back, &mut to_client);
    let _ = to_client.shutdown(Shutdown::Both);
}

/// The request head (up to the empty line), without any `Connection` header.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 || (head.is_empty() && byte[0] == 0x16) {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).ok()?;
    Some(
        text.split_inclusive("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect(),
    )
}

/// A small image pushed to `reg` as `team/app:1`; returns its digest.
fn pushed(env: &Env, reg: &Registry) -> String {
    env.write("ctx/Kubefile", "FROM scratch\nCOPY f /f\n");
    env.write("ctx/f", "retried\n");
    let name = format!("{}/team/app:1", reg.host());
    env.build(&name, "ctx");
    env.ok(&["push", "-q", &name]).trim().to_string()
}

#[test]
fn a_429_is_retried_after_the_wait_its_retry_after_asks_for() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let digest = pushed(&env, &reg);
    let front = Front::start(reg.host(), Fault::TooMany(1), 2);
    let start = Instant::now();
    let fresh = Env::new();
    let pulled = fresh.ok(&["pull", "-q", &format!("{}/team/app:1", front.host())]);
    assert_eq!(pulled.trim(), digest);
    assert_eq!(front.manifest_gets(), 3);
    // Two waits of the 1 s asked for, not the 0.25 s and 0.5 s of the backoff.
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    fresh.ok(&["fsck"]);
}

#[test]
fn a_reset_connection_is_retried_and_a_registry_that_keeps_failing_is_given_up_on_with_the_count() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    let digest = pushed(&env, &reg);
    let front = Front::start(reg.host(), Fault::Reset, 1);
    let fresh = Env::new();
    let pulled = fresh.ok(&["pull", "-q", &format!("{}/team/app:1", front.host())]);
    assert_eq!(pulled.trim(), digest);
    assert_eq!(front.manifest_gets(), 2);

    let front = Front::start(reg.host(), Fault::TooMany(0), usize::MAX);
    let stderr = Env::new().fails(&["pull", "-q", &format!("{}/team/app:1", front.host())]);
    assert!(
        stderr.contains("HTTP 429 Too Many Requests")
            && stderr.contains("gave up after 4 attempts"),
        "{stderr}"
    );
    assert_eq!(front.manifest_gets(), 4);
}

#[test]
fn a_retry_after_longer_than_sealrs_waits_fails_at_once_saying_so() {
    let reg = Registry::start(Options::default());
    let env = Env::new();
    pushed(&env, &reg);
    let front = Front::start(reg.host(), Fault::TooMany(3600), 1);
    let stderr = Env::new().fails(&["pull", "-q", &format!("{}/team/app:1", front.host())]);
    assert!(stderr.contains("asks to retry after 3600 s"), "{stderr}");
    assert_eq!(front.manifest_gets(), 1);
}
