import G2W

/// An error from the training engine, with the values a caller needs to act on it.
public enum TrainingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A batch or sequence shape that cannot be trained (what, and why).
    case invalidShape(String)
    /// A token id outside the vocabulary, at a position of the flattened batch.
    case tokenOutOfRange(position: Int, id: Int, vocabularySize: Int)
    /// Arrays of the wrong length (what, expected, found).
    case wrongCount(what: String, expected: Int, found: Int)
    /// The loss of a step is NaN or infinite; the parameters were not updated.
    case nonFiniteLoss(step: Int, loss: Double)
    /// The gradient norm of a step is NaN or infinite; the parameters were not updated.
    case nonFiniteGradient(step: Int, norm: Double)
    /// Two blocks that must share a layout do not.
    case layoutMismatch(String)

    /// The message.
    public var description: String {
        switch self {
        case let .invalidShape(s): return s
        case let .tokenOutOfRange(p, id, v): return "token id \(id) at position \(p) of the batch is out of range (vocabulary size \(v))"
        case let .wrongCount(w, e, f): return "\(w): expected \(e) values, found \(f)"
        case let .nonFiniteLoss(s, l): return "step \(s): the loss is \(l); training stopped before updating the parameters"
        case let .nonFiniteGradient(s, n): return "step \(s): the gradient norm is \(n); training stopped before updating the parameters"
        case let .layoutMismatch(s): return s
        }
    }
}
