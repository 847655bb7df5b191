import Dispatch

/// The mergeable tokens that are prefixes and suffixes of each other, found in time linear in
/// the bytes of the tokens (issue 17 item 2).
///
/// The pair table needs every split of every merge result into two mergeable tokens. Hashing each
/// prefix and suffix of a token of n bytes from scratch costs n^2 (a vocabulary of a few 64 KB
/// tokens took tens of seconds). Instead, for every mergeable token t this finds its longest
/// proper prefix `prefix[t]` and longest proper suffix `suffix[t]` that are mergeable tokens (-1
/// for a single byte). The mergeable proper prefixes of t are then exactly the chain prefix[t],
/// prefix[prefix[t]], ... (longest first; any shorter one is a prefix of the longest), and likewise
/// for suffixes, so the splits of a token are a merge of two chains no longer than the token.
///
/// Tokens are taken shortest first. A token's prefixes are hashed incrementally with a
/// polynomial hash (one multiply per byte); a candidate of the right hash and length is
/// confirmed exactly, and cheaply: if t[0..<k] is token u, the longest mergeable prefix of t
/// found below k must be prefix[u] (already known, u being shorter), so only the bytes after it
/// are compared, and those ranges do not overlap along t. Work: O(total bytes), whatever the
/// tokens; the results do not depend on the hash (every match is checked byte for byte).
struct MergeableAffixes {
    /// Longest proper mergeable prefix / suffix of each token id (-1: none, or not mergeable).
    let prefix: [Int32]
    let suffix: [Int32]
    /// Bytes hashed, candidates examined and bytes compared: proportional to the tokens' bytes.
    let work: Int

    /// - Parameters:
    ///   - bytes: the 256 single-byte tokens.
    ///   - results: merge i produces token `results[i]` from `pairs[i]` (left, right).
    ///   - mergeable: whether each id is a single byte or a merge result.
    init(store: TokenStore, bytes: [UInt32], results: [Int32], pairs: [(UInt32, UInt32)], mergeable: [Bool]) {
        // Shortest first, so that a candidate's own links are known when it is checked (a token
        // is at most 4 GiB: the element length of a .g2w string array is a u32).
        var keys = bytes.map { UInt64(store.length(Int($0))) << 32 | UInt64($0) }
        keys += results.map { UInt64(store.length(Int($0))) << 32 | UInt64(UInt32(bitPattern: $0)) }
        keys.sort()
        let order = keys.map { Int32(truncatingIfNeeded: $0) }
        // A merge result starts with its left token and ends with its right one: the walks start
        // there (prefixes up to the left token are its own), so a token of n bytes costs n - 2
        // lookups in all, not 2n.
        var known = [Int32](repeating: -1, count: 2 * store.count)
        for (i, c) in results.enumerated() {
            let (left, right) = (Int(pairs[i].0), Int(pairs[i].1))
            if mergeable[left] { known[2 * Int(c)] = Int32(left) }
            if mergeable[right] { known[2 * Int(c) + 1] = Int32(right) }
        }
        let base = RollingHash.randomBase()
        var out = [(links: [Int32], work: Int)](repeating: ([], 0), count: 2)
        let body = { (direction: Int) -> (links: [Int32], work: Int) in
            Self.links(store: store, order: order, known: known, fromEnd: direction == 1, hash: RollingHash(base: base))
        }
        if order.count >= 4096 {
            out.withUnsafeMutableBufferPointer { o in
                DispatchQueue.concurrentPerform(iterations: 2) { o[$0] = body($0) }
            }
        } else {
            out = [body(0), body(1)]
        }
        prefix = out[0].links
        suffix = out[1].links
        work = out[0].work + out[1].work
    }

    /// The prefix (or, `fromEnd`, suffix) links of the tokens of `order`, which is sorted by length.
    /// `known[2t]` / `known[2t + 1]` is a mergeable prefix / suffix of t, or -1.
    private static func links(store: TokenStore, order: [Int32], known: [Int32], fromEnd: Bool, hash: RollingHash) -> (links: [Int32], work: Int) {
        var links = [Int32](repeating: -1, count: store.count)
        var hashes = [UInt64](repeating: 0, count: store.count)
        let table = AffixTable(expectedCount: order.count)
        var work = 0
        links.withUnsafeMutableBufferPointer { link in hashes.withUnsafeMutableBufferPointer { hashOf in
            for t32 in order {
                let t = Int(t32)
                let p = UnsafePointer(store.bytes + store.offsets[t])
                let n = store.length(t)
                // The longest affix found so far, its length, and the hash of the bytes up to it.
                var last = known[2 * t + (fromEnd ? 1 : 0)]
                var lastLength = last >= 0 ? store.length(Int(last)) : 0
                var h = last >= 0 ? hashOf[Int(last)] : 0
                var k = lastLength + 1
                while k < n {
                    let byte = fromEnd ? p[n &- k] : p[k &- 1]
                    h = hash.appending(h, byte)
                    work &+= 1
                    // The candidates: tokens of length k with this hash.
                    var slot = table.firstSlot(h, k)
                    while let (u, uLink, uByte) = table.candidate(&slot, h, k) {
                        work &+= 1
                        guard uLink == last && uByte == byte else { continue }
                        work &+= k &- lastLength
                        // The byte just added is checked; the others of the new part (if any) are read.
                        if k &- lastLength == 1 || Self.sameBytes(store, u, p, n, k, lastLength, fromEnd) {
                            last = Int32(truncatingIfNeeded: u)
                            lastLength = k
                            break
                        }
                    }
                    k &+= 1
                }
                link[t] = last
                // The whole token's hash (its last step is the byte at the far end).
                var whole = h
                var j = k
                while j <= n {
                    whole = hash.appending(whole, fromEnd ? p[n &- j] : p[j &- 1])
                    work &+= 1
                    j &+= 1
                }
                hashOf[t] = whole
                table.insert(whole, n, t, link: last, byte: fromEnd ? p[0] : p[n &- 1])
            }
        } }
        return (links, work)
    }
    /// Whether token u, of length k, equals the prefix (or suffix) of length k of the token at `p`
    /// of length n, given that the first (last) `known` bytes and the byte at k - 1 (n - k) match.
    private static func sameBytes(_ store: TokenStore, _ u: Int, _ p: UnsafePointer<UInt8>, _ n: Int, _ k: Int,
                                  _ known: Int, _ fromEnd: Bool) -> Bool {
        let q = UnsafePointer(store.bytes + store.offsets[u])
        return fromEnd ? bytesEqual(q + 1, p + (n &- k &+ 1), k &- known &- 1) : bytesEqual(q + known, p + known, k &- known &- 1)
    }
}

/// Polynomial hashing modulo the Mersenne prime 2^61 - 1: `appending` extends the hash of a string
/// by one byte in O(1). The base is random per build, so no input can be prepared to collide.
struct RollingHash {
    static let modulus: UInt64 = (1 << 61) - 1
    let base: UInt64

    static func randomBase() -> UInt64 { UInt64.random(in: (1 << 40)..<(modulus - 1)) }

    /// The hash of the string extended by `byte`, given `h` (in 0..<modulus) of the string.
    @inline(__always)
    func appending(_ h: UInt64, _ byte: UInt8) -> UInt64 {
        let (hi, lo) = h.multipliedFullWidth(by: base)  // < 2^122: hi < 2^58
        // 2^64 = 8 (mod 2^61 - 1): fold the 122-bit product and add byte + 1 (< 2^62 + 2^9).
        let x = (lo & Self.modulus) &+ (lo >> 61) &+ (hi << 3) &+ UInt64(byte) &+ 1
        let r = (x & Self.modulus) &+ (x >> 61)
        return r >= Self.modulus ? r &- Self.modulus : r
    }
}

/// Open-addressing multimap from (hash, length) to a token, its link and its last added byte (the
/// last byte for prefixes, the first for suffixes); several tokens may share a key. A slot holds
/// all that a candidate is checked with, so a lookup costs one cache miss, and when the new part of
/// a prefix is one byte (the common case) the token's own bytes are not read.
private final class AffixTable {
    private struct Slot {
        /// hash >> 37 << 40 | byte << 32 | (id + 1); 0 for an empty slot.
        var key: UInt64
        /// length << 32 | (link + 1).
        var value: UInt64
    }
    private let slots: UnsafeMutablePointer<Slot>
    private let mask: Int

    init(expectedCount: Int) {
        var capacity = 16
        while capacity < 2 * expectedCount { capacity <<= 1 }
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(key: 0, value: 0), count: capacity)
        mask = capacity - 1
    }

    deinit { slots.deallocate() }

    @inline(__always)
    func firstSlot(_ h: UInt64, _ length: Int) -> Int {
        Int(truncatingIfNeeded: h ^ UInt64(truncatingIfNeeded: length) &* 0x9E37_79B9_7F4A_7C15) & mask
    }

    /// The next token stored under (h, length) from `slot` on (advancing `slot` past it), with its
    /// link and byte, or nil.
    @inline(__always)
    func candidate(_ slot: inout Int, _ h: UInt64, _ length: Int) -> (id: Int, link: Int32, byte: UInt8)? {
        let tag = h >> 37  // the top 24 of the 61 bits
        let wanted = UInt64(truncatingIfNeeded: length) << 32
        while true {
            let s = slots[slot]
            if s.key == 0 { return nil }
            slot = (slot &+ 1) & mask
            if s.key >> 40 == tag && s.value & 0xFFFF_FFFF_0000_0000 == wanted {
                return (Int(truncatingIfNeeded: s.key & 0xFFFF_FFFF) &- 1, Int32(truncatingIfNeeded: s.value & 0xFFFF_FFFF) &- 1,
                        UInt8(truncatingIfNeeded: s.key >> 32))
            }
        }
    }

    func insert(_ h: UInt64, _ length: Int, _ id: Int, link: Int32, byte: UInt8) {
        var slot = firstSlot(h, length)
        while slots[slot].key != 0 { slot = (slot &+ 1) & mask }
        slots[slot] = Slot(key: (h >> 37) << 40 | UInt64(byte) << 32 | UInt64(id &+ 1),
                           value: UInt64(truncatingIfNeeded: length) << 32 | UInt64(UInt32(bitPattern: link &+ 1)))
    }
}
