//! Windows leaf of the `command` agent: the program runs in a Job Object of its own, and the job is what
//! is killed.
//!
//! The program is created with `CREATE_SUSPENDED`, assigned to a new job, and only then is its main
//! thread resumed: it cannot run a single instruction, let alone start a child, outside the job, and
//! every process it starts afterwards is in the job too. `CreateProcessW` is called directly because it
//! is the only documented way to get the main thread's handle (std's `ChildExt::main_thread_handle` is
//! unstable; enumerating threads is racy). The job is terminated explicitly with `TerminateJobObject`,
//! at the moments the parent module names — and it is created with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`,
//! so when the worker dies by any means (a crash, `TerminateProcess`, a killed service), the system
//! closes its only handle to the job and ends every process in it: no agent outlives its worker to run
//! beside the resumed turn. The handle is not inheritable, so no agent holds the job open.
//! `CREATE_NO_WINDOW` keeps a console program from flashing a window.
//!
//! The program is found the way `CreateProcessW` finds the first token of a command line (no application
//! name): a bare name is searched in Herald's own directory, the current directory, the system
//! directories and `PATH`, with `.exe` appended when it has no extension; a `.bat`/`.cmd` file runs
//! through `cmd.exe`. Configure a full path to avoid surprises.
//!
//! Only the three pipe ends are inherited (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`), so two turns starting at
//! once cannot leak each other's pipes. The command line is quoted the way the C runtime parses it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::os::windows::process::ExitStatusExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::Arc;

use tokio::sync::oneshot;
use windows_sys::Win32::Foundation::{
    ERROR_BAD_EXE_FORMAT, HANDLE, HANDLE_FLAG_INHERIT, SetHandleInformation, WAIT_OBJECT_0,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation, SetInformationJobObject,
    TerminateJobObject,
};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, CreateProcessW,
    DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT, GetExitCodeProcess, INFINITE,
    InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
    PROCESS_INFORMATION, ResumeThread, STARTF_USESTDHANDLES, STARTUPINFOEXW, TerminateProcess,
    UpdateProcThreadAttribute, WaitForSingleObject,
};

/// Exit code given to the processes of a killed tree.
const KILLED_EXIT_CODE: u32 = 1;

/// A started program: its pipes, the tree guard and the exit of the program itself.
pub(super) struct Spawned {
    /// Kills the whole tree when dropped.
    pub(super) tree: Tree,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: ChildStdout,
    pub(super) stderr: ChildStderr,
    /// Resolves once the program has exited and what it left running has been killed.
    pub(super) exited: oneshot::Receiver<io::Result<ExitStatus>>,
}

/// The program's process tree. Dropping it kills every process still in it.
#[derive(Debug)]
pub(super) struct Tree {
    job: Arc<Job>,
}

impl Tree {
    /// Kills every process of the tree (idempotent).
    pub(super) fn kill(&self) {
        self.job.terminate();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Job Object handle, closed on drop. [`Job::terminate`] kills its processes; so does closing the
/// last handle (`KILL_ON_JOB_CLOSE`), which is what happens when the worker dies.
#[derive(Debug)]
struct Job(OwnedHandle);

impl Job {
    fn new() -> io::Result<Job> {
        // SAFETY: null security attributes and a null name are documented as valid (an unnamed job with
        // default security, whose handle is not inheritable); a null return is handled below.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `handle` is a fresh, valid job handle that nothing else owns.
        let job = Job(unsafe { OwnedHandle::from_raw_handle(handle) });
        // SAFETY: an all-zero JOBOBJECT_EXTENDED_LIMIT_INFORMATION is a valid value (no limits).
        let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        let size = u32::try_from(std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>())
            .map_err(io::Error::other)?;
        // SAFETY: the handle is valid; `limits` is a live JOBOBJECT_EXTENDED_LIMIT_INFORMATION of `size`
        // bytes, the structure this information class takes, read only during the call.
        let ok = unsafe {
            SetInformationJobObject(
                job.raw(),
                JobObjectExtendedLimitInformation,
                std::ptr::from_ref(&limits).cast(),
                size,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(job)
    }

    fn assign(&self, process: &OwnedHandle) -> io::Result<()> {
        // SAFETY: both handles are valid and owned for the duration of the call.
        let ok = unsafe { AssignProcessToJobObject(self.raw(), process.as_raw_handle()) };
        if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Terminates every process in the job. Terminating an empty job is a no-op.
    fn terminate(&self) {
        // SAFETY: the job handle is valid (owned by `self`) and has all access rights, including
        // JOB_OBJECT_TERMINATE.
        unsafe { TerminateJobObject(self.raw(), KILLED_EXIT_CODE) };
    }

    fn raw(&self) -> HANDLE {
        self.0.as_raw_handle()
    }
}

/// An anonymous pipe: synchronous on both ends, neither end inheritable.
fn pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let mut read: HANDLE = std::ptr::null_mut();
    let mut write: HANDLE = std::ptr::null_mut();
    // SAFETY: both out-pointers are valid; null security attributes mean "not inheritable".
    let ok = unsafe { CreatePipe(&mut read, &mut write, std::ptr::null(), 0) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CreatePipe succeeded, so both handles are valid and ours alone.
    Ok(unsafe {
        (
            OwnedHandle::from_raw_handle(read),
            OwnedHandle::from_raw_handle(write),
        )
    })
}

fn set_inheritable(handle: &OwnedHandle) -> io::Result<()> {
    // SAFETY: the handle is valid; only its inherit flag changes.
    let ok =
        unsafe { SetHandleInformation(handle.as_raw_handle(), HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A `PROC_THREAD_ATTRIBUTE_LIST` holding one attribute, deleted on drop.
struct AttributeList {
    /// `usize` elements keep the buffer pointer-aligned, as the list requires.
    buffer: Vec<usize>,
}

impl AttributeList {
    fn new() -> io::Result<AttributeList> {
        let mut size = 0usize;
        // SAFETY: a null list with a valid size pointer asks for the required size; the call "fails" with
        // ERROR_INSUFFICIENT_BUFFER by design.
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        if size == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0usize; size.div_ceil(size_of::<usize>())];
        // SAFETY: `buffer` is writable, aligned and at least `size` bytes long.
        let ok = unsafe { InitializeProcThreadAttributeList(buffer.as_mut_ptr().cast(), 1, 0, &mut size) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(AttributeList { buffer })
    }

    fn as_ptr(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buffer.as_mut_ptr().cast()
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        // SAFETY: the list was initialised by InitializeProcThreadAttributeList and is deleted once.
        unsafe { DeleteProcThreadAttributeList(self.as_ptr()) };
    }
}

/// Starts `program args…` suspended, puts it in a new job, then resumes it.
pub(super) fn spawn(program: &OsStr, args: &[OsString]) -> io::Result<Spawned> {
    let mut command_line = command_line(program, args)?;
    let (child_stdin, our_stdin) = pipe()?;
    let (our_stdout, child_stdout) = pipe()?;
    let (our_stderr, child_stderr) = pipe()?;
    for handle in [&child_stdin, &child_stdout, &child_stderr] {
        set_inheritable(handle)?;
    }
    let job = Job::new()?;

    let inherited: [HANDLE; 3] = [
        child_stdin.as_raw_handle(),
        child_stdout.as_raw_handle(),
        child_stderr.as_raw_handle(),
    ];
    let mut attributes = AttributeList::new()?;
    // SAFETY: the list is initialised for one attribute; `inherited` outlives every use of the list (it
    // is dropped after CreateProcessW below) and the size is that of the array.
    let ok = unsafe {
        UpdateProcThreadAttribute(
            attributes.as_ptr(),
            0,
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
            inherited.as_ptr().cast(),
            size_of_val(&inherited),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }

    // SAFETY: STARTUPINFOEXW is a plain C struct for which all-zero is a valid (empty) value.
    let mut startup: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    startup.StartupInfo.cb = u32::try_from(size_of::<STARTUPINFOEXW>()).map_err(io::Error::other)?;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = inherited[0];
    startup.StartupInfo.hStdOutput = inherited[1];
    startup.StartupInfo.hStdError = inherited[2];
    startup.lpAttributeList = attributes.as_ptr();
    // SAFETY: PROCESS_INFORMATION is a plain C struct for which all-zero is a valid value.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    let flags =
        CREATE_SUSPENDED | CREATE_NO_WINDOW | CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
    // SAFETY: `command_line` is a mutable, NUL-terminated UTF-16 buffer (CreateProcessW may write to it);
    // `startup` is a fully initialised STARTUPINFOEXW whose `cb` says so, as EXTENDED_STARTUPINFO_PRESENT
    // requires; the handles it names are valid and inheritable; null application name, attributes,
    // environment and directory mean "parse the command line", defaults, ours and ours.
    let ok = unsafe {
        CreateProcessW(
            std::ptr::null(),
            command_line.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            1,
            flags,
            std::ptr::null(),
            std::ptr::null(),
            &startup.StartupInfo,
            &mut info,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CreateProcessW succeeded, so both handles are valid and ours to close.
    let (process, thread) = unsafe {
        (
            OwnedHandle::from_raw_handle(info.hProcess),
            OwnedHandle::from_raw_handle(info.hThread),
        )
    };
    // The child has its copies; ours must go, or the pipes never report end-of-file.
    drop(attributes);
    drop((child_stdin, child_stdout, child_stderr));

    if let Err(e) = job.assign(&process) {
        // SAFETY: `process` is a valid process handle with all access rights; the child is suspended and
        // has started nothing.
        unsafe { TerminateProcess(process.as_raw_handle(), KILLED_EXIT_CODE) };
        return Err(e);
    }
    let job = Arc::new(job);
    let tree = Tree {
        job: Arc::clone(&job),
    };
    // SAFETY: `thread` is the valid handle of the child's main thread, created suspended.
    if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
        return Err(io::Error::last_os_error()); // `tree` drops here and terminates the job.
    }
    drop(thread);

    let (sender, exited) = oneshot::channel();
    std::thread::Builder::new()
        .name("herald-command-wait".to_owned())
        .spawn(move || {
            let status = wait(&process);
            // The program is gone: end whatever it left running, so the pipes close.
            job.terminate();
            let _ = sender.send(status);
        })?; // On failure `tree` drops and terminates the job.

    Ok(Spawned {
        tree,
        stdin: ChildStdin::from(our_stdin),
        stdout: ChildStdout::from(our_stdout),
        stderr: ChildStderr::from(our_stderr),
        exited,
    })
}

/// Blocks until `process` exits and returns its exit status.
fn wait(process: &OwnedHandle) -> io::Result<ExitStatus> {
    // SAFETY: `process` is a valid process handle with SYNCHRONIZE access.
    if unsafe { WaitForSingleObject(process.as_raw_handle(), INFINITE) } != WAIT_OBJECT_0 {
        return Err(io::Error::last_os_error());
    }
    let mut code = 0u32;
    // SAFETY: `process` is valid with PROCESS_QUERY_INFORMATION access; `code` is a valid out-pointer.
    if unsafe { GetExitCodeProcess(process.as_raw_handle(), &mut code) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ExitStatus::from_raw(code))
}

/// Whether a spawn error means "this file is not something the OS can run".
pub(super) fn is_bad_executable(error: &io::Error) -> bool {
    error.raw_os_error() == Some(ERROR_BAD_EXE_FORMAT as i32)
}

/// The NUL-terminated UTF-16 command line for `program args…`, quoted so that the C runtime's parser
/// (`CommandLineToArgvW` rules) gives back exactly `args`.
fn command_line(program: &OsStr, args: &[OsString]) -> io::Result<Vec<u16>> {
    let mut line = Vec::new();
    let program: Vec<u16> = program.encode_wide().collect();
    if program.contains(&u16::from(b'"')) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a program name cannot contain `\"`",
        ));
    }
    line.push(u16::from(b'"'));
    line.extend_from_slice(&program);
    line.push(u16::from(b'"'));
    for arg in args {
        line.push(u16::from(b' '));
        push_quoted(&mut line, &arg.encode_wide().collect::<Vec<u16>>());
    }
    if line.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a command line cannot contain NUL",
        ));
    }
    line.push(0);
    Ok(line)
}

/// Appends `arg`, quoted if needed: backslashes are literal except before a `"`, where they are doubled.
fn push_quoted(line: &mut Vec<u16>, arg: &[u16]) {
    let special = |c: &u16| {
        [b' ', b'\t', b'\n', 0x0b, b'"']
            .iter()
            .any(|s| u16::from(*s) == *c)
    };
    if !arg.is_empty() && !arg.iter().any(special) {
        line.extend_from_slice(arg);
        return;
    }
    let backslash = u16::from(b'\\');
    line.push(u16::from(b'"'));
    let mut backslashes = 0usize;
    for &c in arg {
        if c == backslash {
            backslashes += 1;
        } else {
            if c == u16::from(b'"') {
                line.extend(std::iter::repeat_n(backslash, backslashes + 1));
            }
            backslashes = 0;
        }
        line.push(c);
    }
    line.extend(std::iter::repeat_n(backslash, backslashes));
    line.push(u16::from(b'"'));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(program: &str, args: &[&str]) -> String {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let mut wide = command_line(OsStr::new(program), &args).unwrap();
        assert_eq!(wide.pop(), Some(0));
        String::from_utf16(&wide).unwrap()
    }

    #[test]
    fn command_line_quotes_like_the_c_runtime_parses() {
        assert_eq!(line(r"C:\a b\x.exe", &[]), r#""C:\a b\x.exe""#);
        assert_eq!(line("x", &["plain", ""]), r#""x" plain """#);
        assert_eq!(line("x", &["a b", r"c:\dir\"]), r#""x" "a b" c:\dir\"#);
        assert_eq!(line("x", &[r"tail\ x\"]), r#""x" "tail\ x\\""#);
        assert_eq!(line("x", &[r#"say "hi""#]), r#""x" "say \"hi\"""#);
        assert_eq!(line("x", &[r#"a\"b"#]), r#""x" "a\\\"b""#);
    }

    #[test]
    fn command_line_rejects_nul_and_quoted_programs() {
        assert!(command_line(OsStr::new("a\"b"), &[]).is_err());
        assert!(command_line(OsStr::new("x"), &[OsString::from("a\0b")]).is_err());
    }
}
