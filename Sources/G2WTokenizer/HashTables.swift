#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#elseif canImport(ucrt)
import ucrt
#endif

/// A well-mixed 64-bit hash of a byte string (not cryptographic, not stable across versions).
/// Reads memory only inside `p[0..<n]`.
///
/// `seed` is random per table (`randomHashSeed()`): the mixing steps are invertible, so with a
/// fixed seed anyone could compute thousands of keys of one hash and make a table that holds them
/// (a hostile vocabulary, or text in the encoder's cache) take quadratic time.
@inline(__always)
func hashBytes(_ p: UnsafePointer<UInt8>, _ n: Int, seed: UInt64) -> UInt64 {
    hashBytes(p, n, seed: seed, readableEnd: p + n)
}

/// A seed for `hashBytes`, from the system's random generator.
func randomHashSeed() -> UInt64 { UInt64.random(in: 0...UInt64.max) }

/// Same value as `hashBytes(p, n, seed:)`; may read (but ignores) bytes up to `readableEnd`, which
/// lets the last partial word be one load instead of a byte loop.
@inline(__always)
func hashBytes(_ p: UnsafePointer<UInt8>, _ n: Int, seed: UInt64, readableEnd: UnsafePointer<UInt8>) -> UInt64 {
    var h: UInt64 = seed ^ (UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15)
    let raw = UnsafeRawPointer(p)
    var i = 0
    while i &+ 8 <= n {
        let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
        h = (h ^ w) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 29
        i &+= 8
    }
    if i < n {
        var w: UInt64 = 0
        if p + i + 8 <= readableEnd {
            let shift = UInt64(truncatingIfNeeded: 8 &- (n &- i)) &* 8
            w = (UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) << shift) >> shift
        } else {
            var shift: UInt64 = 0
            while i < n {
                w |= UInt64(p[i]) << shift
                shift &+= 8
                i &+= 1
            }
        }
        h = (h ^ w) &* 0x94D0_49BB_1331_11EB
    }
    h ^= h >> 32
    h = h &* 0xD6E8_FEB8_6659_FD93
    h ^= h >> 32
    return h
}

/// Whether two byte strings of length n are equal (short ones compared inline).
@inline(__always)
func bytesEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    if n <= 8 {
        var i = 0
        while i < n {
            if a[i] != b[i] { return false }
            i &+= 1
        }
        return true
    }
    return memcmp(a, b, n) == 0
}

/// Open-addressing hash map from byte strings to 64-bit values, keys copied into one arena.
/// Not thread-safe while mutated; immutable instances are shared read-only.
final class ByteKeyMap {
    struct Slot {
        var hash: UInt64
        var offset: UInt32  // UInt32.max marks an empty slot
        var length: UInt32
        var value: UInt64
    }

    private(set) var count = 0
    private var slots: UnsafeMutablePointer<Slot>
    private var mask: Int
    private var keys: UnsafeMutablePointer<UInt8>
    private var keysCount = 0
    private var keysCapacity: Int

    /// Hashes given to `find` and `insert` are `hashBytes(p, n, seed:)` with a random seed (the
    /// caller's; see `hashBytes`).
    init(expectedCount: Int, expectedKeyBytes: Int) {
        var capacity = 16
        while capacity < expectedCount * 2 { capacity <<= 1 }
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(hash: 0, offset: .max, length: 0, value: 0), count: capacity)
        mask = capacity - 1
        keysCapacity = max(64, expectedKeyBytes)
        keys = .allocate(capacity: keysCapacity)
    }

    deinit {
        slots.deallocate()
        keys.deallocate()
    }

    /// The value stored for the key, or nil. `hash` must be `hashBytes(p, n, seed:)`, the same seed
    /// for every key.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64) -> UInt64? {
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let slot = slots[i]
            if slot.offset == .max { return nil }
            if slot.hash == hash && Int(slot.length) == n
                && bytesEqual(keys + Int(slot.offset), p, n) {
                return slot.value
            }
            i = (i &+ 1) & mask
        }
    }

    /// Inserts a key that is not present yet.
    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64, value: UInt64) {
        if (count + 1) * 2 > mask + 1 { grow() }
        if keysCount + n > keysCapacity {
            var newCapacity = keysCapacity * 2
            while keysCount + n > newCapacity { newCapacity *= 2 }
            let newKeys = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
            newKeys.update(from: keys, count: keysCount)
            keys.deallocate()
            keys = newKeys
            keysCapacity = newCapacity
        }
        (keys + keysCount).update(from: p, count: n)
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i].offset != .max { i = (i &+ 1) & mask }
        slots[i] = Slot(hash: hash, offset: UInt32(keysCount), length: UInt32(n), value: value)
        keysCount += n
        count += 1
    }

    private func grow() {
        let oldCapacity = mask + 1
        let old = slots
        let capacity = oldCapacity * 2
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(hash: 0, offset: .max, length: 0, value: 0), count: capacity)
        mask = capacity - 1
        for j in 0..<oldCapacity where old[j].offset != .max {
            var i = Int(truncatingIfNeeded: old[j].hash) & mask
            while slots[i].offset != .max { i = (i &+ 1) & mask }
            slots[i] = old[j]
        }
        old.deallocate()
    }
}

/// Open-addressing hash map from a pair of token ids to a packed `rank << 32 | result id`.
/// Built once, then read-only.
final class PairTable {
    struct Slot {
        var key: UInt64  // UInt64.max marks an empty slot
        var value: UInt64
    }

    private let slots: UnsafeMutablePointer<Slot>
    private let shift: UInt64
    private let mask: Int
    private(set) var count = 0

    init(expectedCount: Int) {
        var bits: UInt64 = 4
        while (1 << bits) < expectedCount * 2 { bits += 1 }
        let capacity = 1 << Int(bits)
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(key: .max, value: 0), count: capacity)
        shift = 64 - bits
        mask = capacity - 1
    }

    deinit { slots.deallocate() }

    /// Packed `rank << 32 | result`, or `UInt64.max` when the two tokens do not merge.
    @inline(__always)
    func get(_ left: UInt32, _ right: UInt32) -> UInt64 {
        let key = UInt64(left) << 32 | UInt64(right)
        var i = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        while true {
            let slot = slots[i]
            if slot.key == key { return slot.value }
            if slot.key == .max { return .max }
            i = (i &+ 1) & mask
        }
    }

    /// Inserts the pair unless present (the first insertion wins).
    func insert(_ left: UInt32, _ right: UInt32, value: UInt64) {
        precondition((count + 1) * 2 <= mask + 1, "PairTable sized too small")
        let key = UInt64(left) << 32 | UInt64(right)
        var i = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        while true {
            if slots[i].key == key { return }
            if slots[i].key == .max {
                slots[i] = Slot(key: key, value: value)
                count += 1
                return
            }
            i = (i &+ 1) & mask
        }
    }
}

/// The raw bytes of all tokens plus a compact hash index from bytes to id. Immutable after init.
final class TokenStore {
    let count: Int
    /// Token i is `bytes[offsets[i]..<offsets[i+1]]`.
    let bytes: UnsafeMutablePointer<UInt8>
    let offsets: UnsafeMutablePointer<Int>
    /// End of the readable (padded) token bytes.
    let bytesEnd: UnsafePointer<UInt8>
    /// The seed of `hashBytes` for this store (random: see `hashBytes`).
    let seed = randomHashSeed()
    /// Each slot is `hash >> 32 << 32 | (id + 1)`, 0 when empty.
    private let slots: UnsafeMutablePointer<UInt64>
    private let mask: Int
    /// The first (earlier id, later id) with identical bytes, if any.
    private(set) var firstDuplicate: (Int, Int)?

    init(_ tokens: ByteRanges) {
        count = tokens.count
        // 8 zero bytes of padding let hashing load whole words (see `hashBytes(_:_:readableEnd:)`).
        bytes = .allocate(capacity: tokens.bytes.count + 8)
        bytes.initialize(from: tokens.bytes, count: tokens.bytes.count)
        (bytes + tokens.bytes.count).initialize(repeating: 0, count: 8)
        bytesEnd = UnsafePointer(bytes + tokens.bytes.count + 8)
        offsets = .allocate(capacity: count + 1)
        offsets[0] = 0
        (offsets + 1).initialize(from: tokens.ends, count: count)
        var capacity = 16
        while capacity < count * 5 / 2 { capacity <<= 1 }
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        mask = capacity - 1
        for id in 0..<count {
            let p = UnsafePointer(bytes + offsets[id])
            let n = offsets[id + 1] - offsets[id]
            let h = hashBytes(p, n, seed: seed, readableEnd: bytesEnd)
            var i = Int(truncatingIfNeeded: h) & mask
            while slots[i] != 0 {
                let other = Int(truncatingIfNeeded: slots[i] & 0xFFFF_FFFF) - 1
                if slots[i] >> 32 == h >> 32 && offsets[other + 1] - offsets[other] == n
                    && memcmp(bytes + offsets[other], p, n) == 0 {
                    if firstDuplicate == nil { firstDuplicate = (other, id) }
                    break
                }
                i = (i &+ 1) & mask
            }
            if slots[i] == 0 { slots[i] = (h >> 32) << 32 | UInt64(id + 1) }
        }
    }

    deinit {
        bytes.deallocate()
        offsets.deallocate()
        slots.deallocate()
    }

    /// The id of the token with these bytes, or -1. `hash` must be `hashBytes(p, n, seed: seed)`.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64) -> Int {
        var i = Int(truncatingIfNeeded: hash) & mask
        let tag = hash >> 32
        while true {
            let slot = slots[i]
            if slot == 0 { return -1 }
            if slot >> 32 == tag {
                let id = Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) &- 1
                let start = offsets[id]
                if offsets[id &+ 1] &- start == n && bytesEqual(bytes + start, p, n) { return id }
            }
            i = (i &+ 1) & mask
        }
    }

    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int { find(p, n, hash: hashBytes(p, n, seed: seed)) }

    func find(_ key: some Collection<UInt8>) -> Int {
        let array = Array(key)
        return array.withUnsafeBufferPointer { b in b.isEmpty ? -1 : find(b.baseAddress!, b.count) }
    }

    @inline(__always)
    func length(_ id: Int) -> Int { offsets[id + 1] - offsets[id] }

    func tokenBytes(_ id: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: bytes + offsets[id], count: offsets[id + 1] - offsets[id])
    }
}
