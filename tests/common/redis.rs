//! Redis for the rate-limit tests: the suite's private Redis (`TESSERA_TEST_REDIS_URL`, started
//! by scripts/test), and servers of a test's own for tests that stop and restart them, started
//! through `tessera devredis` like every other private server.

use std::path::PathBuf;
use std::time::Duration;

use tessera::config::RedisConfig;

/// The suite's private Redis.
pub fn shared_url() -> String {
    std::env::var("TESSERA_TEST_REDIS_URL").expect(
        "TESSERA_TEST_REDIS_URL is not set: run the suite with scripts/test, which boots a private Redis",
    )
}

/// `[redis]` for `url` with the given timeouts and retry interval.
pub fn config(url: &str, command_timeout: Duration, retry: Duration) -> RedisConfig {
    RedisConfig {
        url: url.to_string(),
        connect_timeout_ms: 500,
        command_timeout_ms: command_timeout.as_millis() as u64,
        retry_ms: retry.as_millis() as u64,
    }
}

/// A `redis-server` of the test's own on a free port; stopped (and its folder removed) on drop.
pub struct OwnRedis {
    /// Its folder (config, pidfile, log).
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl OwnRedis {
    /// Starts one on a port nobody listens on.
    pub fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
        let redis = OwnRedis { dir, port };
        redis.start_again();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port; `devredis start` must print exactly its URL.
    pub fn start_again(&self) {
        let out = self.devredis(&["start", "--port", &self.port.to_string()]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), self.url());
    }

    /// Stops it; its clients see connections refused from now on.
    pub fn stop(&self) {
        self.devredis(&["stop"]);
    }

    /// The server's pid (to pause it with SIGSTOP, say).
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("redis.pid"))
            .expect("a pidfile while running")
            .trim()
            .parse()
            .expect("a pid")
    }

    fn devredis(&self, args: &[&str]) -> std::process::Output {
        let out = super::tessera_command()
            .arg("devredis")
            .arg(args[0])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[1..])
            .output()
            .expect("run tessera devredis");
        assert!(
            out.status.success(),
            "tessera devredis {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // A test that paused it and failed before resuming would leave SIGTERM pending forever.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("redis.pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", pid.trim()])
                .output();
        }
        let _ = super::tessera_command()
            .args(["devredis", "stop", "--dir"])
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
