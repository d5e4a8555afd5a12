//! `tessera dev`, the README's first command: demo tenants served from a configured database and
//! Redis, or from a private PostgreSQL and Redis that it starts and stops again.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestDb, tessera_command};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::auth::keys::Keys;

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-dev-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `tessera dev` and the demo credentials it printed.
struct Dev {
    child: Child,
    port: u16,
    /// (slug, email, password) per printed demo user.
    users: Vec<(String, String, String)>,
    stderr: mpsc::Receiver<String>,
}

impl Dev {
    fn start(dir: &Path, envs: &[(&str, String)], extra: &[&str]) -> Dev {
        let port = free_port();
        let mut cmd = tessera_command();
        cmd.arg("dev")
            .arg("--dir")
            .arg(dir)
            .arg("--tenants")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tenants"))
            .args(extra)
            .env("TESSERA_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("TESSERA_LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let (err_tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The credentials block ends with the "Try:" line.
        let mut users = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let log: Vec<String> = stderr.try_iter().collect();
                    panic!("dev printed no credentials; stderr:\n{}", log.join("\n"));
                }
            };
            if line.starts_with("Try:") {
                // The hint names the address actually served.
                assert!(line.contains(&format!(":{port}/v1/auth/login")), "{line}");
                break;
            }
            if let Some(rest) = line.strip_prefix("  ") {
                let f: Vec<&str> = rest.split_whitespace().collect();
                assert_eq!(f.len(), 4, "credential line {line:?}");
                users.push((f[0].to_string(), f[2].to_string(), f[3].to_string()));
            }
        }
        Dev {
            child,
            port,
            users,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_live(&self) {
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(self.url("/livez")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dev server never became live");
    }

    /// Logs in as each printed demo user on their tenant's host and reads `/v1/me`.
    async fn check_demo_logins(&self) {
        let http = reqwest::Client::new();
        let slugs: Vec<&str> = self.users.iter().map(|u| u.0.as_str()).collect();
        assert!(
            slugs.contains(&"acme") && slugs.contains(&"globex"),
            "{slugs:?}"
        );
        for (slug, email, password) in &self.users {
            let host = format!("{slug}.localhost:{}", self.port);
            let res = http
                .post(self.url("/v1/auth/login"))
                .header("host", &host)
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "login {slug}");
            let tokens: Value = res.json().await.unwrap();
            let me: Value = http
                .get(self.url("/v1/me"))
                .header("host", &host)
                .bearer_auth(tokens["access_token"].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(me["tenant"]["slug"], slug.as_str(), "{me}");
            assert_eq!(me["user"]["email"], email.as_str(), "{me}");
        }
    }

    /// SIGTERM (what Ctrl-C's graceful path does) and the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        // (Drop then finds the child already reaped.)
        // A syscall, not the `kill` program: a minimal Debian has none outside the shell.
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: plain kill(2) on our own child's pid, which it still is (not yet reaped).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Give the reader thread a moment to drain the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.stderr.try_iter().collect());
            }
            assert!(Instant::now() < deadline, "dev did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    /// A failed assertion must not leave the server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Stops a private cluster left behind by a failed test (as root it may live in a stand-in).
struct StopCluster(PathBuf);

/// Stops a private Redis left behind by a failed test.
struct StopRedis(PathBuf);

impl Drop for StopRedis {
    fn drop(&mut self) {
        let _ = tessera_command()
            .args(["devredis", "stop", "--dir"])
            .arg(&self.0)
            .status();
    }
}

impl Drop for StopCluster {
    fn drop(&mut self) {
        let _ = tessera_command()
            .args(["devdb", "stop", "--dir"])
            .arg(&self.0)
            .status();
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn accepts_connections(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(500),
    )
    .is_ok()
}

#[actix_web::test]
async fn dev_uses_a_configured_database_redis_and_key_and_starts_no_server_of_its_own() {
    let db = TestDb::new().await;
    let dir = scratch_dir();
    let (keys, pem) = Keys::generate().unwrap();
    let key_file = dir.join("own-key.pem");
    std::fs::write(&key_file, pem).unwrap();
    let dev = Dev::start(
        &dir,
        &[
            ("TESSERA_DATABASE__URL", db.app_url()),
            ("TESSERA_DATABASE__MIGRATION_URL", db.admin_url()),
            (
                "TESSERA_AUTH__SIGNING_KEY_FILE",
                key_file.display().to_string(),
            ),
            ("TESSERA_REDIS__URL", common::redis::shared_url()),
        ],
        &[],
    );
    dev.wait_live().await;
    dev.check_demo_logins().await;
    // The configured signing key is the one served, not a generated dev key.
    let jwks: Value = reqwest::get(dev.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], keys.kid(), "{jwks}");
    assert!(!dir.join("dev/signing-key.pem").exists());
    // The demo tenants are in the configured database.
    assert_eq!(db.tenant_slugs().await, ["acme", "globex"]);
    assert!(!dir.join("pg").exists(), "a private cluster was created");
    assert!(!dir.join("redis").exists(), "a private Redis was started");
    let (status, stderr) = dev.terminate();
    assert!(status.success(), "{status}: {}", stderr.join("\n"));
    assert!(
        !stderr
            .iter()
            .any(|l| l.contains("private PostgreSQL") || l.contains("private Redis")),
        "{}",
        stderr.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn dev_without_a_database_or_redis_runs_private_ones_and_stops_them_on_exit() {
    let dir = scratch_dir();
    let _cleanup = StopCluster(dir.join("pg"));
    let _cleanup_redis = StopRedis(dir.join("redis"));
    let (pg_port, redis_port) = (free_port(), free_port());
    let dev = Dev::start(
        &dir,
        &[],
        &[
            "--pg-port",
            &pg_port.to_string(),
            "--redis-port",
            &redis_port.to_string(),
        ],
    );
    dev.wait_live().await;
    dev.check_demo_logins().await;
    assert!(
        accepts_connections(pg_port),
        "private PostgreSQL not listening"
    );
    assert!(
        accepts_connections(redis_port),
        "private Redis not listening"
    );
    let (status, stderr) = dev.terminate();
    assert!(status.success(), "{status}: {}", stderr.join("\n"));
    for stopping in ["stopping private PostgreSQL", "stopping private Redis"] {
        assert!(
            stderr.iter().any(|l| l.contains(stopping)),
            "{}",
            stderr.join("\n")
        );
    }
    assert!(
        !accepts_connections(pg_port),
        "private PostgreSQL still listening after dev exited"
    );
    assert!(
        !accepts_connections(redis_port),
        "private Redis still listening after dev exited"
    );
}
