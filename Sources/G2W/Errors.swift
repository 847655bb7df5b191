import Foundation

// Every error the library throws prints its message as `description`, and Foundation's
// `localizedDescription` is the same message (not "The operation could not be completed").
// Messages describe the problem in the library's terms; the command-line tools add flag hints.

/// `errorDescription`, hence `localizedDescription`, is `description`: the message.
extension ModelError: LocalizedError { public var errorDescription: String? { description } }
/// `errorDescription`, hence `localizedDescription`, is `description`: the message.
extension GenerationError: LocalizedError { public var errorDescription: String? { description } }
/// `errorDescription`, hence `localizedDescription`, is `description`: the message.
extension AllocationError: LocalizedError { public var errorDescription: String? { description } }
/// `errorDescription`, hence `localizedDescription`, is `description`: the message.
extension ConversionError: LocalizedError { public var errorDescription: String? { description } }
/// `errorDescription`, hence `localizedDescription`, is `description`: the message.
extension KLDivergenceError: LocalizedError { public var errorDescription: String? { description } }
