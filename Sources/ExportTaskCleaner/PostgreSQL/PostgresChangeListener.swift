import Logging
import PostgresNIO
import Synchronization

/// The PostgreSQL store's change signal (``WorkQueue/changeSignal()``): a count of the
/// notifications the INSERT trigger sends for this schema (``PostgresSchema``), heard on a
/// connection of its own that LISTENs. While it is not listening (starting, or reconnecting
/// after the database went away), nothing can be missed silently: every read of the signal
/// gives a new number, and the service polls as it does without one. And the signal moves
/// every ``fallbackPeriod`` whatever was heard: a connection that still looks open after its
/// server went silent (its host off, the network cut, a failover behind the same address)
/// hears nothing and tells nothing, and an idle service then still looks for work that often.
final class PostgresChangeListener: Sendable {
    static let fallbackPeriod = Duration.seconds(30)
    private let started = ContinuousClock.now

    private struct State {
        var count = 0
        var listening = false
    }

    private let state = Mutex(State())

    /// The current signal.
    var signal: Int {
        let periods = Int((ContinuousClock.now - started) / Self.fallbackPeriod)
        return state.withLock { state in
            if !state.listening { state.count &+= 1 }
            return state.count &+ periods
        }
    }

    /// Listens until cancelled, reconnecting with a backoff (1 s, doubling, up to 30 s) when the
    /// connection is lost.
    func run(client: PostgresClient, schema: String, logger: Logger) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: PostgresSchema.notificationChannel) { notifications in
                        // Rows may have come while nobody listened: one more change.
                        self.state.withLock { $0.listening = true; $0.count &+= 1 }
                        failures = 0
                        for try await notification in notifications where notification.payload == schema {
                            self.state.withLock { $0.count &+= 1 }
                        }
                    }
                }
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                failures += 1
                logger.warning("database notifications lost; polling until they are back", metadata: [
                    "error": "\(StoreError.fromPostgres(error))", "failures": "\(failures)",
                ])
            }
            state.withLock { $0.listening = false }
            let delay = Duration.seconds(min(30, 1 << min(max(failures - 1, 0), 5)))
            do { try await Task.sleep(for: delay) } catch { break }
        }
        state.withLock { $0.listening = false }
    }
}
