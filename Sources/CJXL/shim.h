#ifndef CJXL_SHIM_H
#define CJXL_SHIM_H
// libjxl's decoder (JPEG XL stills), the library FFmpeg 5.1 decodes JPEG XL with. Used directly so
// the picture can be decoded to 8 bits (libjxl 0.7 holds about 14 bytes per pixel more for
// 16-bit output) and its header read without decoding.
#include <jxl/decode.h>

#endif
