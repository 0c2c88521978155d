#ifndef CLIBRAW_SHIM_H
#define CLIBRAW_SHIM_H
// libraw's C API, thread-safe build (`libraw_r`): each job owns its own libraw_data_t.
// Only the embedded-preview path is used (libraw_open_buffer + libraw_unpack_thumb); the worker
// never demosaics.
#include <libraw/libraw.h>

static const int CLibRaw_LIBRAW_SUCCESS = LIBRAW_SUCCESS;
static const int CLibRaw_LIBRAW_THUMBNAIL_JPEG = LIBRAW_THUMBNAIL_JPEG;
static const int CLibRaw_LIBRAW_THUMBNAIL_BITMAP = LIBRAW_THUMBNAIL_BITMAP;
static const int CLibRaw_LIBRAW_IMAGE_JPEG = LIBRAW_IMAGE_JPEG;
static const int CLibRaw_LIBRAW_FILE_UNSUPPORTED = LIBRAW_FILE_UNSUPPORTED;
static const int CLibRaw_LIBRAW_NO_THUMBNAIL = LIBRAW_NO_THUMBNAIL;
static const int CLibRaw_LIBRAW_UNSUPPORTED_THUMBNAIL = LIBRAW_UNSUPPORTED_THUMBNAIL;

#endif
