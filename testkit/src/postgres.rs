//! A throwaway PostgreSQL cluster (Debian `postgresql`) for the shared-store tests.
//!
//! `initdb` makes a cluster in a directory of its own; `postgres` serves it on a free port of
//! 127.0.0.1 (its unix socket in that directory too), with trust authentication for the
//! superuser `postgres`, and without fsync (a test cluster need not survive a power cut). The
//! server is stopped on drop by its PID (from `postmaster.pid`): SIGINT (fast shutdown), then
//! SIGKILL if it is still there after 10 s. PostgreSQL refuses to run as root, so as root
//! `initdb`, `createdb` and the server run as the user `postgres` (`runuser`), in a
//! directory that user owns.
//!
//! [`Postgres::start_tls`] serves TLS with a certificate of the caller's (a [`crate::TestCa`]'s)
//! and accepts TCP connections only over TLS (`hostssl` in `pg_hba.conf`): a client that does
//! not use TLS is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, IssuedCert, TempDir, free_port, missing, temp_dir, wait_until};

/// A PostgreSQL server of its own on 127.0.0.1, stopped on drop.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    process: Option<ChildGuard>,
    // Last: removed after the server stopped.
    dir: TempDir,
}

/// Where the PostgreSQL programs are: `/usr/lib/postgresql/<newest>/bin`, else the directory
/// of `initdb` on `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` with `args`, as the user `postgres` when this process is root.
fn command(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Makes and starts a cluster; `None` after [`missing`] said why when PostgreSQL is not
    /// installed (a failure instead when `VOICEMAIL_REQUIRE_INTEROP` is set).
    pub fn start() -> Option<Postgres> {
        Self::start_with(None)
    }

    /// [`Postgres::start`], serving TLS with `server` (its leaf certificate and key; issue it
    /// for `127.0.0.1`) and refusing TCP connections without TLS: `pg_hba.conf` has only
    /// `hostssl` for 127.0.0.1 (and `local` for the unix socket).
    pub fn start_tls(server: &IssuedCert) -> Option<Postgres> {
        Self::start_with(Some(server))
    }

    fn start_with(tls: Option<&IssuedCert>) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            missing("PostgreSQL not found (initdb and postgres; Debian package postgresql)");
            return None;
        };
        let root = is_root();
        let dir = temp_dir("pg");
        if root {
            // The cluster's user must reach and own its directory.
            let chown = Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown postgres {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tls_args = Vec::new();
        if let Some(server) = tls {
            // The server reads them as its user; it refuses a key others may read.
            let (cert, key) = (data.join("server.crt"), data.join("server.key"));
            std::fs::copy(&server.cert, &cert).unwrap_or_else(|e| panic!("copy {}: {e}", server.cert.display()));
            std::fs::copy(&server.key, &key).unwrap_or_else(|e| panic!("copy {}: {e}", server.key.display()));
            if root {
                let chown = Command::new("chown").arg("postgres:postgres").arg(&cert).arg(&key).status();
                assert!(chown.is_ok_and(|s| s.success()), "chown postgres {}", key.display());
            }
            let chmod = Command::new("chmod").arg("600").arg(&key).status();
            assert!(chmod.is_ok_and(|s| s.success()), "chmod 600 {}", key.display());
            // Overwritten in place: the file keeps its owner.
            std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
                .unwrap_or_else(|e| panic!("pg_hba.conf: {e}"));
            tls_args = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        if root {
            let _ = Command::new("chown").arg("postgres:postgres").arg(dir.path().join("postgres.log")).status();
        }
        let process = ChildGuard::spawn(
            "postgres",
            command(&bin.join("postgres"), root)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=100", "-c", "logging_collector=off"])
                .args(&tls_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        let mut pg = Postgres { bin, data, port, process: Some(process), dir };
        // `postmaster.pid` says `ready` once the server accepts connections.
        let ready = wait_until(Duration::from_secs(60), || {
            pg.process.as_mut().is_some_and(|p| p.exited().is_none()) && pg.status().as_deref() == Some("ready")
        });
        assert!(ready, "postgres did not become ready within 60 s:\n{}", pg.log());
        Some(pg)
    }

    /// The server's status line in `postmaster.pid` (`starting`, `ready`, `stopping`).
    fn status(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().nth(7).map(|l| l.trim().to_owned())
    }

    /// The postmaster's PID, from `postmaster.pid`.
    fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `postgres` as the superuser (no password).
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `name` as the superuser.
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` (letters, digits, `_`); returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "database name {name:?}");
        let out = command(&self.bin.join("createdb"), is_root())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run createdb: {e}"));
        assert!(out.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        self.url_of(name)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server now (also done on drop): SIGINT to the postmaster (fast shutdown), at
    /// most 10 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else { return };
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
            let gone = wait_until(Duration::from_secs(10), || {
                !Path::new(&format!("/proc/{pid}")).exists() || process.exited().is_some()
            });
            if !gone {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        process.wait_timeout(Duration::from_secs(5));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
