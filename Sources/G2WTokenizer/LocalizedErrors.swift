import Foundation

// `localizedDescription` is the error's message (not "The operation could not be completed").
extension TokenizerError: LocalizedError { public var errorDescription: String? { description } }
