// MediaNestMedia
