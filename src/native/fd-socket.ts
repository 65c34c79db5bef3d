// Wraps bare socket fds (AF_VSOCK from our addon, or AF_UNIX) in Node's own
// net.Server / net.Socket. Node and libuv have no AF_VSOCK binding, and the
// public entry points (`new net.Socket({ fd })`, `server.listen({ fd })`) ask
// libuv to guess the fd's type first (uv_guess_handle), which answers UNKNOWN
// for vsock and Node then refuses it (ERR_INVALID_FD_TYPE / EINVAL). So this
// module, and ONLY this module, reaches into Node internals:
//
//  1. `process.binding('pipe_wrap')` -> { Pipe, constants: { SOCKET, SERVER } }.
//     `new Pipe(constants.SERVER | constants.SOCKET)` makes a libuv uv_pipe_t
//     handle and `handle.open(fd)` adopts the fd (uv_pipe_open: it only sets
//     O_NONBLOCK and starts using read/write/accept on it, so any SOCK_STREAM
//     socket family works). Unix and vsock fds take exactly the same path here.
//  2. `new net.Socket({ handle })`: the (undocumented) option Node itself uses
//     for accepted connections (net.js onconnection).
//  3. `server._handle = handle; server._listen2(null, -1, -1, backlog, fd)`:
//     `_listen2` is the legacy alias of net.js setupListenHandle, which keeps
//     an existing `_handle` (it is exactly what cluster workers do with a
//     listening handle received from the primary), installs Node's own
//     onconnection, calls uv_listen (listen(2) again on an already listening
//     socket only updates the backlog; queued connections stay) and marks the
//     server listening. From then on it is an ordinary net.Server: 'connection'
//     events with net.Socket objects, close(), ref()/unref(), maxConnections.
//
// Checked present and working on Node 20.20 and 22.23. How a Node upgrade
// could break it (each is checked at first use and reported as FdSocketError,
// never as a crash or a silent mis-wrap):
//  - process.binding is deprecated (DEP0111, "pending deprecation": with
//    --pending-deprecation it prints a warning; a future Node may remove it or
//    drop 'pipe_wrap' from its allow-list; the permission model already
//    refuses it). Then: FdSocketError "process.binding('pipe_wrap') ...".
//  - The Pipe constructor's type constants (SOCKET/SERVER/IPC) could be renamed
//    or the constructor's signature change; open(fd) could start throwing
//    instead of returning a negative uv error code (both are handled).
//  - net internals: `_listen2`, `_handle`, the `handle` option of net.Socket.
//    A missing `_listen2` is detected; a changed meaning would show in
//    fd-socket.test.ts (run it on the Node that ships in the guest).
//  - Ownership: once open() succeeds, libuv owns the fd. Closing the server or
//    destroying the socket closes the fd; never close it yourself afterwards
//    (dup it first if it must outlive the Node object, e.g. across execve).
//    If these functions throw, the fd was NOT adopted and is still the caller's.
//  - The returned objects have no address: server.address() is null, and
//    socket.remoteAddress/localAddress are undefined (Pipe has no
//    getpeername for vsock).
import net from 'node:net';
import util from 'node:util';

export class FdSocketError extends Error {
  override name = 'FdSocketError';
}

interface PipeHandle {
  open(fd: number): number | undefined;
  close(cb?: () => void): void;
}

interface PipeWrap {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number; SERVER: number };
}

interface ServerInternals {
  _handle: PipeHandle | null;
  _listen2(address: string | null, port: number, addressType: number, backlog: number, fd?: number): void;
}

let pipeWrap: PipeWrap | undefined;

/** The internal Pipe binding, checked once; FdSocketError if this Node lacks it. */
function internals(): PipeWrap {
  if (pipeWrap) return pipeWrap;
  const where = `Node ${process.version}`;
  const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
  if (typeof binding !== 'function') {
    throw new FdSocketError(`process.binding is not available in ${where}: cannot wrap socket fds (see fd-socket.ts)`);
  }
  let b: Partial<PipeWrap> | undefined;
  try {
    b = binding.call(process, 'pipe_wrap') as Partial<PipeWrap>;
  } catch (err) {
    throw new FdSocketError(
      `process.binding('pipe_wrap') failed in ${where}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  if (
    typeof b?.Pipe !== 'function' ||
    typeof b.Pipe.prototype?.open !== 'function' ||
    typeof b.constants?.SOCKET !== 'number' ||
    typeof b.constants?.SERVER !== 'number'
  ) {
    throw new FdSocketError(
      `process.binding('pipe_wrap') in ${where} lacks Pipe, Pipe.prototype.open or constants.SOCKET/SERVER`,
    );
  }
  if (typeof (net.Server.prototype as unknown as Partial<ServerInternals>)._listen2 !== 'function') {
    throw new FdSocketError(`net.Server.prototype._listen2 is missing in ${where}: cannot listen on an fd`);
  }
  return (pipeWrap = b as PipeWrap);
}

function checkFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new TypeError(`fd must be a non-negative integer, got ${String(fd)}`);
  }
}

/** A libuv Pipe handle owning fd; throws (fd left to the caller) if libuv refuses it. */
function adopt(fd: number, type: 'SOCKET' | 'SERVER'): PipeHandle {
  checkFd(fd);
  const { Pipe, constants } = internals();
  const handle = new Pipe(constants[type]);
  let rc: number | undefined;
  try {
    rc = handle.open(fd);
  } catch (err) {
    handle.close();
    throw new FdSocketError(`uv_pipe_open(${fd}) failed: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  if (typeof rc === 'number' && rc < 0) {
    handle.close(); // the handle never took the fd: closing it leaves the fd alone
    const code = util.getSystemErrorName(rc);
    throw Object.assign(new FdSocketError(`uv_pipe_open(${fd}) failed: ${code}`), { code, errno: -rc, syscall: 'uv_pipe_open' });
  }
  return handle;
}

/**
 * A net.Server accepting from fd, a socket that is already bound and listening
 * (vsockListen/unixListen, or one inherited across execve). Listening when it
 * returns; each accepted connection is a 'connection' event with a net.Socket.
 * The server owns fd from now on (close() closes it). A listen(2) failure (fd
 * not a socket) arrives as an 'error' event, as with net.Server.listen.
 */
export function serverFromListeningFd(fd: number, options: { backlog?: number } = {}): net.Server {
  const handle = adopt(fd, 'SERVER');
  const server = new net.Server();
  const internal = server as unknown as ServerInternals;
  internal._handle = handle;
  internal._listen2(null, -1, -1, options.backlog ?? 511, fd);
  return server;
}

/**
 * A net.Socket over fd, a connected stream socket; the socket owns fd
 * (destroy() closes it). allowHalfOpen as for net.Socket (default false: the
 * socket ends its writing side when the peer's end arrives).
 */
export function socketFromFd(fd: number, options: { allowHalfOpen?: boolean } = {}): net.Socket {
  const handle = adopt(fd, 'SOCKET');
  const opts = { handle, readable: true, writable: true, allowHalfOpen: options.allowHalfOpen === true };
  return new net.Socket(opts as unknown as net.SocketConstructorOpts);
}
