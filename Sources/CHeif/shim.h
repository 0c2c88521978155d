#ifndef CHEIF_SHIM_H
#define CHEIF_SHIM_H
// libheif (HEIC/HEIF and AVIF still images). The include path comes from pkg-config (`libheif`).
#include <libheif/heif.h>
#include <libheif/heif_plugin.h>
#include <sys/syscall.h>
#include <unistd.h>

// The calling thread's CPU affinity mask (Linux sched_getaffinity/sched_setaffinity, which
// Swift's Glibc module does not export). Get returns the mask's size in bytes, or -1.
static inline long CHeif_thread_affinity_get(void *mask, unsigned long size) {
    return syscall(SYS_sched_getaffinity, 0, size, mask);
}
// The CPU the calling thread runs on, or -1.
static inline int CHeif_current_cpu(void) {
    unsigned cpu = 0;
    return syscall(SYS_getcpu, &cpu, (void *)0, (void *)0) == 0 ? (int)cpu : -1;
}
static inline long CHeif_thread_affinity_set(const void *mask, unsigned long size) {
    return syscall(SYS_sched_setaffinity, 0, size, mask);
}

#endif
