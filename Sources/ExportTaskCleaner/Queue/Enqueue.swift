import FoundationEssentials

/// One ID to queue, with the input line it came from (for error messages).
public struct EnqueueItem: Sendable, Equatable {
    public var exportTaskID: String
    public var projectID: String?
    public var instanceID: String?
    public var line: Int?
    /// When set, a task this item adds gets a `queued` audit row with this as its
    /// `error_message`, saying where it came from (a sweep: docs/database.md). Nil: no row.
    public var auditNote: String?

    public init(exportTaskID: String, projectID: String? = nil, instanceID: String? = nil, line: Int? = nil,
                auditNote: String? = nil) {
        self.exportTaskID = exportTaskID
        self.projectID = projectID
        self.instanceID = instanceID
        self.line = line
        self.auditNote = auditNote
    }
}

public struct EnqueueSummary: Sendable, Equatable {
    public struct Invalid: Sendable, Equatable {
        public var exportTaskID: String
        public var line: Int?
        public var problem: String
    }

    public var queued = 0
    public var alreadyQueued = 0
    public var invalid: [Invalid] = []

    public init() {}
}

/// What `enqueue` queues: IDs given one by one, or a list in the format of `enqueue`'s standard
/// input (``IDList``), read as it is inserted so that a list of millions is held only once.
public struct EnqueueList: Sendable {
    fileprivate enum Source: Sendable {
        case items([EnqueueItem])
        case lines([UInt8], projectID: String?, instanceID: String?)
    }

    private let source: Source

    public init(_ items: [EnqueueItem]) {
        source = .items(items)
    }

    /// A list's bytes; each ID gets this project and instance (nil: the configured ones).
    public init(lines bytes: [UInt8], projectID: String? = nil, instanceID: String? = nil) {
        source = .lines(bytes, projectID: projectID, instanceID: instanceID)
    }

    /// How many items there are at most (a list's line count), to size a store's buffers.
    public var expectedCount: Int {
        switch source {
        case .items(let items): items.count
        case .lines(let bytes, _, _): bytes.withUnsafeBytes { IDList.Lines($0).lineCount }
        }
    }

    /// Calls `body` with each item in order.
    public func forEach(_ body: (EnqueueItem) throws -> Void) rethrows {
        switch source {
        case .items(let items):
            for item in items { try body(item) }
        case .lines(let bytes, let projectID, let instanceID):
            try bytes.withUnsafeBytes { buffer in
                for entry in IDList.Lines(buffer) {
                    try body(EnqueueItem(exportTaskID: entry.id, projectID: projectID, instanceID: instanceID, line: entry.line))
                }
            }
        }
    }

    /// The items in order, `size` at a time (the last batch may be shorter): for a store that
    /// awaits between batches, which ``forEach(_:)`` cannot.
    public func batches(of size: Int) -> Batches {
        Batches(source: source, size: max(1, size))
    }

    public struct Batches: Sequence, IteratorProtocol {
        fileprivate let source: Source
        fileprivate let size: Int
        private var offset = 0
        private var line = 0

        fileprivate init(source: Source, size: Int) {
            self.source = source
            self.size = size
        }

        public mutating func next() -> [EnqueueItem]? {
            switch source {
            case .items(let items):
                guard offset < items.count else { return nil }
                defer { offset += size }
                return Array(items[offset..<Swift.min(items.count, offset + size)])
            case .lines(let bytes, let projectID, let instanceID):
                var batch: [EnqueueItem] = []
                (offset, line) = bytes.withUnsafeBytes { buffer in
                    var entries = IDList.Lines.Iterator(bytes: buffer, start: offset, line: line)
                    while batch.count < size, let entry = entries.next() {
                        batch.append(EnqueueItem(exportTaskID: entry.id, projectID: projectID, instanceID: instanceID, line: entry.line))
                    }
                    return (entries.start, entries.line)
                }
                return batch.isEmpty ? nil : batch
            }
        }
    }
}
