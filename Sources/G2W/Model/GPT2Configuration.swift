import G2WFormat

/// GPT-2 hyperparameters, as stored in a `.g2w` file's `gpt2.*` metadata (spec/g2w.md, "GPT-2 profile").
public struct GPT2Configuration: Sendable, Equatable, CustomStringConvertible {
    /// Transformer blocks (n_layer).
    public var layerCount: Int
    /// Attention heads per block (n_head); must divide ``embeddingSize``.
    public var headCount: Int
    /// Width of the residual stream and of the embeddings (n_embd).
    public var embeddingSize: Int
    /// Width of the MLP's hidden layer (n_inner; 4 x n_embd in every released GPT-2).
    public var innerSize: Int
    /// Positions the model can attend over, in tokens (n_ctx, Hugging Face's n_positions): the
    /// rows of `wpe`.
    public var contextLength: Int
    /// Tokens in the vocabulary (vocab_size): the rows of `wte` and the length of a logits row.
    public var vocabularySize: Int
    /// The LayerNorms' epsilon (layer_norm_epsilon; 1e-5 in GPT-2), in (0, 1).
    public var layerNormEpsilon: Double
    /// Always "gelu_new" (the tanh approximation) for GPT-2.
    public var activation: String

    /// A configuration from its values, not validated (see ``validate()``). `innerSize` nil
    /// means 4 x `embeddingSize`.
    public init(layerCount: Int, headCount: Int, embeddingSize: Int, innerSize: Int? = nil, contextLength: Int,
                vocabularySize: Int, layerNormEpsilon: Double = 1e-5, activation: String = "gelu_new") {
        self.layerCount = layerCount
        self.headCount = headCount
        self.embeddingSize = embeddingSize
        self.innerSize = innerSize ?? 4 * embeddingSize
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        self.layerNormEpsilon = layerNormEpsilon
        self.activation = activation
    }

    /// Width of one attention head: n_embd / n_head.
    public var headSize: Int { embeddingSize / headCount }

    /// The values on one line with their Hugging Face names ("n_layer 12, n_head 12, ...").
    public var description: String {
        "n_layer \(layerCount), n_head \(headCount), n_embd \(embeddingSize), n_inner \(innerSize), n_ctx \(contextLength), vocab \(vocabularySize), eps \(layerNormEpsilon)"
    }

    /// Checks the values are usable: positive, heads divide the embedding, sizes bounded.
    /// - Throws: ``ModelError/invalidConfiguration(_:)``: a size outside 1...2^20, n_embd not a
    ///   multiple of n_head, epsilon outside (0, 1), or an activation not in
    ///   ``supportedActivations``.
    public func validate() throws {
        func bad(_ s: String) -> ModelError { .invalidConfiguration(s) }
        let limit = 1 << 20
        for (name, v) in [("n_layer", layerCount), ("n_head", headCount), ("n_embd", embeddingSize), ("n_inner", innerSize),
                          ("n_ctx", contextLength), ("vocab_size", vocabularySize)] {
            guard v >= 1, v <= limit else { throw bad("\(name) is \(v), must be 1...\(limit)") }
        }
        guard embeddingSize % headCount == 0 else { throw bad("n_embd \(embeddingSize) is not a multiple of n_head \(headCount)") }
        guard layerNormEpsilon.isFinite, layerNormEpsilon > 0, layerNormEpsilon < 1 else { throw bad("layer_norm_epsilon \(layerNormEpsilon) must be in (0, 1)") }
        guard Self.supportedActivations.contains(activation) else {
            throw bad("activation '\(activation)' is not supported (GPT-2 uses gelu_new, the tanh approximation)")
        }
    }

    /// `gelu_pytorch_tanh` is the same function as `gelu_new`.
    public static let supportedActivations: Set<String> = ["gelu_new", "gelu_pytorch_tanh"]

    // MARK: Metadata

    enum Key {
        static let layerCount = "gpt2.n_layer", headCount = "gpt2.n_head", embeddingSize = "gpt2.n_embd"
        static let innerSize = "gpt2.n_inner", contextLength = "gpt2.n_ctx", vocabularySize = "gpt2.vocab_size"
        static let epsilon = "gpt2.layer_norm_epsilon", activation = "gpt2.activation", layout = "gpt2.matrix_layout"
    }

    /// The layout every 2-D weight is stored in: [out, in], row-major, so y = W x reads rows.
    public static let matrixLayout = "out_in"

    package func write(to m: inout G2WMetadata) {
        m[Key.layerCount] = .uint(UInt64(layerCount))
        m[Key.headCount] = .uint(UInt64(headCount))
        m[Key.embeddingSize] = .uint(UInt64(embeddingSize))
        m[Key.innerSize] = .uint(UInt64(innerSize))
        m[Key.contextLength] = .uint(UInt64(contextLength))
        m[Key.vocabularySize] = .uint(UInt64(vocabularySize))
        m[Key.epsilon] = .float(layerNormEpsilon)
        m[Key.activation] = .string(activation)
        m[Key.layout] = .string(Self.matrixLayout)
    }

    /// Reads and validates the `gpt2.*` keys (and requires `g2w.architecture` = "gpt2" and
    /// `gpt2.matrix_layout` = ``matrixLayout``).
    /// - Throws: ``ModelError/missingMetadata(_:)`` or ``ModelError/invalidMetadata(_:_:)`` for
    ///   an absent or mistyped key, ``ModelError/invalidConfiguration(_:)`` for unusable values.
    public init(metadata m: G2WMetadata) throws {
        func uint(_ key: String) throws -> Int {
            guard let v = m[key] else { throw ModelError.missingMetadata(key) }
            do { return try v.count() } catch { throw ModelError.invalidMetadata(key, "\(error)") }
        }
        func string(_ key: String) throws -> String {
            guard let v = m[key] else { throw ModelError.missingMetadata(key) }
            guard let s = v.stringValue else { throw ModelError.invalidMetadata(key, "expected string, found \(v.typeName)") }
            return s
        }
        let arch = try string("g2w.architecture")
        guard arch == "gpt2" else { throw ModelError.invalidMetadata("g2w.architecture", "is '\(arch)', this runtime runs 'gpt2'") }
        guard let epsValue = m[Key.epsilon] else { throw ModelError.missingMetadata(Key.epsilon) }
        guard let eps = epsValue.floatValue else { throw ModelError.invalidMetadata(Key.epsilon, "expected f64, found \(epsValue.typeName)") }
        let act = try string(Key.activation)
        let layout = try string(Key.layout)
        guard layout == Self.matrixLayout else { throw ModelError.invalidMetadata(Key.layout, "is '\(layout)', expected '\(Self.matrixLayout)'") }
        self.init(layerCount: try uint(Key.layerCount), headCount: try uint(Key.headCount), embeddingSize: try uint(Key.embeddingSize),
                  innerSize: try uint(Key.innerSize), contextLength: try uint(Key.contextLength),
                  vocabularySize: try uint(Key.vocabularySize), layerNormEpsilon: eps, activation: act)
        try validate()
    }
}

/// An error about a model: its file's metadata, tensors, or what it is asked to do.
public enum ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The hyperparameters are unusable; the string says which and why.
    case invalidConfiguration(String)
    /// A required metadata key (named) is absent.
    case missingMetadata(String)
    /// A metadata key (first) has the wrong type or value; the second string says what is wrong.
    case invalidMetadata(String, String)
    /// A tensor the model needs (named) is absent.
    case missingTensor(String)
    /// A tensor's shape is not the one the hyperparameters imply.
    case wrongShape(name: String, expected: [Int], found: [Int])
    /// A tensor's element type (`found`) is not supported for it (vectors must be f32).
    case wrongDType(name: String, found: String)
    /// The model has no embedded tokenizer, so text cannot be encoded or decoded; the string is
    /// the message.
    case noTokenizer(String)
    /// A token id outside `0..<vocabularySize`.
    case tokenOutOfRange(id: Int, vocabularySize: Int)
    /// `needed` tokens (cached plus new) exceed the model's context of `contextLength`.
    case contextOverflow(needed: Int, contextLength: Int)
    /// Nothing (or too little) to compute on: no tokens, a text shorter than a window; the
    /// string is the message.
    case emptyInput(String)

    /// The message.
    public var description: String {
        func dims(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }
        switch self {
        case let .invalidConfiguration(s): return "invalid model configuration: \(s)"
        case let .missingMetadata(k): return "metadata key '\(k)' is missing"
        case let .invalidMetadata(k, s): return "metadata key '\(k)': \(s)"
        case let .missingTensor(n): return "tensor '\(n)' is missing"
        case let .wrongShape(n, e, f): return "tensor '\(n)' has shape \(dims(f)), expected \(dims(e))"
        case let .wrongDType(n, f): return "tensor '\(n)' has dtype \(f), which is not supported here"
        case let .noTokenizer(s): return s
        case let .tokenOutOfRange(id, v): return "token id \(id) is out of range (vocabulary size \(v))"
        case let .contextOverflow(n, c): return "\(n) tokens do not fit the model's context of \(c) tokens"
        case let .emptyInput(s): return s
        }
    }
}
