//! Real child processes: signals, process groups, logs. Timeouts here only guard against a
//! hung test; nothing asserts how long anything took.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::{Process, ProcessError, ProcessSpec, read_tail};

/// Upper bound for anything a test waits on; only reached when the test is failing.
const GUARD: Duration = Duration::from_secs(30);

/// A fresh directory under the system temp dir, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("brix-process-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn spec(&self, command: &str) -> ProcessSpec {
        ProcessSpec {
            command: command.to_owned(),
            env: Default::default(),
            log_path: self.path("engine.log"),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns `Some`, failing the test after [`GUARD`] (testkit's).
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    brix_testkit::eventually_some(what, GUARD, || std::future::ready(check())).await
}

/// The pid a test command wrote to `file` once it had forked its grandchild.
async fn read_pid(file: &Path) -> i32 {
    eventually("the grandchild's pid", || {
        let text = std::fs::read_to_string(file).ok()?;
        text.strip_suffix('\n')?.parse().ok()
    })
    .await
}

/// True when `pid` no longer runs: gone, or a zombie waiting for whoever inherited it.
fn is_dead(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
        return true;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('Z' | 'X'))
}

async fn wait_dead(pid: i32) {
    eventually(&format!("pid {pid} to die"), || is_dead(pid).then_some(())).await;
}

fn raw_pid(process: &Process) -> i32 {
    i32::try_from(process.pid()).expect("pid fits i32")
}

#[tokio::test]
async fn stop_ends_a_process_with_sigterm_and_reaps_it() {
    let scratch = Scratch::new();
    let mut process = Process::spawn(&scratch.spec("sleep 30")).expect("spawn");
    let pid = raw_pid(&process);

    let status = process.stop(GUARD).await.expect("stop");

    assert_eq!(status.signal(), Some(libc_signal::TERM), "{status}");
    assert_eq!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH));
    assert_eq!(process.try_exit().expect("try_exit"), Some(status));
}

#[tokio::test]
async fn stop_kills_a_group_that_ignores_sigterm_after_the_grace_period() {
    let scratch = Scratch::new();
    let ready = scratch.path("grandchild.pid");
    let command = format!(
        r#"sh -c 'trap "" TERM; sleep 30 & echo $! > {}; wait'"#,
        ready.display()
    );
    let mut process = Process::spawn(&scratch.spec(&command)).expect("spawn");
    let pid = raw_pid(&process);
    // The pid file is written after the trap is set, so SIGTERM is sure to be ignored.
    let grandchild = read_pid(&ready).await;

    let status = process
        .stop(Duration::from_millis(100))
        .await
        .expect("stop");

    assert_eq!(status.signal(), Some(libc_signal::KILL), "{status}");
    assert_eq!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH));
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn stop_takes_grandchildren_down_with_the_group() {
    let scratch = Scratch::new();
    let file = scratch.path("grandchild.pid");
    let command = format!("sh -c 'sleep 30 & echo $! > {}; wait'", file.display());
    let mut process = Process::spawn(&scratch.spec(&command)).expect("spawn");
    let grandchild = read_pid(&file).await;
    assert!(!is_dead(grandchild), "the grandchild runs before stop");

    let status = process.stop(GUARD).await.expect("stop");

    assert_eq!(status.signal(), Some(libc_signal::TERM), "{status}");
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn stop_after_the_engine_exited_kills_the_workers_it_left() {
    let scratch = Scratch::new();
    let file = scratch.path("grandchild.pid");
    let command = format!("sh -c 'sleep 30 & echo $! > {}'", file.display());
    let mut process = Process::spawn(&scratch.spec(&command)).expect("spawn");

    let exited = tokio::time::timeout(GUARD, process.exited())
        .await
        .expect("guard");
    assert_eq!(exited.expect("exited").code(), Some(0));
    let grandchild = read_pid(&file).await;
    assert!(
        !is_dead(grandchild),
        "the leftover worker outlives the engine"
    );

    let status = process.stop(Duration::from_secs(5)).await.expect("stop");

    assert_eq!(status.code(), Some(0));
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn exit_code_output_and_environment_are_observed() {
    let scratch = Scratch::new();
    let mut spec = scratch.spec(r#"sh -c 'echo "out $GREETING"; echo err >&2; exit 3'"#);
    spec.env.insert("GREETING".into(), "hello".into());
    spec.log_path = scratch.path("logs/replica-0/engine.log");
    let mut process = Process::spawn(&spec).expect("spawn");
    assert_eq!(process.log_path(), spec.log_path);

    let status = tokio::time::timeout(GUARD, process.exited())
        .await
        .expect("guard");
    let status = status.expect("exited");

    assert_eq!(status.code(), Some(3));
    assert_eq!(process.log_tail(1024), "out hello\nerr\n");
    assert_eq!(
        std::fs::read_to_string(&spec.log_path).expect("log"),
        "out hello\nerr\n"
    );
    let error = process.exit_error(status).to_string();
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.ends_with("out hello\nerr\n"), "{error}");
}

#[tokio::test]
async fn a_missing_engine_exits_at_once_with_the_reason_in_the_error() {
    let scratch = Scratch::new();
    let mut process =
        Process::spawn(&scratch.spec("brix-no-such-engine --port 8001")).expect("spawn");

    let status = tokio::time::timeout(GUARD, process.exited())
        .await
        .expect("guard");
    let status = status.expect("exited");

    assert_eq!(status.code(), Some(127));
    let error = process.exit_error(status);
    assert!(matches!(error, ProcessError::Exited { .. }));
    let message = error.to_string();
    assert!(
        message.contains("brix-no-such-engine") && message.contains("not found"),
        "{message}"
    );
}

#[tokio::test]
async fn the_log_is_appended_across_restarts() {
    let scratch = Scratch::new();
    for word in ["one", "two"] {
        let mut process = Process::spawn(&scratch.spec(&format!("echo {word}"))).expect("spawn");
        let status = tokio::time::timeout(GUARD, process.exited())
            .await
            .expect("guard");
        assert!(status.expect("exited").success());
    }
    let log = std::fs::read_to_string(scratch.path("engine.log")).expect("log");
    assert_eq!(log, "one\ntwo\n");
}

#[tokio::test]
async fn dropping_a_running_process_kills_its_group() {
    let scratch = Scratch::new();
    let file = scratch.path("grandchild.pid");
    let command = format!("sh -c 'sleep 30 & echo $! > {}; wait'", file.display());
    let process = Process::spawn(&scratch.spec(&command)).expect("spawn");
    let pid = raw_pid(&process);
    let grandchild = read_pid(&file).await;

    drop(process);

    wait_dead(pid).await;
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn try_exit_and_a_cancelled_exited_leave_a_running_process_alone() {
    let scratch = Scratch::new();
    let mut process = Process::spawn(&scratch.spec("sleep 30")).expect("spawn");

    assert_eq!(process.try_exit().expect("try_exit"), None);
    let waited = tokio::time::timeout(Duration::from_millis(50), process.exited()).await;
    assert!(waited.is_err(), "sleep 30 is still running");
    assert_eq!(process.try_exit().expect("try_exit"), None);

    let status = process.stop(GUARD).await.expect("stop");
    assert_eq!(status.signal(), Some(libc_signal::TERM));
}

#[test]
fn log_tail_starts_at_a_character_boundary() {
    let scratch = Scratch::new();
    let path = scratch.path("tail.log");
    std::fs::write(&path, "abc€def").expect("write");

    assert_eq!(
        read_tail(&path, 5).expect("tail"),
        "def",
        "half a € is dropped"
    );
    assert_eq!(read_tail(&path, 6).expect("tail"), "€def");
    assert_eq!(read_tail(&path, 100).expect("tail"), "abc€def");
    assert_eq!(read_tail(&path, 0).expect("tail"), "");
}

#[tokio::test]
async fn log_tail_of_an_unreadable_log_says_so() {
    let scratch = Scratch::new();
    let mut process = Process::spawn(&scratch.spec("true")).expect("spawn");
    let status = tokio::time::timeout(GUARD, process.exited())
        .await
        .expect("guard");
    assert!(status.expect("exited").success());
    std::fs::remove_file(process.log_path()).expect("remove log");

    let tail = process.log_tail(10);

    assert!(tail.starts_with("(could not read "), "{tail}");
}

#[test]
fn spawn_reports_a_log_that_cannot_be_opened() {
    let scratch = Scratch::new();
    let file = scratch.path("not-a-dir");
    std::fs::write(&file, "").expect("write");
    let mut spec = scratch.spec("true");
    spec.log_path = file.join("engine.log");

    let error = Process::spawn(&spec).expect_err("a file is not a directory");

    assert!(
        matches!(&error, ProcessError::Log { path, .. } if *path == spec.log_path),
        "{error}"
    );
}

/// Signal numbers as `ExitStatus::signal` reports them.
mod libc_signal {
    use nix::sys::signal::Signal;

    pub const TERM: i32 = Signal::SIGTERM as i32;
    pub const KILL: i32 = Signal::SIGKILL as i32;
}
