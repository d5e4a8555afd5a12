//! A private, throwaway Redis for development and tests: where the rate limiter's shared
//! budgets live when `dev` or `scripts/test` run.
//!
//! Like `devdb`, it never uses whatever Redis the machine already runs on 6379 (somebody's data,
//! another configuration, or none at all): it starts a `redis-server` of its own from a
//! project-local folder (`root`), on 127.0.0.1 only:
//!
//! ```text
//! root/
//!   lock          flock(2)-ed while a process starts/stops the server
//!   redis.conf    written on every start
//!   redis.pid     the server's pidfile (written and removed by redis-server)
//!   redis.log     server log
//! ```
//!
//! No persistence (`save ""`, `appendonly no`): a budget is worth nothing after a restart, and
//! tests restart the server on purpose. When `redis-server` is missing, the Debian package
//! `redis-server` is installed (through devdb's apt helper).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::devdb::{self, OsUser};

/// OS account the server runs as when we are root (the Debian package creates it): a server
/// that is only a test fixture has no business running as root.
const REDIS_OS_USER: &str = "redis";

/// How long a start or stop may take before it counts as failed.
const START_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A private Redis living in a project-local folder. Dropping it does *not* stop the server
/// (several processes may share it); call [`PrivateRedis::stop`] or [`PrivateRedis::stop_at`].
#[derive(Debug, Clone)]
pub struct PrivateRedis {
    root: PathBuf,
    port: u16,
}

/// Well-known paths inside the root folder.
struct Layout {
    root: PathBuf,
    conf: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    lock: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            conf: root.join("redis.conf"),
            pid: root.join("redis.pid"),
            log: root.join("redis.log"),
            lock: root.join("lock"),
        }
    }

    /// The pid of the server started from this folder, if it is running: the pidfile names a
    /// live `redis-server` (a stale pidfile can name a reused pid).
    fn running_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(&self.pid).ok()?.trim().parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "redis-server").then_some(pid)
    }

    /// The port the last start configured (`port N` in `redis.conf`).
    fn configured_port(&self) -> Option<u16> {
        fs::read_to_string(&self.conf)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("port ")?.trim().parse().ok())
    }
}

impl PrivateRedis {
    /// Ensures `redis-server` is installed (Debian package `redis-server`, via apt), then starts
    /// the server from `root` on 127.0.0.1:`port` unless it already runs. Idempotent and safe
    /// when several processes call it at once (they serialize on `root/lock`).
    ///
    /// If it already runs on another port, that port is used: restarting it would break
    /// whichever process is using it now.
    pub fn ensure_running(root: &Path, port: u16) -> Result<PrivateRedis> {
        if port == 0 {
            bail!("devredis: port 0 is not a usable port for the private Redis");
        }
        if !devdb::on_path("redis-server") {
            devdb::install_debian_package("redis-server", "devredis: no `redis-server` on PATH")?;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root)
            .with_context(|| format!("devredis: cannot create {}", root.display()))?;
        let root = fs::canonicalize(root)
            .with_context(|| format!("devredis: cannot resolve {}", root.display()))?;
        let layout = Layout::new(&root);
        let _lock = devdb::lock_file(&layout.lock, "the private Redis")?;

        if layout.running_pid().is_some() {
            let actual = layout.configured_port().unwrap_or(port);
            if actual != port {
                tracing::warn!(
                    requested = port,
                    actual,
                    root = %root.display(),
                    "private Redis already runs on another port; using that one"
                );
            }
            return Ok(PrivateRedis { root, port: actual });
        }
        // redis-server would fail to bind, and whatever holds the port (the system Redis,
        // say) would then answer our readiness check: refuse up front instead.
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "devredis: 127.0.0.1:{port} is taken by another process ({e}); pick another \
                 port for the private Redis"
            );
        }
        let redis = PrivateRedis { root, port };
        redis.start(&layout)?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the server runs from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops the server. Ok if it is not running.
    pub fn stop(&self) -> Result<()> {
        Self::stop_at(&self.root)
    }

    /// Stops the server started from `root` (SIGTERM to the pid in its pidfile, then waits for
    /// it to exit). Ok if there is no folder or no server running from it.
    pub fn stop_at(root: &Path) -> Result<()> {
        let root = match fs::canonicalize(root) {
            Ok(root) => root,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("devredis: cannot access {}", root.display()));
            }
        };
        let layout = Layout::new(&root);
        let _lock = devdb::lock_file(&layout.lock, "the private Redis")?;
        let Some(pid) = layout.running_pid() else {
            tracing::debug!(root = %root.display(), "private Redis not running");
            return Ok(());
        };
        tracing::info!(root = %root.display(), pid, "stopping private Redis");
        let out = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .output()
            .context("devredis: cannot run `kill`")?;
        if !out.status.success() && layout.running_pid() == Some(pid) {
            bail!(
                "devredis: `kill -TERM {pid}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let deadline = Instant::now() + START_STOP_TIMEOUT;
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                bail!(
                    "devredis: the private Redis (pid {pid}) did not exit within {:?}; log tail:\n{}",
                    START_STOP_TIMEOUT,
                    devdb::log_tail(&layout.log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Writes the config, starts the daemon, and waits until it answers as itself.
    fn start(&self, layout: &Layout) -> Result<()> {
        let user = self.os_user()?;
        fs::write(&layout.conf, config_file(self.port, &layout.root))
            .with_context(|| format!("devredis: cannot write {}", layout.conf.display()))?;
        // A pidfile left by a killed server would pass for the new one's.
        match fs::remove_file(&layout.pid) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("devredis: cannot remove a stale pidfile"),
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&layout.log)
            .with_context(|| format!("devredis: cannot create {}", layout.log.display()))?;
        let mut cmd = match &user {
            Some(user) => {
                // The server writes its pidfile and log into the folder.
                for path in [&layout.root, &layout.log] {
                    devdb::chown_to(path, user)?;
                }
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", &user.name, "--", "redis-server"]);
                cmd
            }
            None => Command::new("redis-server"),
        };
        cmd.arg(&layout.conf).current_dir("/").stdin(Stdio::null());
        tracing::info!(root = %layout.root.display(), port = self.port, "starting private Redis");
        // `daemonize yes`: this returns once the server has forked off.
        let out = cmd.output().context("devredis: cannot run redis-server")?;
        if !out.status.success() {
            bail!(
                "devredis: redis-server failed ({}): {}{}\nlog tail:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
                devdb::log_tail(&layout.log)
            );
        }
        self.wait_ready(layout)
    }

    /// Waits until the server in the pidfile answers `INFO server` with its own pid: proof
    /// that the port is served by this server and no other.
    fn wait_ready(&self, layout: &Layout) -> Result<()> {
        let deadline = Instant::now() + START_STOP_TIMEOUT;
        let mut last = String::from("no pidfile yet");
        while Instant::now() < deadline {
            if let Some(pid) = layout.running_pid() {
                match self.served_by() {
                    Ok(served) if served == pid => return Ok(()),
                    Ok(other) => {
                        bail!(
                            "devredis: 127.0.0.1:{} is served by pid {other}, not by the private \
                             Redis (pid {pid})",
                            self.port
                        )
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "devredis: the private Redis did not come up on 127.0.0.1:{} within {:?} ({last}); \
             log tail:\n{}",
            self.port,
            START_STOP_TIMEOUT,
            devdb::log_tail(&layout.log)
        )
    }

    /// The pid of whichever Redis answers on our port.
    fn served_by(&self) -> Result<u32> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:")?.trim().parse().ok())
            .context("INFO server has no process_id")
    }

    /// As root, the `redis` OS user (when it exists and can enter the folder); otherwise
    /// whoever we are.
    fn os_user(&self) -> Result<Option<OsUser>> {
        if devdb::current_euid()? != 0 {
            return Ok(None);
        }
        let Ok(user) = devdb::lookup_os_user(REDIS_OS_USER) else {
            tracing::warn!("no `redis` OS user; the private Redis runs as root");
            return Ok(None);
        };
        if let Some(closed) = devdb::first_closed_dir(&self.root, &user)? {
            tracing::warn!(
                closed,
                root = %self.root.display(),
                "the `redis` OS user cannot enter the folder; the private Redis runs as root"
            );
            return Ok(None);
        }
        Ok(Some(user))
    }
}

/// The server's whole configuration: 127.0.0.1 only, daemonized, nothing persisted.
fn config_file(port: u16, root: &Path) -> String {
    let quoted = |p: &Path| {
        let s = p.to_string_lossy();
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    };
    format!(
        "# Written by `tessera devredis start` on every start; edits are lost.\n\
         bind 127.0.0.1\n\
         port {port}\n\
         protected-mode yes\n\
         daemonize yes\n\
         pidfile {pid}\n\
         logfile {log}\n\
         dir {dir}\n\
         save \"\"\n\
         appendonly no\n",
        pid = quoted(&root.join("redis.pid")),
        log = quoted(&root.join("redis.log")),
        dir = quoted(root),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_binds_loopback_and_persists_nothing() {
        let conf = config_file(55437, Path::new("/tmp/a \"b\"/redis"));
        for line in [
            "bind 127.0.0.1",
            "port 55437",
            "daemonize yes",
            "save \"\"",
            "appendonly no",
            "pidfile \"/tmp/a \\\"b\\\"/redis/redis.pid\"",
            "dir \"/tmp/a \\\"b\\\"/redis\"",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
        }
        let dir = std::env::temp_dir().join(format!("devredis-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let layout = Layout::new(&dir);
        fs::write(&layout.conf, &conf).unwrap();
        assert_eq!(layout.configured_port(), Some(55437));
        // A pidfile naming a process that is not redis-server is stale.
        fs::write(&layout.pid, std::process::id().to_string()).unwrap();
        assert_eq!(layout.running_pid(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
