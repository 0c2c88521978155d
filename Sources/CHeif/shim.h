#ifndef CHEIF_SHIM_H
#define CHEIF_SHIM_H
// libheif (HEIC/HEIF and AVIF still images). The include path comes from pkg-config (`libheif`).
#include <libheif/heif.h>

#endif
