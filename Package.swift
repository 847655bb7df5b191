// swift-tools-version:5.9
//
// g2w: a GPT-2 runtime around its own memory-mapped weights format.
//
// Layering (each layer only knows the ones above it):
//   CG2W           C: SIMD kernels, CRC-32C, UTF-8 validation, the worker pool, signal-safe cleanup.
//                  AVX2/FMA/F16C code paths are enabled per function
//                  with `__attribute__((target(...)))` and chosen at run time, so the package needs
//                  no unsafe compiler flags and stays usable as a versioned dependency.
//   CGPT2Vocabulary C: OpenAI's GPT-2 BPE merges as data (the built-in tokenizer).
//   G2WSupport     internal: the one JSON parser, file reading and mapping, text for display.
//   G2WFormat      the .g2w container (spec/g2w.md) and the safetensors reader. No model knowledge.
//   G2WTokenizer   GPT-2 byte-level BPE (CG2W for UTF-8 validation).
//   G2W            the GPT-2 model, conversion from Hugging Face checkpoints, sampling, generation.
//   G2WTraining    training: forward with saved activations, backward, AdamW, the reference backward.
//   G2WBenchmark   measuring the machine (read bandwidth, FMA peak, sysfs/procfs) and the model
//                  against it: a tool for the command line, not part of the model library.
//   G2WServer      g2w-server: HTTP/1.1 on POSIX sockets, OpenAI's completions API, continuous batching.
//   G2WCommandLine the command implementations shared by the thin executables.
import PackageDescription

let package = Package(
    name: "g2w",
    products: [
        .library(name: "G2W", targets: ["G2W", "G2WFormat", "G2WTokenizer"]),
        .library(name: "G2WTraining", targets: ["G2WTraining"]),
        .executable(name: "g2w-convert", targets: ["g2w-convert"]),
        .executable(name: "g2w-run", targets: ["g2w-run"]),
        .executable(name: "g2w-inspect", targets: ["g2w-inspect"]),
        .executable(name: "g2w-train", targets: ["g2w-train"]),
        .executable(name: "g2w-server", targets: ["g2w-server"]),
        .library(name: "G2WServer", targets: ["G2WServer"]),
    ],
    targets: [
        .target(name: "CG2W"),
        .target(name: "CGPT2Vocabulary"),
        .target(name: "G2WSupport", dependencies: ["CG2W"]),
        .target(name: "G2WFormat", dependencies: ["CG2W", "G2WSupport"]),
        .target(name: "G2WTokenizer", dependencies: ["CG2W", "CGPT2Vocabulary", "G2WSupport"]),
        .target(name: "G2W", dependencies: ["G2WFormat", "G2WTokenizer", "CG2W"]),
        .target(name: "G2WTraining", dependencies: ["G2W", "G2WFormat", "G2WTokenizer", "CG2W"]),
        .target(name: "G2WBenchmark", dependencies: ["G2W", "G2WFormat", "G2WTraining", "CG2W"]),
        .target(name: "G2WServer", dependencies: ["G2W", "G2WFormat", "G2WTokenizer", "CG2W"]),
        .target(name: "G2WCommandLine", dependencies: ["G2W", "G2WFormat", "G2WTraining", "G2WBenchmark", "G2WServer", "CG2W", "G2WSupport"]),
        .executableTarget(name: "g2w-convert", dependencies: ["G2WCommandLine"]),
        .executableTarget(name: "g2w-run", dependencies: ["G2WCommandLine"]),
        .executableTarget(name: "g2w-inspect", dependencies: ["G2WCommandLine"]),
        .executableTarget(name: "g2w-train", dependencies: ["G2WCommandLine"]),
        .executableTarget(name: "g2w-server", dependencies: ["G2WCommandLine"]),
        .testTarget(name: "G2WFormatTests", dependencies: ["G2WFormat", "CG2W", "G2WSupport"]),
        .testTarget(name: "G2WTokenizerTests", dependencies: ["G2WTokenizer"]),
        .testTarget(name: "G2WTests", dependencies: ["G2W", "G2WFormat", "G2WBenchmark", "CG2W"]),
        .testTarget(name: "CLITests", dependencies: ["G2W", "G2WFormat"]),
        .testTarget(name: "ServerTests", dependencies: ["G2WServer", "G2W", "G2WFormat", "CG2W"]),
        .testTarget(name: "LibraryClientTests", dependencies: ["G2W"]),
        .testTarget(name: "G2WTrainingTests", dependencies: ["G2WTraining", "G2W", "G2WFormat", "G2WTokenizer", "CG2W"]),
    ]
)
