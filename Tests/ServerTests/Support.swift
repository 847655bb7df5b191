import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import G2WServer
import XCTest

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    static var shakespeare: String { path("shakespeare.g2w") }
    /// The executables sit beside the test bundle in the build folder.
    static let bin: URL = {
        var u = Bundle.main.bundleURL
        if u.pathExtension == "xctest" { u = u.deletingLastPathComponent() }
        return u
    }()
}

/// A server on an ephemeral loopback port, stopped by `stop()`.
func startServer(_ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> G2WServer {
    var c = ServerConfiguration(modelPath: Fixtures.shakespeare)
    c.port = 0
    c.parallel = 2
    c.threads = 2
    configure(&c)
    let s = G2WServer(configuration: c)
    try s.start()
    return s
}

struct HTTPResult {
    var status: Int
    var headers: [String: String]
    var body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
}

/// One request through URLSession (FoundationNetworking), synchronously.
func request(_ port: Int, _ method: String, _ path: String, json: Any? = nil, body: Data? = nil,
             headers: [String: String] = [:], timeout: Double = 120) throws -> HTTPResult {
    var r = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    r.httpMethod = method
    r.timeoutInterval = timeout
    if let json { r.httpBody = try JSONSerialization.data(withJSONObject: json); r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
    if let body { r.httpBody = body }
    for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
    final class Box: @unchecked Sendable { var result: Result<HTTPResult, Error>! }
    let done = DispatchSemaphore(value: 0)
    let box = Box()
    let task = URLSession.shared.dataTask(with: r) { data, response, error in
        if let error { box.result = .failure(error) } else {
            let h = response as! HTTPURLResponse
            var headers: [String: String] = [:]
            for (k, v) in h.allHeaderFields { headers[String(describing: k).lowercased()] = String(describing: v) }
            box.result = .success(HTTPResult(status: h.statusCode, headers: headers, body: data ?? Data()))
        }
        done.signal()
    }
    task.resume()
    done.wait()
    return try box.result.get()
}

/// `data: ...` payloads of a server-sent-events body.
func sseEvents(_ text: String) -> [String] {
    text.components(separatedBy: "\n\n").compactMap { block in
        let lines = block.split(separator: "\n").filter { $0.hasPrefix("data: ") }
        return lines.isEmpty ? nil : lines.map { String($0.dropFirst(6)) }.joined(separator: "\n")
    }
}

func jsonObject(_ s: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:]
}

/// A raw TCP client for what URLSession will not send (malformed requests, slow or vanishing clients).
final class RawClient {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { Glibc.close(fd); throw NSError(domain: "connect", code: Int(errno)) }
    }

    deinit { Glibc.close(fd) }

    func send(_ s: String) { send(Array(s.utf8)) }
    func send(_ b: [UInt8]) {
        var done = 0
        while done < b.count {
            let n = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, b.count - done, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            done += n
        }
    }

    /// Reads until the server closes the connection, `until` appears, or `timeout` seconds pass.
    /// `closed` says whether the server closed it.
    func read(until marker: String? = nil, timeout: Double = 30) -> (text: String, closed: Bool) {
        var out: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buf = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            if let m = marker, String(decoding: out, as: UTF8.self).contains(m) { return (String(decoding: out, as: UTF8.self), false) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 50) <= 0 { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return (String(decoding: out, as: UTF8.self), true) }
            out += buf[0..<n]
        }
        return (String(decoding: out, as: UTF8.self), false)
    }

    func close() { shutdown(fd, Int32(SHUT_RDWR)) }
}

/// A raw HTTP/1.1 request with a JSON body.
func rawPost(_ path: String, _ body: String, extra: String = "") -> String {
    "POST \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
}

/// Waits until `condition` holds or `timeout` passes; returns whether it held.
func eventually(timeout: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// Open file descriptors of this process.
func openDescriptors() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}
