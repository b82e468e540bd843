//! Engine commands as child processes: the runner behind `brix up`'s command replicas.
//!
//! Each replica is `sh -c "exec <command>"` in a process group of its own, so that one signal
//! reaches the engine and every worker it forked. Its stdout and stderr are appended to a log
//! file. [`Process::stop`] sends SIGTERM to the group, waits up to a grace period for the group
//! to empty, then sends SIGKILL to whatever is left and reaps the engine; dropping a
//! [`Process`] that was not stopped sends SIGKILL to the group. Exits are observed with
//! [`Process::try_exit`] and [`Process::exited`], and [`Process::exit_error`] turns an
//! unexpected exit into an error that carries the tail of the log.
//!
//! Guardrails:
//! - The group is signalled, never only the engine's pid, so grandchildren die with it.
//! - Once the group is seen empty it is never signalled again, so a recycled pid is not hit.
//! - Nothing here blocks the runtime for long: waiting is `async`, and the only synchronous
//!   I/O is opening the log at spawn and reading its tail for an error message.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How often [`Process::stop`] looks whether the rest of the group has gone, once the engine
/// has exited but forked workers may still be shutting down.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// What to run for one command replica; the controller fills it from the model's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// One shell command line, already templated (`vllm serve m --port 8001`). It is run as
    /// `sh -c "exec <command>"` so the engine itself leads the group; a compound script
    /// (`a; b`, `cd x && y`) must therefore be wrapped as `sh -c '...'`.
    pub command: String,
    /// Variables added to the inherited environment (e.g. `CUDA_VISIBLE_DEVICES`).
    pub env: BTreeMap<String, String>,
    /// File that stdout and stderr are appended to; missing parent directories are created.
    pub log_path: PathBuf,
}

/// Why a child process could not be started, watched or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// `sh` could not be started (the engine binary itself is looked up by `sh`, so a missing
    /// engine shows up as an exit with code 127 instead; see [`ProcessError::Exited`]).
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line that was to run.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The log file or its directory could not be created or opened.
    #[error("could not open log file {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the child's exit status failed.
    #[error("could not wait for the child process: {0}")]
    Wait(#[source] std::io::Error),
    /// A signal could not be sent to the process group (other than "already gone").
    #[error("could not signal the process group: {0}")]
    Signal(#[source] nix::Error),
    /// The command exited when it was meant to keep running (at start or later).
    #[error("`{command}` exited ({status}); last lines of {}:\n{tail}", log_path.display())]
    Exited {
        /// The command line that ran.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// Its log file, for the full output.
        log_path: PathBuf,
        /// The end of its log, usually the reason it gave.
        tail: String,
    },
}

/// A running command replica: the engine process and its process group.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// The engine's pid, which is also the group id because it was spawned with
    /// `process_group(0)`.
    pgid: Pid,
    command: String,
    log_path: PathBuf,
    /// The engine's exit status once it has been reaped.
    status: Option<ExitStatus>,
    /// True once the group was seen empty: it can never gain members again, so it must not be
    /// signalled (its id may belong to someone else by then).
    group_gone: bool,
}

impl Process {
    /// Starts `spec.command` in a new process group with its output appended to `spec.log_path`,
    /// so that the whole replica can be signalled and its output read back later.
    pub fn spawn(spec: &ProcessSpec) -> Result<Self, ProcessError> {
        let (stdout, stderr) = open_log(&spec.log_path)?;
        let spawn_error = |source| ProcessError::Spawn {
            command: spec.command.clone(),
            source,
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", spec.command))
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| spawn_error(std::io::Error::other("the child has no usable pid")))?;
        tracing::debug!(pid, command = %spec.command, log = %spec.log_path.display(), "spawned");
        Ok(Self {
            child,
            pgid: Pid::from_raw(pid),
            command: spec.command.clone(),
            log_path: spec.log_path.clone(),
            status: None,
            group_gone: false,
        })
    }

    /// The engine's pid (also its process group id), for logs and status pages.
    pub fn pid(&self) -> u32 {
        self.pgid.as_raw().unsigned_abs()
    }

    /// Where the output goes, so errors and status pages can point at it.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The exit status if the engine has exited, without waiting, so a controller loop can
    /// poll its replicas.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        match self.child.try_wait().map_err(ProcessError::Wait)? {
            Some(status) => Ok(Some(self.record_exit(status))),
            None => Ok(None),
        }
    }

    /// Resolves when the engine exits, so the controller can restart a crashed replica; it is
    /// cancel-safe, so it can sit in a `select!` beside a shutdown signal.
    ///
    /// Workers the engine left behind may still run; [`Process::stop`] or dropping the
    /// `Process` ends them.
    pub async fn exited(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.child.wait().await.map_err(ProcessError::Wait)?;
        Ok(self.record_exit(status))
    }

    /// Shuts the replica down and leaves nothing of it running: SIGTERM to the group, up to
    /// `grace` for the group to empty, SIGKILL to whatever is left, then the engine is reaped.
    ///
    /// Works on an engine that has already exited too (it cleans up leftover workers) and
    /// returns the engine's exit status. If the future is dropped part-way, dropping the
    /// `Process` still kills the group.
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        let deadline = Instant::now() + grace;
        self.signal_group(Signal::SIGTERM)?;
        let exited = match tokio::time::timeout_at(deadline, self.exited()).await {
            Ok(status) => Some(status?),
            Err(_elapsed) => None,
        };
        if exited.is_some() {
            // The engine is gone; give the workers it forked the rest of the grace period.
            while !self.group_gone && Instant::now() < deadline {
                tokio::time::sleep_until(deadline.min(Instant::now() + GROUP_POLL)).await;
                self.probe_group();
            }
        }
        if !self.group_gone {
            tracing::debug!(
                pid = self.pid(),
                "grace period over; killing the process group"
            );
            self.signal_group(Signal::SIGKILL)?;
        }
        let status = match exited {
            Some(status) => status,
            None => self.exited().await?,
        };
        self.probe_group();
        Ok(status)
    }

    /// The last `max_bytes` of the log (starting at a character boundary), for error messages
    /// such as "exited at once: <tail>"; a log that cannot be read yields a note saying so.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        read_tail(&self.log_path, max_bytes).unwrap_or_else(|error| {
            format!("(could not read {}: {error})", self.log_path.display())
        })
    }

    /// The error for an engine that exited with `status` when it should have kept running,
    /// carrying the tail of its log so the reason is in the message.
    pub fn exit_error(&self, status: ExitStatus) -> ProcessError {
        ProcessError::Exited {
            command: self.command.clone(),
            status,
            log_path: self.log_path.clone(),
            tail: self.log_tail(EXIT_TAIL_BYTES),
        }
    }

    /// Keeps the reaped status and notes whether the group emptied with the engine.
    fn record_exit(&mut self, status: ExitStatus) -> ExitStatus {
        tracing::debug!(pid = self.pid(), %status, "exited");
        self.status = Some(status);
        self.probe_group();
        status
    }

    /// Marks the group gone if no member (zombies included) is left.
    fn probe_group(&mut self) {
        if !self.group_gone && killpg(self.pgid, None) == Err(Errno::ESRCH) {
            self.group_gone = true;
        }
    }

    /// Sends `signal` to every member of the group; a group that is already gone is not an
    /// error.
    fn signal_group(&mut self, signal: Signal) -> Result<(), ProcessError> {
        if self.group_gone {
            return Ok(());
        }
        match killpg(self.pgid, signal) {
            Ok(()) => Ok(()),
            Err(Errno::ESRCH) => {
                self.group_gone = true;
                Ok(())
            }
            Err(error) => Err(ProcessError::Signal(error)),
        }
    }
}

impl Drop for Process {
    /// Kills the whole group unless it is known to be gone, so that a replica whose owner goes
    /// away (or whose `stop` was cancelled) leaves no engine or worker behind. The engine
    /// itself is reaped by tokio's orphan reaper.
    fn drop(&mut self) {
        if let Err(error) = self.signal_group(Signal::SIGKILL) {
            tracing::warn!(pid = self.pid(), %error, "could not kill the process group on drop");
        }
    }
}

/// How much of the log [`Process::exit_error`] quotes: enough for a Python traceback's end.
const EXIT_TAIL_BYTES: usize = 4096;

/// Creates the log's directory and opens it for appending, once for stdout and once for
/// stderr (two handles on one open file, so their writes interleave in order).
fn open_log(path: &Path) -> Result<(File, File), ProcessError> {
    let log_error = |source| ProcessError::Log {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(log_error)?;
    }
    let stdout = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(log_error)?;
    let stderr = stdout.try_clone().map_err(log_error)?;
    Ok((stdout, stderr))
}

/// Reads the last `max_bytes` of `path`, dropping a character cut in half at the start.
fn read_tail(path: &Path, max_bytes: usize) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(u64::try_from(max_bytes).unwrap_or(u64::MAX));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(len - start).read_to_end(&mut bytes)?;
    // A UTF-8 character has at most three continuation bytes (0b10xx_xxxx).
    let first_char = bytes
        .iter()
        .take(4)
        .position(|byte| byte & 0b1100_0000 != 0b1000_0000)
        .unwrap_or(0);
    Ok(String::from_utf8_lossy(&bytes[first_char..]).into_owned())
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
