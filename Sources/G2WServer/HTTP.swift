import Foundation

/// Limits on what a client may send (RFC 9110/9112 leave them to the server).
public struct HTTPLimits: Sendable {
    /// Bytes of the request line (method, target, version). Longer: 414.
    public var requestLine = 8192
    /// Bytes of the header section (request line excluded). Larger: 431.
    public var headerBytes = 32768
    /// Header fields. More: 431.
    public var headerCount = 100
    /// Bytes of a request body. Larger: 413.
    public var body = 1 << 20
    /// Seconds a request may take to arrive, from its first byte to the end of its body: a
    /// client that trickles its request (one byte a second) is answered 408 and dropped.
    public var requestTimeout: Double = 10
    /// Seconds an idle keep-alive connection waits for its next request.
    public var idleTimeout: Double = 5
    /// Seconds a write may block (a client that stops reading a stream is dropped).
    public var sendTimeout: Double = 30
    public init() {}
}

/// A parsed HTTP/1.x request.
struct HTTPRequest {
    var method: String
    /// The request target as sent.
    var target: String
    /// Path of the target (no query), percent-decoding not applied (no route needs it).
    var path: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    var minorVersion: Int
    /// Header fields in order; names lowercased.
    var headers: [(name: String, value: String)]
    var body: [UInt8] = []

    func header(_ name: String) -> String? { headers.first(where: { $0.name == name })?.value }
    func headers(_ name: String) -> [String] { headers.filter { $0.name == name }.map(\.value) }

    /// Whether the connection stays open after the response (HTTP/1.1 default; HTTP/1.0 only on request).
    var keepAlive: Bool {
        let tokens = headers("connection").flatMap { $0.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if tokens.contains("close") { return false }
        return minorVersion >= 1 || tokens.contains("keep-alive")
    }
}

/// A request the server answers with an error status (and closes the connection when the rest
/// of the stream cannot be trusted).
struct HTTPError: Error {
    var status: Int
    var message: String
    var code: String
    /// Close after the response (the request could not be read to its end).
    var close = true
    var extraHeaders: [(String, String)] = []
}

/// Reads requests from a connection, enforcing ``HTTPLimits``.
struct HTTPRequestReader {
    let connection: Connection
    let limits: HTTPLimits

    /// How the body of a request is framed.
    enum BodyFraming { case none, length(Int), chunked }

    /// Reads the request line and headers. Returns nil when the connection is closed (or stays
    /// idle past the idle timeout) before a request starts. Throws `HTTPError` for a malformed or
    /// oversized request, `SocketError` for I/O failures.
    func readHead() throws -> (HTTPRequest, BodyFraming)? {
        let c = connection
        // Wait for the first byte of a request (idle keep-alive time).
        let idleDeadline = now() + nanoseconds(limits.idleTimeout)
        while c.available == 0 {
            do {
                guard try c.fill(until: idleDeadline) else { return nil }
            } catch SocketError.timeout {
                return nil
            }
        }
        let deadline = now() + nanoseconds(limits.requestTimeout)
        // Lines until the empty line ending the head.
        var lines: [String] = []
        var headerBytes = 0
        while true {
            let line = try readLine(until: deadline, limit: lines.isEmpty ? limits.requestLine : limits.headerBytes - headerBytes,
                                    tooLong: lines.isEmpty
                                        ? HTTPError(status: 414, message: "request line longer than \(limits.requestLine) bytes", code: "uri_too_long")
                                        : HTTPError(status: 431, message: "header section larger than \(limits.headerBytes) bytes", code: "headers_too_large"))
            if lines.isEmpty {
                if line.isEmpty { continue }  // RFC 9112 2.2: ignore empty lines before the request line
                lines.append(line)
                continue
            }
            if line.isEmpty { break }
            headerBytes += line.utf8.count + 2
            if headerBytes > limits.headerBytes {
                throw HTTPError(status: 431, message: "header section larger than \(limits.headerBytes) bytes", code: "headers_too_large")
            }
            lines.append(line)
            if lines.count - 1 > limits.headerCount {
                throw HTTPError(status: 431, message: "more than \(limits.headerCount) header fields", code: "headers_too_large")
            }
        }
        var request = try Self.parseRequestLine(lines[0])
        for line in lines.dropFirst() {
            request.headers.append(try Self.parseHeader(line))
        }
        return (request, try Self.framing(of: request, limits: limits))
    }

    /// One line without its CRLF (a bare LF is accepted as the end of a line too).
    private func readLine(until deadline: UInt64, limit: Int, tooLong: HTTPError) throws -> String {
        let c = connection
        var scanned = 0
        while true {
            let end = c.buffer.count
            var i = c.start + scanned
            while i < end && c.buffer[i] != 0x0A { i += 1 }
            if i < end {
                var lineEnd = i
                if lineEnd > c.start && c.buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                if lineEnd - c.start > limit { throw tooLong }
                let bytes = c.buffer[c.start..<lineEnd]
                c.start = i + 1
                // Header bytes beyond ASCII are kept as Latin-1 (obsolete, but not an error).
                if bytes.contains(where: { $0 == 0 || $0 == 0x0D }) {
                    throw HTTPError(status: 400, message: "a NUL or bare CR in the request head", code: "bad_request")
                }
                return String(bytes.map { Character(Unicode.Scalar($0)) })
            }
            scanned = end - c.start
            if scanned > limit { throw tooLong }
            do {
                guard try c.fill(until: deadline) else { throw SocketError.closed }
            } catch SocketError.timeout {
                throw HTTPError(status: 408, message: "the request head did not arrive within \(Self.seconds(limits.requestTimeout))", code: "request_timeout")
            }
        }
    }

    static func seconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : "\(s) s" }

    static let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

    static func isToken(_ s: Substring) -> Bool { !s.isEmpty && s.allSatisfy { tokenCharacters.contains($0) } }

    static func parseRequestLine(_ line: String) throws -> HTTPRequest {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, isToken(parts[0]), !parts[1].isEmpty else {
            throw HTTPError(status: 400, message: "malformed request line (expected METHOD TARGET HTTP/1.1)", code: "bad_request")
        }
        let version = parts[2]
        guard version.hasPrefix("HTTP/"), version.count == 8, let major = version.dropFirst(5).first?.wholeNumberValue,
              version.dropFirst(6).first == ".", let minor = version.last?.wholeNumberValue else {
            throw HTTPError(status: 400, message: "malformed HTTP version '\(version)'", code: "bad_request")
        }
        guard major == 1 else {
            throw HTTPError(status: 505, message: "HTTP version \(major).\(minor) is not supported (HTTP/1.0 and 1.1 are)", code: "http_version_not_supported")
        }
        var target = String(parts[1])
        guard target.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "\u{7f}" && ($0.asciiValue ?? 0) > 0x20 }) else {
            throw HTTPError(status: 400, message: "invalid character in the request target", code: "bad_request")
        }
        // Absolute form (proxies): keep the path.
        if target.lowercased().hasPrefix("http://") || target.lowercased().hasPrefix("https://") {
            let rest = target.drop(while: { $0 != ":" }).dropFirst(3)
            target = rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
        }
        guard target.hasPrefix("/") || (target == "*" && parts[0] == "OPTIONS") else {
            throw HTTPError(status: 400, message: "the request target must be a path starting with '/'", code: "bad_request")
        }
        let path = String(target.prefix(while: { $0 != "?" && $0 != "#" }))
        return HTTPRequest(method: String(parts[0]), target: target, path: path, minorVersion: minor, headers: [])
    }

    static func parseHeader(_ line: String) throws -> (name: String, value: String) {
        if line.first == " " || line.first == "\t" {
            throw HTTPError(status: 400, message: "obsolete line folding in the header section", code: "bad_request")
        }
        guard let colon = line.firstIndex(of: ":") else {
            throw HTTPError(status: 400, message: "malformed header field (no ':')", code: "bad_request")
        }
        let name = line[..<colon]
        guard isToken(name) else {
            throw HTTPError(status: 400, message: "malformed header field name '\(name.prefix(64))'", code: "bad_request")
        }
        let value = line[line.index(after: colon)...].trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
        return (name.lowercased(), value)
    }

    /// The body framing (RFC 9112 6.3), refusing what could be read two ways (request smuggling).
    static func framing(of r: HTTPRequest, limits: HTTPLimits) throws -> BodyFraming {
        let te = r.headers("transfer-encoding")
        let cl = r.headers("content-length")
        if !te.isEmpty {
            guard cl.isEmpty else {
                throw HTTPError(status: 400, message: "both Transfer-Encoding and Content-Length", code: "bad_request")
            }
            let codings = te.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } }
            guard codings == ["chunked"] else {
                throw HTTPError(status: 501, message: "Transfer-Encoding '\(te.joined(separator: ", "))' is not supported (only chunked)", code: "not_implemented")
            }
            guard r.minorVersion >= 1 else {
                throw HTTPError(status: 400, message: "Transfer-Encoding in an HTTP/1.0 request", code: "bad_request")
            }
            return .chunked
        }
        guard !cl.isEmpty else { return .none }
        let values = Set(cl.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } })
        guard values.count == 1, let v = values.first, !v.isEmpty, v.count <= 18, v.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(v) else {
            throw HTTPError(status: 400, message: "invalid Content-Length", code: "bad_request")
        }
        if n > limits.body {
            throw HTTPError(status: 413, message: "the request body (\(n) bytes) is larger than the limit of \(limits.body) bytes", code: "request_too_large")
        }
        return n == 0 ? .none : .length(n)
    }

    /// Reads the body; the deadline runs from now (the head's own deadline already passed check).
    func readBody(_ framing: BodyFraming) throws -> [UInt8] {
        let c = connection
        let deadline = now() + nanoseconds(limits.requestTimeout)
        func more() throws {
            do {
                guard try c.fill(until: deadline) else { throw SocketError.closed }
            } catch SocketError.timeout {
                throw HTTPError(status: 408, message: "the request body did not arrive within \(Self.seconds(limits.requestTimeout))", code: "request_timeout")
            }
        }
        func take(_ n: Int) throws -> [UInt8] {
            while c.available < n { try more() }
            let out = Array(c.buffer[c.start..<(c.start + n)])
            c.start += n
            return out
        }
        func line(_ limit: Int) throws -> String {
            var scanned = 0
            while true {
                if let i = c.buffer[(c.start + scanned)...].firstIndex(of: 0x0A) {
                    var e = i
                    if e > c.start && c.buffer[e - 1] == 0x0D { e -= 1 }
                    let s = String(decoding: c.buffer[c.start..<e], as: UTF8.self)
                    c.start = i + 1
                    return s
                }
                scanned = c.available
                if scanned > limit { throw HTTPError(status: 400, message: "malformed chunked body (line too long)", code: "bad_request") }
                try more()
            }
        }
        switch framing {
        case .none: return []
        case let .length(n): return try take(n)
        case .chunked:
            var body: [UInt8] = []
            while true {
                let sizeLine = try line(1024)
                let hex = sizeLine.prefix(while: { $0 != ";" }).trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
                guard !hex.isEmpty, hex.count <= 8, let size = Int(hex, radix: 16), size >= 0 else {
                    throw HTTPError(status: 400, message: "malformed chunk size '\(sizeLine.prefix(32))'", code: "bad_request")
                }
                if size == 0 { break }
                guard body.count + size <= limits.body else {
                    throw HTTPError(status: 413, message: "the request body is larger than the limit of \(limits.body) bytes", code: "request_too_large")
                }
                body += try take(size)
                guard try line(2).isEmpty else { throw HTTPError(status: 400, message: "malformed chunked body (no CRLF after a chunk)", code: "bad_request") }
            }
            // Trailer fields: read and ignored, within the header limit.
            var trailer = 0
            while true {
                let l = try line(limits.headerBytes)
                if l.isEmpty { break }
                trailer += l.utf8.count
                if trailer > limits.headerBytes { throw HTTPError(status: 431, message: "trailer section too large", code: "headers_too_large") }
            }
            return body
        }
    }
}

/// Status line reason phrases.
func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: return "Continue"
    case 200: return "OK"
    case 204: return "No Content"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 408: return "Request Timeout"
    case 411: return "Length Required"
    case 413: return "Content Too Large"
    case 414: return "URI Too Long"
    case 415: return "Unsupported Media Type"
    case 417: return "Expectation Failed"
    case 431: return "Request Header Fields Too Large"
    case 500: return "Internal Server Error"
    case 501: return "Not Implemented"
    case 503: return "Service Unavailable"
    case 505: return "HTTP Version Not Supported"
    default: return "Status \(status)"
    }
}

/// Writes one response on a connection: a whole body, or a stream (chunked for HTTP/1.1,
/// delimited by closing the connection for HTTP/1.0).
final class ResponseWriter {
    let connection: Connection
    let minorVersion: Int
    /// Whether the connection stays open after this response.
    var keepAlive: Bool
    private(set) var started = false
    private var chunked = false

    init(connection: Connection, minorVersion: Int, keepAlive: Bool) {
        self.connection = connection
        self.minorVersion = minorVersion
        self.keepAlive = keepAlive
    }

    private func head(_ status: Int, _ headers: [(String, String)]) -> String {
        var s = "HTTP/1.\(minorVersion) \(status) \(reasonPhrase(status))\r\n"
        for (k, v) in headers { s += "\(k): \(v)\r\n" }
        s += "Connection: \(keepAlive ? "keep-alive" : "close")\r\n"
        if keepAlive && minorVersion == 0 { s += "Keep-Alive: timeout=5\r\n" }
        return s
    }

    func send(status: Int, contentType: String? = "application/json", body: [UInt8], headers: [(String, String)] = []) throws {
        precondition(!started)
        started = true
        var h = headers
        if let t = contentType { h.append(("Content-Type", t)) }
        h.append(("Content-Length", String(body.count)))
        try connection.write(Array((head(status, h) + "\r\n").utf8) + body)
    }

    /// Starts a streamed body of unknown length.
    func startStream(status: Int, contentType: String, headers: [(String, String)] = []) throws {
        precondition(!started)
        started = true
        chunked = minorVersion >= 1
        if !chunked { keepAlive = false }
        var h = headers
        h.append(("Content-Type", contentType))
        h.append(("Cache-Control", "no-cache"))
        if chunked { h.append(("Transfer-Encoding", "chunked")) }
        h.append(("X-Accel-Buffering", "no"))
        try connection.write(head(status, h) + "\r\n")
    }

    func sendChunk(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        if chunked {
            try connection.write(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [0x0D, 0x0A])
        } else {
            try connection.write(bytes)
        }
    }

    func endStream() throws {
        if chunked { try connection.write("0\r\n\r\n") }
    }
}
