import Foundation

// `localizedDescription` is the error's message (not "The operation could not be completed").
extension G2WFormatError: LocalizedError { public var errorDescription: String? { description } }
extension SafetensorsError: LocalizedError { public var errorDescription: String? { description } }
extension JSONError: LocalizedError { public var errorDescription: String? { description } }
