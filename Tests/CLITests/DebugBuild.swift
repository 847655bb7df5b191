import XCTest

/// Debug builds run the C kernels unoptimised (50-150x slower): the longest end-to-end checks run
/// in release builds only (`swift test -c release`, what CI runs), so a debug `swift test` stays
/// within minutes.
func requireReleaseBuild(_ what: String) throws {
    #if DEBUG
    throw XCTSkip("\(what): run in release builds only (swift test -c release); this debug build runs the kernels unoptimised")
    #endif
}
