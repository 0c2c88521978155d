#ifndef CTURBOJPEG_SHIM_H
#define CTURBOJPEG_SHIM_H
// libjpeg-turbo's TurboJPEG API: JPEG thumbnails with DCT-domain scaling (1/8 … 7/8).
// The include path comes from pkg-config (`libturbojpeg`).
#include <turbojpeg.h>

#endif
