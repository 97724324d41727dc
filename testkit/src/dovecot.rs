//! A real Dovecot (Debian `dovecot-imapd`) for the IMAP tests, and a small test-side IMAP
//! client (a second session, as a manager's mail client would have).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ChildGuard, free_port, tool, wait_for_port};

/// The user Dovecot knows: `vm`.
pub const DOVECOT_USER: &str = "vm";
/// Its password: `secret`.
pub const DOVECOT_PASSWORD: &str = "secret";

fn command_output(cmd: &str, arg: &str) -> String {
    let out = Command::new(cmd).arg(arg).output().unwrap_or_else(|e| panic!("{cmd} {arg}: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Dovecot on 127.0.0.1 with its own configuration in a directory: plaintext LOGIN of user
/// [`DOVECOT_USER`] / [`DOVECOT_PASSWORD`] (a passwd file), Maildir storage under the
/// directory, no TLS. Stopped (SIGTERM, then SIGKILL by PID) on drop.
#[derive(Debug)]
pub struct Dovecot {
    process: Option<ChildGuard>,
    port: u16,
    imaps_port: Option<u16>,
    maildir: PathBuf,
    log: PathBuf,
}

impl Dovecot {
    /// Starts Dovecot in `dir` (created if needed) with `settings` added to its configuration
    /// (for example `imap_capability = IMAP4rev1 UIDPLUS` to hide IDLE and CONDSTORE); `None`
    /// after [`missing`](crate::missing) when Dovecot is not installed.
    pub fn start(dir: &Path, settings: &str) -> Option<Dovecot> {
        Self::start_with_tls(dir, settings, None)
    }

    /// [`Dovecot::start`]; with `tls`, the server presents that certificate (its chain file),
    /// refuses LOGIN before STARTTLS (`ssl = required`) and listens for implicit TLS too
    /// ([`Dovecot::imaps_port`]).
    pub fn start_with_tls(dir: &Path, settings: &str, tls: Option<&crate::IssuedCert>) -> Option<Dovecot> {
        let binary = tool("dovecot", "dovecot-imapd")?;
        let port = free_port();
        let imaps_port = tls.map(|_| free_port());
        let ssl = match tls {
            None => "ssl = no".to_owned(),
            Some(cert) => {
                format!("ssl = required\nssl_cert = <{}\nssl_key = <{}", cert.chain.display(), cert.key.display())
            }
        };
        let home = dir.join("home").join(DOVECOT_USER);
        std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
        // Dovecot refuses mail access as root: as root the mail user is nobody/nogroup and owns
        // its home; otherwise everything runs as the current user.
        let uid: u32 = command_output("id", "-u").parse().unwrap();
        let (mail_uid, mail_gid, users) = if uid == 0 {
            std::os::unix::fs::chown(dir.join("home"), Some(65534), Some(65534)).unwrap();
            std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
            (65534, 65534, String::new())
        } else {
            let gid: u32 = command_output("id", "-g").parse().unwrap();
            let user = command_output("id", "-un");
            let group = command_output("id", "-gn");
            (
                uid,
                gid,
                format!(
                    "default_login_user = {user}\ndefault_internal_user = {user}\ndefault_internal_group = {group}\n"
                ),
            )
        };
        let passwd = dir.join("passwd");
        let entry = format!("{DOVECOT_USER}:{{PLAIN}}{DOVECOT_PASSWORD}:{mail_uid}:{mail_gid}::{}::\n", home.display());
        std::fs::write(&passwd, entry).unwrap();
        let log = dir.join("dovecot.log");
        let d = dir.display();
        let conf = format!(
            "protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = voicemail-test-{port}
log_path = {log}
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
{users}{settings}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
",
            log = log.display(),
            passwd = passwd.display(),
            imaps = imaps_port.unwrap_or(0),
        );
        let conf_path = dir.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut process = ChildGuard::spawn(
            "dovecot",
            Command::new(binary).arg("-F").arg("-c").arg(&conf_path).stdout(Stdio::null()).stderr(Stdio::inherit()),
        );
        let up = wait_for_port(port, Duration::from_secs(20));
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(process.exited().is_none(), "dovecot exited while starting:\n{}", log_text());
        assert!(up, "dovecot did not listen on 127.0.0.1:{port} within 20 s:\n{}", log_text());
        if let Some(imaps) = imaps_port {
            let up = wait_for_port(imaps, Duration::from_secs(20));
            assert!(up, "dovecot did not listen for IMAPS on 127.0.0.1:{imaps} within 20 s:\n{}", log_text());
        }
        Some(Dovecot { process: Some(process), port, imaps_port, maildir: home.join("Maildir"), log })
    }

    /// The IMAP port (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The IMAPS (implicit TLS) port (127.0.0.1), when started with a certificate.
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// The user's Maildir (folder `X` is `<maildir>/.X`).
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A test-side session of the user with `folder` selected.
    pub fn client(&self, folder: &str) -> ImapClient {
        let mut c = ImapClient::connect(self.port);
        c.ok(&format!("LOGIN {DOVECOT_USER} {DOVECOT_PASSWORD}"));
        c.ok(&format!("SELECT \"{folder}\""));
        c
    }

    /// Stops the server now (also done on drop): SIGTERM, at most 5 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take()
            && process.exited().is_none()
        {
            process.signal("TERM");
            process.wait_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal line-based IMAP client for tests: each command is sent tagged and its reply read
/// up to the tagged line (the tests fetch no literals). Every read waits at most 20 s.
#[derive(Debug)]
pub struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl ImapClient {
    /// Connects to 127.0.0.1:`port` and reads the greeting.
    pub fn connect(port: u16) -> ImapClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("imap 127.0.0.1:{port}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut c = ImapClient { reader: BufReader::new(stream), writer, tag: 0 };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap_or_else(|e| panic!("reading from the IMAP server: {e}"));
        assert!(!line.is_empty(), "the IMAP server closed the connection");
        line.trim_end().to_owned()
    }

    /// Sends `command`; returns the untagged lines and the tagged status (`OK ...`).
    pub fn command(&mut self, command: &str) -> (Vec<String>, String) {
        self.tag += 1;
        let tag = format!("T{}", self.tag);
        self.writer.write_all(format!("{tag} {command}\r\n").as_bytes()).unwrap();
        let mut untagged = Vec::new();
        loop {
            let line = self.line();
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                return (untagged, status.to_owned());
            }
            untagged.push(line);
        }
    }

    /// Sends `command`, checks the server said OK, and returns the untagged lines.
    pub fn ok(&mut self, command: &str) -> Vec<String> {
        let (untagged, status) = self.command(command);
        assert!(status.starts_with("OK"), "{command}: {status}");
        untagged
    }

    /// UIDs of the messages whose `Message-ID` is `message_id` (without angle brackets).
    pub fn uids(&mut self, message_id: &str) -> Vec<u32> {
        self.ok(&format!("UID SEARCH HEADER Message-ID \"<{message_id}>\""))
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|rest| rest.split_whitespace().filter_map(|w| w.parse().ok()).collect::<Vec<u32>>())
            .collect()
    }

    /// The flags of message `uid`; `None` when it is not in the folder.
    pub fn flags(&mut self, uid: u32) -> Option<Vec<String>> {
        let lines = self.ok(&format!("UID FETCH {uid} (FLAGS)"));
        let line = lines.iter().find(|l| l.contains(&format!("UID {uid}")) && l.contains("FLAGS ("))?;
        let rest = &line[line.find("FLAGS (")? + 7..];
        let list = &rest[..rest.find(')')?];
        Some(list.split_whitespace().map(str::to_owned).collect())
    }

    /// Whether message `uid` carries `keyword` (compared without regard to case).
    pub fn has_keyword(&mut self, uid: u32, keyword: &str) -> bool {
        self.flags(uid).is_some_and(|f| f.iter().any(|k| k.eq_ignore_ascii_case(keyword)))
    }

    /// Adds `keyword` to message `uid`, as a mail client's tag does.
    pub fn add_keyword(&mut self, uid: u32, keyword: &str) {
        self.ok(&format!("UID STORE {uid} +FLAGS ({keyword})"));
    }

    /// Removes message `uid` from the folder (`\Deleted`, then `UID EXPUNGE`).
    pub fn expunge(&mut self, uid: u32) {
        self.ok(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
        self.ok(&format!("UID EXPUNGE {uid}"));
    }

    /// Waits at most `timeout` (asking every 100 ms) until exactly one message has
    /// `message_id`; its UID.
    pub fn wait_for_one(&mut self, message_id: &str, timeout: Duration) -> Option<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let [uid] = self.uids(message_id)[..] {
                return Some(uid);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Logs out.
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}
