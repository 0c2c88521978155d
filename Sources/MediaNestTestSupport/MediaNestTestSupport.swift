// MediaNestTestSupport
