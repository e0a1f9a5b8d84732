//! Running one program to completion: captured output, an exit code, and a time limit.
//!
//! Every command runs in its own process group. When it outlives the limit the whole group is
//! killed and the result says so; a process it left behind holding its pipes is killed at the
//! same limit, so nothing can hang the suite.

use std::fmt;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The limit for one command: `ANNEXGATE_TEST_TIMEOUT` seconds, or 60 (a git-annex command in
/// these tests takes a few seconds even on a loaded machine; a hang must not cost more).
pub fn default_timeout() -> Duration {
    let secs = std::env::var("ANNEXGATE_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The command line and directory, for messages.
    pub cmdline: String,
    /// The exit code; `None` when killed by a signal (see `signal`).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl RunResult {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics, showing the command and both outputs, unless it exited 0.
    #[track_caller]
    pub fn ok(self) -> RunResult {
        if !self.success() {
            panic!("command failed: {self}");
        }
        self
    }

    /// Panics, showing the command and both outputs, unless it exited non-zero (not by a
    /// signal or the time limit: an expected failure is a clean exit with an error code).
    #[track_caller]
    pub fn failed(self) -> RunResult {
        if self.success() || self.code.is_none() {
            panic!("command was expected to fail cleanly: {self}");
        }
        self
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.cmdline)?;
        match (self.timed_out, self.code, self.signal) {
            (true, _, _) => write!(f, "killed after the time limit")?,
            (false, Some(c), _) => write!(f, "exit code {c}")?,
            (false, None, s) => write!(f, "killed by signal {s:?}")?,
        }
        write!(
            f,
            "\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        s.push_str(&format!(" (in {})", dir.display()));
    }
    s
}

fn reader(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Runs `cmd` (stdin from /dev/null unless the caller set it) to completion or `timeout`.
/// Panics only when the program cannot be started at all.
pub fn run(cmd: &mut Command, timeout: Duration) -> RunResult {
    let cmdline = describe(cmd);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
    let pgid = child.id() as i32;
    let out = reader(child.stdout.take().expect("stdout is piped"));
    let err = reader(child.stderr.take().expect("stderr is piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = Instant::now() + timeout;
    let (status, mut timed_out) = match rx.recv_timeout(timeout) {
        Ok(s) => (s, false),
        Err(_) => {
            kill_group(pgid);
            (rx.recv().expect("the waiter thread reports"), true)
        }
    };
    let status = status.unwrap_or_else(|e| panic!("waiting for {cmdline}: {e}"));
    // A process the command left behind may still hold its pipes. While it does, the group
    // exists (so its id cannot have been reused) and it is a stray: kill it at the deadline.
    let mut collect = |rx: mpsc::Receiver<Vec<u8>>| {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        let bytes = match rx.recv_timeout(left) {
            Ok(b) => b,
            Err(_) => {
                timed_out = true;
                kill_group(pgid);
                rx.recv().unwrap_or_default()
            }
        };
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let stdout = collect(out);
    let stderr = collect(err);
    RunResult {
        cmdline,
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout,
        stderr,
    }
}
