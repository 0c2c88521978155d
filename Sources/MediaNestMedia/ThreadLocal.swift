#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A per-thread value, stored in a pthread key whose destructor releases it when the thread ends.
///
/// Swift has no `thread_local`; FFmpeg's log callback needs one (the job logger of the thread it runs on).
final class ThreadLocal<Value: AnyObject>: Sendable {
    private let key: pthread_key_t

    init() {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { pointer in
            // The thread ended: drop its reference.
            #if canImport(Glibc)
            if let pointer { Unmanaged<AnyObject>.fromOpaque(pointer).release() }
            #else
            Unmanaged<AnyObject>.fromOpaque(pointer).release()
            #endif
        }
        precondition(status == 0, "pthread_key_create failed: \(status)")
        self.key = key
    }

    /// This thread's value.
    var value: Value? {
        get {
            guard let pointer = pthread_getspecific(key) else { return nil }
            return Unmanaged<AnyObject>.fromOpaque(pointer).takeUnretainedValue() as? Value
        }
        set {
            if let old = pthread_getspecific(key) {
                Unmanaged<AnyObject>.fromOpaque(old).release()
            }
            let pointer = newValue.map { Unmanaged<AnyObject>.passRetained($0 as AnyObject).toOpaque() }
            pthread_setspecific(key, pointer)
        }
    }
}
