import Dispatch
/// The immutable tables behind a `GPT2Tokenizer`, and the encoding loops.
///
/// Merging follows tiktoken exactly: two adjacent parts merge when their concatenated bytes are a
/// mergeable token (a single byte or the result of a merge), lowest merge rank first, leftmost first
/// among equal ranks. For GPT-2's files this is the same as the original encoder.py.
final class BPEModel: @unchecked Sendable {
    // @unchecked: every stored property is immutable after `init`; the raw buffers are only read.
    /// Raw bytes of every token and the bytes -> id index.
    let store: TokenStore
    var tokenCount: Int { store.count }
    /// Merge i as (left id, right id).
    let mergePairs: [(UInt32, UInt32)]
    /// Token id of each single byte.
    let byteToToken: UnsafeMutablePointer<UInt32>
    /// Whether each token can be produced by BPE (a single byte or a merge result).
    let mergeable: UnsafeMutablePointer<Bool>
    /// (left id, right id) -> rank << 32 | result id, for every split of every merge result into two
    /// mergeable tokens (tiktoken compares the concatenated bytes, not the listed pair).
    let pairs: PairTable
    /// Tokens BPE cannot produce (e.g. "<|endoftext|>"), longest first.
    let specials: [(bytes: [UInt8], id: Int)]
    let specialTokenIDs: [String: Int]
    /// Steps taken to find the splits of the merge results (`MergeableAffixes.work`): bounded by
    /// a small multiple of the tokens' bytes, whatever they are (for tests).
    let buildWork: Int

    /// - Parameters:
    ///   - tokens: raw bytes of token i (byte-level strings already decoded, non-empty).
    ///   - merges: entries 2i and 2i+1 are the raw bytes of the left and right token of merge rank i.
    ///   - location: describes merge i in error messages.
    init(tokens: ByteRanges, merges: ByteRanges, location: (Int) -> String) throws {
        let store = TokenStore(tokens)
        if let (first, second) = store.firstDuplicate {
            throw TokenizerError.duplicateToken(token: tokens.string(second), firstID: first, secondID: second)
        }
        let count = store.count
        var mergeable = [Bool](repeating: false, count: count)
        var byteToToken = [UInt32](repeating: 0, count: 256)
        for b in 0..<256 {
            var byte = UInt8(b)
            let id = store.find(&byte, 1)
            guard id >= 0 else {
                throw TokenizerError.missingByteToken(byte: UInt8(b), token: ByteLevel.string(forBytes: [UInt8(b)]))
            }
            byteToToken[b] = UInt32(id)
            mergeable[id] = true
        }

        // Resolve merges; the rank of a merge result is its entry index.
        let mergeCount = merges.count / 2
        func text(_ i: Int) -> String { merges.string(2 * i) + " " + merges.string(2 * i + 1) }
        var rankOf = [Int32](repeating: -1, count: count)
        var results: [Int32] = []
        results.reserveCapacity(mergeCount)
        var mergePairs: [(UInt32, UInt32)] = []
        mergePairs.reserveCapacity(mergeCount)
        // Look up each merge's left, right and result token (the result's bytes are the two
        // entries' bytes, which lie side by side) on two threads: read-only, independent lookups.
        // Then check them in merge order, so the first bad merge is the one reported.
        var lookups = [Int32](repeating: -1, count: 3 * mergeCount)
        merges.bytes.withUnsafeBufferPointer { mb in
            let base = mb.baseAddress ?? UnsafePointer(bitPattern: 1)!
            lookups.withUnsafeMutableBufferPointer { out in
                Self.inHalves(mergeCount) { range, _ in
                    for i in range {
                        let ls = merges.start(2 * i), le = merges.ends[2 * i], re = merges.ends[2 * i + 1]
                        let left = store.find(base + ls, le - ls), right = store.find(base + le, re - le)
                        out[3 * i] = Int32(left)
                        out[3 * i + 1] = Int32(right)
                        if left >= 0 && right >= 0 { out[3 * i + 2] = Int32(store.find(base + ls, re - ls)) }
                    }
                }
            }
        }
        func resultBytes(_ i: Int) -> [UInt8] { Array(merges.bytes[merges.start(2 * i)..<merges.ends[2 * i + 1]]) }
        for i in 0..<mergeCount {
            let left = Int(lookups[3 * i]), right = Int(lookups[3 * i + 1]), result = Int(lookups[3 * i + 2])
            guard left >= 0 else {
                throw TokenizerError.unknownMergeToken(location: location(i), merge: text(i), token: merges.string(2 * i))
            }
            guard right >= 0 else {
                throw TokenizerError.unknownMergeToken(location: location(i), merge: text(i), token: merges.string(2 * i + 1))
            }
            guard result >= 0 else {
                throw TokenizerError.mergeResultNotInVocabulary(location: location(i), merge: text(i),
                                                               result: ByteLevel.string(forBytes: resultBytes(i)))
            }
            if rankOf[result] >= 0 {
                throw TokenizerError.duplicateMerge(location: location(i), merge: text(i),
                                                    result: ByteLevel.string(forBytes: resultBytes(i)),
                                                    firstLocation: location(Int(rankOf[result])))
            }
            rankOf[result] = Int32(i)
            mergeable[result] = true
            results.append(Int32(result))
            mergePairs.append((UInt32(left), UInt32(right)))
        }

        // Every split of every merge result into two mergeable tokens: the merge of the chains
        // of its mergeable prefixes and suffixes (`MergeableAffixes`, linear in the tokens'
        // bytes). The merges are independent here (read-only lookups), so two halves are
        // enumerated side by side; the lists are inserted in rank order.
        let affixes = MergeableAffixes(store: store, bytes: byteToToken, results: results, pairs: mergePairs, mergeable: mergeable)
        func splits(_ ranks: Range<Int>) -> [(UInt32, UInt32, UInt64)] {
            var list: [(UInt32, UInt32, UInt64)] = []
            list.reserveCapacity(ranks.count * 3)
            affixes.prefix.withUnsafeBufferPointer { prefix in affixes.suffix.withUnsafeBufferPointer { suffix in
                var capacity = 64
                var chain = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
                defer { chain.deallocate() }
                for rank in ranks {
                    let c = Int(results[rank])
                    let n = store.length(c)
                    let value = UInt64(rank) << 32 | UInt64(c)
                    // Mergeable prefixes, longest first; read from the end: split points ascending.
                    var count = 0
                    var a = prefix[c]
                    while a >= 0 {
                        if count == capacity {
                            let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: 2 * capacity)
                            bigger.update(from: chain, count: count)
                            chain.deallocate()
                            chain = bigger
                            capacity *= 2
                        }
                        chain[count] = a
                        count += 1
                        a = prefix[Int(a)]
                    }
                    // Mergeable suffixes, longest first: split points ascending too.
                    var i = count - 1
                    var b = suffix[c]
                    while i >= 0 && b >= 0 {
                        let k = store.length(Int(chain[i])), split = n - store.length(Int(b))
                        if k == split { list.append((UInt32(chain[i]), UInt32(b), value)) }
                        if k <= split { i -= 1 }
                        if k >= split { b = suffix[Int(b)] }
                    }
                }
            } }
            return list
        }
        var lists = [[(UInt32, UInt32, UInt64)]](repeating: [], count: 2)
        lists.withUnsafeMutableBufferPointer { out in
            Self.inHalves(mergeCount) { range, half in out[half] = splits(range) }
        }
        let pairs = PairTable(expectedCount: lists.reduce(0) { $0 + $1.count })
        for list in lists { for (a, b, value) in list { pairs.insert(a, b, value: value) } }

        var specials: [(bytes: [UInt8], id: Int)] = []
        var specialIDs: [String: Int] = [:]
        for id in 0..<count where !mergeable[id] {
            let bytes = Array(store.tokenBytes(id))
            specials.append((bytes, id))
            specialIDs[ByteLevel.string(forBytes: bytes)] = id
        }
        specials.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }

        // Nothing throws from here on.
        self.store = store
        self.mergePairs = mergePairs
        self.pairs = pairs
        self.specials = specials
        self.specialTokenIDs = specialIDs
        self.buildWork = affixes.work
        self.byteToToken = .allocate(capacity: 256)
        self.byteToToken.initialize(from: byteToToken, count: 256)
        self.mergeable = .allocate(capacity: max(1, count))
        self.mergeable.initialize(from: mergeable, count: count)
    }

    /// A merges file without a single merge is refused when the vocabulary has a multi-byte token
    /// that only merges could produce (issue 17 item 12): such a file is empty or truncated, and
    /// accepting it would encode every text byte by byte. A vocabulary of the 256 single bytes
    /// needs no merges, so its other tokens must be special tokens: declared ones
    /// (`declaredSpecials`, tokenizer.json's `added_tokens`) or ones written like special tokens,
    /// `<...>` (`<|endoftext|>`, `</s>`) or `[...]` (`[PAD]`).
    func checkMergesPresent(source: String, declaredSpecials: Set<Int>) throws {
        guard mergePairs.isEmpty else { return }
        func looksSpecial(_ b: [UInt8]) -> Bool {
            b.count >= 2 && ((b.first == UInt8(ascii: "<") && b.last == UInt8(ascii: ">")) || (b.first == UInt8(ascii: "[") && b.last == UInt8(ascii: "]")))
        }
        let unreachable = specials.filter { !declaredSpecials.contains($0.id) && !looksSpecial($0.bytes) }.sorted { $0.id < $1.id }
        guard let first = unreachable.first else { return }
        throw TokenizerError.invalidVocabulary(
            source: source,
            reason: "no merges (the file is empty or holds only its #version line), but the vocabulary has \(unreachable.count) multi-byte token\(unreachable.count == 1 ? "" : "s") that only merges can produce, such as \(quoted(ByteLevel.string(forBytes: first.bytes))) (id \(first.id)): the merges file is truncated or not the vocabulary's (a vocabulary of the 256 single bytes and special tokens needs none)")
    }

    /// Runs `body(range, half)` over 0..<n cut in two halves on two threads (one range, half 0,
    /// when n is small): for the independent, read-only lookups of a build.
    private static func inHalves(_ n: Int, _ body: (Range<Int>, Int) -> Void) {
        guard n >= 4096 else { body(0..<n, 0); return }
        let mid = n / 2
        DispatchQueue.concurrentPerform(iterations: 2) { half in body(half == 0 ? 0..<mid : mid..<n, half) }
    }

    deinit {
        byteToToken.deallocate()
        mergeable.deallocate()
    }

    /// The byte-level strings of all tokens in id order.
    var vocabulary: [String] { (0..<store.count).map { ByteLevel.string(forRaw: store.tokenBytes($0)) } }

    /// The merges as "left right" strings in rank order.
    var mergeStrings: [String] {
        mergePairs.map { pair -> String in
            let left = store.tokenBytes(Int(pair.0)), right = store.tokenBytes(Int(pair.1))
            return ByteLevel.string(forRaw: left) + " " + ByteLevel.string(forRaw: right)
        }
    }

    // MARK: Encoding

    /// Encodes `base[start..<end]` (valid UTF-8) without special-token handling.
    @inline(__always)
    func encodeOrdinary(_ base: UnsafePointer<UInt8>, start: Int, end: Int,
                        into out: inout [Int], cache: PieceCache?) {
        var pre = PreTokenizer(base, start: start, end: end)
        while let (s, e) = pre.next() {
            let p = base + s
            let n = e &- s
            if n == 1 {
                out.append(Int(byteToToken[Int(p[0])]))
                continue
            }
            let h = hashBytes(p, n, seed: store.seed)
            let id = store.find(p, n, hash: h)
            if id >= 0 && mergeable[id] {
                out.append(id)
                continue
            }
            if let cache {
                if let packed = cache.map.find(p, n, hash: h) {
                    cache.appendCached(packed, to: &out)
                    continue
                }
                let before = out.count
                bytePairMerge(p, n, into: &out)
                cache.insert(p, n, hash: h, ids: out[before...])
            } else {
                bytePairMerge(p, n, into: &out)
            }
        }
    }

    /// BPE of one pre-token of `n >= 2` bytes that is not itself a token.
    @inline(__always)
    func bytePairMerge(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int]) {
        if n <= 48 {
            mergeSmall(p, n, into: &out)
        } else if n <= 1024 {
            mergeLarge(p, n, into: &out)
        } else {
            mergeHuge(p, n, into: &out)
        }
    }

    /// Quadratic scan like tiktoken's, for short pieces where it is fastest.
    func mergeSmall(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int]) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2 * n) { buffer in
            let ids = buffer.baseAddress!
            let pr = ids + n  // pr[k] = packed rank/result of merging parts k and k+1
            for k in 0..<n { ids[k] = UInt64(byteToToken[Int(p[k])]) }
            for k in 0..<(n - 1) {
                pr[k] = pairs.get(UInt32(truncatingIfNeeded: ids[k]), UInt32(truncatingIfNeeded: ids[k + 1]))
            }
            var m = n
            while m > 1 {
                var best = UInt64.max
                var bi = -1
                var k = 0
                while k < m &- 1 {
                    if pr[k] < best { best = pr[k]; bi = k }
                    k &+= 1
                }
                if bi < 0 { break }
                ids[bi] = best & 0xFFFF_FFFF
                k = bi &+ 1
                while k < m &- 1 {
                    ids[k] = ids[k &+ 1]
                    k &+= 1
                }
                k = bi &+ 1
                while k < m &- 2 {
                    pr[k] = pr[k &+ 1]
                    k &+= 1
                }
                m &-= 1
                if bi &+ 1 < m {
                    pr[bi] = pairs.get(UInt32(truncatingIfNeeded: ids[bi]), UInt32(truncatingIfNeeded: ids[bi &+ 1]))
                }
                if bi > 0 {
                    pr[bi &- 1] = pairs.get(UInt32(truncatingIfNeeded: ids[bi &- 1]), UInt32(truncatingIfNeeded: ids[bi]))
                }
            }
            for k in 0..<m { out.append(Int(truncatingIfNeeded: ids[k])) }
        }
    }

    /// O(n log n) merge with a linked list of parts and a min-heap of candidate pairs keyed by
    /// (rank, position); stale heap entries are skipped when popped. Same result as the scan.
    func mergeLarge(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int]) {
        precondition(n < 1 << 32, "pre-token longer than 4 GiB")
        let dead = UInt32.max
        let tok = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        let next = UnsafeMutablePointer<Int>.allocate(capacity: n)
        let prev = UnsafeMutablePointer<Int>.allocate(capacity: n)
        let heap = UnsafeMutablePointer<UInt64>.allocate(capacity: 3 * n)
        defer {
            tok.deallocate(); next.deallocate(); prev.deallocate(); heap.deallocate()
        }
        for k in 0..<n {
            tok[k] = byteToToken[Int(p[k])]
            next[k] = k &+ 1
            prev[k] = k &- 1
        }
        var count = 0
        for k in 0..<(n - 1) {
            let v = pairs.get(tok[k], tok[k + 1])
            if v != .max {
                heap[count] = (v & 0xFFFF_FFFF_0000_0000) | UInt64(k)
                count &+= 1
            }
        }
        @inline(__always) func siftDown(_ start: Int) {
            var i = start
            let x = heap[i]
            while true {
                var c = 2 &* i &+ 1
                if c >= count { break }
                if c &+ 1 < count && heap[c &+ 1] < heap[c] { c &+= 1 }
                if heap[c] >= x { break }
                heap[i] = heap[c]
                i = c
            }
            heap[i] = x
        }
        @inline(__always) func push(_ x: UInt64) {
            var i = count
            count &+= 1
            while i > 0 {
                let parent = (i &- 1) >> 1
                if heap[parent] <= x { break }
                heap[i] = heap[parent]
                i = parent
            }
            heap[i] = x
        }
        if count > 1 {
            var i = (count - 2) / 2
            while i >= 0 { siftDown(i); i -= 1 }
        }
        while count > 0 {
            let top = heap[0]
            count &-= 1
            if count > 0 {
                heap[0] = heap[count]
                siftDown(0)
            }
            let i = Int(truncatingIfNeeded: top & 0xFFFF_FFFF)
            let left = tok[i]
            if left == dead { continue }
            let j = next[i]
            if j >= n { continue }
            let v = pairs.get(left, tok[j])
            if v == .max || (v >> 32) != (top >> 32) { continue }
            tok[i] = UInt32(truncatingIfNeeded: v)
            tok[j] = dead
            let after = next[j]
            next[i] = after
            if after < n { prev[after] = i }
            let before = prev[i]
            if before >= 0 {
                let w = pairs.get(tok[before], tok[i])
                if w != .max { push((w & 0xFFFF_FFFF_0000_0000) | UInt64(before)) }
            }
            if after < n {
                let w = pairs.get(tok[i], tok[after])
                if w != .max { push((w & 0xFFFF_FFFF_0000_0000) | UInt64(i)) }
            }
        }
        var k = 0
        while k < n {
            out.append(Int(tok[k]))
            k = next[k]
        }
    }

    /// Linear-time merge for very long pieces: a bucket queue indexed by rank (with a two-level
    /// bitmap to find the lowest non-empty rank) instead of a heap. Within a rank, candidate
    /// positions are taken in ascending order, which with stale-entry checks gives exactly the
    /// (rank, position) order of `mergeLarge` and tiktoken. Buckets are lists of 14-entry chunks
    /// so that taking a bucket reads memory mostly sequentially.
    func mergeHuge(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int]) {
        precondition(n < 1 << 31, "pre-token longer than 2 GiB")
        let rankCount = max(1, mergePairs.count)
        let dead = UInt32.max
        let words = (rankCount + 63) >> 6
        let summaryWords = (words + 63) >> 6
        let tok = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        let next = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        let prev = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        // Per rank: newest chunk (-1 if empty) and number of entries.
        let heads = UnsafeMutablePointer<Int32>.allocate(capacity: rankCount)
        heads.initialize(repeating: -1, count: rankCount)
        let sizes = UnsafeMutablePointer<Int32>.allocate(capacity: rankCount)
        sizes.initialize(repeating: 0, count: rankCount)
        // Chunk c is chunks[16c ..< 16c+16]: [0] next (older) chunk, [1] count, [2...15] positions.
        let chunkEntries = 14
        var chunkCapacity = max(64, n / 8)
        var chunks = UnsafeMutablePointer<Int32>.allocate(capacity: chunkCapacity * 16)
        var chunkCount = 0
        var freeChunk: Int32 = -1
        let bits = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
        bits.initialize(repeating: 0, count: words)
        let summary = UnsafeMutablePointer<UInt64>.allocate(capacity: summaryWords)
        summary.initialize(repeating: 0, count: summaryWords)
        var run = UnsafeMutablePointer<Int32>.allocate(capacity: 1024)
        var runCapacity = 1024
        defer {
            tok.deallocate(); next.deallocate(); prev.deallocate(); heads.deallocate(); sizes.deallocate()
            chunks.deallocate(); bits.deallocate(); summary.deallocate(); run.deallocate()
        }

        @inline(__always) func newChunk() -> Int {
            if freeChunk >= 0 {
                let c = Int(freeChunk)
                freeChunk = chunks[c &* 16]
                return c
            }
            if chunkCount == chunkCapacity {
                let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: chunkCapacity * 32)
                bigger.update(from: chunks, count: chunkCount * 16)
                chunks.deallocate()
                chunks = bigger
                chunkCapacity *= 2
            }
            chunkCount &+= 1
            return chunkCount &- 1
        }
        @inline(__always) func insert(_ rank: Int, _ pos: Int32) {
            var c = Int(heads[rank])
            if c < 0 || chunks[c &* 16 &+ 1] == Int32(chunkEntries) {
                let fresh = newChunk()
                chunks[fresh &* 16] = Int32(truncatingIfNeeded: c)
                chunks[fresh &* 16 &+ 1] = 0
                heads[rank] = Int32(truncatingIfNeeded: fresh)
                if c < 0 {
                    bits[rank >> 6] |= 1 << UInt64(rank & 63)
                    summary[rank >> 12] |= 1 << UInt64((rank >> 6) & 63)
                }
                c = fresh
            }
            let base = c &* 16
            let k = Int(chunks[base &+ 1])
            chunks[base &+ 2 &+ k] = pos
            chunks[base &+ 1] = Int32(truncatingIfNeeded: k &+ 1)
            sizes[rank] &+= 1
        }
        @inline(__always) func lowestRank() -> Int {
            for s in 0..<summaryWords where summary[s] != 0 {
                let w = s << 6 | summary[s].trailingZeroBitCount
                return w << 6 | bits[w].trailingZeroBitCount
            }
            return -1
        }

        for k in 0..<n {
            tok[k] = byteToToken[Int(p[k])]
            next[k] = Int32(truncatingIfNeeded: k &+ 1)
            prev[k] = Int32(truncatingIfNeeded: k &- 1)
        }
        for k in 0..<(n - 1) {
            let v = pairs.get(tok[k], tok[k &+ 1])
            if v != .max { insert(Int(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: k)) }
        }

        while true {
            let r = lowestRank()
            if r < 0 { break }
            // Take the whole bucket, in insertion order (chunks are newest first: fill from the end).
            let count = Int(sizes[r])
            if count > runCapacity {
                run.deallocate()
                while runCapacity < count { runCapacity *= 2 }
                run = .allocate(capacity: runCapacity)
            }
            var end = count
            var c = Int(heads[r])
            while c >= 0 {
                let base = c &* 16
                let k = Int(chunks[base &+ 1])
                end &-= k
                (run + end).update(from: chunks + (base &+ 2), count: k)
                let older = Int(chunks[base])
                chunks[base] = freeChunk
                freeChunk = Int32(truncatingIfNeeded: c)
                c = older
            }
            heads[r] = -1
            sizes[r] = 0
            bits[r >> 6] &= ~(1 << UInt64(r & 63))
            if bits[r >> 6] == 0 { summary[r >> 12] &= ~(1 << UInt64((r >> 6) & 63)) }
            var buffer = UnsafeMutableBufferPointer(start: run, count: count)
            var sorted = true
            var k = 1
            while k < count {
                if buffer[k] < buffer[k &- 1] { sorted = false; break }
                k &+= 1
            }
            if !sorted { buffer.sort() }

            var i = 0
            while i < count {
                let pos = Int(buffer[i])
                i &+= 1
                let left = tok[pos]
                if left == dead { continue }
                let j = Int(next[pos])
                if j >= n { continue }
                let v = pairs.get(left, tok[j])
                if v == .max || Int(truncatingIfNeeded: v >> 32) != r { continue }
                tok[pos] = UInt32(truncatingIfNeeded: v)
                tok[j] = dead
                let after = Int(next[j])
                next[pos] = Int32(truncatingIfNeeded: after)
                if after < n { prev[after] = Int32(truncatingIfNeeded: pos) }
                var interrupted = false
                let before = Int(prev[pos])
                if before >= 0 {
                    let w = pairs.get(tok[before], tok[pos])
                    if w != .max {
                        let r2 = Int(truncatingIfNeeded: w >> 32)
                        insert(r2, Int32(truncatingIfNeeded: before))
                        if r2 <= r { interrupted = true }
                    }
                }
                if after < n {
                    let w = pairs.get(tok[pos], tok[after])
                    if w != .max {
                        let r2 = Int(truncatingIfNeeded: w >> 32)
                        insert(r2, Int32(truncatingIfNeeded: pos))
                        if r2 <= r { interrupted = true }
                    }
                }
                if interrupted {
                    // A pair of lower (or equal) rank appeared: requeue the rest of this rank.
                    while i < count {
                        insert(r, buffer[i])
                        i &+= 1
                    }
                }
            }
        }
        var k = 0
        while k < n {
            out.append(Int(tok[k]))
            k = Int(next[k])
        }
    }

    // MARK: Decoding

    @inline(__always)
    func appendBytes(of id: Int, to out: inout [UInt8]) throws {
        guard id >= 0 && id < tokenCount else {
            throw TokenizerError.tokenIDOutOfRange(id: id, vocabularySize: tokenCount)
        }
        out.append(contentsOf: store.tokenBytes(id))
    }
}

/// Per-call memo of pre-token -> ids, for pre-tokens that are not single tokens.
final class PieceCache {
    let map = ByteKeyMap(expectedCount: 4096, expectedKeyBytes: 1 << 16)
    private var ids: [UInt32] = []
    /// Entries beyond this are not added (keeps memory bounded on huge, varied inputs).
    static let maxEntries = 1 << 18
    static let maxPieceBytes = 64

    @inline(__always)
    func appendCached(_ packed: UInt64, to out: inout [Int]) {
        let start = Int(truncatingIfNeeded: packed >> 32)
        let count = Int(truncatingIfNeeded: packed & 0xFFFF_FFFF)
        for k in start..<(start + count) { out.append(Int(ids[k])) }
    }

    @inline(__always)
    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64, ids new: ArraySlice<Int>) {
        guard n <= PieceCache.maxPieceBytes, map.count < PieceCache.maxEntries else { return }
        let start = ids.count
        for id in new { ids.append(UInt32(truncatingIfNeeded: id)) }
        map.insert(p, n, hash: hash, value: UInt64(start) << 32 | UInt64(new.count))
    }
}
