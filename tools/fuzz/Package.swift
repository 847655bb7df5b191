// swift-tools-version:5.9
//
// libFuzzer targets for g2w's parsers. A separate package so the main package has no fuzz
// executables; it depends on the main package (two directories up) by path.
//
// Build (see README.md and run.sh):
//   swift build -c release --scratch-path ../../.build-fuzz \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xcc -fsanitize=address
import Foundation
import PackageDescription

// A path dependency's identity is the last component of its directory, which is whatever the
// checkout is called (e.g. "main" or "g2w"); compute it instead of hard-coding it.
let rootDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let g2w = rootDirectory.lastPathComponent

func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(name: name,
                      dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: g2w) },
                      path: "Sources/\(name)")
}

let package = Package(
    name: "g2w-fuzz",
    dependencies: [.package(path: "../..")],
    targets: [
        .target(name: "CFuzzDriver", path: "Sources/CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"], path: "Sources/FuzzSupport"),
        fuzzTarget("fuzz-g2w", ["G2W"]),
        fuzzTarget("fuzz-safetensors", ["G2W"]),
        fuzzTarget("fuzz-json-config", ["G2W"]),
        fuzzTarget("fuzz-tokenizer-files", ["G2W"]),
        fuzzTarget("fuzz-tokenizer-roundtrip", ["G2W"]),
        fuzzTarget("fuzz-model", ["G2W"]),
    ]
)
