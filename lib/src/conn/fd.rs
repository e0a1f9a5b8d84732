//! Raw file descriptors as async streams, with zero-copy sending of file content.
//!
//! A pipe, socket or terminal is switched to non-blocking mode and driven by tokio's
//! reactor. A descriptor the reactor cannot watch (a regular file or `/dev/null`, as when
//! a test redirects stdin from a file) is used with plain blocking calls: those never wait
//! long. The original blocking flag is put back when the stream is dropped, since the
//! open file description may be shared with the parent process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Where a session's replies go. Beyond writing bytes, an output may be able to take
/// bytes straight from a file (`sendfile`), which GET uses for local content.
pub trait Output: AsyncWrite + Unpin + Send {
    /// Whether [`Output::poll_send_file`] can work at all.
    fn can_send_file(&self) -> bool {
        false
    }
    /// Move up to `len` bytes of `file`, starting at `offset`, into the output without
    /// copying them through user space; returns how many moved (0: the file ended).
    fn poll_send_file(
        &mut self,
        _cx: &mut Context<'_>,
        _file: BorrowedFd<'_>,
        _offset: u64,
        _len: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// Any writer, without zero-copy.
pub struct Plain<W>(pub W);

impl<W: AsyncWrite + Unpin + Send> AsyncWrite for Plain<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
impl<W: AsyncWrite + Unpin + Send> Output for Plain<W> {}

impl Output for tokio::io::DuplexStream {}
impl Output for tokio::io::WriteHalf<tokio::io::DuplexStream> {}

impl Output for tokio::net::TcpStream {
    fn can_send_file(&self) -> bool {
        true
    }
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            let out = self.as_raw_fd();
            match self.try_io(Interest::WRITABLE, || send_file(out, file, offset, len)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl Output for tokio::net::UnixStream {
    fn can_send_file(&self) -> bool {
        true
    }
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            let out = self.as_raw_fd();
            match self.try_io(Interest::WRITABLE, || send_file(out, file, offset, len)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

/// `sendfile(2)`: from `file` at `offset` into `out`.
fn send_file(out: RawFd, file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
    // SAFETY: both descriptors are open for the duration of the call; `off` is ours.
    let n = unsafe { libc::sendfile(out, file.as_raw_fd(), &mut off, len) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

enum Mode {
    Reactor(AsyncFd<OwnedFd>),
    Blocking(OwnedFd),
}

/// An owned file descriptor as an async reader or writer.
pub struct FdStream {
    mode: Mode,
    /// The `O_NONBLOCK` state found, restored on drop.
    was_nonblocking: bool,
}

fn get_flags(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL on a descriptor we hold.
    let f = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if f < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(f)
    }
}

fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    let f = get_flags(fd)?;
    let f = if on {
        f | libc::O_NONBLOCK
    } else {
        f & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL with flags derived from F_GETFL.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, f) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pipe capacity asked for: with the default 64 KiB a 1 GiB transfer takes 16384
/// wake-ups; 1 MiB (the unprivileged maximum by default) cuts that sixteenfold.
const PIPE_SIZE: libc::c_int = 1024 * 1024;

/// Enlarge a pipe's buffer; anything else, or a refusal, is left as it is.
fn grow_pipe(fd: RawFd) {
    // SAFETY: fstat into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return;
    }
    // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer.
    let r = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) };
    if r < 0 {
        tracing::debug!("pipe buffer not enlarged: {}", io::Error::last_os_error());
    }
}

impl FdStream {
    /// Wrap `fd` for reading (`for_write` false) or writing. Must be called inside a
    /// tokio runtime.
    pub fn new(fd: OwnedFd, for_write: bool) -> io::Result<FdStream> {
        let raw = fd.as_raw_fd();
        grow_pipe(raw);
        let was_nonblocking = get_flags(raw)? & libc::O_NONBLOCK != 0;
        set_nonblocking(raw, true)?;
        let interest = if for_write {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // SAFETY: the OwnedFd is valid and moves into the AsyncFd, which closes it last.
        match unsafe { AsyncFd::register_with_interest(fd, interest) } {
            Ok(a) => Ok(FdStream {
                mode: Mode::Reactor(a),
                was_nonblocking,
            }),
            Err(e) => {
                let (fd, cause) = e.into_parts();
                if cause.raw_os_error() != Some(libc::EPERM) {
                    let _ = set_nonblocking(raw, was_nonblocking);
                    return Err(cause);
                }
                // Regular files and the like: always ready, use them blocking.
                set_nonblocking(raw, false)?;
                Ok(FdStream {
                    mode: Mode::Blocking(fd),
                    was_nonblocking,
                })
            }
        }
    }

    fn raw(&self) -> RawFd {
        match &self.mode {
            Mode::Reactor(a) => a.as_raw_fd(),
            Mode::Blocking(fd) => fd.as_raw_fd(),
        }
    }

    /// Whether the reactor drives this descriptor (false: plain blocking calls).
    pub fn is_reactor_driven(&self) -> bool {
        matches!(self.mode, Mode::Reactor(_))
    }

    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        write: bool,
        mut op: impl FnMut(RawFd) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        match &self.mode {
            Mode::Blocking(fd) => loop {
                match op(fd.as_raw_fd()) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return Poll::Ready(r),
                }
            },
            Mode::Reactor(a) => loop {
                let mut guard = if write {
                    ready!(a.poll_write_ready(cx))?
                } else {
                    ready!(a.poll_read_ready(cx))?
                };
                match guard.try_io(|inner| op(inner.as_raw_fd())) {
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(r) => return Poll::Ready(r),
                    Err(_would_block) => continue,
                }
            },
        }
    }
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for FdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled();
        let n = ready!(self.poll_io(cx, false, |fd| {
            // SAFETY: `dst` is valid writable memory of the given length.
            cvt(unsafe { libc::read(fd, dst.as_mut_ptr().cast(), dst.len()) })
        }))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(cx, true, |fd| {
            // SAFETY: `buf` is valid readable memory of the given length.
            cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
        })
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Output for FdStream {
    fn can_send_file(&self) -> bool {
        true
    }
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.poll_io(cx, true, |out| send_file(out, file, offset, len))
    }
}

impl AsFd for FdStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.mode {
            Mode::Reactor(a) => a.get_ref().as_fd(),
            Mode::Blocking(fd) => fd.as_fd(),
        }
    }
}

impl Drop for FdStream {
    fn drop(&mut self) {
        let _ = set_nonblocking(self.raw(), self.was_nonblocking);
    }
}

/// Duplicate `fd` (close-on-exec), so the copy can be owned and closed independently.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a fresh descriptor or -1.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is a new descriptor nobody else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) })
}

/// Take the process's stdin and stdout for a protocol: returns owned copies of fds 0 and
/// 1, then points fd 0 at `/dev/null` and fd 1 at stderr, so nothing else in the process
/// (or a child it starts) can read the protocol's input or write into its output (what
/// git-annex does before proxying).
pub fn take_stdio() -> io::Result<(OwnedFd, OwnedFd)> {
    let input = dup_cloexec(0)?;
    let output = dup_cloexec(1)?;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors; the sources are valid.
    unsafe {
        if libc::dup2(null.as_raw_fd(), 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((input, output))
}
