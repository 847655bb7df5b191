#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation

/// A failure on a connection's socket.
enum SocketError: Error, Equatable, CustomStringConvertible {
    /// The deadline passed before the data arrived (or could be sent).
    case timeout
    /// The peer closed the connection (or reset it).
    case closed
    case failed(String)

    var description: String {
        switch self {
        case .timeout: return "timed out"
        case .closed: return "connection closed by the peer"
        case let .failed(s): return s
        }
    }

    static func errno(_ what: String) -> SocketError {
        let e = Glibc.errno
        if e == EPIPE || e == ECONNRESET { return .closed }
        if e == EAGAIN || e == EWOULDBLOCK { return .timeout }
        return .failed("\(what): \(String(cString: strerror(e)))")
    }
}

/// Monotonic clock, nanoseconds.
@inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// Seconds to nanoseconds (saturating).
func nanoseconds(_ seconds: Double) -> UInt64 {
    seconds <= 0 ? 0 : seconds >= 1e9 ? UInt64(1e18) : UInt64(seconds * 1e9)
}

/// One accepted TCP connection: a blocking socket read through `poll` with deadlines and written
/// with a send timeout (SO_SNDTIMEO), so a client that stops reading or writing cannot hold a
/// thread forever. Bytes read and not yet consumed stay in `buffer` (pipelined requests).
final class Connection {
    let fd: Int32
    /// Received bytes; `buffer[start...]` are not consumed yet.
    var buffer: [UInt8] = []
    var start = 0
    private(set) var isClosed = false
    let peer: String

    init(fd: Int32, peer: String, sendTimeout: Double) {
        self.fd = fd
        self.peer = peer
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: Int(sendTimeout), tv_usec: Int((sendTimeout - Double(Int(sendTimeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    func close() {
        if !isClosed { isClosed = true; _ = Glibc.close(fd) }
    }

    var available: Int { buffer.count - start }

    /// Drops the consumed prefix of the buffer once it is large.
    func compact() {
        if start > 0 && (start == buffer.count || start > 65536) {
            buffer.removeFirst(start)
            start = 0
        }
    }

    /// Waits until the socket is readable or `deadline` (monotonic ns) passes.
    func waitReadable(until deadline: UInt64) throws {
        while true {
            let t = now()
            if t >= deadline { throw SocketError.timeout }
            let ms = Int32(min(UInt64(Int32.max), (deadline - t + 999_999) / 1_000_000))
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, ms)
            if r > 0 { return }
            if r < 0 && Glibc.errno != EINTR { throw SocketError.errno("poll") }
        }
    }

    /// Reads what is available (at least one byte) into the buffer, waiting until `deadline`.
    /// Returns false at end of stream.
    @discardableResult
    func fill(until deadline: UInt64) throws -> Bool {
        compact()
        try waitReadable(until: deadline)
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { buffer.append(contentsOf: chunk[0..<n]); return true }
            if n == 0 { return false }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { try waitReadable(until: deadline); continue }
            if e == ECONNRESET { return false }
            throw SocketError.errno("recv")
        }
    }

    /// Sends all bytes (MSG_NOSIGNAL: a closed peer is an error, never SIGPIPE).
    func write(_ bytes: [UInt8]) throws {
        guard !isClosed else { throw SocketError.closed }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n > 0 { done += n; continue }
            if n < 0 && Glibc.errno == EINTR { continue }
            throw n == 0 ? SocketError.closed : SocketError.errno("send")
        }
    }

    func write(_ s: String) throws { try write(Array(s.utf8)) }

    /// Whether the peer has gone: hung up, reset, or half-closed its side (a client that closes
    /// the connection while waiting for a response). Data waiting to be read (a pipelined
    /// request) is not a hang-up. Does not block.
    func peerHasGone() -> Bool {
        if isClosed { return true }
        // POLLRDHUP (Linux): the peer shut down its writing side.
        let rdhup: Int16 = 0x2000
        var p = pollfd(fd: fd, events: Int16(POLLIN) | rdhup, revents: 0)
        let r = poll(&p, 1, 0)
        guard r > 0 else { return false }
        if p.revents & (Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL) | rdhup) != 0 { return true }
        if p.revents & Int16(POLLIN) != 0 {
            var byte: UInt8 = 0
            let n = recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
            if n == 0 { return true }
            if n < 0 && Glibc.errno != EAGAIN && Glibc.errno != EWOULDBLOCK && Glibc.errno != EINTR { return true }
        }
        return false
    }

    /// Closes after an error response: stops writing, then reads and drops what the client still
    /// sends for up to `seconds` (so that the kernel does not answer unread data with a reset that
    /// destroys the response before the client reads it).
    func lingeringClose(seconds: Double = 1) {
        guard !isClosed else { return }
        shutdown(fd, Int32(SHUT_WR))
        let deadline = now() + nanoseconds(seconds)
        var drained = 0
        while drained < 4 << 20 {
            buffer.removeAll(keepingCapacity: true); start = 0
            guard (try? fill(until: deadline)) == true else { break }
            drained += buffer.count
        }
        close()
    }
}

/// A listening TCP socket.
final class Listener {
    let fd: Int32
    let port: Int
    let host: String

    /// Binds `host` (an IPv4 or IPv6 literal, or "localhost") and `port` (0: any free port).
    init(host: String, port: Int, backlog: Int32 = 128) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var info: UnsafeMutablePointer<addrinfo>?
        let name = host == "localhost" ? "127.0.0.1" : host
        let rc = getaddrinfo(name, String(port), &hints, &info)
        guard rc == 0, let first = info else {
            throw ServerError.bind("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(info) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.pointee.ai_protocol)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 || listen(fd, backlog) != 0 {
                lastError = String(cString: strerror(errno))
                _ = Glibc.close(fd)
                continue
            }
            self.fd = fd
            self.host = host
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) } }
            self.port = Listener.port(of: &storage)
            return
        }
        throw ServerError.bind("cannot listen on \(host):\(port): \(lastError)")
    }

    static func port(of storage: inout sockaddr_storage) -> Int {
        withUnsafePointer(to: &storage) { p -> Int in
            if Int32(p.pointee.ss_family) == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    static func describe(_ storage: inout sockaddr_storage) -> String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var serv = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, len, &host, socklen_t(host.count), &serv, socklen_t(serv.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        return rc == 0 ? "\(String(cString: host)):\(String(cString: serv))" : "?"
    }

    /// Waits up to `timeout` seconds for a connection; nil if none arrived (or the accept failed
    /// in a way worth retrying).
    func accept(timeout: Double) -> (Int32, String)? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { return nil }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let c = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(fd, $0, &len) }
        }
        if c >= 0 { _ = fcntl(c, F_SETFD, FD_CLOEXEC) }
        guard c >= 0 else {
            // EMFILE/ENFILE: out of descriptors. Back off briefly rather than spin.
            if errno == EMFILE || errno == ENFILE { usleep(50_000) }
            return nil
        }
        return (c, Listener.describe(&storage))
    }

    func close() { _ = Glibc.close(fd) }
}
