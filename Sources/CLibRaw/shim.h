#ifndef CLIBRAW_SHIM_H
#define CLIBRAW_SHIM_H
// libraw's C API, thread-safe build (`libraw_r`): each job owns its own libraw_data_t.
// The embedded preview (libraw_open_buffer + libraw_unpack_thumb), and a half-size development
// (libraw_unpack + libraw_dcraw_process) when that preview is too small.
#include <libraw/libraw.h>

static const int CLibRaw_LIBRAW_SUCCESS = LIBRAW_SUCCESS;
static const int CLibRaw_LIBRAW_THUMBNAIL_JPEG = LIBRAW_THUMBNAIL_JPEG;
static const int CLibRaw_LIBRAW_THUMBNAIL_BITMAP = LIBRAW_THUMBNAIL_BITMAP;
static const int CLibRaw_LIBRAW_IMAGE_JPEG = LIBRAW_IMAGE_JPEG;
static const int CLibRaw_LIBRAW_FILE_UNSUPPORTED = LIBRAW_FILE_UNSUPPORTED;
static const int CLibRaw_LIBRAW_NO_THUMBNAIL = LIBRAW_NO_THUMBNAIL;
static const int CLibRaw_LIBRAW_UNSUPPORTED_THUMBNAIL = LIBRAW_UNSUPPORTED_THUMBNAIL;
static const int CLibRaw_LIBRAW_NOT_IMPLEMENTED = LIBRAW_NOT_IMPLEMENTED;
static const int CLibRaw_LIBRAW_TOO_BIG = LIBRAW_TOO_BIG;
static const int CLibRaw_LIBRAW_UNSUFFICIENT_MEMORY = LIBRAW_UNSUFFICIENT_MEMORY;
static const int CLibRaw_LIBRAW_MEMPOOL_OVERFLOW = LIBRAW_MEMPOOL_OVERFLOW;
static const int CLibRaw_LIBRAW_CANCELLED_BY_CALLBACK = LIBRAW_CANCELLED_BY_CALLBACK;

#endif
