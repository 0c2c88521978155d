/// How long a job waits before it runs again after a transient failure, and when to give up.
///
/// The delay grows exponentially from ``baseDelay`` (attempt 1) and is capped at ``maximumDelay``;
/// ``jitter`` spreads it by up to that fraction either way so that jobs failing together (the
/// storage went away for a minute) do not come back together.
public struct RetryPolicy: Sendable, Hashable {
    /// The delay after the first failed attempt.
    public var baseDelay: Duration
    /// No delay is longer than this.
    public var maximumDelay: Duration
    /// The fraction (0...1) by which a delay is randomly shortened or lengthened.
    public var jitter: Double
    /// When set, replaces every job's own `max_attempts` (the worker's `--max-attempts`).
    public var maxAttemptsOverride: Int?

    /// Creates a policy.
    /// - Parameters:
    ///   - baseDelay: Delay after the first failure (default 10 s).
    ///   - maximumDelay: The cap (default one hour).
    ///   - jitter: Spread as a fraction (default 0.2, i.e. ±20 %).
    ///   - maxAttemptsOverride: Attempts before a job fails for good, instead of the job's own
    ///     `max_attempts` (default `nil`: the job's own, 5 unless the enqueuer chose otherwise).
    public init(baseDelay: Duration = .seconds(10), maximumDelay: Duration = .seconds(3600), jitter: Double = 0.2, maxAttemptsOverride: Int? = nil) {
        self.baseDelay = baseDelay
        self.maximumDelay = maximumDelay
        self.jitter = min(max(jitter, 0), 1)
        self.maxAttemptsOverride = maxAttemptsOverride.map { max(1, $0) }
    }

    /// The delay before attempt `failedAttempt + 1`, without jitter.
    public func nominalDelay(afterAttempt failedAttempt: Int) -> Duration {
        let exponent = min(max(failedAttempt - 1, 0), 30)
        let seconds = baseDelay.seconds * Double(1 << exponent)
        return .seconds(min(seconds, maximumDelay.seconds))
    }

    /// The delay before the next attempt, with jitter, never above ``maximumDelay``.
    /// - Parameters:
    ///   - failedAttempt: The attempt that just failed (1 for the first run).
    ///   - random: A number in 0..<1; injectable for tests.
    public func delay(afterAttempt failedAttempt: Int, random: Double = Double.random(in: 0..<1)) -> Duration {
        let nominal = nominalDelay(afterAttempt: failedAttempt).seconds
        let spread = nominal * jitter * (random * 2 - 1)
        return .seconds(max(0, min(nominal + spread, maximumDelay.seconds)))
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
