#ifndef CLCMS2_SHIM_H
#define CLCMS2_SHIM_H
// LittleCMS 2 (liblcms2-dev): ICC profiles and colour transforms for the still outputs
// (MediaNestMedia/Colour). The include path comes from pkg-config (`lcms2`).
#include <lcms2.h>

// lcms2's pixel-type macros are built from function-like macros, which Swift does not import:
// the few layouts the worker uses, as constants.
static const cmsUInt32Number CLcms2_TYPE_RGB_8 = TYPE_RGB_8;
static const cmsUInt32Number CLcms2_TYPE_RGBA_8 = TYPE_RGBA_8;
static const cmsUInt32Number CLcms2_TYPE_RGBA_16 = TYPE_RGBA_16;
static const cmsUInt32Number CLcms2_TYPE_RGB_16 = TYPE_RGB_16;
static const cmsUInt32Number CLcms2_TYPE_CMYK_8 = TYPE_CMYK_8;
static const cmsUInt32Number CLcms2_TYPE_CMYK_8_REV = TYPE_CMYK_8_REV;
static const cmsUInt32Number CLcms2_TYPE_GRAY_8 = TYPE_GRAY_8;

#endif
