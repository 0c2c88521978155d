#if canImport(Glibc)
import Glibc
#endif

/// A value behind a `pthread_mutex_t`, for locks that threads hold across a blocking call into a C
/// library and therefore contend for as a rule, not by accident.
///
/// Everything else in the project uses `Synchronization.Mutex`. The reason for a second lock is
/// ThreadSanitizer: on Linux a *contended* `Mutex` is taken in `_lockSlow` with `FUTEX_LOCK_PI`
/// inside the prebuilt, uninstrumented `libswiftSynchronization.so`, and the kernel hands the
/// lock over without an atomic operation TSan can see. TSan then reports the lock's own
/// critical sections as data races (it did, for the process's one libmagic handle, which every
/// pool thread sniffs through). TSan intercepts `pthread_mutex_lock`, so with this lock it sees
/// the hand-over and the run stays free of false reports. The cost is the same: an uncontended
/// lock is one atomic either way.
public final class ContendedLock<Value>: @unchecked Sendable {
    // @unchecked Sendable: `value` is only read or written between `pthread_mutex_lock` and
    // `pthread_mutex_unlock` of `mutex`, which lives as long as the object.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value while holding the lock.
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
