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
#include <libswresample/swresample.h>
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/frame.h>
#include <libavutil/mastering_display_metadata.h>
#include <libavutil/samplefmt.h>

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

/* Added for MediaNestMedia: macros and expressions Swift cannot import directly. */
static const int CFFmpeg_AVSEEK_FORCE = AVSEEK_FORCE;
static const int CFFmpeg_AVPROBE_SCORE_RETRY = AVPROBE_SCORE_RETRY;
static const int CFFmpeg_AVPROBE_SCORE_MAX = AVPROBE_SCORE_MAX;
static const int CFFmpeg_AV_DISPOSITION_ATTACHED_PIC = AV_DISPOSITION_ATTACHED_PIC;
static const int CFFmpeg_AV_DISPOSITION_DEFAULT = AV_DISPOSITION_DEFAULT;
static const int CFFmpeg_AV_DICT_IGNORE_SUFFIX = AV_DICT_IGNORE_SUFFIX;
static const int CFFmpeg_AVFMT_FLAG_CUSTOM_IO = AVFMT_FLAG_CUSTOM_IO;

/* Formats one FFmpeg log message into `line` (NUL-terminated); returns the untruncated length. */
static inline int CFFmpeg_format_log_line(void *avcl, int level, const char *fmt, va_list vl,
                                          char *line, int size) {
    int print_prefix = 1;
    return av_log_format_line2(avcl, level, fmt, vl, line, size, &print_prefix);
}

/* The depth in bits of a pixel format's first component, or 0 when unknown. */
static inline int CFFmpeg_pix_fmt_depth(int format) {
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)format);
    return desc ? desc->comp[0].depth : 0;
}

/* The name of a pixel format, or NULL. */
static inline const char *CFFmpeg_pix_fmt_name(int format) {
    return av_get_pix_fmt_name((enum AVPixelFormat)format);
}


/* Added for derived outputs (thumbnails, previews, transcodes). */
static const int CFFmpeg_FF_QP2LAMBDA = FF_QP2LAMBDA;
static const int CFFmpeg_AV_CODEC_FLAG_QSCALE = AV_CODEC_FLAG_QSCALE;
static const int CFFmpeg_AV_CODEC_FLAG_GLOBAL_HEADER = AV_CODEC_FLAG_GLOBAL_HEADER;
static const int CFFmpeg_AVFMT_GLOBALHEADER = AVFMT_GLOBALHEADER;
static const int CFFmpeg_AV_PKT_FLAG_KEY = AV_PKT_FLAG_KEY;
static const int CFFmpeg_AV_FRAME_FLAG_CORRUPT = AV_FRAME_FLAG_CORRUPT;
static const int CFFmpeg_AVSEEK_FLAG_BACKWARD = AVSEEK_FLAG_BACKWARD;
static const int CFFmpeg_SWS_AREA = SWS_AREA;
static const int CFFmpeg_SWS_BILINEAR = SWS_BILINEAR;
static const int CFFmpeg_SWS_BICUBIC = SWS_BICUBIC;
static const int CFFmpeg_SWS_LANCZOS = SWS_LANCZOS;
static const int CFFmpeg_SWS_ACCURATE_RND = SWS_ACCURATE_RND;
static const int CFFmpeg_SWS_FULL_CHR_H_INT = SWS_FULL_CHR_H_INT;
static const int CFFmpeg_SWS_FULL_CHR_H_INP = SWS_FULL_CHR_H_INP;
static const int CFFmpeg_SWS_BITEXACT = SWS_BITEXACT;
static const int CFFmpeg_SWS_CS_ITU601 = SWS_CS_ITU601;
static const int CFFmpeg_SWS_CS_ITU709 = SWS_CS_ITU709;
static const int CFFmpeg_SWS_CS_BT2020 = SWS_CS_BT2020;

/* The number of components of a pixel format (4 when it has alpha), or 0 when unknown. */
static inline int CFFmpeg_pix_fmt_components(int format) {
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)format);
    return desc ? desc->nb_components : 0;
}

/* Whether a pixel format carries alpha. */
static inline int CFFmpeg_pix_fmt_has_alpha(int format) {
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)format);
    return desc && (desc->flags & AV_PIX_FMT_FLAG_ALPHA) ? 1 : 0;
}

/* Whether a pixel format is RGB-like (not YUV or gray). */
static inline int CFFmpeg_pix_fmt_is_rgb(int format) {
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)format);
    return desc && (desc->flags & AV_PIX_FMT_FLAG_RGB) ? 1 : 0;
}

/* Images (thumbnails and previews): decoder threading and log context. */
static const int CFFmpeg_FF_THREAD_SLICE = FF_THREAD_SLICE;

/* Logs one preformatted line through av_log (for tests of the log routing). */
static inline void CFFmpeg_av_log_text(void *avcl, int level, const char *text) {
    av_log(avcl, level, "%s", text);
}

#endif
