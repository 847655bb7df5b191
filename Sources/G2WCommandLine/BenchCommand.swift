import Foundation
import G2W

enum BenchCommand {
    static func run(model: GPT2Model, modelPath: String, options o: ParsedOptions, threads: Int?) throws -> Int32 {
        throw ToolError("--bench is not implemented yet")
    }
}
