/// Character classes of the GPT-2 pre-tokenizer pattern.
enum CharClass {
    static let letter: UInt8 = 0  // \p{L}
    static let number: UInt8 = 1  // \p{N}
    static let other: UInt8 = 2   // [^\s\p{L}\p{N}]
    static let space: UInt8 = 3   // \s (Unicode White_Space)
}

/// A flat class-per-code-point table below `unicodeClassLimit`, expanded once from the generated
/// runs in UnicodeClassTable.swift (about 200 KB). Immutable after construction.
final class ClassTable: @unchecked Sendable {
    let pointer: UnsafePointer<UInt8>

    init() {
        let count = Int(unicodeClassLimit)
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
        let runs = unicodeClassRuns
        for (k, packed) in runs.enumerated() {
            let start = Int(packed >> 2)
            let end = k + 1 < runs.count ? Int(runs[k + 1] >> 2) : count
            table.advanced(by: start).initialize(repeating: UInt8(packed & 3), count: end - start)
        }
        pointer = UnsafePointer(table)
    }

    deinit { pointer.deallocate() }

    static let shared = ClassTable()
}

/// Splits valid UTF-8 into GPT-2 pre-tokens, exactly like tiktoken's regex
/// `'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s`
/// (equivalent to GPT-2's original `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`).
///
/// Works on the bytes; the input must be valid UTF-8 (it always comes from a Swift String).
struct PreTokenizer {
    let base: UnsafePointer<UInt8>
    let end: Int
    let table: UnsafePointer<UInt8>
    var position: Int

    init(_ base: UnsafePointer<UInt8>, start: Int = 0, end: Int) {
        self.base = base
        self.end = end
        self.table = ClassTable.shared.pointer
        self.position = start
    }

    /// Class and UTF-8 length of the scalar starting at byte `i`.
    @inline(__always)
    func classAt(_ i: Int) -> (cls: UInt8, length: Int) {
        let b0 = base[i]
        if b0 < 0x80 { return (table[Int(b0)], 1) }
        let cp: UInt32
        let length: Int
        if b0 < 0xE0 {
            cp = (UInt32(b0 & 0x1F) << 6) | UInt32(base[i &+ 1] & 0x3F)
            length = 2
        } else if b0 < 0xF0 {
            cp = (UInt32(b0 & 0x0F) << 12) | (UInt32(base[i &+ 1] & 0x3F) << 6)
                | UInt32(base[i &+ 2] & 0x3F)
            length = 3
        } else {
            cp = (UInt32(b0 & 0x07) << 18) | (UInt32(base[i &+ 1] & 0x3F) << 12)
                | (UInt32(base[i &+ 2] & 0x3F) << 6) | UInt32(base[i &+ 3] & 0x3F)
            length = 4
        }
        return (cp < unicodeClassLimit ? table[Int(cp)] : CharClass.other, length)
    }

    /// End of the maximal run of `cls` characters starting at byte `i`.
    @inline(__always)
    func runEnd(_ cls: UInt8, from i: Int) -> Int {
        var j = i
        while j < end {
            let b = base[j]
            if b < 0x80 {
                if table[Int(b)] != cls { break }
                j &+= 1
            } else {
                let (c, length) = classAt(j)
                if c != cls { break }
                j &+= length
            }
        }
        return j
    }

    /// The next pre-token as a byte range `start..<end`, or nil at the end.
    @inline(__always)
    mutating func next() -> (start: Int, end: Int)? {
        let i = position
        guard i < end else { return nil }
        let b = base[i]
        var stop: Int
        // Contractions, case-sensitive: 's 't 'm 'd 're 've 'll.
        if b == 0x27 && i &+ 1 < end {
            let b1 = base[i &+ 1]
            if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 {
                position = i &+ 2
                return (i, i &+ 2)
            }
            if i &+ 2 < end {
                let b2 = base[i &+ 2]
                if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) {
                    position = i &+ 3
                    return (i, i &+ 3)
                }
            }
        }
        let (c0, l0) = classAt(i)
        if c0 != CharClass.space {
            stop = runEnd(c0, from: i &+ l0)
        } else {
            // ` ?X+`: a single ASCII space joins the run of letters, numbers or other that follows.
            if b == 0x20 && i &+ 1 < end {
                let (c1, l1) = classAt(i &+ 1)
                if c1 != CharClass.space {
                    stop = runEnd(c1, from: i &+ 1 &+ l1)
                    position = stop
                    return (i, stop)
                }
            }
            // Whitespace run: all of it at the end of the text (`\s++$`), else all but its last
            // character (`\s+(?!\S)`), else the single character (`\s`).
            var j = i &+ l0
            var lastStart = i
            while j < end {
                let (c, length) = classAt(j)
                if c != CharClass.space { break }
                lastStart = j
                j &+= length
            }
            stop = (j == end || lastStart == i) ? j : lastStart
        }
        position = stop
        return (i, stop)
    }
}
