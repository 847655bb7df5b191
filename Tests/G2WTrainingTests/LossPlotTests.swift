import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import G2WTraining
import XCTest

/// `LossPlot`: the SVG is well-formed XML with both series, the legend, a marker per validation
/// point and labelled axes; empty series, single points, NaN/infinite losses, extreme values and
/// long series all give a valid chart; labels and ticks read as intended; `write` is atomic.
final class LossPlotTests: XCTestCase {
    /// The elements of a parsed SVG: name, attributes and text content.
    final class Collector: NSObject, XMLParserDelegate {
        var elements: [(name: String, attributes: [String: String])] = []
        var texts: [String] = []
        var current = ""
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            elements.append((name, attributes))
            current = ""
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) { current += string }
        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if name == "text" || name == "title" { texts.append(current) }
            current = ""
        }
        func element(id: String) -> [String: String]? { elements.first { $0.attributes["id"] == id }?.attributes }
        func count(_ name: String) -> Int { elements.filter { $0.name == name }.count }
    }

    func parse(_ svg: String, file: StaticString = #filePath, line: UInt = #line) -> Collector {
        let parser = XMLParser(data: Data(svg.utf8))
        let c = Collector()
        parser.delegate = c
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
        XCTAssertEqual(c.elements.first?.name, "svg", file: file, line: line)
        XCTAssertEqual(c.elements.first?.attributes["xmlns"], "http://www.w3.org/2000/svg", file: file, line: line)
        for bad in ["nan", "inf", "<script", "@import", "href"] {
            XCTAssertFalse(svg.lowercased().contains(bad), "the SVG contains '\(bad)'", file: file, line: line)
        }
        return c
    }

    func pointCount(_ attributes: [String: String]?) -> Int {
        attributes?["points"]?.split(separator: " ").count ?? 0
    }

    /// A decaying loss curve with a little ripple, `n` points `every` tokens apart.
    func curve(_ n: Int, every: Int = 8192) -> [(tokens: Int, loss: Double)] {
        (0..<n).map { i -> (tokens: Int, loss: Double) in
            let t = Double(i) / Double(max(n, 1))
            let loss: Double = 3 + 8 * exp(-5 * t) + 0.1 * sin(Double(i) * 1.7)
            return (i * every, loss)
        }
    }

    func testBothSeriesLegendAndAxes() {
        let train = curve(300)
        let validation = stride(from: 0, to: 300, by: 50).map { train[$0] }.map { ($0.tokens, $0.loss + 0.05) }
        let svg = LossPlot.svg(train: train, validation: validation, title: "gpt2 <tiny> & \"shakespeare\"")
        let c = parse(svg)
        XCTAssertEqual(pointCount(c.element(id: "train")), 300)
        XCTAssertEqual(pointCount(c.element(id: "validation")), 6)
        XCTAssertNotEqual(c.element(id: "train")?["stroke"], c.element(id: "validation")?["stroke"], "distinct colours")
        XCTAssertNotNil(c.element(id: "legend"))
        XCTAssertEqual(c.count("circle"), 6 + 1, "a marker per validation point, and one in the legend")
        XCTAssertTrue(c.texts.contains("gpt2 <tiny> & \"shakespeare\""), "the title, escaped and parsed back")
        XCTAssertTrue(c.texts.contains("tokens seen"))
        XCTAssertTrue(c.texts.contains("loss"))
        XCTAssertTrue(c.texts.contains { $0.hasPrefix("train (last ") })
        XCTAssertTrue(c.texts.contains { $0.hasPrefix("validation (best ") })
        // Tokens 0 ... 2.4M: labels in M; the loss axis covers 3 ... 11.
        XCTAssertTrue(["0", "1M", "2M", "4", "10"].allSatisfy(c.texts.contains), "\(c.texts)")
        // Every coordinate of the series is inside the plot area.
        for id in ["train", "validation"] {
            for pair in c.element(id: id)!["points"]!.split(separator: " ") {
                let xy = pair.split(separator: ",").compactMap { Double($0) }
                XCTAssertEqual(xy.count, 2)
                XCTAssertTrue((72.0...776.0).contains(xy[0]) && (48.0...416.0).contains(xy[1]), "\(id) point \(pair) outside the plot")
            }
        }
    }

    func testEdgeCases() {
        // Nothing at all.
        var c = parse(LossPlot.svg(train: [], validation: [], title: ""))
        XCTAssertNil(c.element(id: "train"))
        XCTAssertNil(c.element(id: "validation"))
        XCTAssertTrue(c.texts.contains("no data"))
        XCTAssertTrue(c.texts.contains("train (no points)"))
        XCTAssertTrue(c.texts.contains("validation (no points)"))

        // One point each, at the same place.
        c = parse(LossPlot.svg(train: [(0, 10.9)], validation: [(0, 10.9)], title: "one"))
        XCTAssertEqual(c.element(id: "train")?["r"], "3", "a single training point is a dot")
        XCTAssertEqual(c.count("circle"), 3)

        // Only non-finite losses: treated as empty.
        c = parse(LossPlot.svg(train: [(1, .nan), (2, .infinity)], validation: [(3, -.infinity)], title: "bad"))
        XCTAssertTrue(c.texts.contains("no data"))

        // NaN and infinities among good points are skipped.
        let mixed: [(tokens: Int, loss: Double)] = [(0, 5), (100, .nan), (200, 4), (300, .infinity), (400, 3.5)]
        c = parse(LossPlot.svg(train: mixed, validation: [(200, 4.2), (400, -.infinity)], title: "mixed"))
        XCTAssertEqual(pointCount(c.element(id: "train")), 3)
        XCTAssertNil(c.element(id: "validation"), "one finite validation point: no line")
        XCTAssertEqual(c.count("circle"), 2)

        // Out of order, equal losses, negative and huge values, control characters in the title.
        c = parse(LossPlot.svg(train: [(500, 2), (100, 2), (300, 2)], validation: [(0, 1e300), (10, -1e300)], title: "a\u{01}b\u{0}c\td"))
        XCTAssertEqual(pointCount(c.element(id: "train")), 3)
        XCTAssertEqual(pointCount(c.element(id: "validation")), 2)
        c = parse(LossPlot.svg(train: [(Int.max, 1), (Int.min, 2)], validation: [(0, .greatestFiniteMagnitude), (1, -.greatestFiniteMagnitude)], title: "extremes"))
        XCTAssertEqual(pointCount(c.element(id: "train")), 2)
    }

    func points(_ attributes: [String: String]?) -> [(x: Double, y: Double)] {
        (attributes?["points"] ?? "").split(separator: " ").map { pair in
            let xy = pair.split(separator: ",").compactMap { Double($0) }
            return (xy.first ?? .nan, xy.last ?? .nan)
        }
    }

    func testLongSeriesIsDownsampled() {
        var train = curve(250_000, every: 1024)
        train[123_457].loss = 50  // a spike survives downsampling
        let svg = LossPlot.svg(train: train, validation: curve(40, every: 6_400_000), title: "long")
        let c = parse(svg)
        let p = points(c.element(id: "train"))
        XCTAssertLessThanOrEqual(p.count, LossPlot.maxPoints)
        XCTAssertGreaterThan(p.count, LossPlot.maxPoints / 2)
        XCTAssertLessThan(svg.utf8.count, 200_000)
        XCTAssertEqual(p.first?.x, 72, "the first point is kept")
        XCTAssertEqual(p.map(\.x).max(), p.last?.x, "the last point is kept")
        XCTAssertEqual(p.map(\.x), p.map(\.x).sorted(), "in order of tokens")
        // The spike is the highest point by far, at its tokens.
        let byHeight = p.sorted { $0.y < $1.y }
        XCTAssertGreaterThan(byHeight[1].y - byHeight[0].y, 100)
        XCTAssertEqual((byHeight[0].x - 72) / (p.last!.x - 72), 123_457 / 249_999, accuracy: 0.002)
        // The unsorted input is drawn in order.
        let shuffled = LossPlot.svg(train: train.reversed(), validation: [], title: "long")
        XCTAssertEqual(points(parse(shuffled).element(id: "train")).map(\.x), p.map(\.x))
    }

    /// The tick labels of a chart whose training series spans `tokens` with losses `losses`.
    func labels(tokens: [Int], losses: [Double]) -> Set<String> {
        Set(parse(LossPlot.svg(train: zip(tokens, losses).map { ($0, $1) }, validation: [], title: "t")).texts)
    }

    func testLabelsAndTicks() {
        var l = labels(tokens: [0, 2_400_000], losses: [11, 3])
        XCTAssertTrue(["0", "0.5M", "1M", "1.5M", "2M"].allSatisfy(l.contains), "\(l)")
        XCTAssertTrue(["4", "6", "8", "10"].allSatisfy(l.contains), "\(l)")
        l = labels(tokens: [0, 900_000], losses: [3.3, 3.1])
        XCTAssertTrue(["0", "200k", "400k", "800k"].allSatisfy(l.contains), "\(l)")
        XCTAssertTrue(["3.10", "3.15", "3.20", "3.25", "3.30"].allSatisfy(l.contains) || ["3.1", "3.2", "3.3"].allSatisfy(l.contains), "\(l)")
        l = labels(tokens: [0, 60_000], losses: [1, 0.5])
        XCTAssertTrue(["0", "20k", "40k", "60k"].allSatisfy(l.contains), "\(l)")
        l = labels(tokens: [0, 100], losses: [1, 0.5])
        XCTAssertTrue(["0", "20", "40", "100"].allSatisfy(l.contains), "\(l)")
        l = labels(tokens: [1_000_000_000, 3_000_000_000], losses: [3, 2.5])
        XCTAssertTrue(["1B", "1.5B", "2B", "3B"].allSatisfy(l.contains), "\(l)")
        XCTAssertTrue(l.contains("train (last 2.500)"), "\(l)")
        // A single token count: a range around it, whole tokens only.
        l = labels(tokens: [3], losses: [2])
        XCTAssertTrue(["2", "3", "4"].allSatisfy(l.contains), "\(l)")
        XCTAssertFalse(l.contains("2.5") || l.contains("3.5"), "\(l)")
    }

    func testWrite() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("g2w-plot-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("loss.svg").path
        let svg = LossPlot.svg(train: curve(100), validation: [(0, 11), (400_000, 6), (800_000, 4.5)], title: "write")
        try LossPlot.write(svg, to: path)
        try LossPlot.write(svg, to: path)  // replaces by default
        XCTAssertThrowsError(try LossPlot.write(svg, to: path, overwrite: false))
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), svg)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["loss.svg"])
        XCTAssertThrowsError(try LossPlot.write(svg, to: dir.appendingPathComponent("missing/loss.svg").path))
        if let out = ProcessInfo.processInfo.environment["G2W_LOSS_PLOT_SAMPLE"] {  // for looking at it
            var train = curve(20_000, every: 512)
            for i in train.indices { train[i].loss += 0.3 * sin(Double(i) * 12.9898).truncatingRemainder(dividingBy: 1) }
            let validation = stride(from: 0, to: 20_000, by: 1000).map { (train[$0].tokens, train[$0].loss * 1.03 + 0.1) } + [(train.last!.tokens, train.last!.loss * 1.03 + 0.1)]
            try LossPlot.write(LossPlot.svg(train: train, validation: validation, title: "GPT-2 124M on Shakespeare (sample)"), to: out)
        }
    }
}
