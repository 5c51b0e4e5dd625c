//! Control-plane processes: started with their output in a log file, and
//! ended (kill by PID, then reaped) when dropped — or, if the owner is never
//! dropped (a `static` shared environment), when the test binary exits.
//! A process can be killed and started again with the same command line.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::Error;

/// A running child process with its log.
pub(crate) struct Process {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    child: Child,
    log: PathBuf,
    /// Kills `child` if our process exits without dropping this.
    watchdog: Option<Watchdog>,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr appended to
    /// `<dir>/<name>.log`.
    pub(crate) fn spawn<I, S>(
        name: &'static str,
        program: &Path,
        args: I,
        dir: &Path,
    ) -> Result<Process, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = dir.join(format!("{name}.log"));
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let (child, watchdog) = launch(program, &args, &log)?;
        Ok(Process {
            name,
            program: program.to_path_buf(),
            args,
            child,
            log,
            watchdog,
        })
    }

    /// Kills the process (SIGKILL, as a crash would) and reaps it; a no-op
    /// when it has already exited.
    pub(crate) fn kill(&mut self) {
        // Same order as in drop: no watchdog may outlive a reaped PID.
        drop(self.watchdog.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the process again with its first command line, appending to
    /// the same log; kills the current one first if it still runs.
    pub(crate) fn respawn(&mut self) -> Result<(), Error> {
        self.kill();
        let (child, watchdog) = launch(&self.program, &self.args, &self.log)?;
        self.child = child;
        self.watchdog = watchdog;
        Ok(())
    }

    /// Fails if the process has exited.
    pub(crate) fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status,
                log: self.log.clone(),
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(Error::io(format!("waiting for {}", self.name))(e)),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `program` with its output appended to `log` (a restarted process
/// keeps the earlier run's lines), plus its watchdog.
fn launch(
    program: &Path,
    args: &[OsString],
    log: &Path,
) -> Result<(Child, Option<Watchdog>), Error> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io(format!("opening {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io(format!("cloning {}", log.display())))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(Error::io(format!("starting {}", program.display())))?;
    // The watchdog goes first on kill: were it to run its kill after we
    // reaped the child, the PID could already belong to another process.
    let watchdog = Watchdog::spawn(
        "kill -9 \"$1\" 2>/dev/null",
        OsStr::new(&child.id().to_string()),
    )
    .ok();
    Ok((child, watchdog))
}

/// A `sh` that runs `action` (with `$1` set) once its stdin closes, which
/// the kernel does when our process exits. Statics are never dropped, so
/// without it a shared environment would outlive the test binary. Dropping
/// the watchdog cancels the action.
pub(crate) struct Watchdog {
    shell: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog that runs `action` with `$1 = arg`.
    pub(crate) fn spawn(action: &str, arg: &OsStr) -> std::io::Result<Watchdog> {
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(format!("cat >/dev/null; {action}; exit 0"))
            .arg("sluice-testenv-watchdog")
            .arg(arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = shell.stdin.take();
        Ok(Watchdog { shell, stdin })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Killed before its stdin closes, the shell never runs the action;
        // `cat` then sees EOF and exits on its own.
        let _ = self.shell.kill();
        let _ = self.shell.wait();
        drop(self.stdin.take());
    }
}

/// `N` distinct loopback ports that were free a moment ago. Another process
/// may take one before it is used; see [`Error::is_port_clash`].
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    // All listeners are held until every port is read, so the ports differ.
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(Error::io("binding a free loopback port"))?;
        *port = listener
            .local_addr()
            .map_err(Error::io("reading a bound port"))?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}
