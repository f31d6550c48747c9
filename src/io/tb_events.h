/* tb_events.h — scalar metrics as TensorBoard event files, so that
 * `tensorboard --logdir` shows a run and `wandb sync` can import it.
 *
 * An event file is a sequence of TFRecords, each holding one serialized
 * tensorboard.Event protobuf:
 *
 *   uint64 LE  length of data
 *   uint32 LE  masked CRC32C of those 8 length bytes
 *   data       the Event
 *   uint32 LE  masked CRC32C of data
 *
 * where masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8. The first
 * record is Event{wall_time, file_version: "brain.Event:2"}; every scalar
 * after it is Event{wall_time, step, summary: Summary{value: [Value{tag,
 * simple_value}]}}. The fields written (and their numbers) are those of
 * tensorboard/compat/proto/event.proto and summary.proto:
 *
 *   Event   { 1: double wall_time, 2: int64 step, 3: string file_version, 5: Summary summary }
 *   Summary { 1: repeated Value value }
 *   Value   { 1: string tag, 2: float simple_value }
 *
 * Fields holding their proto3 default (step 0, wall_time 0) are left out,
 * as every protobuf library does, so the bytes are the canonical encoding.
 *
 * Like the JSONL metrics log (io/metrics.h), each call writes its records
 * in a single write() on an O_APPEND descriptor: a killed process leaves
 * whole records only. See doc/tensorboard.md.
 */
#ifndef TAU2_IO_TB_EVENTS_H
#define TAU2_IO_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "core/sbuf.h"

typedef struct TbWriter TbWriter;

/* Create dir (and its parents) and a new event file in it named
 * events.out.tfevents.<unix-seconds, 10 digits>.<hostname>, as TensorFlow
 * names them (".<pid>" and then ".<pid>.<n>" are added when that name is
 * taken), and write the file_version event. NULL with err naming the path. */
TbWriter *tb_open(const char *dir, char *err, size_t errlen);
/* The event file's path. */
const char *tb_path(const TbWriter *w);

/* Append one scalar. tag must be non-empty valid UTF-8 (protobuf strings
 * must be). 0, or -1 with err naming the file (or the tag). */
int tb_add_scalar(TbWriter *w, int64_t step, double wall_time, const char *tag, float value, char *err,
                  size_t errlen);

/* Append every numeric member of row (a flat metrics object) except
 * "step" as a scalar at step row["step"], which must be an integral
 * number. Strings, booleans, null, arrays and objects are skipped. All of
 * the row's records go out in one write(). 0, or -1 with err. */
int tb_write_row(TbWriter *w, const cJSON *row, double wall_time, char *err, size_t errlen);

void tb_close(TbWriter *w);

/* ---- encoding (exposed for tests) ---- */

/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), as TFRecord uses. */
uint32_t tb_crc32c(const void *data, size_t n);
/* TFRecord's masked form of tb_crc32c(data, n). */
uint32_t tb_masked_crc32c(const void *data, size_t n);
/* Append the serialized Event of one scalar to out. */
void tb_encode_scalar_event(SBuf *out, double wall_time, int64_t step, const char *tag, float value);
/* Append the serialized Event{wall_time, file_version} to out. */
void tb_encode_version_event(SBuf *out, double wall_time, const char *file_version);
/* Append data framed as one TFRecord to out. */
void tb_append_record(SBuf *out, const void *data, size_t n);

#endif
