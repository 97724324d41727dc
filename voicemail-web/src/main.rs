//! `voicemail-web`: tools for the web callback queue (the answering machine serves the queue
//! itself when its configuration has a `[web]` table).
//!
//! ```text
//! voicemail-web hash-password      reads a password from standard input (one line) and prints
//!                                  its Argon2id hash for `password_hash` in [[web.users]]
//! ```
//!
//! ```text
//! $ cargo run -p voicemail-web -- hash-password
//! password: (typed, then Enter)
//! $argon2id$v=19$m=19456,t=2,p=1$...
//! ```

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: voicemail-web hash-password   (reads the password from standard input)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["hash-password"] => hash_password(),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn hash_password() -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // The password is echoed: type it where nobody watches, or pipe it in.
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        eprintln!("voicemail-web: cannot read the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    match voicemail_web::auth::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voicemail-web: {e}");
            ExitCode::FAILURE
        }
    }
}
