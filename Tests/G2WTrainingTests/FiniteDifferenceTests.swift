import G2W
import G2WTraining
import XCTest

/// The reference backward against central finite differences of its own loss, in Double, for
/// every element of every tensor of tiny models (tied and untied head, two heads).
final class FiniteDifferenceTests: XCTestCase {
    func testReferenceGradientsMatchFiniteDifferences() throws {
        let c = GPT2Configuration(layerCount: 2, headCount: 2, embeddingSize: 6, innerSize: 10, contextLength: 5, vocabularySize: 11)
        for (untied, dropout) in [(false, Float(0)), (true, Float(0)), (false, Float(0.3))] {
            let block = try randomBlock(c, untied: untied, seed: untied ? 8 : 9)
            let x = randomTokens(8, vocabulary: 11, seed: 3).map(Int.init), y = randomTokens(8, vocabulary: 11, seed: 4).map(Int.init)
            var ref = GPT2ReferenceTraining(block: block)
            let analytic = ref.run(inputs: x, targets: y, batchSize: 2, dropout: dropout, dropoutSeed: 5).gradients
            let h = 1e-5
            var worst = 0.0, checked = 0
            for e in block.entries {
                for i in 0..<e.count {
                    let v = ref.parameters[e.name]![i]
                    ref.parameters[e.name]![i] = v + h
                    let up = ref.run(inputs: x, targets: y, batchSize: 2, dropout: dropout, dropoutSeed: 5).loss!
                    ref.parameters[e.name]![i] = v - h
                    let down = ref.run(inputs: x, targets: y, batchSize: 2, dropout: dropout, dropoutSeed: 5).loss!
                    ref.parameters[e.name]![i] = v
                    let fd = (up - down) / (2 * h), g = analytic[e.name]![i]
                    let err = abs(fd - g) / max(1e-3, abs(g))
                    worst = max(worst, err)
                    XCTAssertLessThan(err, 1e-5, "\(e.name)[\(i)], untied \(untied), dropout \(dropout): finite difference \(fd), backward \(g)")
                    checked += 1
                }
            }
            print("FiniteDifferenceTests untied \(untied), dropout \(dropout): \(checked) elements, largest relative difference \(worst)")
        }
    }
}
