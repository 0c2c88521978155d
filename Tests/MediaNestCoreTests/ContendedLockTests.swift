import Dispatch
import MediaNestCore
import Testing

@Suite("contended lock")
struct ContendedLockTests {
    @Test func threadsIncrementingTogetherLoseNoUpdate() {
        let counter = ContendedLock(0)
        let threads = 4, increments = 50_000
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for _ in 0..<increments { counter.withLock { $0 += 1 } }
        }
        #expect(counter.withLock { $0 } == threads * increments)
    }

    @Test func anErrorThrownInsideLeavesTheLockFreeAndTheValueAsWritten() {
        struct Refused: Error {}
        let box = ContendedLock([Int]())
        #expect(throws: Refused.self) {
            try box.withLock { (values: inout [Int]) throws(Refused) in
                values.append(1)
                throw Refused()
            }
        }
        // The lock was released on the throw: taking it again does not deadlock.
        #expect(box.withLock { $0 } == [1])
    }
}
