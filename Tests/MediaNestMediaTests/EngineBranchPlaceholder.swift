// Keeps this test target buildable on helper/engine until its owner's tests are merged; delete once it has real sources.
