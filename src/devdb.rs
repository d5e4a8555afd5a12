//! A private, throwaway PostgreSQL cluster for development and tests.
//!
//! Tessera's tests need a real PostgreSQL (row-level security, migrations,
//! concurrent transactions), but they must never touch whatever server the
//! machine already runs on port 5432: that one may hold somebody's data, may
//! have a different configuration, or may not exist at all on a fresh
//! machine. So this module boots a cluster of our own inside a project-local
//! folder (`root`):
//!
//! ```text
//! root/
//!   lock            flock(2)-ed while a process starts/stops the cluster
//!   data/           the cluster (PGDATA), created by initdb
//!   run/            the cluster's Unix socket directory
//!   postgres.log    server log (pg_ctl -l)
//! ```
//!
//! The only dependencies are std, `anyhow` and `tracing`; everything else is
//! done by running the PostgreSQL command-line tools (`initdb`, `pg_ctl`).
//!
//! Nothing here is tuned for durability: the cluster is disposable, which is
//! why it runs with `fsync=off` and trusts every local connection.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, anyhow, bail};

/// Database role created by initdb as the cluster's superuser.
const SUPERUSER: &str = "postgres";

/// OS account the server runs as when we are root: initdb and the server
/// refuse to run as root, and the Debian `postgresql` package creates this
/// account.
const PG_OS_USER: &str = "postgres";

/// The binaries a directory must contain to be usable as the server's bin dir.
/// `pg_config --bindir` alone is not enough: libpq-dev ships `pg_config` and
/// points it at a bin dir that may hold no server at all.
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// How many lines of `postgres.log` to quote when the server fails to start.
const LOG_TAIL_LINES: usize = 20;

/// Seconds pg_ctl waits for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// Longest Unix socket path the kernel accepts (`sizeof(sun_path) - 1`).
const MAX_SOCKET_PATH: usize = 107;

/// A private PostgreSQL cluster living in a project-local folder.
///
/// Obtained from [`PrivatePostgres::ensure_running`]; the value only
/// describes the cluster, so dropping it does *not* stop the server (several
/// processes share one cluster, and a test binary exiting must not pull it
/// out from under the others). Call [`PrivatePostgres::stop`] or
/// [`PrivatePostgres::stop_at`] explicitly.
#[derive(Debug, Clone)]
pub struct PrivatePostgres {
    /// Folder holding `data/`, `run/`, `lock` and `postgres.log`.
    root: PathBuf,
    /// PGDATA: `root/data`.
    data_dir: PathBuf,
    /// TCP port the server listens on (127.0.0.1 only).
    port: u16,
    /// Directory holding `initdb`, `pg_ctl` and `postgres`.
    bin_dir: PathBuf,
    /// OS account the server runs as; `None` means the current user.
    os_user: Option<OsUser>,
    /// Database superuser role (`postgres`).
    superuser: String,
}

/// An OS account other than ours that runs a server's tools (via runuser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OsUser {
    pub(crate) name: String,
    uid: u32,
    gid: u32,
}

/// Well-known paths inside the cluster's root folder.
#[derive(Debug, Clone)]
struct Layout {
    root: PathBuf,
    data: PathBuf,
    /// initdb writes here first and we rename it to `data` afterwards, so an
    /// interrupted initdb never leaves a half-built `data/` that would look
    /// like a cluster (or make the next initdb refuse a non-empty dir).
    data_tmp: PathBuf,
    run: PathBuf,
    log: PathBuf,
    lock: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            data: root.join("data"),
            data_tmp: root.join("data.initdb-tmp"),
            run: root.join("run"),
            log: root.join("postgres.log"),
            lock: root.join("lock"),
        }
    }

    /// A cluster exists once initdb has written `PG_VERSION`.
    fn has_cluster(&self) -> bool {
        self.data.join("PG_VERSION").is_file()
    }

    /// Major version the cluster was created with (`PG_VERSION`, e.g. "15").
    fn cluster_version(&self) -> Option<String> {
        fs::read_to_string(self.data.join("PG_VERSION"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
}

impl PrivatePostgres {
    /// Ensures binaries (installing the Debian package `postgresql` via
    /// `apt-get update && apt-get install -y postgresql`, through `sudo` when
    /// not root, when no PostgreSQL
    /// server binaries are found; looks in `pg_config --bindir`,
    /// `/usr/lib/postgresql/<highest version>/bin`, then `PATH`), runs initdb
    /// if `root/data` has no cluster, and starts the server if it is not
    /// running. Idempotent and safe when several processes call it at once
    /// (they serialize on an exclusive lock of `root/lock`).
    ///
    /// If the cluster is already running, its actual port (from
    /// `postmaster.pid`) is used even when it differs from `port`:
    /// restarting it would break whichever process is using it right now.
    ///
    /// When the current user is root, the server runs as the `postgres` OS
    /// user, so every folder above `root` must be traversable by that user.
    pub fn ensure_running(root: &Path, port: u16) -> Result<PrivatePostgres> {
        Self::ensure_running_with(root, port, &[])
    }

    /// [`PrivatePostgres::ensure_running`] with extra server settings (`-c name=value`) for a
    /// start that happens now, e.g. `shared_preload_libraries=citus` for a Citus node. A cluster
    /// that is already running keeps the settings it was started with.
    pub fn ensure_running_with(
        root: &Path,
        port: u16,
        settings: &[Setting],
    ) -> Result<PrivatePostgres> {
        if port == 0 {
            bail!("devdb: port 0 is not a usable port for the private PostgreSQL cluster");
        }
        // Binaries first: installing them creates the `postgres` OS user, which decides where
        // a root-run cluster can live.
        if find_server_bin_dir(None).is_none() {
            install_postgresql_package()?;
        }
        let root = &placement(root)?;
        let layout = prepare_root(root)?;
        let _lock = lock_root(&layout)?;

        // A cluster made by an earlier run must be served by binaries of the
        // same major version, so prefer those when looking for binaries.
        let cluster_version = layout.cluster_version();
        let bin_dir = match find_server_bin_dir(cluster_version.as_deref()) {
            Some(dir) => dir,
            None => {
                install_postgresql_package()?;
                find_server_bin_dir(cluster_version.as_deref()).ok_or_else(|| {
                    anyhow!(
                        "devdb: installed the Debian package `postgresql`, but still found no \
                         directory with {SERVER_BINARIES:?}; install the PostgreSQL server \
                         binaries and make sure `initdb` is on PATH"
                    )
                })?
            }
        };
        if let Some(version) = &cluster_version {
            check_binaries_match_cluster(&bin_dir, version, &layout)?;
        }

        let os_user = if current_euid()? == 0 {
            Some(lookup_os_user(PG_OS_USER).context(
                "devdb: running as root, so PostgreSQL must run as the `postgres` OS user, \
                 which does not exist; install the Debian package `postgresql` \
                 (apt-get install -y postgresql) or run as a non-root user",
            )?)
        } else {
            None
        };

        let mut pg = PrivatePostgres {
            root: layout.root.clone(),
            data_dir: layout.data.clone(),
            port,
            bin_dir,
            os_user,
            superuser: SUPERUSER.to_string(),
        };
        pg.prepare_dirs(&layout)?;

        if !layout.has_cluster() {
            pg.init_cluster(&layout)?;
        }

        match pg.running_postmaster(&layout)? {
            Some(pid_file) => {
                if pid_file.port != port {
                    tracing::warn!(
                        requested = port,
                        actual = pid_file.port,
                        data_dir = %layout.data.display(),
                        "private PostgreSQL already runs on another port; using that one"
                    );
                }
                pg.port = pid_file.port;
                tracing::debug!(
                    port = pg.port,
                    pid = pid_file.pid,
                    "private PostgreSQL already running"
                );
            }
            None => {
                pg.start(&layout, settings)?;
            }
        }
        Ok(pg)
    }

    /// The folder the cluster lives in: the one asked for, or its stand-in (see [`placement`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Port the cluster listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL for the cluster's superuser:
    /// `postgres://<superuser>@127.0.0.1:<port>/<db>`.
    ///
    /// No password is needed: the cluster trusts every connection, which is
    /// acceptable because it only listens on 127.0.0.1 and holds test data.
    pub fn superuser_url(&self, db: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.superuser, self.port, db
        )
    }

    /// Stops the server (`pg_ctl stop -m fast`). Ok if it is not running.
    ///
    /// "fast" rolls back open transactions and disconnects clients instead
    /// of waiting for them, which is what a test run's teardown wants.
    pub fn stop(&self) -> Result<()> {
        let layout = Layout::new(&self.root);
        let _lock = lock_root(&layout)?;
        self.stop_locked(&layout)
    }

    /// Stop without an instance (for `devdb stop --dir`): reads what it
    /// needs (server version, owner, port) from the data dir. Ok if there is
    /// no cluster or it is not running.
    pub fn stop_at(root: &Path) -> Result<()> {
        let root = &placement(root)?;
        let layout = match fs::canonicalize(root) {
            Ok(root) => Layout::new(&root),
            // No folder means no cluster, so nothing can be running.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("devdb: cannot access {}", root.display()));
            }
        };
        let Some(version) = layout.cluster_version() else {
            tracing::debug!(root = %layout.root.display(), "no PostgreSQL cluster there; nothing to stop");
            return Ok(());
        };
        let _lock = lock_root(&layout)?;

        // Stopping never installs anything: missing binaries here mean they
        // were removed (or never found) while a cluster exists, which the
        // user has to sort out.
        let bin_dir = find_server_bin_dir(Some(&version)).ok_or_else(|| {
            anyhow!(
                "devdb: found a PostgreSQL {version} cluster in {} but no PostgreSQL server \
                 binaries to stop it with; install them (apt-get install -y postgresql) or \
                 stop the server by hand (kill -INT <first line of {}/postmaster.pid>)",
                layout.data.display(),
                layout.data.display()
            )
        })?;

        // Run pg_ctl as whoever owns the cluster: as root we must (pg_ctl
        // refuses root), as anyone else we can only be the owner anyway.
        let os_user = if current_euid()? == 0 {
            let owner_uid = fs::metadata(&layout.data)
                .with_context(|| format!("devdb: cannot stat {}", layout.data.display()))?
                .uid();
            if owner_uid == 0 {
                bail!(
                    "devdb: {} is owned by root, but PostgreSQL cannot run as root; \
                     no server can be running from it",
                    layout.data.display()
                );
            }
            Some(lookup_os_user_by_uid(owner_uid)?)
        } else {
            None
        };

        let port = read_pid_file(&layout.data)
            .ok()
            .flatten()
            .map(|p| p.port)
            .unwrap_or(0);
        let pg = PrivatePostgres {
            root: layout.root.clone(),
            data_dir: layout.data.clone(),
            port,
            bin_dir,
            os_user,
            superuser: SUPERUSER.to_string(),
        };
        pg.stop_locked(&layout)
    }

    /// Stops the server; the caller holds the root lock.
    fn stop_locked(&self, layout: &Layout) -> Result<()> {
        if !layout.has_cluster() {
            return Ok(());
        }
        if self.running_postmaster(layout)?.is_none() {
            tracing::debug!(data_dir = %layout.data.display(), "private PostgreSQL not running");
            return Ok(());
        }
        tracing::info!(data_dir = %layout.data.display(), "stopping private PostgreSQL");
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&layout.data).args([
            "-m",
            "fast",
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
        ]);
        run_checked(cmd, "pg_ctl stop").with_context(|| {
            format!(
                "devdb: could not stop the private PostgreSQL in {}; server log tail:\n{}",
                layout.data.display(),
                log_tail(&layout.log)
            )
        })?;
        Ok(())
    }

    /// Creates the folders the server writes to and hands them to the
    /// server's OS user, then checks that user can actually reach them.
    fn prepare_dirs(&self, layout: &Layout) -> Result<()> {
        // A cluster made by another OS user cannot be run by this one (the
        // data dir is 0700, and postgres insists on owning it). Checked
        // before anything is chowned, so a refused run changes nothing.
        if let Ok(meta) = fs::metadata(&self.data_dir) {
            let expected = match &self.os_user {
                Some(user) => user.uid,
                None => current_euid()?,
            };
            if meta.uid() != expected {
                bail!(
                    "devdb: the cluster in {} belongs to uid {}, but would be run as uid {expected}; \
                     run as its owner, or delete {} (it only holds test data)",
                    self.data_dir.display(),
                    meta.uid(),
                    self.root.display()
                );
            }
        }

        create_private_dir(&layout.run, 0o755)?;
        // pg_ctl (running as the server's user) opens the log itself, and
        // cannot create files in a root-owned `root`, so create it first.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&layout.log)
            .with_context(|| format!("devdb: cannot create {}", layout.log.display()))?;

        if let Some(user) = &self.os_user {
            for path in [&layout.run, &layout.log] {
                chown_to(path, user)?;
            }
            self.check_traversable(layout, user)?;
        }
        Ok(())
    }

    /// Fails with a clear message if the server's OS user cannot traverse
    /// every directory from `/` down to `root` (e.g. a 0700 home folder or a
    /// `mktemp -d` folder): initdb and the server would otherwise fail with
    /// a confusing "permission denied" deep inside.
    fn check_traversable(&self, layout: &Layout, user: &OsUser) -> Result<()> {
        if let Some(blocked) = first_closed_dir(&layout.root, user)? {
            bail!(
                "devdb: running as root, so PostgreSQL runs as the `{}` OS user, which cannot \
                 enter {blocked} (on the way to {}). Allow it with `chmod o+x {blocked}`, or put \
                 the cluster under a folder every user can traverse (use --dir)",
                user.name,
                layout.root.display(),
            );
        }
        Ok(())
    }

    /// Runs initdb into a scratch folder and renames it to `data/` on
    /// success, so `data/` only ever holds a complete cluster.
    fn init_cluster(&self, layout: &Layout) -> Result<()> {
        tracing::info!(data_dir = %layout.data.display(), "initializing private PostgreSQL cluster");
        let mut failures = Vec::new();
        // C.UTF-8 sorts like C but keeps UTF-8 character semantics; some
        // systems lack that locale, and plain C is always available.
        for locale in ["C.UTF-8", "C"] {
            remove_dir_if_exists(&layout.data_tmp)?;
            create_private_dir(&layout.data_tmp, 0o700)?;
            if let Some(user) = &self.os_user {
                chown_to(&layout.data_tmp, user)?;
            }
            let mut cmd = self.pg_command("initdb");
            cmd.arg("-D").arg(&layout.data_tmp).args([
                "--auth=trust",
                &format!("--username={}", self.superuser),
                "--encoding=UTF8",
                &format!("--locale={locale}"),
                // Skip initdb's final fsync: this cluster is disposable.
                "--no-sync",
            ]);
            match run_checked(cmd, "initdb") {
                Ok(_) => {
                    fs::rename(&layout.data_tmp, &layout.data).with_context(|| {
                        format!(
                            "devdb: initdb succeeded but {} could not be renamed to {}",
                            layout.data_tmp.display(),
                            layout.data.display()
                        )
                    })?;
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(locale, error = %e, "initdb failed");
                    failures.push(format!("with --locale={locale}: {e:#}"));
                }
            }
        }
        remove_dir_if_exists(&layout.data_tmp)?;
        bail!(
            "devdb: initdb could not create a cluster in {}:\n{}",
            layout.data.display(),
            failures.join("\n")
        )
    }

    /// Starts the server with pg_ctl and waits until it accepts connections.
    fn start(&mut self, layout: &Layout, settings: &[Setting]) -> Result<()> {
        tracing::info!(port = self.port, data_dir = %layout.data.display(), "starting private PostgreSQL");
        let mut options = server_options(self.port, &layout.run);
        for setting in settings {
            options.push_str(&format!(
                " -c {}={}",
                setting.name,
                sh_quote(&setting.value)
            ));
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&layout.data)
            .arg("-l")
            .arg(&layout.log)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-o", &options]);
        if let Err(e) = run_checked(cmd, "pg_ctl start") {
            bail!(
                "devdb: the private PostgreSQL in {} did not start on 127.0.0.1:{} ({e:#}).\n\
                 If the port is taken, pick another one; if the cluster is damaged, stop \
                 everything and delete {} (it only holds test data).\n\
                 Last lines of {}:\n{}",
                layout.data.display(),
                self.port,
                layout.root.display(),
                layout.log.display(),
                log_tail(&layout.log)
            );
        }
        // Trust the postmaster's own record of its port over our request.
        if let Some(pid_file) = read_pid_file(&layout.data)? {
            self.port = pid_file.port;
        }
        Ok(())
    }

    /// The running postmaster of this cluster, if any.
    ///
    /// `pg_ctl status` only checks that the PID in `postmaster.pid` is
    /// alive. After a crash or a reboot that PID can belong to an unrelated
    /// process, and then both `pg_ctl start` and the postmaster refuse to
    /// start ("lock file already exists"). So we also confirm via /proc that
    /// the PID really is a postmaster of *this* data dir, and remove the
    /// stale file when it is not (we hold the root lock, so no other process
    /// of ours is starting a server right now).
    fn running_postmaster(&self, layout: &Layout) -> Result<Option<PidFile>> {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&layout.data);
        let out = run(cmd, "pg_ctl status")?;
        match out.status.code() {
            Some(0) => {}
            // 3: not running; 4: no accessible data dir.
            Some(3) | Some(4) => return Ok(None),
            _ => bail!(
                "devdb: `pg_ctl status -D {}` failed: {}",
                layout.data.display(),
                describe_output(&out)
            ),
        }
        let Some(pid_file) = read_pid_file(&layout.data)? else {
            // Stopped between the two checks.
            return Ok(None);
        };
        match postmaster_identity(pid_file.pid, &layout.data) {
            Identity::Ours | Identity::Unknown => Ok(Some(pid_file)),
            Identity::NotOurs => {
                let pid_path = layout.data.join("postmaster.pid");
                tracing::warn!(
                    pid = pid_file.pid,
                    path = %pid_path.display(),
                    "stale postmaster.pid (its PID now belongs to another process); removing it"
                );
                fs::remove_file(&pid_path).with_context(|| {
                    format!("devdb: cannot remove stale {}", pid_path.display())
                })?;
                Ok(None)
            }
        }
    }

    /// A command running one of the PostgreSQL binaries as the server's OS
    /// user: through `runuser` when we are root (initdb, pg_ctl and postgres
    /// all refuse to run as root), directly otherwise.
    fn pg_command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        let mut cmd = match &self.os_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", &user.name, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        // The caller's working directory may be unreadable for the server's
        // user (e.g. /root); all paths we pass are absolute anyway.
        cmd.current_dir("/");
        cmd
    }
}

/// Where the cluster asked for at `preferred` really lives.
///
/// Normally `preferred` itself. But as root the server runs as the `postgres` OS user, and a
/// checkout under a private folder (root's 0700 home on a fresh Debian machine, a `mktemp -d`
/// folder) is closed to that user. Rather than fail, or loosen permissions on the user's
/// folders, the cluster then lives in `/var/tmp/tessera-pg-<hash of preferred's absolute path>`:
/// a fixed, per-checkout stand-in that `start` and `stop` both arrive at, which survives reboots
/// like the project folder would.
fn placement(preferred: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(preferred)
        .with_context(|| format!("devdb: cannot resolve {}", preferred.display()))?;
    if current_euid()? != 0 {
        return Ok(abs);
    }
    // No such user yet means no server can run as it either; the caller reports that.
    let Ok(user) = lookup_os_user(PG_OS_USER) else {
        return Ok(abs);
    };
    let Some(blocked) = first_closed_dir(&abs, &user)? else {
        return Ok(abs);
    };
    let stand_in = stand_in_dir(&abs);
    tracing::warn!(
        requested = %abs.display(),
        closed = %blocked,
        cluster = %stand_in.display(),
        "the `postgres` OS user cannot enter the requested folder; keeping the private cluster \
         in a stand-in folder"
    );
    Ok(stand_in)
}

/// `/var/tmp/tessera-pg-<12 hex digits of SHA-256(abs)>`.
fn stand_in_dir(abs: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/var/tmp/tessera-pg-{hex}"))
}

/// The first existing folder on the way from `/` to `path` (inclusive) that `user` cannot
/// enter, if any. Folders that do not exist yet are skipped: we create them world-traversable.
pub(crate) fn first_closed_dir(path: &Path, user: &OsUser) -> Result<Option<String>> {
    let mut dirs: Vec<&Path> = path.ancestors().filter(|d| d.is_dir()).collect();
    dirs.reverse();
    // One process for the whole chain: the shell prints the first directory the user cannot
    // enter.
    let out = Command::new("runuser")
        .args(["-u", &user.name, "--", "sh", "-c"])
        .arg(r#"for d in "$@"; do test -x "$d" || { printf '%s\n' "$d"; exit 1; }; done"#)
        .arg("sh")
        .args(&dirs)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .context("devdb: could not run `runuser` to check folder permissions")?;
    if out.status.success() {
        return Ok(None);
    }
    let blocked = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if blocked.is_empty() {
        bail!(
            "devdb: `runuser -u {}` failed while checking access to {}: {}",
            user.name,
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some(blocked))
}

/// Creates `root` and returns its layout with a canonical root path, so every
/// caller (relative path, symlink, ...) ends up with the same data dir string
/// — pg_ctl records it and we compare it against /proc.
fn prepare_root(root: &Path) -> Result<Layout> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root)
        .with_context(|| format!("devdb: cannot create {}", root.display()))?;
    let root = fs::canonicalize(root)
        .with_context(|| format!("devdb: cannot resolve {}", root.display()))?;
    Ok(Layout::new(&root))
}

/// Takes the exclusive lock on `root/lock`, blocking until other processes
/// (another test binary, `scripts/test`, a dev server) are done starting or
/// stopping the cluster.
fn lock_root(layout: &Layout) -> Result<File> {
    lock_file(&layout.lock, "the private PostgreSQL")
}

/// Takes the exclusive lock on `path`, blocking while another process holds it (starting or
/// stopping `what`). Released when the returned file is dropped — also when the process dies,
/// which is why this is a lock and not a marker file.
pub(crate) fn lock_file(path: &Path, what: &str) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            tracing::info!(lock = %path.display(), "waiting for another process to finish starting/stopping {what}");
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(file)
}

/// Server settings passed through `pg_ctl -o`.
///
/// pg_ctl hands this string to `/bin/sh`, hence the shell quoting of the
/// socket directory.
fn server_options(port: u16, run_dir: &Path) -> String {
    // Unix sockets are limited to ~107 bytes; clients use TCP anyway, so a
    // deeply nested project just goes without a socket instead of failing.
    let socket = run_dir.join(format!(".s.PGSQL.{port}"));
    let socket_dirs = if socket.as_os_str().len() <= MAX_SOCKET_PATH {
        run_dir.to_string_lossy().into_owned()
    } else {
        tracing::warn!(
            socket = %socket.display(),
            "Unix socket path too long; the private PostgreSQL listens on TCP only"
        );
        String::new()
    };
    format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=300 -c shared_buffers=128MB",
        // fsync/synchronous_commit/full_page_writes off: this is a throwaway
        // dev/test cluster, so speed matters and crash safety does not.
        // max_connections=300: parallel test binaries each open a pool.
        sh_quote(&socket_dirs)
    )
}

/// One server setting given to [`PrivatePostgres::ensure_running_with`]: `name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    name: String,
    value: String,
}

impl std::str::FromStr for Setting {
    type Err = String;

    /// Parses `name=value`; names are PostgreSQL parameter names (letters, digits, `_`, `.`),
    /// so nothing but the value ever needs quoting on pg_ctl's command line.
    fn from_str(s: &str) -> std::result::Result<Setting, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("expected name=value, got {s:?}"))?;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(format!("{name:?} is not a PostgreSQL parameter name"));
        }
        Ok(Setting {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

/// Quotes `s` for /bin/sh (single quotes; embedded ones as `'\''`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The interesting lines of `postmaster.pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PidFile {
    /// Line 1: postmaster PID.
    pid: u32,
    /// Line 4: TCP port.
    port: u16,
}

/// Parses `postmaster.pid` (one value per line: PID, data dir, start time,
/// port, socket dir, listen address, shmem key, status).
fn parse_postmaster_pid(content: &str) -> Result<PidFile> {
    let lines: Vec<&str> = content.lines().map(str::trim).collect();
    let field = |i: usize, name: &str| -> Result<&str> {
        lines
            .get(i)
            .copied()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| anyhow!("postmaster.pid has no {name} (line {})", i + 1))
    };
    let pid: u32 = field(0, "PID")?
        .parse()
        .context("postmaster.pid: line 1 is not a PID")?;
    field(1, "data directory")?;
    let port: u16 = field(3, "port")?
        .parse()
        .context("postmaster.pid: line 4 is not a port")?;
    if pid == 0 || port == 0 {
        bail!("postmaster.pid: PID and port must be non-zero");
    }
    Ok(PidFile { pid, port })
}

/// Reads `data/postmaster.pid`; `None` if there is none.
///
/// A file with fewer than four lines is one the postmaster is still writing
/// (it writes the port a moment after the PID), which we treat as "none" too.
fn read_pid_file(data_dir: &Path) -> Result<Option<PidFile>> {
    let path = data_dir.join("postmaster.pid");
    match fs::read_to_string(&path) {
        Ok(content) => match parse_postmaster_pid(&content) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "incomplete postmaster.pid");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("devdb: cannot read {}", path.display())),
    }
}

/// Whether a PID is the postmaster of a given data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    Ours,
    NotOurs,
    /// Cannot tell (no /proc, or nothing conclusive): trust pg_ctl.
    Unknown,
}

/// Looks at /proc to tell whether `pid` is a postmaster serving `data_dir`.
///
/// The postmaster chdir()s into its data dir, so `/proc/<pid>/cwd` is the
/// best evidence; reading it needs ptrace-level access, which a root without
/// CAP_SYS_PTRACE (e.g. in a container) lacks for another user's process,
/// so the command line (`postgres -D <data_dir> ...`) is the fallback.
fn postmaster_identity(pid: u32, data_dir: &Path) -> Identity {
    if !Path::new("/proc/self").exists() {
        return Identity::Unknown;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        return Identity::NotOurs;
    }
    if let Ok(cwd) = fs::read_link(proc_dir.join("cwd")) {
        return if cwd == data_dir {
            Identity::Ours
        } else {
            Identity::NotOurs
        };
    }
    match fs::read(proc_dir.join("cmdline")) {
        Ok(raw) => identity_from_cmdline(&raw, data_dir),
        Err(_) => Identity::Unknown,
    }
}

/// Judges a NUL-separated `/proc/<pid>/cmdline`.
fn identity_from_cmdline(raw: &[u8], data_dir: &Path) -> Identity {
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let Some(argv0) = args.first() else {
        // Kernel threads and zombies have an empty cmdline.
        return Identity::NotOurs;
    };
    let data = data_dir.to_string_lossy();
    if args.iter().any(|a| *a == data) {
        return Identity::Ours;
    }
    let program = argv0.rsplit('/').next().unwrap_or(argv0);
    if program.starts_with("postgres") || program.starts_with("postmaster") {
        // A postgres started with another spelling of the path, perhaps:
        // do not risk deleting a live server's pid file.
        Identity::Unknown
    } else {
        Identity::NotOurs
    }
}

/// Finds a directory with the PostgreSQL server binaries, without
/// installing anything.
///
/// With `want_version` (an existing cluster's `PG_VERSION`), that version's
/// Debian bin dir is tried first: a cluster can only be served by the major
/// version that created it.
fn find_server_bin_dir(want_version: Option<&str>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(version) = want_version {
        candidates.push(PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")));
    }
    candidates.extend(candidate_bin_dirs());
    choose_bin_dir(&candidates, has_server_binaries)
}

/// Candidate bin dirs in order of preference: `pg_config --bindir`, the
/// highest `/usr/lib/postgresql/<version>/bin`, then every PATH entry that
/// has `initdb` (resolved through symlinks, since e.g. /usr/local/bin may
/// only hold links into the real bin dir).
fn candidate_bin_dirs() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if let Some(highest) = highest_version(&names) {
            candidates.push(Path::new("/usr/lib/postgresql").join(highest).join("bin"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                let real = fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent() {
                    candidates.push(parent.to_path_buf());
                }
            }
        }
    }
    candidates
}

/// First candidate accepted by `usable` (kept separate from the file system
/// checks so the order of preference can be unit-tested).
fn choose_bin_dir(candidates: &[PathBuf], usable: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    candidates.iter().find(|d| usable(d)).cloned()
}

/// Whether `dir` holds every server binary we run.
fn has_server_binaries(dir: &Path) -> bool {
    SERVER_BINARIES.iter().all(|b| dir.join(b).is_file())
}

/// The highest version among directory names like "13", "15", "9.6";
/// names that are not versions are ignored.
fn highest_version(names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| {
            let parts: Option<Vec<u32>> = n.split('.').map(|p| p.parse().ok()).collect();
            parts.map(|p| (p, n))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, n)| n.clone())
}

/// Whether `postgres --version` output ("postgres (PostgreSQL) 15.20
/// (Debian 15.20-0+deb12u1)") belongs to major version `major` ("15", or
/// "9.6" for pre-10 servers).
fn version_output_matches(output: &str, major: &str) -> bool {
    let Some(version) = output
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
    else {
        return false;
    };
    version == major || version.starts_with(&format!("{major}."))
}

/// Refuses to run a cluster with binaries of another major version, which
/// would fail with a cryptic "database files are incompatible" error.
fn check_binaries_match_cluster(
    bin_dir: &Path,
    cluster_version: &str,
    layout: &Layout,
) -> Result<()> {
    let out = Command::new(bin_dir.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("devdb: cannot run {}/postgres --version", bin_dir.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !version_output_matches(&text, cluster_version) {
        bail!(
            "devdb: the cluster in {} was created by PostgreSQL {cluster_version}, but the server \
             binaries found ({}) are `{}`. Install PostgreSQL {cluster_version}, or delete {} \
             (it only holds test data) so a new cluster is created",
            layout.data.display(),
            bin_dir.display(),
            text.trim(),
            layout.root.display()
        );
    }
    Ok(())
}

/// Installs the Debian `postgresql` package (see [`install_debian_package`]).
fn install_postgresql_package() -> Result<()> {
    install_debian_package(
        "postgresql",
        &format!(
            "no PostgreSQL server binaries found (looked at `pg_config --bindir`, \
             /usr/lib/postgresql/*/bin and PATH for {SERVER_BINARIES:?})"
        ),
    )
}

/// Installs the Debian package `package` because of `missing` (e.g. "no `redis-server` on
/// PATH"): directly as root, through `sudo` otherwise (which may ask for the user's password on
/// the terminal).
///
/// Its output goes to our stderr: the install can take minutes, and stdout
/// is reserved for the caller (`devdb start` prints just the URL there).
pub(crate) fn install_debian_package(package: &str, missing: &str) -> Result<()> {
    let Some(apt_get) = apt_get_argv(current_euid()?, on_path("sudo")) else {
        bail!(
            "{missing}, and installing the Debian package `{package}` needs root or sudo. \
             Install it, e.g. `apt-get install -y {package}` as root, then retry"
        );
    };
    let (program, leading) = apt_get.split_first().expect("argv is never empty");
    if leading.is_empty() {
        tracing::info!("{missing}; installing the Debian package `{package}`");
    } else {
        tracing::warn!(
            "{missing}; installing the Debian package `{package}` with sudo (it may ask for \
             your password)"
        );
    }
    // Wait for a concurrent apt/dpkg (another devdb root, unattended
    // upgrades) instead of failing on its lock.
    let lock_timeout = "DPkg::Lock::Timeout=600";
    for args in [
        vec!["-o", lock_timeout, "update"],
        vec!["-o", lock_timeout, "install", "-y", package],
    ] {
        let status = Command::new(program)
            .args(leading)
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::from(std::io::stderr()))
            .status()
            .with_context(|| {
                format!("{missing} and `apt-get` could not be run; install `{package}` by hand")
            })?;
        if !status.success() {
            bail!(
                "`{} {}` failed ({status}); install the Debian package `{package}` by hand \
                 (`sudo apt-get install -y {package}`) and retry",
                apt_get.join(" "),
                args.join(" ")
            );
        }
    }
    Ok(())
}

/// The command line that runs `apt-get`: itself as root; through `sudo env
/// DEBIAN_FRONTEND=noninteractive` otherwise (sudo resets the environment, `env` sets the
/// variable past it; sudo asks for a password on the terminal, never on our stdin); `None` when
/// neither is possible.
fn apt_get_argv(euid: u32, sudo_available: bool) -> Option<&'static [&'static str]> {
    match (euid, sudo_available) {
        (0, _) => Some(&["apt-get"]),
        (_, true) => Some(&["sudo", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]),
        (_, false) => None,
    }
}

/// Whether an executable file `name` is in a PATH directory.
pub(crate) fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    })
}

/// Effective user id of this process, without extra crates: from
/// /proc/self/status, falling back to `id -u`.
pub(crate) fn current_euid() -> Result<u32> {
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(euid) = parse_euid(&status)
    {
        return Ok(euid);
    }
    let out = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .context("devdb: cannot determine the current user id (`id -u` failed to run)")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("devdb: cannot parse the output of `id -u`")
}

/// The effective uid from /proc/self/status ("Uid: real effective saved fs").
fn parse_euid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Looks up an OS account by name via `id` (which also consults NSS, unlike
/// reading /etc/passwd).
pub(crate) fn lookup_os_user(name: &str) -> Result<OsUser> {
    let uid = id_query(&["-u", name])?;
    let gid = id_query(&["-g", name])?;
    Ok(OsUser {
        name: name.to_string(),
        uid: uid
            .parse()
            .with_context(|| format!("devdb: `id -u {name}` printed `{uid}`"))?,
        gid: gid
            .parse()
            .with_context(|| format!("devdb: `id -g {name}` printed `{gid}`"))?,
    })
}

/// Looks up an OS account by uid (GNU `id` accepts a numeric id).
fn lookup_os_user_by_uid(uid: u32) -> Result<OsUser> {
    let name = id_query(&["-nu", &uid.to_string()])
        .with_context(|| format!("devdb: no OS user has uid {uid}"))?;
    lookup_os_user(&name)
}

/// Runs `id <args>` and returns its trimmed stdout.
fn id_query(args: &[&str]) -> Result<String> {
    let out = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("devdb: cannot run `id`")?;
    if !out.status.success() {
        bail!(
            "`id {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Creates `dir` (and parents) with `mode` if missing.
fn create_private_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("devdb: cannot create {}", dir.display()))
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("devdb: cannot remove {}", dir.display())),
    }
}

pub(crate) fn chown_to(path: &Path, user: &OsUser) -> Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("devdb: cannot chown {} to {}", path.display(), user.name))
}

/// Runs a command with all its output captured (initdb and pg_ctl are
/// chatty on stdout, which must stay clean for our callers).
fn run(mut cmd: Command, what: &str) -> Result<Output> {
    tracing::debug!(command = ?cmd, "running");
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("devdb: cannot run {what} ({:?})", cmd.get_program()))
}

/// Like [`run`], but a non-zero exit is an error carrying the output.
fn run_checked(cmd: Command, what: &str) -> Result<Output> {
    let out = run(cmd, what)?;
    if !out.status.success() {
        bail!("{what} failed: {}", describe_output(&out));
    }
    Ok(out)
}

/// Exit status plus captured stdout/stderr, for error messages.
fn describe_output(out: &Output) -> String {
    let mut text = format!("{}", out.status);
    for stream in [&out.stdout, &out.stderr] {
        let s = String::from_utf8_lossy(stream);
        let s = s.trim();
        if !s.is_empty() {
            text.push('\n');
            text.push_str(s);
        }
    }
    text
}

/// Last [`LOG_TAIL_LINES`] lines of the server log, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    // Only the end of the file matters and the log can grow large.
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) if !text.trim().is_empty() => tail_lines(&text, LOG_TAIL_LINES),
        Ok(_) => "(log is empty)".to_string(),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The last `n` lines of `text`.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_as_root_directly_otherwise_through_sudo_or_not_at_all() {
        assert_eq!(apt_get_argv(0, false), Some(&["apt-get"][..]));
        assert_eq!(apt_get_argv(0, true), Some(&["apt-get"][..]));
        assert_eq!(
            apt_get_argv(1000, true),
            Some(&["sudo", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"][..])
        );
        assert_eq!(apt_get_argv(1000, false), None);
        assert!(on_path("sh"));
        assert!(!on_path("no-such-program-tessera"));
    }

    #[test]
    fn as_root_a_folder_closed_to_postgres_gets_its_stand_in() {
        // The rule only applies to root with a `postgres` OS user (as in CI); elsewhere there is
        // nothing to place differently.
        if current_euid().unwrap() != 0 || lookup_os_user(PG_OS_USER).is_err() {
            eprintln!("skipped: needs root and a `postgres` OS user");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("tessera-placement-{}", std::process::id()));
        let (closed, open) = (base.join("closed"), base.join("open"));
        for (dir, mode) in [(&base, 0o755), (&closed, 0o700), (&open, 0o755)] {
            fs::create_dir_all(dir).unwrap();
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
        }
        let inside_closed = closed.join("pg");
        let placed = (placement(&inside_closed), placement(&open.join("pg")));
        fs::remove_dir_all(&base).unwrap();
        assert_eq!(placed.0.unwrap(), stand_in_dir(&inside_closed));
        assert_eq!(placed.1.unwrap(), open.join("pg"));
    }

    #[test]
    fn stand_in_is_fixed_per_path_and_differs_between_paths() {
        let a = stand_in_dir(Path::new("/root/tessera/.tessera/pg"));
        assert_eq!(a, stand_in_dir(Path::new("/root/tessera/.tessera/pg")));
        assert_ne!(a, stand_in_dir(Path::new("/root/other/.tessera/pg")));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("tessera-pg-") && name.len() == "tessera-pg-".len() + 12);
        assert!(a.starts_with("/var/tmp"));
    }

    #[test]
    fn parses_postmaster_pid() {
        let content = "12345\n/work/main/target/test-pg/data\n1700000000\n55433\n\
                       /work/main/target/test-pg/run\n127.0.0.1\n  5433001    32768\nready   \n";
        let p = parse_postmaster_pid(content).unwrap();
        assert_eq!(
            p,
            PidFile {
                pid: 12345,
                port: 55433,
            }
        );
    }

    #[test]
    fn rejects_incomplete_postmaster_pid() {
        // The postmaster writes the first lines before the port.
        assert!(parse_postmaster_pid("12345\n/data\n1700000000\n").is_err());
        assert!(parse_postmaster_pid("").is_err());
        assert!(parse_postmaster_pid("abc\n/data\n1\n5432\n").is_err());
        assert!(parse_postmaster_pid("1\n/data\n1\n99999\n").is_err());
        assert!(parse_postmaster_pid("1\n/data\n1\n0\n").is_err());
    }

    #[test]
    fn chooses_first_usable_bin_dir() {
        let candidates = vec![
            PathBuf::from("/usr/lib/postgresql/16/bin"), // pg_config: client only
            PathBuf::from("/usr/lib/postgresql/15/bin"),
            PathBuf::from("/opt/pg/bin"),
        ];
        let usable = |d: &Path| d != Path::new("/usr/lib/postgresql/16/bin");
        assert_eq!(
            choose_bin_dir(&candidates, usable),
            Some(PathBuf::from("/usr/lib/postgresql/15/bin"))
        );
        assert_eq!(choose_bin_dir(&candidates, |_| false), None);
        assert_eq!(choose_bin_dir(&[], |_| true), None);
    }

    #[test]
    fn picks_highest_version_numerically() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            highest_version(&names(&["9.6", "15", "13"])),
            Some("15".into())
        );
        assert_eq!(highest_version(&names(&["9", "10"])), Some("10".into()));
        assert_eq!(
            highest_version(&names(&["lib", "15", "16beta"])),
            Some("15".into())
        );
        assert_eq!(highest_version(&names(&["lib"])), None);
        assert_eq!(highest_version(&[]), None);
    }

    #[test]
    fn matches_server_version_to_cluster() {
        let out = "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n";
        assert!(version_output_matches(out, "15"));
        assert!(!version_output_matches(out, "1"));
        assert!(!version_output_matches(out, "16"));
        assert!(version_output_matches(
            "postgres (PostgreSQL) 9.6.24",
            "9.6"
        ));
        assert!(version_output_matches(
            "postgres (PostgreSQL) 17devel",
            "17devel"
        ));
        assert!(!version_output_matches("garbage", "15"));
    }

    #[test]
    fn parses_effective_uid() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_euid(status), Some(0));
        assert_eq!(parse_euid("Name:\tcat\n"), None);
    }

    #[test]
    fn quotes_for_shell() {
        assert_eq!(sh_quote("/a b/run"), "'/a b/run'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn settings_parse_name_value_and_refuse_odd_names() {
        let s: Setting = "shared_preload_libraries=citus".parse().unwrap();
        assert_eq!(
            (s.name.as_str(), s.value.as_str()),
            ("shared_preload_libraries", "citus")
        );
        let s: Setting = "citus.x=a b'c".parse().unwrap();
        assert_eq!(s.value, "a b'c");
        for bad in ["novalue", "=x", "a b=c", "a;b=c", "a'=b"] {
            assert!(bad.parse::<Setting>().is_err(), "{bad}");
        }
    }

    #[test]
    fn server_options_use_socket_dir_unless_too_long() {
        let opts = server_options(55433, Path::new("/w/target/test-pg/run"));
        assert!(opts.contains("-c port=55433"));
        assert!(opts.contains("-c unix_socket_directories='/w/target/test-pg/run'"));
        assert!(opts.contains("-c listen_addresses=127.0.0.1"));
        assert!(opts.contains("-c fsync=off"));
        let long = PathBuf::from(format!("/{}/run", "x".repeat(120)));
        assert!(server_options(5432, &long).contains("-c unix_socket_directories='' "));
    }

    #[test]
    fn judges_cmdline() {
        let data = Path::new("/w/pg/data");
        let ours = b"/usr/lib/postgresql/15/bin/postgres\0-D\0/w/pg/data\0-c\0port=5\0";
        assert_eq!(identity_from_cmdline(ours, data), Identity::Ours);
        let other_pg = b"/usr/lib/postgresql/15/bin/postgres\0-D\0/elsewhere\0";
        assert_eq!(identity_from_cmdline(other_pg, data), Identity::Unknown);
        assert_eq!(
            identity_from_cmdline(b"/bin/bash\0-l\0", data),
            Identity::NotOurs
        );
        assert_eq!(identity_from_cmdline(b"", data), Identity::NotOurs);
    }

    #[test]
    fn tails_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a\nb", 5), "a\nb");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn builds_superuser_url() {
        let pg = PrivatePostgres {
            root: PathBuf::from("/r"),
            data_dir: PathBuf::from("/r/data"),
            port: 55433,
            bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            os_user: None,
            superuser: SUPERUSER.to_string(),
        };
        assert_eq!(
            pg.superuser_url("tessera_test"),
            "postgres://postgres@127.0.0.1:55433/tessera_test"
        );
        assert_eq!(pg.port(), 55433);
    }
}
