/// Follows ListExportTasks' pages by `page.marker` (docs/commands.md, "sweep"), an explicit
/// state machine: each page received gives the next step. A page that comes back empty ends
/// the sweep. The marker is input: it must be 24 hex digits and smaller than the one before
/// (IoTDA lists newest first, and only smaller IDs follow a marker), or the sweep stops; so
/// does a server that never ends, after ``maximumPages`` pages.
public struct SweepPager: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        /// Ask for the page after `marker` (nil: the first page).
        case fetch(marker: String?)
        case done
        /// The answer breaks the paging rules; the sweep stops with this reason.
        case failed(String)
    }

    /// 2,000 pages of 50: 100,000 export tasks, far more than IoTDA keeps for a project.
    public static let defaultMaximumPages = 2_000

    public let maximumPages: Int
    public private(set) var marker: String?
    public private(set) var pages = 0
    public private(set) var step: Step = .fetch(marker: nil)

    public init(maximumPages: Int = SweepPager.defaultMaximumPages) {
        self.maximumPages = max(1, maximumPages)
    }

    /// The step after `page`; only while the step is `fetch`.
    @discardableResult
    public mutating func received(_ page: ExportTaskPage) -> Step {
        guard case .fetch = step else { return step }
        pages += 1
        step = next(page)
        if case .fetch(let next) = step { marker = next }
        return step
    }

    private func next(_ page: ExportTaskPage) -> Step {
        if page.tasks.isEmpty { return .done }
        guard let text = page.marker else { return .failed("a page of export tasks without page.marker") }
        guard Self.isMarker(text) else { return .failed("page.marker is not 24 hexadecimal digits") }
        let next = text.lowercased()
        if let marker, !(next < marker) {
            return .failed(next == marker ? "the server repeated page.marker" : "page.marker did not decrease")
        }
        guard pages < maximumPages else { return .failed("more than \(maximumPages) pages: the server does not end the list") }
        return .fetch(marker: next)
    }

    /// 24 hexadecimal digits.
    public static func isMarker(_ text: String) -> Bool {
        text.utf8.count == 24 && text.utf8.allSatisfy {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
                || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains($0)
        }
    }
}
