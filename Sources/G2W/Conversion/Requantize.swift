import CG2W
import Foundation
import G2WFormat

extension HuggingFaceConverter {
    /// Whether `path` is a regular file that starts with the `.g2w` magic.
    static func isG2WFile(_ path: String) -> Bool {
        guard let (fd, size) = try? G2WFileReading.openRegular(path) else { return false }  // never blocks on a FIFO
        defer { close(fd) }
        guard size >= 8 else { return false }
        var head = [UInt8](repeating: 0, count: 8)
        let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress!, 8) }
        return n == 8 && head == G2WLayout.magic
    }

    /// Re-encodes an existing f32 or f16 `.g2w` model with the options' element types (the
    /// metadata, tokenizer included, is kept; `g2w.converter` and `g2w.source` say what was done).
    /// Streams tensor by tensor in slices of rows, like the safetensors path.
    func requantize(_ path: String) throws -> Summary {
        let start = Date()
        let model: GPT2Model
        do { model = try GPT2Model(path: path) } catch { throw ConversionError("\(path): \(error)", underlying: error) }
        let c = model.configuration
        let plan = GPT2Tensors.all(c, untiedHead: model.hasSeparateHead)
        for (name, _) in plan {
            let t = model.file.info(named: name)!
            guard !t.dtype.isQuantized else {
                throw ConversionError("\(path): tensor '\(name)' is already \(t.dtype); re-encode from the f32 or f16 file (quantizing twice adds the rounding of both)")
            }
        }
        try Self.checkBlocks(plan, options)
        var meta = model.file.metadata
        meta["g2w.converter"] = .string("g2w-convert \(G2WVersion.string)")
        meta["g2w.source"] = .string((path as NSString).lastPathComponent)
        let descriptors = plan.map { G2WTensorDescriptor(name: $0.name, dtype: Self.dtype(of: $0.name, shape: $0.shape, options), shape: $0.shape) }
        // Default: model.g2w -> model-q8_0.g2w (never the input itself).
        let output = options.output ?? ((path as NSString).deletingPathExtension + "-\(options.dtype).g2w")
        if OutputFiles.sameFile(output, path) { throw ConversionError("the output \(output) is the input file itself") }
        let writer: G2WWriter
        do { writer = try G2WWriter(path: output, metadata: meta, tensors: descriptors, overwrite: options.overwrite) } catch let e as G2WFormatError {
            throw ConversionError(e.description)
        }
        var written: UInt64 = 0, parameters = 0
        do {
            for (i, d) in descriptors.enumerated() {
                let t = model.file.tensor(named: d.name)!
                let cols = d.shape.last!, rows = d.shape.reduce(1, *) / cols
                let step = max(1, (1 << 20) / cols)
                var encoder = G2WTensorEncoder(writer: writer, name: d.name, dtype: d.dtype, shape: d.shape)
                var buffer = [Float](repeating: 0, count: min(rows, step) * cols)
                var r0 = 0
                while r0 < rows {
                    let r1 = min(rows, r0 + step)
                    try buffer.withUnsafeMutableBufferPointer { b in
                        t.dtype.traits.pointee.dequantize(t.baseAddress, rows, cols, r0, r1, b.baseAddress!)
                        try encoder.append(UnsafeBufferPointer(rebasing: b[0..<((r1 - r0) * cols)]))
                    }
                    r0 = r1
                }
                try encoder.finish()
                parameters += rows * cols
                written += d.dtype.byteCount(elements: UInt64(rows * cols))!
                options.progress?(i + 1, descriptors.count, written, writer.fileSize)
            }
            try writer.finish()
        } catch let e as G2WFormatError {
            writer.cancel()
            throw ConversionError(e.description)
        } catch {
            writer.cancel()
            throw error
        }
        return Summary(output: output, configuration: c, tensorCount: descriptors.count, parameterCount: parameters,
                       bytesWritten: writer.fileSize, seconds: Date().timeIntervalSince(start), tokenizerSource: model.hasTokenizer ? path : nil,
                       untiedHead: model.hasSeparateHead, droppedBuffers: 0)
    }
}
