import Foundation
import G2W

enum PerplexityCommand {
    static func run(model: GPT2Model, file: String, options o: ParsedOptions, threads: Int?) throws -> Int32 {
        throw ToolError("--perplexity is not implemented yet")
    }
}
