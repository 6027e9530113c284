"""
A UDP port that moves datagrams in batches: C{recvmmsg(2)} takes every datagram waiting (up to
L{BATCH}) in one system call, and the replies written while they are handled leave together
through one C{sendmmsg(2)}. Two system calls a datagram are most of what a bare Twisted UDP
server spends; here a busy tracker pays two a batch.

Linux only, through cffi (built into PyPy, a wheel on CPython). L{listen_udp} falls back to the
reactor's own C{listenUDP} wherever either is missing.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import abstract, udp
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

log = Logger()

#: Datagrams taken, and replies sent, per system call: a tracker's load comes as many small
#: datagrams, and past this many one more call costs little beside handling them.
BATCH = 64
#: Room for any socket address (struct sockaddr_storage).
_NAME_SIZE = 128
#: Nothing more to read, or a signal: try again on the next wake-up.
_READ_AGAIN = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
#: An ICMP error for an earlier datagram, reported on the next read: nothing to act on.
_READ_IGNORED = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})

_DECLARATIONS = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen;
    int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags, void *timeout);
int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags);
"""


def _load() -> tuple[Any, Any] | None:
    """cffi's FFI and the C library's recvmmsg/sendmmsg, or None where there are none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        from cffi import FFI
    except ImportError:
        return None
    ffi = FFI()
    ffi.cdef(_DECLARATIONS)
    try:
        libc = ffi.dlopen(None)
        # Looked up now, so that a C library without them falls back here, not on a datagram.
        for name in ("recvmmsg", "sendmmsg"):
            getattr(libc, name)
    except (OSError, AttributeError):
        return None
    return ffi, libc


_C = _load()
#: Whether this system can batch (Linux with cffi); where not, L{listen_udp} is listenUDP.
AVAILABLE = _C is not None


class _Messages:
    """
    C{count} message headers, each with its own slot of C{size} bytes for a datagram and one
    for an address, wired once. Fields change afterwards through integer views of the headers'
    memory, at Python's speed for an index rather than cffi's for an attribute.
    """

    def __init__(self, count: int, size: int) -> None:
        assert _C is not None
        ffi, _ = _C
        self._ffi = ffi
        self.size = size
        self.headers = ffi.new("struct mmsghdr[]", count)
        self._vectors = ffi.new("struct iovec[]", count)
        self._data = ffi.new("char[]", count * size)
        self._names = ffi.new("char[]", count * _NAME_SIZE)
        for i in range(count):
            header = self.headers[i].msg_hdr
            header.msg_name = self._names + i * _NAME_SIZE
            header.msg_namelen = _NAME_SIZE
            header.msg_iov = self._vectors + i
            header.msg_iovlen = 1
            self._vectors[i].iov_base = self._data + i * size
            self._vectors[i].iov_len = size
        #: The headers as unsigned ints: [i * stride + field] is header i's field.
        self.words = memoryview(ffi.buffer(self.headers)).cast("I")
        self.stride = ffi.sizeof("struct mmsghdr") // 4
        self.namelen = ffi.offsetof("struct mmsghdr", "msg_hdr", "msg_namelen") // 4
        self.length = ffi.offsetof("struct mmsghdr", "msg_len") // 4
        #: The vectors as size_ts (pointer-sized on Linux): [2 * i + 1] is vector i's length.
        self.vector_words = memoryview(ffi.buffer(self._vectors)).cast("P")
        self.data = memoryview(ffi.buffer(self._data))
        #: Where the datagrams' memory starts.
        self.address = int(ffi.cast("uintptr_t", self._data))
        self.names = memoryview(ffi.buffer(self._names))

    # Replies are packed end to end rather than a slot each: the kernel copies from fewer pages.

    def put_views(
        self,
        replies: list[tuple[bytes, Any]],
        raws: dict[tuple[str, int], bytes],
        encode: Callable[[Any], bytes],
    ) -> None:
        """Copy C{replies} in, each with its socket address (from C{raws}, or encoded),
        through the integer and byte views: the quicker way on CPython."""
        words = self.words
        vectors = self.vector_words
        data = self.data
        names = self.names
        stride = self.stride
        namelen = self.namelen
        base = self.address
        start = 0
        for i, (datagram, addr) in enumerate(replies):
            raw = raws.get(addr)
            if raw is None:
                raw = encode(addr)
            end = start + len(datagram)
            data[start:end] = datagram
            vectors[2 * i] = base + start
            vectors[2 * i + 1] = len(datagram)
            start = end
            names[i * _NAME_SIZE : i * _NAME_SIZE + len(raw)] = raw
            words[i * stride + namelen] = len(raw)

    def put_cdata(
        self,
        replies: list[tuple[bytes, Any]],
        raws: dict[tuple[str, int], bytes],
        encode: Callable[[Any], bytes],
    ) -> None:
        """L{put_views} through cffi's own objects, which PyPy compiles to plain stores where
        a memoryview's slice costs it four times as much."""
        memmove = self._ffi.memmove
        data = self._data
        names = self._names
        vectors = self._vectors
        headers = self.headers
        start = 0
        for i, (datagram, addr) in enumerate(replies):
            raw = raws.get(addr)
            if raw is None:
                raw = encode(addr)
            size = len(datagram)
            memmove(data + start, datagram, size)
            vector = vectors[i]
            vector.iov_base = data + start
            vector.iov_len = size
            start += size
            memmove(names + i * _NAME_SIZE, raw, len(raw))
            headers[i].msg_hdr.msg_namelen = len(raw)

    put = put_cdata if sys.implementation.name == "pypy" else put_views


class BatchingPort(udp.Port):
    """
    A L{udp.Port} whose reads take up to L{BATCH} datagrams at a time and whose writes, made
    while those are handled, leave together at the end of the batch. A write made at any other
    time (an answer that waited for the store) is sent at once, as Twisted's would be.

    Addresses are trusted as given: a protocol answers the address a datagram came from, so the
    checks Twisted's C{write} makes of every address are skipped.
    """

    #: Clients whose addresses are kept decoded (see L{_remember}).
    remembered = 65536
    #: Bind with C{SO_REUSEPORT}, so that other daemons can bind the same port (see
    #: L{listen_udp}).
    reuse_port = False

    def __init__(
        self,
        port: int,
        proto: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
        reactor: Any = None,
    ) -> None:
        super().__init__(port, proto, interface, maxPacketSize, reactor)
        self._received = _Messages(BATCH, maxPacketSize)
        self._sending = _Messages(BATCH, maxPacketSize)
        #: Replies waiting for the end of the batch: (datagram, address).
        self._pending: list[tuple[bytes, Any]] | None = None
        #: Raw socket addresses as read and the (host, port) each stands for, both ways: a
        #: client sends many datagrams, and is answered at the address it sent from.
        self._hosts: dict[bytes, tuple[str, int]] = {}
        self._raw: dict[tuple[str, int], bytes] = {}

    def createInternetSocket(self) -> socket.socket:
        skt = super().createInternetSocket()
        if self.reuse_port:
            skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return skt

    def doRead(self) -> None:
        ffi, libc = _C  # type: ignore[misc]
        received = self._received
        fd = self.socket.fileno()
        namelen = received.namelen
        length = received.length
        stride = received.stride
        words = received.words
        data = received.data
        names = received.names
        size = received.size
        name_size = 16 if self.addressFamily == socket.AF_INET else 28
        read = 0
        while read < self.maxThroughput:
            count = libc.recvmmsg(fd, received.headers, BATCH, socket.MSG_DONTWAIT, ffi.NULL)
            if count < 0:
                code = ffi.errno
                if code not in _READ_AGAIN and code not in _READ_IGNORED:
                    log.error("UDP: recvmmsg failed: {error}", error=errno.errorcode.get(code))
                return
            pending: list[tuple[bytes, Any]] = []
            self._pending = pending
            try:
                for i in range(count):
                    base = i * stride
                    start = i * size
                    datagram = data[start : start + words[base + length]].tobytes()
                    read += len(datagram)
                    words[base + namelen] = _NAME_SIZE
                    raw = names[i * _NAME_SIZE : i * _NAME_SIZE + name_size].tobytes()
                    addr = self._hosts.get(raw)
                    if addr is None:
                        addr = self._remember(raw)
                    try:
                        self.protocol.datagramReceived(datagram, addr)
                    except BaseException:
                        log.failure("UDP: the protocol failed on a datagram")
            finally:
                self._pending = None
                if pending:
                    self._send(pending)
            if count < BATCH:
                # The queue is empty, most likely: epoll says when it is not.
                return

    def _remember(self, raw: bytes) -> tuple[str, int]:
        if len(self._hosts) >= self.remembered:
            # Many clients, each seen once or twice: start again rather than keep them all.
            self._hosts.clear()
            self._raw.clear()
        port = raw[2] << 8 | raw[3]
        if self.addressFamily == socket.AF_INET:
            addr = (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
        else:
            addr = (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
        self._hosts[raw] = addr
        self._raw[addr] = raw
        return addr

    def write(self, datagram: bytes, addr: Any = None) -> None:
        pending = self._pending
        if pending is None or self._connectedAddr:
            super().write(datagram, addr)
            return
        if len(datagram) > self._sending.size:
            raise MessageLengthError("message too long")
        pending.append((datagram, addr))

    def _send(self, pending: list[tuple[bytes, Any]]) -> None:
        """Send the batch's replies; what the socket refuses is dropped, as UDP may."""
        ffi, libc = _C  # type: ignore[misc]
        sending = self._sending
        sending.put(pending, self._raw, self._encode)
        fd = self.socket.fileno()
        total = len(pending)
        sent = 0
        while sent < total:
            count = libc.sendmmsg(fd, sending.headers + sent, total - sent, socket.MSG_DONTWAIT)
            if count >= 0:
                sent += count
                continue
            code = ffi.errno
            if code == errno.EINTR:
                continue
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                # The send buffer is full: the rest go unanswered and their clients retry.
                self._dropped(total - sent, code)
                return
            # This datagram cannot go (an unreachable address, say): the others still can.
            self._dropped(1, code)
            sent += 1

    def _encode(self, addr: Any) -> bytes:
        """A socket address for an C{addr} not read in this port (a protocol's own choice)."""
        host: str = addr[0]
        port: int = addr[1]
        if self.addressFamily == socket.AF_INET:
            packed = socket.inet_pton(socket.AF_INET, host)
            return (
                socket.AF_INET.to_bytes(2, sys.byteorder)
                + port.to_bytes(2, "big")
                + packed
                + bytes(8)
            )
        packed = socket.inet_pton(socket.AF_INET6, host)
        return (
            socket.AF_INET6.to_bytes(2, sys.byteorder)
            + port.to_bytes(2, "big")
            + bytes(4)
            + packed
            + bytes(4)
        )

    def _dropped(self, count: int, code: int) -> None:
        dropped = getattr(self.protocol, "repliesDropped", None)
        if dropped is not None:
            dropped(count, errno.errorcode.get(code, str(code)))


def listen_udp(
    reactor: Any,
    port: int,
    protocol: DatagramProtocol,
    interface: str = "",
    reuse_port: bool = False,
) -> IListeningPort:
    """
    C{reactor.listenUDP(port, protocol, interface=interface)}, with a L{BatchingPort} where the
    system and the reactor allow one (Linux, cffi, a reactor of file descriptors).

    With C{reuse_port}, the socket is bound with C{SO_REUSEPORT}: several daemons that all ask
    for it share the port, and Linux hands each datagram to one of them by a hash of its
    addresses, so a client's connect and its announces reach the same daemon.
    """
    if AVAILABLE and isinstance(reactor, PosixReactorBase):
        listening = BatchingPort(port, protocol, interface, reactor=reactor)
        listening.reuse_port = reuse_port
        listening.startListening()
        return listening
    if reuse_port:
        return _adopt_reusing_port(reactor, port, protocol, interface)
    return reactor.listenUDP(port, protocol, interface=interface)  # type: ignore[no-any-return]


def _adopt_reusing_port(
    reactor: Any, port: int, protocol: DatagramProtocol, interface: str
) -> IListeningPort:
    """Twisted's own UDP port, on a socket bound here with C{SO_REUSEPORT}."""
    family = socket.AF_INET6 if abstract.isIPv6Address(interface) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, port))
        sock.setblocking(False)
        # The reactor's port works on a duplicate of the descriptor: this one is closed below.
        return reactor.adoptDatagramPort(sock.fileno(), family, protocol)  # type: ignore[no-any-return]
    except OSError as e:
        raise CannotListenError(interface, port, e) from None
    finally:
        sock.close()
