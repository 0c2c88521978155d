#ifndef CMALLOC_SHIM_H
#define CMALLOC_SHIM_H
// glibc's malloc extensions (malloc_trim, mallinfo2), which Swift's Glibc module does not
// import: the worker gives the C heap's free pages back to the kernel when its pool goes idle
// (Sources/MediaNestWorker/Runtime/MemoryReclaimer.swift). Part of libc: nothing to link.
#include <malloc.h>

#endif
