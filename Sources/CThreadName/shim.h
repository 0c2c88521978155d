#ifndef CTHREADNAME_SHIM_H
#define CTHREADNAME_SHIM_H
// Names the calling thread for the kernel (what top -H, ps -L, perf and gdb show), which Swift's
// Glibc module cannot do: pthread_setname_np is a GNU extension it does not import, and
// Foundation's Thread.name only reaches the kernel when the thread's pthread handle is already
// recorded, which races with the thread's start. Part of libc: nothing to link.
#include <sys/prctl.h>

/// Sets the calling thread's name (at most 15 bytes are kept). Returns 0, or -1 with errno.
static inline int medianest_set_current_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

#endif
