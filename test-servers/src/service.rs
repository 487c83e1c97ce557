//! A service binary a test starts (a projector, a region simulator): its JSON log in a file,
//! and the process killed when the test lets go of it, as when a test fails half-way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A running service process, killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `command`, its standard output (the log) written to `log`, its standard error
    /// dropped.
    pub fn start(mut command: Command, log: impl Into<PathBuf>) -> std::io::Result<Self> {
        let log = log.into();
        let file = std::fs::File::create(&log)?;
        let child = command.stdout(file).stderr(Stdio::null()).spawn()?;
        Ok(Self { child, log })
    }

    /// Kills it outright, as a crash would, and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop, as an operator's SIGTERM does; does not wait.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "kill -TERM {} failed",
            self.child.id()
        );
    }

    /// Waits until it has exited.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }

    /// How it exited, once it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Where its log goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log, oldest first, for a failing assertion.
    pub fn log_tail(&self, lines: usize) -> Vec<String> {
        let log = self.log();
        let mut tail: Vec<String> = log.lines().rev().take(lines).map(str::to_owned).collect();
        tail.reverse();
        tail
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_to_its_file_and_is_killed_when_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let mut command = Command::new("sh");
        command.args(["-c", "echo started; exec sleep 600"]);
        let mut service = Service::start(command, dir.path().join("sh.log")).expect("sh");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while service.log().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no log line");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(service.log_tail(5), vec!["started".to_owned()]);
        assert!(service.is_running());
        let pid = service.child.id();
        drop(service);
        // Reaped: no such process any more.
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .expect("kill -0");
        assert!(!alive.success(), "{pid} still runs");
    }
}
