import MediaNestWorker
print("medianest-worker")
