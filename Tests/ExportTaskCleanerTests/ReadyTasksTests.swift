@testable import ExportTaskCleaner
import Testing

@Suite("Ready tasks and runner slots")
struct ReadyTasksTests {
    private func tasks(_ ids: ClosedRange<Int>) -> [ClaimedTask] {
        ids.map { ClaimedTask(id: $0, exportTaskID: "task-\($0)", projectID: nil, instanceID: nil, attempts: 0, leaseToken: "lease") }
    }

    @Test("runners take tasks in claim order and hold a slot each until they give it back")
    func slots() {
        let ready = ReadyTasks()
        ready.append(contentsOf: tasks(1...4))
        #expect(ready.startRunner()?.id == 1)
        #expect(ready.startRunner()?.id == 2)
        #expect(ready.inFlight == 2 && ready.count == 2)
        // A runner keeps its slot and takes the next task while the limits allow.
        let next = ready.next { inFlight in inFlight <= 2 }
        #expect(next?.task.id == 3 && next?.left == 1)
        #expect(ready.inFlight == 2)
        // When the limits shrink (a 429 halved the concurrency), the runner gives its slot back
        // and the task stays ready for later.
        #expect(ready.next { inFlight in inFlight <= 1 } == nil)
        #expect(ready.inFlight == 1 && ready.count == 1)
        // The last task; then nothing is ready and the slot is given back.
        #expect(ready.next { _ in true }?.task.id == 4)
        #expect(ready.next { _ in true } == nil)
        #expect(ready.inFlight == 0 && ready.count == 0)
        #expect(ready.startRunner() == nil)
        #expect(ready.inFlight == 0)
    }

    @Test("closing hands back the tasks never started; runners then stop")
    func close() {
        let ready = ReadyTasks()
        ready.append(contentsOf: tasks(1...5))
        #expect(ready.startRunner()?.id == 1)
        #expect(ready.close().map(\.id) == [2, 3, 4, 5])
        #expect(ready.count == 0)
        #expect(ready.next { _ in true } == nil)
        #expect(ready.inFlight == 0)
        ready.append(contentsOf: tasks(6...6))
        #expect(ready.startRunner() == nil)
    }
}
