#ifndef CZLIB_SHIM_H
#define CZLIB_SHIM_H
// zlib: inflates a PNG's `iCCP` profile (bounded) and deflates the one a `p3` PNG output embeds.
// The include path comes from pkg-config (`zlib`).
#include <zlib.h>

#endif
