public import MediaNestQueue

/// The job handlers a worker runs, one per job type.
///
/// The worker claims only the types that have a handler here (narrowed further by
/// ``WorkerConfiguration/types``), so a job type without a handler stays pending for a worker
/// that has one.
public struct HandlerRegistry: Sendable {
    private var handlers: [JobType: any JobHandler] = [:]
    private var jointHandlers: [any JointJobHandler] = []

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

    /// Adds a handler that runs the claimed jobs of one media item together (see
    /// ``JointJobHandler``). It is used only for types that also have an ordinary handler here
    /// (a job claimed alone runs in that one); a later joint handler sharing a type with an
    /// earlier one replaces it.
    public mutating func register(_ handler: any JointJobHandler) {
        jointHandlers.removeAll { !$0.jobTypes.isDisjoint(with: handler.jobTypes) }
        jointHandlers.append(handler)
    }

    /// The joint handler whose types are exactly `types`, if one is registered.
    public func jointHandler(for types: Set<JobType>) -> (any JointJobHandler)? {
        jointHandlers.first { $0.jobTypes == types }
    }

    /// The job types to claim together, each set served by a joint handler, narrowed to `served`
    /// (the types this worker claims). A set with a type missing is left out: its jobs are
    /// claimed alone.
    public func jointTypes(servedFrom served: Set<JobType>) -> [Set<JobType>] {
        jointHandlers.map(\.jobTypes).filter { $0.count >= 2 && $0.isSubset(of: served) && $0.allSatisfy { handlers[$0] != nil } }
    }

    /// The handler for `type`, if one is registered.
    public func handler(for type: JobType) -> (any JobHandler)? { handlers[type] }

    /// The types that have a handler, sorted.
    public var types: [JobType] { handlers.keys.sorted() }

    /// Whether no handler is registered.
    public var isEmpty: Bool { handlers.isEmpty }
}
