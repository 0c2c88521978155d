// MediaNestWorker
