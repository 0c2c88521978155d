public import MediaNestQueue

/// The job handlers a worker runs, one per job type.
///
/// The worker claims only the types that have a handler here (narrowed further by
/// ``WorkerConfiguration/types``), so a job type without a handler stays pending for a worker
/// that has one.
public struct HandlerRegistry: Sendable {
    private var handlers: [JobType: any JobHandler] = [:]

    /// Creates an empty registry.
    public init() {}

    /// Creates a registry holding `handlers`.
    public init(_ handlers: [any JobHandler]) {
        for handler in handlers { register(handler) }
    }

    /// Adds a handler; a later handler for the same type replaces an earlier one.
    public mutating func register(_ handler: any JobHandler) {
        handlers[handler.jobType] = handler
    }

    /// The handler for `type`, if one is registered.
    public func handler(for type: JobType) -> (any JobHandler)? { handlers[type] }

    /// The types that have a handler, sorted.
    public var types: [JobType] { handlers.keys.sorted() }

    /// Whether no handler is registered.
    public var isEmpty: Bool { handlers.isEmpty }
}
