import Foundation
import G2W  // the only import a client needs
import XCTest

/// The README's library example, compiled and run as written (between the markers; a test
/// below checks the README shows exactly these lines), against the demo model.
final class ReadmeClientTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testReadmeClient() async throws {
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(Self.root.path))
        var lines: [String] = []
        // Records what the example prints (shadows Swift.print in this scope).
        func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
            lines.append(items.map { "\($0)" }.joined(separator: separator))
        }
        // README: begin
        do {
            let model = try GPT2Model(path: "Tests/Fixtures/shakespeare.g2w")  // maps the file
            let ids = try model.encode("ROMEO:")                  // the embedded tokenizer
            let logits = try model.logits(for: ids)               // last position: vocab_size floats
            let best = logits.indices.max { logits[$0] < logits[$1] }!
            print("most likely next:", try model.decode([best]).debugDescription)

            var options = GenerationOptions()
            options.maxTokens = 40
            options.sampling.temperature = 0.7                    // the seed is random unless set
            options.logProbabilities = 2                          // the token's and the 2 likeliest
            for try await piece in model.pieces(for: "ROMEO:", options: options) {
                print(piece.text.debugDescription, piece.logProbability ?? 0,
                      piece.topLogProbabilities.map { ($0.token, $0.logProbability) })
            }
            let result = try model.generate("JULIET:", options: options)   // all at once
            print(result.text, "| stopped at", result.stopReason, "| seed", result.seed)
            _ = try model.decode([60_000])                        // out of range: an error
        } catch {
            print("error:", error.localizedDescription)
        }
        // README: end
        XCTAssertTrue(lines[0].hasPrefix("most likely next: \""), lines[0])
        XCTAssertGreaterThan(lines.count, 3)
        XCTAssertTrue(lines.contains { $0.contains("| stopped at") }, "\(lines)")
        XCTAssertEqual(lines.last, "error: token id 60000 is out of range (vocabulary size 50257)")
    }

    /// The README's example is this file's, line for line.
    func testReadmeShowsThisExample() throws {
        let test = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = test.components(separatedBy: "\n")
        let begin = lines.firstIndex { $0.hasSuffix("// README: begin") }!, end = lines.firstIndex { $0.hasSuffix("// README: end") }!
        let body = lines[(begin + 1)..<end].map { String($0.dropFirst(8)) }  // the test's indentation
        let example = (["import G2W", ""] + body).joined(separator: "\n")
        XCTAssertTrue(readme.contains("```swift\n" + example + "\n```"), "README's library example differs from ReadmeClientTests:\n" + example)
    }
}
