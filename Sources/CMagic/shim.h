#ifndef CMAGIC_SHIM_H
#define CMAGIC_SHIM_H
#include <magic.h>

static const int CMagic_MAGIC_MIME_TYPE = MAGIC_MIME_TYPE;
static const int CMagic_MAGIC_ERROR = MAGIC_ERROR;
static const int CMagic_MAGIC_NO_CHECK_COMPRESS = MAGIC_NO_CHECK_COMPRESS;
static const int CMagic_MAGIC_NO_CHECK_ELF = MAGIC_NO_CHECK_ELF;
static const int CMagic_MAGIC_SYMLINK = MAGIC_SYMLINK;
static const int CMagic_MAGIC_PARAM_BYTES_MAX = MAGIC_PARAM_BYTES_MAX;

#endif
