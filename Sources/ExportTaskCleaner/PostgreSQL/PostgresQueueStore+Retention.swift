import FoundationEssentials

// Retention (docs/database.md, "Retention") is not yet on PostgreSQL: `prune`, the service's
// pruning and `audit --verify --archive` say so rather than do something else.

extension PostgresQueueStore {
    static let retentionNotYet = StoreError(
        .refused,
        "retention (prune, archives) is not yet on PostgreSQL: nothing was pruned; set \"retention\": null in the configuration to keep everything, as before")

    public func archiveCheckpoints() async throws -> [ArchiveCheckpoint] { [] }

    public func lastArchiveCheckpoint() async throws -> ArchiveCheckpoint? { nil }

    public func planPrune(after position: ChainPosition, cutoff: Date, targetRows: Int) async throws -> PrunePlan? {
        throw Self.retentionNotYet
    }

    public func commitPrune(_ plan: PrunePlan, checkpoint: ArchiveCheckpoint) async throws -> PruneCommit {
        throw Self.retentionNotYet
    }

    public func databaseSize() async throws -> Int? { nil }
}
