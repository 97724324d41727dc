//! A real Kamailio (Debian `kamailio`) for the SIP interop and cluster tests: one process in
//! the foreground with a configuration file of the test's, a control socket for `kamcmd`, its
//! log in a file, stopped by its process group on drop.

use std::fmt::Display;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, free_port, missing, tool, wait_until};

/// Where Debian and other distributions install Kamailio's modules.
const MODULE_DIRS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
];

/// How long [`Kamailio::start`] waits for the control socket to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How a [`Kamailio`] is started, besides its configuration file: `-A` defines, the modules it
/// needs, its memory and how long it may live at most.
///
/// ```no_run
/// # use std::path::Path;
/// # use std::time::Duration;
/// # use voicemail_testkit::{Kamailio, KamailioOptions};
/// let options = KamailioOptions::new()
///     .define_str("VM_USER", "voicemail")
///     .module("tls.so", "kamailio-tls-modules")
///     .memory_mb(64, 8)
///     .lifetime(Duration::from_secs(900));
/// let Some(kamailio) = Kamailio::start(Path::new("kamailio.cfg"), Path::new("/tmp/x"), options) else {
///     return; // SKIPPED
/// };
/// assert!(kamailio.rpc(&["core.version"]).is_some());
/// ```
#[derive(Debug, Clone)]
pub struct KamailioOptions {
    defines: Vec<String>,
    modules: Vec<(String, String)>,
    shm_mb: u32,
    pkg_mb: u32,
    lifetime: Duration,
}

impl Default for KamailioOptions {
    fn default() -> Self {
        KamailioOptions {
            defines: Vec::new(),
            modules: Vec::new(),
            shm_mb: 32,
            pkg_mb: 4,
            lifetime: Duration::from_secs(600),
        }
    }
}

impl KamailioOptions {
    /// No defines, no module required, 32 MB shared and 4 MB private memory, at most 600 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `-A NAME=VALUE`, `value` as the configuration's preprocessor reads it (a number,
    /// a name; see [`KamailioOptions::define_str`] for a string).
    pub fn define(mut self, name: &str, value: impl Display) -> Self {
        self.defines.push(format!("{name}={value}"));
        self
    }

    /// Adds `-A NAME="VALUE"`: a string define.
    pub fn define_str(self, name: &str, value: impl Display) -> Self {
        self.define(name, format_args!("\"{value}\""))
    }

    /// Requires the module file `file` (`dispatcher.so`, `tls.so`), from the Debian package
    /// `package`: without it the test is skipped (see [`missing`]).
    pub fn module(mut self, file: &str, package: &str) -> Self {
        self.modules.push((file.to_owned(), package.to_owned()));
        self
    }

    /// Shared (`-m`) and private (`-M`) memory, in MB.
    pub fn memory_mb(mut self, shared: u32, private: u32) -> Self {
        self.shm_mb = shared;
        self.pkg_mb = private;
        self
    }

    /// How long Kamailio may live at most (it runs under `timeout`, so it ends even when the
    /// test process is killed before its drop).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }
}

/// The programs and the module directory a [`Kamailio`] needs.
struct Installation {
    kamailio: PathBuf,
    kamcmd: PathBuf,
    modules: Option<PathBuf>,
}

impl Installation {
    /// `None` after [`missing`] said what is not installed.
    fn find(options: &KamailioOptions) -> Option<Installation> {
        let kamailio = tool("kamailio", "kamailio")?;
        let kamcmd = tool("kamcmd", "kamailio")?;
        let has_all = |dir: &Path| dir.is_dir() && options.modules.iter().all(|(file, _)| dir.join(file).is_file());
        let modules = MODULE_DIRS.iter().map(PathBuf::from).find(|d| has_all(d));
        let installed = |file: &String| MODULE_DIRS.iter().any(|d| Path::new(d).join(file).is_file());
        let lacking = options.modules.iter().find(|(file, _)| !installed(file)).or(options.modules.first());
        if modules.is_none()
            && let Some((file, package)) = lacking
        {
            missing(&format!("the kamailio module {file} not found (Debian package {package})"));
            return None;
        }
        Some(Installation { kamailio, kamcmd, modules })
    }
}

/// Kamailio in the foreground (`-DD -E`) on 127.0.0.1, in its own process group, running a
/// configuration file that takes its SIP port from the define `LISTEN_PORT` and its control
/// socket from `CTL_SOCKET` (as `examples/kamailio/kamailio.cfg` and
/// `examples/cluster/kamailio.cfg` do). Its runtime files and log (its stderr) are in the
/// test's directory. Stopped on drop: SIGTERM to the group, at most 5 s to exit, then SIGKILL
/// to the group (Kamailio's children included).
#[derive(Debug)]
pub struct Kamailio {
    process: ChildGuard,
    port: u16,
    kamcmd: PathBuf,
    ctl: String,
    log: PathBuf,
}

impl Kamailio {
    /// Whether Kamailio, `kamcmd` and the modules `options` requires are installed; `false`
    /// after [`missing`] said what is not (to skip a test before starting its other peers).
    pub fn installed(options: &KamailioOptions) -> bool {
        Installation::find(options).is_some()
    }

    /// Starts Kamailio with the configuration file `config` on a free port, its files in
    /// `dir`, and waits (at most 20 s) until its control socket answers; `None` after
    /// [`missing`] when it is not installed. Panics, with the log, when it exits or does not
    /// answer.
    pub fn start(config: &Path, dir: &Path, options: KamailioOptions) -> Option<Kamailio> {
        let installation = Installation::find(&options)?;
        let port = free_port();
        let ctl = format!("unix:{}", dir.join("kamailio.ctl").display());
        let log = dir.join("kamailio.log");
        let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut command = Command::new("timeout");
        command
            .args(["-s", "TERM", &options.lifetime.as_secs().max(1).to_string()])
            .arg(&installation.kamailio)
            .args(["-DD", "-E", "-f"])
            .arg(config);
        if let Some(modules) = &installation.modules {
            command.arg("-L").arg(modules);
        }
        command.args(["-A", &format!("LISTEN_PORT={port}")]).args(["-A", &format!("CTL_SOCKET=\"{ctl}\"")]);
        for define in &options.defines {
            command.args(["-A", define]);
        }
        command
            .arg("-Y")
            .arg(dir)
            .arg("-w")
            .arg(dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .args(["-m", &options.shm_mb.to_string(), "-M", &options.pkg_mb.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // `timeout` and Kamailio's processes share this group, which drop signals.
            .process_group(0);
        let process = ChildGuard::spawn("kamailio", &mut command);
        let mut kamailio = Kamailio { process, port, kamcmd: installation.kamcmd, ctl, log };
        let up = wait_until(START_TIMEOUT, || {
            assert!(kamailio.process.exited().is_none(), "kamailio exited while starting:\n{}", kamailio.log());
            kamailio.rpc(&["core.version"]).is_some()
        });
        assert!(up, "kamailio did not answer on {} within 20 s:\n{}", kamailio.ctl, kamailio.log());
        Some(kamailio)
    }

    /// Its SIP port on 127.0.0.1 (`LISTEN_PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `kamcmd <args>` against its control socket: the output, or `None` when the command
    /// failed.
    pub fn rpc(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.kamcmd).args(["-s", &self.ctl]).args(args).stderr(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Its log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.process.pid());
        let _ = Command::new("kill").args([&format!("-{signal}"), "--", &group]).stderr(Stdio::null()).status();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.signal_group("TERM");
        self.process.wait_timeout(Duration::from_secs(5));
        // What is left of the group (Kamailio's children), if anything; the guard reaps.
        self.signal_group("KILL");
    }
}
