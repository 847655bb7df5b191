import CG2W

/// Encodes one tensor's values, given as f32 rows in order, in the tensor's element type and
/// streams them into a ``G2WWriter``: f32 copied, f16 rounded to nearest even, quantized types
/// by the traits' quantizer (ggml's reference rounding). A quantized blob is its quants followed
/// by its scales: the quants are written as they come, the scales (2 bytes per 32 values) are
/// kept and written by ``finish()``.
///
/// ```swift
/// var e = G2WTensorEncoder(writer: w, name: "h.0.mlp.c_fc.weight", dtype: .q8_0, shape: [3072, 768])
/// for slice in rows { try e.append(slice) }
/// try e.finish()
/// ```
public struct G2WTensorEncoder {
    public let name: String
    public let dtype: G2WDType
    public let elementCount: Int
    let writer: G2WWriter
    var done = 0
    var scales: [UInt16] = []
    var values: [UInt8] = []

    public init(writer: G2WWriter, name: String, dtype: G2WDType, shape: [Int]) {
        self.writer = writer
        self.name = name
        self.dtype = dtype
        elementCount = shape.reduce(1, *)
        if dtype.isQuantized { scales.reserveCapacity(elementCount / dtype.blockElements) }
    }

    /// Appends the next values (a whole number of blocks; for quantized types a block never
    /// spans rows, so whole rows are always fine). Throws if a block's scale is not finite (a
    /// value too large for the type, or a NaN/inf input), naming the tensor, block and row.
    public mutating func append(_ src: UnsafeBufferPointer<Float>) throws {
        let k = dtype.traits.pointee
        let n = src.count
        precondition(n % k.block_elements == 0 && done + n <= elementCount, "encoder fed a partial block or too many values")
        let blocks = n / k.block_elements
        if dtype.isQuantized, let bad = src.firstIndex(where: { !$0.isFinite }) {
            throw G2WFormatError.invalidTensor(name: name, index: -1, reason: "cannot encode as \(dtype): element \(done + bad) is \(src[bad]) (block \((done + bad) / k.block_elements))")
        }
        let bytes = blocks * k.quant_bytes
        if values.count < bytes { values = [UInt8](repeating: 0, count: bytes) }
        let firstBlock = scales.count
        if dtype.isQuantized { scales.append(contentsOf: repeatElement(0, count: blocks)) }
        values.withUnsafeMutableBytes { v in
            scales.withUnsafeMutableBufferPointer { s in
                k.quantize(src.baseAddress!, n, v.baseAddress!, dtype.isQuantized ? s.baseAddress! + firstBlock : nil)
            }
        }
        if dtype.isQuantized {
            let bad = scales.withUnsafeBufferPointer { g2w_first_nonfinite_f16($0.baseAddress! + firstBlock, blocks) }
            if bad < blocks {
                let block = firstBlock + bad
                let cols = k.block_elements
                throw G2WFormatError.invalidTensor(name: name, index: -1, reason: "cannot encode as \(dtype): block \(block) (elements \(block * cols)...\(block * cols + cols - 1)) has a value that is not finite or too large for a binary16 scale")
            }
        }
        try values.withUnsafeBytes { try writer.write(UnsafeRawBufferPointer(rebasing: $0[0..<bytes])) }
        done += n
    }

    /// Writes the scales (quantized types); the tensor is then complete.
    public mutating func finish() throws {
        precondition(done == elementCount, "encoder finished after \(done) of \(elementCount) values")
        if dtype.isQuantized { try scales.withUnsafeBytes { try writer.write($0) } }
        scales = []
    }
}
