// MediaNestDB
