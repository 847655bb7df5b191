import G2WFormat

/// A chart of training and validation loss against tokens seen, as a self-contained SVG: no
/// scripts, no style sheets, no external fonts (the generic `sans-serif` family), so it opens in
/// any browser or image viewer and can be committed next to a run's log.
///
/// The chart has a title, a y axis of loss and an x axis of tokens seen (ticks at 1, 2, 2.5 or
/// 5 x 10^k, labels with k/M/B suffixes), light grid lines, the training loss as a blue line, the
/// validation loss as a red line with a dot at each evaluation, and a legend with the last
/// training loss and the best validation loss.
///
/// Input is taken as it comes: points with a NaN or infinite loss are skipped, each series is
/// drawn in order of tokens, empty series and single points are fine (an empty chart says
/// "no data"), and a long training series is reduced to at most ``maxPoints`` points by keeping,
/// in each of ~1,000 consecutive buckets, its lowest and highest loss (so the band of the noise
/// stays visible), plus the first and last points.
///
/// ```swift
/// let svg = LossPlot.svg(train: log.train, validation: log.validation, title: "gpt2 on shakespeare")
/// try LossPlot.write(svg, to: "run/loss.svg")
/// ```
public enum LossPlot {
    /// The most points drawn per series.
    public static let maxPoints = 2000

    static let width = 800.0, height = 480.0
    static let left = 72.0, right = 24.0, top = 48.0, bottom = 64.0
    static let trainColour = "#1f77b4", validationColour = "#d62728"

    /// The SVG document (UTF-8 text, starting with an XML declaration).
    public static func svg(train: [(tokens: Int, loss: Double)], validation: [(tokens: Int, loss: Double)], title: String) -> String {
        let t = downsample(clean(train), to: maxPoints)
        let v = downsample(clean(validation), to: maxPoints)
        let all = t + v
        let xs = axis(all.map { Double($0.tokens) }, integral: true)
        let ys = axis(all.map(\.loss), integral: false)
        let plotW = width - left - right, plotH = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - xs.lo) / (xs.hi - xs.lo) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (y - ys.lo) / (ys.hi - ys.lo) * plotH }

        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(num(width))\" height=\"\(num(height))\" viewBox=\"0 0 \(num(width)) \(num(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<title>\(escaped(title))</title>\n"
        s += "<rect x=\"0\" y=\"0\" width=\"\(num(width))\" height=\"\(num(height))\" fill=\"#ffffff\"/>\n"
        s += "<text x=\"\(num(width / 2))\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\" fill=\"#222222\">\(escaped(title))</text>\n"

        // Grid, ticks and tick labels.
        s += "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n"
        for x in xs.ticks { s += "<line x1=\"\(num(px(x)))\" y1=\"\(num(top))\" x2=\"\(num(px(x)))\" y2=\"\(num(top + plotH))\"/>\n" }
        for y in ys.ticks { s += "<line x1=\"\(num(left))\" y1=\"\(num(py(y)))\" x2=\"\(num(left + plotW))\" y2=\"\(num(py(y)))\"/>\n" }
        s += "</g>\n<g stroke=\"#333333\" stroke-width=\"1\">\n"
        s += "<line x1=\"\(num(left))\" y1=\"\(num(top + plotH))\" x2=\"\(num(left + plotW))\" y2=\"\(num(top + plotH))\"/>\n"
        s += "<line x1=\"\(num(left))\" y1=\"\(num(top))\" x2=\"\(num(left))\" y2=\"\(num(top + plotH))\"/>\n"
        for x in xs.ticks { s += "<line x1=\"\(num(px(x)))\" y1=\"\(num(top + plotH))\" x2=\"\(num(px(x)))\" y2=\"\(num(top + plotH + 5))\"/>\n" }
        for y in ys.ticks { s += "<line x1=\"\(num(left - 5))\" y1=\"\(num(py(y)))\" x2=\"\(num(left))\" y2=\"\(num(py(y)))\"/>\n" }
        s += "</g>\n<g fill=\"#333333\">\n"
        for x in xs.ticks {
            s += "<text x=\"\(num(px(x)))\" y=\"\(num(top + plotH + 19))\" text-anchor=\"middle\">\(tokenLabel(x, step: xs.step, largest: max(abs(xs.lo), abs(xs.hi))))</text>\n"
        }
        for y in ys.ticks {
            s += "<text x=\"\(num(left - 8))\" y=\"\(num(py(y) + 4))\" text-anchor=\"end\">\(decimalLabel(y, step: ys.step))</text>\n"
        }
        s += "<text x=\"\(num(left + plotW / 2))\" y=\"\(num(height - 14))\" text-anchor=\"middle\" font-size=\"13\">tokens seen</text>\n"
        s += "<text x=\"18\" y=\"\(num(top + plotH / 2))\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 18 \(num(top + plotH / 2)))\">loss</text>\n"
        s += "</g>\n"

        // The series.
        func points(_ p: [(tokens: Int, loss: Double)]) -> String {
            p.map { "\(num(px(Double($0.tokens)))),\(num(py($0.loss)))" }.joined(separator: " ")
        }
        if t.count > 1 {
            // Dense series are drawn thinner, so the band of the noise does not hide the trend.
            let width = t.count > 500 ? "stroke-width=\"1\" stroke-opacity=\"0.75\"" : "stroke-width=\"1.5\""
            s += "<polyline id=\"train\" fill=\"none\" stroke=\"\(trainColour)\" \(width) stroke-linejoin=\"round\" points=\"\(points(t))\"/>\n"
        } else if let p = t.first {
            s += "<circle id=\"train\" cx=\"\(num(px(Double(p.tokens))))\" cy=\"\(num(py(p.loss)))\" r=\"3\" fill=\"\(trainColour)\"/>\n"
        }
        if v.count > 1 {
            s += "<polyline id=\"validation\" fill=\"none\" stroke=\"\(validationColour)\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"\(points(v))\"/>\n"
        }
        if !v.isEmpty {
            s += "<g id=\"validation-points\" fill=\"\(validationColour)\" stroke=\"#ffffff\" stroke-width=\"1\">\n"
            for p in v { s += "<circle cx=\"\(num(px(Double(p.tokens))))\" cy=\"\(num(py(p.loss)))\" r=\"3.5\"/>\n" }
            s += "</g>\n"
        }
        if all.isEmpty {
            s += "<text x=\"\(num(left + plotW / 2))\" y=\"\(num(top + plotH / 2))\" text-anchor=\"middle\" font-size=\"14\" fill=\"#888888\">no data</text>\n"
        }

        // Legend, top right inside the plot.
        let trainText = t.last.map { "train (last \(decimalLabel($0.loss, step: 0.001)))" } ?? "train (no points)"
        let best = v.min(by: { $0.loss < $1.loss })
        let validationText = best.map { "validation (best \(decimalLabel($0.loss, step: 0.001)))" } ?? "validation (no points)"
        let legendW = 200.0, lx = left + plotW - legendW - 8, ly = top + 8
        s += "<g id=\"legend\">\n"
        s += "<rect x=\"\(num(lx))\" y=\"\(num(ly))\" width=\"\(num(legendW))\" height=\"48\" fill=\"#ffffff\" fill-opacity=\"0.9\" stroke=\"#bbbbbb\"/>\n"
        s += "<line x1=\"\(num(lx + 10))\" y1=\"\(num(ly + 16))\" x2=\"\(num(lx + 36))\" y2=\"\(num(ly + 16))\" stroke=\"\(trainColour)\" stroke-width=\"2\"/>\n"
        s += "<text x=\"\(num(lx + 44))\" y=\"\(num(ly + 20))\" fill=\"#222222\">\(escaped(trainText))</text>\n"
        s += "<line x1=\"\(num(lx + 10))\" y1=\"\(num(ly + 34))\" x2=\"\(num(lx + 36))\" y2=\"\(num(ly + 34))\" stroke=\"\(validationColour)\" stroke-width=\"2\"/>\n"
        s += "<circle cx=\"\(num(lx + 23))\" cy=\"\(num(ly + 34))\" r=\"3.5\" fill=\"\(validationColour)\" stroke=\"#ffffff\" stroke-width=\"1\"/>\n"
        s += "<text x=\"\(num(lx + 44))\" y=\"\(num(ly + 38))\" fill=\"#222222\">\(escaped(validationText))</text>\n"
        s += "</g>\n</svg>\n"
        return s
    }

    /// Writes `svg` to `path` atomically (temporary file beside it, `fsync`, rename), replacing
    /// an existing file unless `overwrite` is false.
    /// - Throws: `G2WFormatError.io` (which call on which file, and why) or `.outputExists`.
    public static func write(_ svg: String, to path: String, overwrite: Bool = true) throws {
        try AtomicFileWriter.write(svg, to: path, overwrite: overwrite)
    }

    // MARK: Data

    /// The points with a finite loss, in order of tokens (stable).
    static func clean(_ p: [(tokens: Int, loss: Double)]) -> [(tokens: Int, loss: Double)] {
        p.enumerated().filter { $0.element.loss.isFinite }
            .sorted { ($0.element.tokens, $0.offset) < ($1.element.tokens, $1.offset) }
            .map(\.element)
    }

    /// At most `limit` points (limit >= 4): the first and the last, and between them, in each of
    /// (limit - 2) / 2 consecutive buckets, the points of lowest and highest loss, in order.
    static func downsample(_ p: [(tokens: Int, loss: Double)], to limit: Int) -> [(tokens: Int, loss: Double)] {
        guard p.count > limit, limit >= 4 else { return p }
        let inner = p.count - 2, buckets = (limit - 2) / 2
        var out: [(tokens: Int, loss: Double)] = [p[0]]
        out.reserveCapacity(limit)
        for b in 0..<buckets {
            let lo = 1 + b * inner / buckets, hi = 1 + (b + 1) * inner / buckets
            guard lo < hi else { continue }
            var iMin = lo, iMax = lo
            for i in lo..<hi {
                if p[i].loss < p[iMin].loss { iMin = i }
                if p[i].loss > p[iMax].loss { iMax = i }
            }
            out.append(p[min(iMin, iMax)])
            if iMin != iMax { out.append(p[max(iMin, iMax)]) }
        }
        out.append(p[p.count - 1])
        return out
    }

    // MARK: Axes

    struct Axis {
        var lo: Double, hi: Double, step: Double
        var ticks: [Double]
    }

    /// A range covering `values` with ticks at multiples of a nice step (1, 2, 2.5 or 5 x 10^k,
    /// about six of them) inside it. The loss axis gets 5% of margin at both ends, the token axis
    /// 2% at the right (so the last point's marker stays clear of the edge) and starts at the
    /// first value. A single value or none gets a range around it; integral axes never get
    /// fractional steps.
    static func axis(_ values: [Double], integral: Bool) -> Axis {
        var lo = values.min() ?? 0, hi = values.max() ?? 1
        if !(hi - lo).isFinite {  // beyond Double's range: shrink both ends
            lo = max(lo, -Double.greatestFiniteMagnitude / 4)
            hi = min(hi, Double.greatestFiniteMagnitude / 4)
        }
        if hi == lo {
            let pad = integral ? max(1, abs(lo) * 0.5) : max(0.5, abs(lo) * 0.1)
            lo -= pad
            hi += pad
            if integral && values.allSatisfy({ $0 >= 0 }) { lo = max(lo, 0) }
        } else if integral {
            hi += (hi - lo) * 0.02
        } else {
            let pad = (hi - lo) * 0.05
            lo -= pad
            hi += pad
        }
        var step = niceStep((hi - lo) / 6)
        if integral { step = max(step, 1) }
        guard step.isFinite, step > 0 else { return Axis(lo: lo, hi: hi, step: hi - lo, ticks: [lo, hi]) }
        let first = (lo / step).rounded(.up), last = (hi / step).rounded(.down)
        guard (last - first).isFinite, last - first <= 20 else { return Axis(lo: lo, hi: hi, step: hi - lo, ticks: [lo, hi]) }
        let ticks = first <= last ? stride(from: first, through: last, by: 1).map { $0 * step } : []
        return Axis(lo: lo, hi: hi, step: step, ticks: ticks)
    }

    /// The smallest of 1, 2, 2.5, 5 x 10^k at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw.isFinite, raw > 0 else { return 1 }
        var k = pow10(exponentOf: raw)
        if raw / k > 9.999_999 { k *= 10 }
        for m in [1.0, 2, 2.5, 5, 10] where m * k >= raw * 0.999_999 { return m * k }
        return 10 * k
    }

    /// 10^floor(log10(x)) for x > 0, without Foundation.
    static func pow10(exponentOf x: Double) -> Double {
        var p = 1.0
        while p * 10 <= x { p *= 10 }
        while p > x { p /= 10 }
        return p
    }

    // MARK: Text

    /// A token count with a k/M/B suffix chosen by the largest value on the axis, with just the
    /// decimals the step needs ("0", "500k", "1.5M", "2.25B").
    static func tokenLabel(_ v: Double, step: Double, largest: Double) -> String {
        let (unit, suffix): (Double, String) = largest >= 1e9 ? (1e9, "B") : largest >= 1e6 ? (1e6, "M") : largest >= 1e3 ? (1e3, "k") : (1, "")
        if v == 0 { return "0" }
        return trimmed(decimalLabel(v / unit, step: step / unit)) + suffix
    }

    /// `v` with as many decimals as `step` needs (at most 6).
    static func decimalLabel(_ v: Double, step: Double) -> String {
        guard v.isFinite else { return "\(v)" }
        var decimals = 0
        var s = step
        while decimals < 6, s.isFinite, s > 0, (s - s.rounded()).magnitude > s * 1e-9 {
            s *= 10
            decimals += 1
        }
        return fixed(v, decimals: decimals)
    }

    /// `v` rounded to `decimals` places ("-0" shown as "0").
    static func fixed(_ v: Double, decimals: Int) -> String {
        guard v.isFinite else { return "\(v)" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let r = (v * scale).rounded()
        guard r.magnitude < 9e15 else { return "\(v)" }
        let n = Int64(r)
        let sign = n < 0 ? "-" : ""
        let digits = String(n.magnitude)
        guard decimals > 0 else { return sign + digits }
        let padded = String(repeating: "0", count: max(0, decimals + 1 - digits.count)) + digits
        return sign + padded.dropLast(decimals) + "." + padded.suffix(decimals)
    }

    /// "1.50" -> "1.5", "2.00" -> "2".
    static func trimmed(_ s: String) -> String {
        guard s.contains(".") else { return s }
        var t = Substring(s)
        while t.hasSuffix("0") { t = t.dropLast() }
        if t.hasSuffix(".") { t = t.dropLast() }
        return String(t)
    }

    /// A coordinate with two decimals (clamped far outside the canvas, never NaN).
    static func num(_ v: Double) -> String {
        trimmed(fixed(v.isNaN ? 0 : min(max(v, -1e6), 1e6), decimals: 2))
    }

    /// Text for XML content and attributes: `& < > " '` as entities, control characters other
    /// than tab and newline (not allowed in XML 1.0) as spaces.
    static func escaped(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n": out.unicodeScalars.append(u)
            default:
                if u.value < 0x20 || u.value == 0xFFFE || u.value == 0xFFFF { out += " " } else { out.unicodeScalars.append(u) }
            }
        }
        return out
    }
}
