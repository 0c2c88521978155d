#ifndef CFFMPEG_SHIM_H
#define CFFMPEG_SHIM_H
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavcodec/avcodec.h>
#include <libavutil/avutil.h>
#include <libavutil/dict.h>
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libavutil/channel_layout.h>
#include <libswscale/swscale.h>

/* Macros Swift cannot import. */
static inline int CFFmpeg_AVERROR(int e) { return AVERROR(e); }
static const int CFFmpeg_AVERROR_EOF = AVERROR_EOF;
static const int CFFmpeg_AVERROR_EXIT = AVERROR_EXIT;
static const int CFFmpeg_AVERROR_INVALIDDATA = AVERROR_INVALIDDATA;
static const int CFFmpeg_AVERROR_DECODER_NOT_FOUND = AVERROR_DECODER_NOT_FOUND;
static const int CFFmpeg_AVERROR_DEMUXER_NOT_FOUND = AVERROR_DEMUXER_NOT_FOUND;
static const int CFFmpeg_AVERROR_PROTOCOL_NOT_FOUND = AVERROR_PROTOCOL_NOT_FOUND;
static const int CFFmpeg_AVERROR_STREAM_NOT_FOUND = AVERROR_STREAM_NOT_FOUND;
static const int CFFmpeg_AVERROR_PATCHWELCOME = AVERROR_PATCHWELCOME;
static const int CFFmpeg_AVERROR_EAGAIN = AVERROR(EAGAIN);
static const int CFFmpeg_AVERROR_ENOMEM = AVERROR(ENOMEM);
static const int64_t CFFmpeg_AV_NOPTS_VALUE = AV_NOPTS_VALUE;
static const int CFFmpeg_AV_TIME_BASE = AV_TIME_BASE;
static const int CFFmpeg_AVSEEK_SIZE = AVSEEK_SIZE;
static const int CFFmpeg_AV_ERROR_MAX_STRING_SIZE = AV_ERROR_MAX_STRING_SIZE;

static inline const char *CFFmpeg_av_make_error_string(char *buf, size_t size, int errnum) {
    return av_make_error_string(buf, size, errnum);
}

/* av_opt_set* are not variadic, but AVDictionary helpers are easier to call through these. */
static inline int CFFmpeg_av_dict_set(AVDictionary **dict, const char *key, const char *value) {
    return av_dict_set(dict, key, value, 0);
}

#endif
