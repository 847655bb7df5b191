import Foundation

// Every error the library throws prints its message as `description`, and Foundation's
// `localizedDescription` is the same message (not "The operation could not be completed").
// Messages describe the problem in the library's terms; the command-line tools add flag hints.

extension ModelError: LocalizedError { public var errorDescription: String? { description } }
extension GenerationError: LocalizedError { public var errorDescription: String? { description } }
extension AllocationError: LocalizedError { public var errorDescription: String? { description } }
extension ConversionError: LocalizedError { public var errorDescription: String? { description } }
extension KLDivergenceError: LocalizedError { public var errorDescription: String? { description } }
